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

  while (!g_interrupted) {
    HIPPO_ASSIGN_OR_RETURN(auto claimed, db.claim_next(sweep_id, worker, o.lease_seconds, o.run_id));
    if (!claimed) {
      if (o.run_id) break;
      // Runs still held by other workers: wait for them to finish, or for their leases to expire.
      HIPPO_ASSIGN_OR_RETURN(auto c, counts(db, sweep_id));
      if (c.second >= c.first) break;
      progress.update(absl::StrFormat("waiting for %d run(s) held by other workers", c.first - c.second));
      std::this_thread::sleep_for(std::chrono::seconds(2));
      continue;
    }
    RunRow run = *std::move(claimed);
    HIPPO_ASSIGN_OR_RETURN(auto c, counts(db, sweep_id));
    const std::string label = absl::StrFormat("run %d [%s × %s, seed %d]", run.id, run.layer, run.task, run.seed);
    progress.log(absl::StrFormat("%s: started (%d/%d done)%s", label, c.second, c.first,
                                 run.attempts > 1 ? absl::StrFormat(", attempt %d", run.attempts) : ""));
    RunSpec spec{run.config, run.config_hash, run.layer, run.task, run.seed};
    const auto t0 = std::chrono::steady_clock::now();
    auto last_renew = t0;
    double last_acc = -1;
    TrainCallbacks cb;
    absl::Status db_error;
    cb.on_start = [&](int64_t params, int64_t state) {
      auto env_device = value_or_throw(parse_device(o.device));
      db_error.Update(db.record_start(run.id, environment(env_device), params, state));
    };
    cb.on_metrics = [&](const std::vector<MetricRow>& rows) {
      db_error.Update(db.add_metrics(run.id, rows));
      for (const auto& m : rows)
        if (m.split == "test" && m.name == "accuracy") last_acc = m.value;
    };
    cb.on_step = [&](int64_t step, int64_t total, double loss) {
      if (g_interrupted) throw Interrupted{};
      const auto now = std::chrono::steady_clock::now();
      if (now - last_renew > std::chrono::duration<double>(o.renew_every_seconds)) {
        db_error.Update(db.renew_lease(run.id, worker, o.lease_seconds));
        last_renew = now;
      }
      const double elapsed = std::chrono::duration<double>(now - sweep_start).count();
      std::string eta;
      if (done_here > 0) {
        const double per_run = elapsed / static_cast<double>(done_here);
        eta = absl::StrCat(", sweep ETA ", format_duration(per_run * static_cast<double>(c.first - c.second) -
                                                           std::chrono::duration<double>(now - t0).count()));
      }
      progress.update(absl::StrFormat("[%d/%d runs] %s step %d/%d loss %.4f test acc %s%s", c.second, c.first, label,
                                      step, total, loss, last_acc < 0 ? "-" : absl::StrFormat("%.3f", last_acc), eta));
    };
    std::string status, error;
    int64_t steps = 0, resumed_from = 0;
    std::optional<int64_t> diverged_step;
    double acc = 0;
    CheckpointOptions ck;
    if (o.checkpoint_every > 0) {
      ck.path = absl::StrCat(ck_dir, "/run-", run.id, ".pt");
      ck.every = o.checkpoint_every;
    }
    ck.model_path = std::filesystem::absolute(absl::StrCat(ck_dir, "/run-", run.id, ".model.pt")).string();
    ck.save_every_model = o.save_models;
    std::string model_path;
    try {
      TrainExecution exec;
      exec.cuda_graph = o.cuda_graph;
      TrainResult r = train_run(spec, o.device, cb, ck, exec);
      resumed_from = r.resumed_from;
      status = r.status;
      steps = r.steps;
      diverged_step = r.diverged_step;
      acc = r.test_accuracy;
      model_path = r.model_path;
    } catch (const Interrupted&) {
      progress.clear();
      HIPPO_RETURN_IF_ERROR(db.requeue(run.id));
      progress.log(absl::StrFormat("%s: interrupted, put back in the queue", label));
      summary.interrupted = true;
      break;
    } catch (const StatusError& e) {
      status = "failed";
      error = e.what();
    } catch (const c10::Error& e) {
      status = "failed";
      error = e.what_without_backtrace();
    } catch (const std::exception& e) {
      status = "failed";
      error = e.what();
    }
    HIPPO_RETURN_IF_ERROR(db_error);
    if (!ck.path.empty() && !o.keep_checkpoints) std::remove(ck.path.c_str());
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!model_path.empty()) HIPPO_RETURN_IF_ERROR(db.set_model_path(run.id, model_path));
    HIPPO_RETURN_IF_ERROR(db.finish_run(run.id, status, steps, wall, error, diverged_step));
    ++done_here;
    progress.clear();
    if (status == "finished") {
      ++summary.finished;
      progress.log(absl::StrFormat("%s: finished in %s, test accuracy %.3f%s", label, format_duration(wall), acc,
                                   resumed_from ? absl::StrFormat(" (resumed from step %d)", resumed_from) : ""));
    } else if (status == "diverged") {
      ++summary.diverged;
      progress.log(absl::StrFormat("%s: diverged at step %d (NaN/Inf loss)", label, diverged_step.value_or(0)));
    } else {
      ++summary.failed;
      progress.log(absl::StrFormat("%s: FAILED: %s", label, error));
    }
  }
  if (g_interrupted) summary.interrupted = true;
  return summary;
}

}  // namespace hippo
