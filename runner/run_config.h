// A run's config: from what a user writes (command-line flags, a sweep grid point) to the canonical, fully
// resolved JSON whose hash identifies the run. Every key is validated against the registered layers, tasks
// and the trainer's schema; nothing unknown passes silently.
#pragma once

#include <string>
#include <vector>

#include "core/options.h"
#include "core/status.h"

namespace hippo {

// Version of the canonical config layout; part of every hash, bumped when the layout changes meaning.
constexpr int kConfigVersion = 1;

// The trainer's and the model's options (top-level keys of a run config): d_model, n_layer, lr, epochs, ...
const OptionSchema& train_schema();

// A fully resolved run.
struct RunSpec {
  // {"config_version", "layers" (schedule, one name per layer), "layer_options" {name: {...}} for the mixers
  //  used, "task", "task_options", "seed", "train" {...}}: canonical JSON, sorted keys, every default present.
  Json config;
  std::string hash;         // hash_hex(config.dump())
  std::string layer_label;  // "s4d", or for hybrids "h3+attention@1,8"
  std::string task;
  int64_t seed = 0;
};

// Resolves a raw config: a JSON object with
//   layer: NAME | layers: [NAME, ...]   (exactly one; `layers` fixes n_layer to its length)
//   attn_layers: [i, ...]               (optional: these 0-based layers become attention)
//   task: NAME, seed: INT >= 0 (default 0), any key of train_schema(),
//   NAME: {option: value} for any registered layer or task (options of unused layers are checked, then
//   dropped from the canonical config).
// Errors (kInvalidArgument, kNotFound) name the key and the accepted values; cross-option checks of layers
// (e.g. d_model divisible by n_heads) and tasks run here, before anything is built or written.
absl::StatusOr<RunSpec> resolve_run(const Json& raw);

// The option maps of `raw` (as given to resolve_run) that `spec` does not use: a registered layer's options when
// the run has no such layer, another task's options than the run's. Each entry is a sentence naming the map and
// what the run uses, e.g. "options for layer 'attention' are not used: this run's layers are s4d, s4d". A sweep
// file's fixed options legitimately hold such maps; a single `hippo train` reports them (never an error).
std::vector<std::string> unused_option_maps(const Json& raw, const RunSpec& spec);

// The options that resolve_run leaves out of a canonical config at their default (added after the first configs
// were hashed, so that those configs keep their hash): train.precision "fp32", train.grad_accum 1,
// train.mlp_ratio 4, layer_options.attention.rotary false, and for mqar task_options.test_kv_pairs [] and
// task_options.answer_in_input true. Returns `config` (a canonical config) with each of them put back where its
// scope exists and it is absent, for tools that read configs (results tables pivoting on such a key). Never fails.
Json with_omitted_defaults(const Json& config);

}  // namespace hippo
