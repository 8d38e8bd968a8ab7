// The run loop of a worker: claim, train, record.
#include "runner/executor.h"

#include <absl/strings/str_format.h>
#include <c10/util/Exception.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "core/device.h"
#include "core/progress.h"
#include "runner/trainer.h"

namespace hippo {

namespace {
std::atomic<bool> g_interrupted{false};
extern "C" void on_signal(int) { g_interrupted = true; }

struct Interrupted {};

std::string worker_id() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  return absl::StrCat(host, ":", getpid());
}

absl::StatusOr<std::pair<int64_t, int64_t>> counts(ResultsDb& db, std::optional<int64_t> sweep_id) {
  std::string sql = "SELECT count(*), sum(status IN ('finished','failed','diverged')) FROM runs";
  if (sweep_id) sql += absl::StrCat(" WHERE id IN (SELECT run_id FROM sweep_runs WHERE sweep_id = ", *sweep_id, ")");
  HIPPO_ASSIGN_OR_RETURN(auto q, db.query(sql));
  const auto& r = q.rows.at(0);
  return std::make_pair(std::stoll(r[0]), r[1] == "NULL" ? 0LL : std::stoll(r[1]));
}
}  // namespace

absl::StatusOr<ExecSummary> execute_queue(ResultsDb& db, std::optional<int64_t> sweep_id, const ExecOptions& o) {
  g_interrupted = false;
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);
  struct Restore {
    decltype(old_int) a, b;
    ~Restore() {
      std::signal(SIGINT, a);
      std::signal(SIGTERM, b);
    }
  } restore{old_int, old_term};

  const std::string worker = worker_id();
  const std::string ck_dir = o.checkpoint_dir.empty() ? db.path() + ".checkpoints" : o.checkpoint_dir;
  // The folder also holds final models (run-<id>.model.pt), which text tasks always write.
  if (::mkdir(ck_dir.c_str(), 0755) != 0 && errno != EEXIST)
    return absl::FailedPreconditionError(absl::StrCat("cannot create checkpoint folder '", ck_dir, "'"));
  ExecSummary summary;
  Progress progress(true);
  const auto sweep_start = std::chrono::steady_clock::now();
  int64_t done_here = 0;

  const bool grouped = o.ensemble > 1 && !o.run_id;
  while (!g_interrupted) {
    std::vector<RunRow> group;
    if (grouped) {
      HIPPO_ASSIGN_OR_RETURN(group, db.claim_group(sweep_id, worker, o.lease_seconds, o.ensemble,
                                                   [](const RunRow& lead, const RunRow& other) {
                                                     return ensemble_key(lead.config) == ensemble_key(other.config);
                                                   }));
    } else {
      HIPPO_ASSIGN_OR_RETURN(auto claimed, db.claim_next(sweep_id, worker, o.lease_seconds, o.run_id));
      if (claimed) group.push_back(*std::move(claimed));
    }
    if (group.empty()) {
      if (o.run_id) break;
      // Runs still held by other workers: wait for them to finish, or for their leases to expire.
      HIPPO_ASSIGN_OR_RETURN(auto c, counts(db, sweep_id));
      if (c.second >= c.first) break;
      progress.update(absl::StrFormat("waiting for %d run(s) held by other workers", c.first - c.second));
      std::this_thread::sleep_for(std::chrono::seconds(2));
      continue;
    }
    auto checkpoint_path = [&](const RunRow& r) { return absl::StrCat(ck_dir, "/run-", r.id, ".pt"); };
    // Members of an ensemble start at one step: runs whose checkpoint is at another step than the lead's go back
    // to the queue (they train with their own peers, or alone). A checkpoint that cannot be read trains alone, so
    // that its error is reported for its own run.
    if (group.size() > 1 && o.checkpoint_every > 0) {
      auto step_of = [&](const RunRow& r) -> int64_t {
        try {
          return checkpoint_step(checkpoint_path(r));
        } catch (const std::exception&) {
          return -1;
        }
      };
      const int64_t lead_step = step_of(group.front());
      std::vector<RunRow> kept;
      for (auto& r : group) {
        if (kept.empty() || (lead_step >= 0 && step_of(r) == lead_step)) {
          kept.push_back(std::move(r));
        } else {
          HIPPO_RETURN_IF_ERROR(db.requeue(r.id));
        }
      }
      group = std::move(kept);
    }
    HIPPO_ASSIGN_OR_RETURN(auto c, counts(db, sweep_id));
    const size_t n = group.size();
    struct Member {
      std::string label;
      double last_acc = -1;
      std::chrono::steady_clock::time_point last_renew;
      CheckpointOptions ck;
      std::string status, error, model_path;
      int64_t steps = 0, resumed_from = 0;
      std::optional<int64_t> diverged_step;
      double acc = 0;
    };
    std::vector<Member> members(n);
    std::vector<RunSpec> specs;
    std::vector<TrainCallbacks> cbs(n);
    std::vector<CheckpointOptions> cks;
    absl::Status db_error;
    const auto t0 = std::chrono::steady_clock::now();
    const std::string ensemble_text = n > 1 ? absl::StrFormat(" (ensemble of %d)", n) : "";
    for (size_t i = 0; i < n; ++i) {
      const RunRow& run = group[i];
      Member& m = members[i];
      m.label = absl::StrFormat("run %d [%s × %s, seed %d%s]", run.id, run.layer, run.task, run.seed,
                                n > 1 ? absl::StrCat(", lr ", run.config["train"]["lr"].dump()) : "");
      m.last_renew = t0;
      progress.log(absl::StrFormat("%s: started (%d/%d done)%s%s", m.label, c.second, c.first, ensemble_text,
                                   run.attempts > 1 ? absl::StrFormat(", attempt %d", run.attempts) : ""));
      specs.push_back(RunSpec{run.config, run.config_hash, run.layer, run.task, run.seed});
      cbs[i].on_start = [&, i](int64_t params, int64_t state) {
        auto env_device = value_or_throw(parse_device(o.device));
        db_error.Update(db.record_start(group[i].id, environment(env_device), params, state));
      };
      cbs[i].on_metrics = [&, i](const std::vector<MetricRow>& rows) {
        db_error.Update(db.add_metrics(group[i].id, rows));
        for (const auto& mr : rows)
          if (mr.split == "test" && mr.name == "accuracy") members[i].last_acc = mr.value;
      };
      cbs[i].on_step = [&, i](int64_t step, int64_t total, double loss) {
        if (g_interrupted) throw Interrupted{};
        Member& me = members[i];
        const auto now = std::chrono::steady_clock::now();
        if (now - me.last_renew > std::chrono::duration<double>(o.renew_every_seconds)) {
          db_error.Update(db.renew_lease(group[i].id, worker, o.lease_seconds));
          me.last_renew = now;
        }
        if (i != 0) return;  // the progress line follows the ensemble's first member
        const double elapsed = std::chrono::duration<double>(now - sweep_start).count();
        std::string eta;
        if (done_here > 0) {
          const double per_run = elapsed / static_cast<double>(done_here);
          eta = absl::StrCat(", sweep ETA ",
                             format_duration(per_run * static_cast<double>(c.first - c.second) -
                                             static_cast<double>(n) * std::chrono::duration<double>(now - t0).count()));
        }
        progress.update(absl::StrFormat("[%d/%d runs] %s%s step %d/%d loss %.4f test acc %s%s", c.second, c.first,
                                        me.label, ensemble_text, step, total, loss,
                                        me.last_acc < 0 ? "-" : absl::StrFormat("%.3f", me.last_acc), eta));
      };
      if (o.checkpoint_every > 0) {
        m.ck.path = checkpoint_path(run);
        m.ck.every = o.checkpoint_every;
      }
      m.ck.model_path = std::filesystem::absolute(absl::StrCat(ck_dir, "/run-", run.id, ".model.pt")).string();
      m.ck.save_every_model = o.save_models;
      cks.push_back(m.ck);
    }
    auto fail_all = [&](const std::string& error) {
      for (auto& m : members) m.status = "failed", m.error = error;
    };
    try {
      TrainExecution exec;
      exec.cuda_graph = o.cuda_graph;
      std::vector<TrainResult> rs;
      if (n == 1)
        rs.push_back(train_run(specs[0], o.device, cbs[0], cks[0], exec));
      else
        rs = train_ensemble(specs, o.device, cbs, cks, exec);
      for (size_t i = 0; i < n; ++i) {
        Member& m = members[i];
        m.resumed_from = rs[i].resumed_from;
        m.status = rs[i].status;
        m.steps = rs[i].steps;
        m.diverged_step = rs[i].diverged_step;
        m.acc = rs[i].test_accuracy;
        m.model_path = rs[i].model_path;
      }
    } catch (const Interrupted&) {
      progress.clear();
      for (size_t i = 0; i < n; ++i) {
        HIPPO_RETURN_IF_ERROR(db.requeue(group[i].id));
        progress.log(absl::StrFormat("%s: interrupted, put back in the queue", members[i].label));
      }
      summary.interrupted = true;
      break;
    } catch (const StatusError& e) {
      fail_all(e.what());
    } catch (const c10::Error& e) {
      fail_all(e.what_without_backtrace());
    } catch (const std::exception& e) {
      fail_all(e.what());
    }
    HIPPO_RETURN_IF_ERROR(db_error);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.clear();
    for (size_t i = 0; i < n; ++i) {
      const Member& m = members[i];
      const int64_t id = group[i].id;
      if (!m.ck.path.empty() && !o.keep_checkpoints) std::remove(m.ck.path.c_str());
      if (!m.model_path.empty()) HIPPO_RETURN_IF_ERROR(db.set_model_path(id, m.model_path));
      HIPPO_RETURN_IF_ERROR(db.finish_run(id, m.status, m.steps, wall, m.error, m.diverged_step));
      ++done_here;
      if (m.status == "finished") {
        ++summary.finished;
        progress.log(absl::StrFormat("%s: finished in %s%s, test accuracy %.3f%s", m.label, format_duration(wall),
                                     ensemble_text, m.acc,
                                     m.resumed_from ? absl::StrFormat(" (resumed from step %d)", m.resumed_from) : ""));
      } else if (m.status == "diverged") {
        ++summary.diverged;
        progress.log(absl::StrFormat("%s: diverged at step %d (NaN/Inf loss)", m.label, m.diverged_step.value_or(0)));
      } else {
        ++summary.failed;
        progress.log(absl::StrFormat("%s: FAILED: %s", m.label, m.error));
      }
    }
  }
  if (g_interrupted) summary.interrupted = true;
  return summary;
}

}  // namespace hippo
