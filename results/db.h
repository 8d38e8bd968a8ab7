// The results database (SQLite, WAL mode): sweeps, runs keyed by config hash, and metrics. Opening checks that
// the file is a hippo database of a schema this binary understands before anything is written.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace SQLite {
class Database;
}

namespace hippo {

using Json = nlohmann::json;

// Current UTC time as ISO 8601 with seconds ("2026-11-30T07:26:03Z"); offset_seconds added.
std::string utc_now(double offset_seconds = 0);

struct RunRow {
  int64_t id = 0;
  std::string config_hash;
  Json config;
  std::string layer, task, status;
  int64_t seed = 0;
  int64_t attempts = 0;
  std::optional<int64_t> param_count, state_size, steps, diverged_step, threads;
  std::optional<double> wall_seconds;
  std::string error, created_at, started_at, ended_at, worker;
  std::string model_path;  // final model file, empty when none was saved
  std::string commit_hash, hippo_version, torch_version, cuda_version, device, host;
};

struct MetricRow {
  int64_t step = 0;
  std::string split, name;
  double value = 0;
};

struct RunFilter {
  std::optional<std::string> sweep;   // sweep name
  std::optional<std::string> status;  // queued|running|finished|failed|diverged
};

class ResultsDb {
 public:
  enum class Mode { kReadOnly, kReadWrite };

  // Opens `path`. kReadWrite creates the file (and its schema) when missing and migrates an older schema;
  // kReadOnly needs an existing file and never writes. Errors: kNotFound (read-only and missing),
  // kInvalidArgument (not an SQLite file, or an SQLite file that is not hippo's), kFailedPrecondition (a
  // newer schema than this binary's, or a path that cannot be created or written).
  static absl::StatusOr<std::unique_ptr<ResultsDb>> open(const std::string& path, Mode mode);
  ~ResultsDb();

  const std::string& path() const { return path_; }

  // The sweep named `name` (created with `spec` if new; spec updated otherwise). Returns its id.
  absl::StatusOr<int64_t> upsert_sweep(const std::string& name, const Json& spec);
  absl::StatusOr<std::optional<int64_t>> find_sweep(const std::string& name);

  // Queues a run unless one with the same config_hash exists; links it to sweep_id if given. Returns the id
  // and whether it was new.
  struct Enqueued {
    int64_t id;
    bool created;
  };
  absl::StatusOr<Enqueued> enqueue(const std::string& config_hash, const Json& config, const std::string& layer,
                                   const std::string& task, int64_t seed, std::optional<int64_t> sweep_id);

  // The sweep row and every run of it in ONE transaction: either all are written or nothing is.
  struct NewRun {
    std::string config_hash;
    Json config;
    std::string layer, task;
    int64_t seed;
  };
  struct SweepEnqueued {
    int64_t sweep_id;
    int64_t created;  // runs that were new
  };
  absl::StatusOr<SweepEnqueued> enqueue_sweep(const std::string& name, const Json& spec, const std::vector<NewRun>& runs);

  // Sets failed runs of a sweep (or all, if nullopt) back to queued. Returns how many.
  absl::StatusOr<int64_t> requeue_failed(std::optional<int64_t> sweep_id);

  // Atomically claims the next run that is queued, or running with an expired lease, restricted to a sweep
  // if given: status running, attempts + 1, worker, lease_until = now + lease_seconds. nullopt if none.
  // run_id restricts the claim to that one run.
  absl::StatusOr<std::optional<RunRow>> claim_next(std::optional<int64_t> sweep_id, const std::string& worker,
                                                   double lease_seconds, std::optional<int64_t> run_id = {});
  // Claims, in one transaction, the run claim_next would claim (the lead) and up to max_runs - 1 more claimable
  // runs of the same sweep for which same_group(lead, other) is true, in id order; each as claim_next does.
  // Returns the lead first; empty when nothing is claimable. max_runs >= 1 (kInvalidArgument otherwise).
  // The runner uses it to train the seeds and learning rates of one config together (train_ensemble).
  absl::StatusOr<std::vector<RunRow>> claim_group(
      std::optional<int64_t> sweep_id, const std::string& worker, double lease_seconds, int64_t max_runs,
      const std::function<bool(const RunRow& lead, const RunRow& other)>& same_group);
  // Sets one run back to queued (any status), for `hippo train --force`.
  absl::Status requeue(int64_t run_id);
  // Extends the lease of a run this worker holds.
  absl::Status renew_lease(int64_t run_id, const std::string& worker, double lease_seconds);

  // Records the start of an attempt: environment fingerprint, parameter count and state size.
  absl::Status record_start(int64_t run_id, const Json& environment, int64_t param_count, int64_t state_size);
  // Writes metric rows in one transaction; an existing (run, step, split, name) is replaced.
  absl::Status add_metrics(int64_t run_id, const std::vector<MetricRow>& rows);
  // Inserts rows of the bench table in one transaction: each row a JSON object keyed by column names (any
  // column but id; a missing one is NULL). Errors: kInvalidArgument for an unknown column, kInternal or
  // kFailedPrecondition from SQLite (a NOT NULL column missing, a bad `pass`).
  absl::Status add_bench_rows(const std::vector<Json>& rows);
  // Ends a run: status finished, failed (error) or diverged (diverged_step).
  // Records the file of the run's final model (see save_model). Errors: kInternal on SQL failure.
  absl::Status set_model_path(int64_t run_id, const std::string& path);
  absl::Status finish_run(int64_t run_id, const std::string& status, int64_t steps, double wall_seconds,
                          const std::string& error = "", std::optional<int64_t> diverged_step = {});

  absl::StatusOr<std::vector<RunRow>> list_runs(const RunFilter& filter);
  // kNotFound if there is no such run.
  absl::StatusOr<RunRow> get_run(int64_t run_id);
  absl::StatusOr<std::vector<MetricRow>> metrics(int64_t run_id);

  // Runs one SQL statement; returns column names and rows as text (NULL as "NULL"). On a read-only handle
  // any write is refused by SQLite. Errors: kInvalidArgument with SQLite's message.
  struct QueryResult {
    std::vector<std::string> columns;
    std::vector<std::vector<std::string>> rows;
  };
  absl::StatusOr<QueryResult> query(const std::string& sql);

  // Folds another hippo database into this one, in one transaction: sweeps by name, runs by config hash
  // (a run present in both is kept once; the copy further along wins: finished > diverged > failed >
  // running > queued, ties keep this database's copy), the winning copy's metrics, and sweep membership.
  // Merging the same shard twice changes nothing. Returns the number of runs added or replaced.
  absl::StatusOr<int64_t> merge_from(ResultsDb& other);

  SQLite::Database& raw() { return *db_; }

 private:
  ResultsDb() = default;
  // enqueue() without its own transaction (the caller holds one).
  Enqueued enqueue_in_tx(const NewRun& run, std::optional<int64_t> sweep_id);
  int64_t upsert_sweep_in_tx(const std::string& name, const Json& spec);
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace hippo
