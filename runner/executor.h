// Executes queued runs from the results database: claims one at a time (or, with ExecOptions::ensemble, a group
// of runs that differ only in seed and learning rate, trained together) (with a renewed lease, so a run whose
// process died is taken over once its lease expires), trains it, and stores its metrics and final status.
// An exception inside a run marks it failed and the queue goes on; Ctrl-C puts the current run back in the
// queue and stops.
#pragma once

#include <optional>
#include <string>

#include "results/db.h"

namespace hippo {

struct ExecOptions {
  std::string device = "cpu";
  double lease_seconds = 60;            // a claim lives this long without renewal
  double renew_every_seconds = 10;      // renewal period while training
  std::optional<int64_t> run_id;        // execute only this run
  int64_t checkpoint_every = 1000;      // optimiser steps between mid-run checkpoints (0: none)
  std::string checkpoint_dir;           // where run-<id>.pt lives (default: "<db path>.checkpoints")
  bool keep_checkpoints = false;        // keep a run's checkpoint after it ends
  bool save_models = false;             // save every run's final model (text tasks always save theirs)
  bool cuda_graph = false;              // replay each training step from a CUDA graph (TrainExecution)
  // Claim up to this many runs at once that differ only in seed and lr (ensemble_key) and train them together
  // (train_ensemble; with cuda_graph, one graph). 1: one run at a time. Ignored with run_id.
  int64_t ensemble = 1;
};

struct ExecSummary {
  int64_t finished = 0, failed = 0, diverged = 0;
  bool interrupted = false;
};

// Runs every claimable run of `sweep_id` (all runs if nullopt) until none is left. Returns what happened;
// errors only for database failures (kInternal) — failures inside runs are recorded, not returned.
absl::StatusOr<ExecSummary> execute_queue(ResultsDb& db, std::optional<int64_t> sweep_id, const ExecOptions& options);

}  // namespace hippo
