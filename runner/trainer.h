// Trains one run: builds the task data and the model from a resolved RunSpec, runs AdamW (DeviceAdamW) with the SSM
// parameter rule and a warmup + cosine schedule, evaluates during and after training, and reports metrics
// through callbacks. No LibTorch in this header.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "results/db.h"
#include "runner/run_config.h"

namespace hippo {

struct TrainCallbacks {
  // Once, after the model is built: parameter count and recurrent state size (real scalars per sequence).
  std::function<void(int64_t param_count, int64_t state_size)> on_start;
  // After each evaluation, with every metric row of that evaluation.
  std::function<void(const std::vector<MetricRow>&)> on_metrics;
  // For each optimiser step with its loss (cheap; the runner uses it for progress and lease renewal). On the CPU
  // right after the step; on CUDA losses are read every 50 steps (and at step 1, evaluations, checkpoints and
  // the end), so the calls come in blocks.
  std::function<void(int64_t step, int64_t total_steps, double loss)> on_step;
};

struct CheckpointOptions {
  std::string path;          // empty: no checkpoints
  int64_t every = 0;         // optimiser steps between checkpoints (0: none)
  // Where the final model and its config go (save_model): always for text tasks (generation needs them),
  // for the others only with save_every_model. Empty: never.
  std::string model_path;
  bool save_every_model = false;
};

// How a run executes, not what it computes: not part of the run config or its hash (results equal the default
// execution's within float32 rounding).
struct TrainExecution {
  // Capture the training step in a CUDA graph and replay it (runner/graph_step.h; the runner's --cuda-graph).
  // Needs a CUDA device and a build with CUDA graphs. Losses are read back every 50 steps and before each
  // evaluation, checkpoint and the end, so on_step is called in blocks; "diverged" still names the first step
  // whose loss is NaN/Inf.
  bool cuda_graph = false;
};

struct TrainResult {
  std::string status;  // "finished" or "diverged"
  int64_t steps = 0;
  std::optional<int64_t> diverged_step;
  double test_accuracy = 0;  // final, answer positions
  double test_loss = 0;      // final, nats per token
  int64_t resumed_from = 0;  // step of the checkpoint training resumed from (0: a fresh start)
  std::string model_path;    // the final model file written (empty: none)
};

// Trains `spec` on `device` ("cpu", "cuda", "cuda:N", "auto"). Learning rate at step s of T with W warmup
// steps: linear from warmup_start_lr to lr over W, then cosine to min_lr_ratio*lr (H3.md 6.4); SSM
// parameters use min(ssm_lr, lr) on the same schedule and no weight decay (H3.md 2.1).
// A NaN or infinite training loss ends training with status "diverged" (not an exception), naming the first bad
// step (on CUDA found up to 50 steps later, before any evaluation or checkpoint sees the model).
// train.precision bf16: the forward passes of training and evaluation under CUDA bf16 autocast, SSM parameters
// and states in float32, losses in float32 (runner/train_step.h). train.grad_accum: each step sums the
// gradients of grad_accum micro-batches into the full batch's. Every evaluation also stores the training
// throughput since the previous one: train/tokens_per_second and train/step_ms (wall time, evaluation excluded).
// Throws StatusError for bad input that slipped past resolve_run (kFailedPrecondition for bf16 on a device that
// is not CUDA, before anything is built; exec.cuda_graph on a non-CUDA device or with bf16 or grad_accum > 1),
// c10::Error for tensor failures and for a checkpoint this version cannot read (one written with
// torch::optim::AdamW's state by an older hippo: the message names the file; delete it to restart the run).
//
// Checkpoints (when `checkpoint.path` and `checkpoint.every` are set): every `every` steps the model, the
// optimiser state, the step and the dropout RNG state are written to a temporary file that is then renamed
// over `path`, so a reader never sees a partial file. If `path` exists at the start, training resumes from it
// and continues exactly as the uninterrupted run would (the data order of each epoch is drawn from a generator
// seeded by (seed, epoch)). TrainResult.resumed_from is the step resumed at.
TrainResult train_run(const RunSpec& spec, const std::string& device, const TrainCallbacks& callbacks,
                      const CheckpointOptions& checkpoint = {}, const TrainExecution& exec = {});

// Trains several runs of one layer, task and config that differ only in seed and learning rate (ensemble_key
// equal) together, in lockstep: an ensemble (issue 5), so that the seeds and learning rates of one Table 2 cell
// share one process and, with exec.cuda_graph, one CUDA graph in which each run is an independent branch on its
// own stream (runner/graph_step.h). Each member is exactly the run train_run would train: built from its own seed,
// with its own data and data order, optimiser state, schedule, evaluations, checkpoint and callbacks; on the CPU
// and for eager CUDA steps each member also keeps its own random generators (dropout), so its losses and metrics
// equal train_run's (tests: bitwise on the CPU); graph replay draws dropout from the CUDA generator shared by the
// graph (the same distribution, not the same masks). Evaluation is per member, eagerly. Throughput rows
// (train/step_ms) are wall time per step of the whole ensemble, as seen by each member.
// specs, callbacks and checkpoints: one entry per member (n >= 1). Returns one TrainResult per member, in order;
// a member that diverges ends there (its status "diverged") while the others go on.
// Throws what train_run throws (for any member: the whole ensemble fails), StatusError kInvalidArgument when two
// members differ in more than seed and lr, and c10::Error when the members do not start at the same step (a
// checkpoint of one at another step: train such runs alone or with their peers).
std::vector<TrainResult> train_ensemble(const std::vector<RunSpec>& specs, const std::string& device,
                                        const std::vector<TrainCallbacks>& callbacks,
                                        const std::vector<CheckpointOptions>& checkpoints,
                                        const TrainExecution& exec = {});

// What runs of one ensemble share: the canonical run config without its seed and train.lr.
Json ensemble_key(const Json& config);

// The optimiser step of the checkpoint at `path` (0 when there is no file). Reads the whole file. Throws
// c10::Error for a file that is not a hippo checkpoint.
int64_t checkpoint_step(const std::string& path);

// Learning-rate multiplier in (0, 1] at step `step` of `total` (shared by every parameter group; the warmup
// start is given as a fraction of the peak). Exposed for tests.
double lr_factor(int64_t step, int64_t total, double warmup_fraction, double warmup_start_ratio,
                 double min_lr_ratio);

}  // namespace hippo
