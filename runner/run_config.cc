// Run-config resolution against the registries.
#include "runner/run_config.h"

#include <absl/strings/str_cat.h>
#include <absl/strings/str_join.h>

#include <map>
#include <set>

#include "core/hash.h"
#include "layers/mixer.h"
#include "tasks/task.h"

namespace hippo {

const OptionSchema& train_schema() {
  static const OptionSchema s = [] {
    OptionSchema t;
    t.add_int("d_model", 64, "model width D", 1, 65536)
        .add_int("n_layer", 2, "number of residual blocks (fixed by `layers` when that is given)", 1, 1024)
        .add_float("lr", 5e-4, "peak learning rate (AdamW)", 0, 10)
        .add_float("weight_decay", 0.1, "AdamW weight decay on matrices (not on biases, norms, SSM parameters)", 0, 10)
        .add_float("beta1", 0.9, "AdamW beta1", 0, 1)
        .add_float("beta2", 0.999, "AdamW beta2", 0, 1)
        .add_int("epochs", 20, "passes over the training split", 1, 1000000)
        .add_int("batch_size", 32, "examples per optimiser step", 1, 1 << 20)
        .add_float("warmup_fraction", 0.1, "fraction of the steps with linear warmup", 0, 1)
        .add_float("warmup_start_lr", 1e-6, "learning rate at step 0 of the warmup", 0, 10)
        .add_float("min_lr_ratio", 0.1, "cosine decay ends at min_lr_ratio * lr", 0, 1)
        .add_float("grad_clip", 1.0, "gradient-norm clipping threshold (0 = off)", 0, 1e9)
        .add_int("eval_every", 1, "evaluate every this many epochs (and always at the end)", 1, 1000000)
        .add_float("embed_dropout", 0.1, "dropout on the embedding output (H3.md 5)", 0, 1)
        .add_float("resid_dropout", 0.0, "dropout on each residual branch", 0, 1)
        .add_int("mlp_ratio", 4,
                 "MLP width as a multiple of d_model in every block; 0 = no MLP (mixer-only blocks, as Zoology's "
                 "MQAR models)",
                 0, 64)
        .add_int("max_steps", 0, "stop after this many optimiser steps (0 = epochs decide)", 0, 1LL << 40)
        .add_string("precision", "fp32",
                    "fp32, or bf16: CUDA autocast to bfloat16 in the forward pass, SSM parameters, kernels and "
                    "states in float32, losses in float32 (H3.md 5)",
                    {"fp32", "bf16"})
        .add_int("grad_accum", 1,
                 "micro-batches per optimiser step (batch_size / grad_accum examples each, gradients summed to "
                 "the full batch's); batch_size must be divisible by it",
                 1, 1 << 20);
    return t;
  }();
  return s;
}

namespace {
std::string layer_label(const std::vector<std::string>& schedule) {
  std::map<std::string, int> count;
  for (const auto& s : schedule) count[s]++;
  if (count.size() == 1) return schedule[0];
  // The most common mixer is the base; the others are listed with their indices.
  std::string base = schedule[0];
  for (const auto& [n, c] : count)
    if (c > count[base]) base = n;
  std::string label = base;
  for (const auto& [n, c] : count) {
    if (n == base) continue;
    std::vector<int> idx;
    for (size_t i = 0; i < schedule.size(); ++i)
      if (schedule[i] == n) idx.push_back(static_cast<int>(i));
    label += absl::StrCat("+", n, "@", absl::StrJoin(idx, ","));
  }
  return label;
}

// Length extrapolation (a task's eval_seq_lens, tasks/synthetic.h): every length must be a seq_len the task
// accepts, and a model with learned position embeddings cannot run past the input length it was trained at:
// that is an error here rather than a run that fails or is skipped later. An empty list is dropped from the
// canonical config, so that configs written before the option existed keep their hash.
absl::Status check_eval_seq_lens(const std::string& task, const TaskEntry& entry, Json& task_options,
                                 const std::set<std::string>& used, const Json& layer_options) {
  if (!task_options.contains("eval_seq_lens")) return absl::OkStatus();
  const Json lens = task_options["eval_seq_lens"];
  if (lens.empty()) {
    task_options.erase("eval_seq_lens");
    return absl::OkStatus();
  }
  if (!task_options.contains("seq_len"))
    return absl::InvalidArgumentError(absl::StrCat("task '", task, "' has no seq_len option: eval_seq_lens cannot apply"));
  std::string positional;
  for (const auto& name : used) {
    const LayerEntry* le = *LayerRegistry::global().find(name, "layer");
    if (le->needs_position_embedding && le->needs_position_embedding(Options(layer_options[name]))) positional = name;
  }
  const int64_t train_len = entry.factory(Options(task_options))->input_len();
  std::set<int64_t> seen;
  for (const auto& l : lens) {
    const int64_t L = l.get<int64_t>();
    if (!seen.insert(L).second)
      return absl::InvalidArgumentError(absl::StrCat("task '", task, "': eval_seq_lens lists ", L, " twice"));
    Json at = task_options;
    at.erase("eval_seq_lens");
    at["seq_len"] = L;
    const std::string owner = absl::StrCat("task '", task, "' at eval_seq_lens entry ", L);
    auto o = resolve_options(entry.schema, at, owner);
    absl::Status st = o.ok() ? (entry.validate ? entry.validate(*o) : absl::OkStatus()) : o.status();
    if (!st.ok()) return absl::Status(st.code(), absl::StrCat("eval_seq_lens entry ", L, ": ", st.message()));
    const int64_t len = entry.factory(*o)->input_len();
    if (!positional.empty() && len > train_len)
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", positional, "' uses learned position embeddings, which exist only up to the training input length ",
          train_len, ": task '", task, "' cannot be evaluated at eval_seq_lens entry ", L, " (input length ", len,
          "); drop the longer lengths or use a layer without them (attention: pos_emb: false)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> get_name(const Json& raw, const char* key) {
  if (!raw[key].is_string())
    return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be a name, got ", raw[key].dump()));
  return raw[key].get<std::string>();
}
}  // namespace

namespace {
// Calls f(scope, key, default) for each option left out of canonical configs at its default (see
// with_omitted_defaults), with `scope` the config's object that holds it, where that object exists.
template <typename F>
void for_each_omitted_default(Json& config, F f) {
  if (config.contains("train") && config["train"].is_object()) {
    Json& train = config["train"];
    f(train, "precision", Json("fp32"));
    f(train, "grad_accum", Json(1));
    f(train, "mlp_ratio", Json(4));
  }
  if (config.contains("layer_options") && config["layer_options"].is_object() &&
      config["layer_options"].contains("attention"))
    f(config["layer_options"]["attention"], "rotary", Json(false));
  if (config.contains("task") && config["task"] == "mqar" && config.contains("task_options") &&
      config["task_options"].is_object()) {
    f(config["task_options"], "test_kv_pairs", Json::array());
    f(config["task_options"], "answer_in_input", Json(true));
  }
}
}  // namespace

std::vector<std::string> unused_option_maps(const Json& raw, const RunSpec& spec) {
  std::vector<std::string> out;
  if (!raw.is_object()) return out;
  std::set<std::string> used;
  std::vector<std::string> schedule;
  for (const auto& l : spec.config["layers"]) {
    used.insert(l.get<std::string>());
    schedule.push_back(l.get<std::string>());
  }
  for (const auto& [name, entry] : LayerRegistry::global().entries())
    if (raw.contains(name) && !used.count(name))
      out.push_back(absl::StrCat("options for layer '", name, "' are not used: this run's layers are ",
                                 absl::StrJoin(schedule, ", ")));
  for (const auto& [name, entry] : TaskRegistry::global().entries())
    if (raw.contains(name) && name != spec.task)
      out.push_back(absl::StrCat("options for task '", name, "' are not used: this run's task is ", spec.task));
  return out;
}

Json with_omitted_defaults(const Json& config) {
  Json c = config;
  for_each_omitted_default(c, [](Json& scope, const char* key, const Json& value) {
    if (!scope.contains(key)) scope[key] = value;
  });
  return c;
}

absl::StatusOr<RunSpec> resolve_run(const Json& raw_in) {
  if (!raw_in.is_object())
    return absl::InvalidArgumentError(absl::StrCat("a run config must be a mapping, got ", raw_in.dump()));
  const Json& raw = raw_in;
  const auto& layers = LayerRegistry::global();
  const auto& tasks = TaskRegistry::global();

  // 1. Every top-level key must be known.
  Json train_given = Json::object();
  for (auto it = raw.begin(); it != raw.end(); ++it) {
    const std::string& k = it.key();
    if (k == "layer" || k == "layers" || k == "attn_layers" || k == "task" || k == "seed") continue;
    if (layers.contains(k) || tasks.contains(k)) continue;
    if (train_schema().find(k)) {
      train_given[k] = it.value();
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown key '", k, "'; accepted: layer, layers, attn_layers, task, seed, ", train_schema().names(),
        ", or a layer/task name (", absl::StrJoin(layers.names(), ", "), ", ", absl::StrJoin(tasks.names(), ", "),
        ") holding its options"));
  }

  // 2. The layer schedule.
  std::vector<std::string> schedule;
  if (raw.contains("layer") == raw.contains("layers"))
    return absl::InvalidArgumentError("give exactly one of 'layer' (a name) or 'layers' (a list, one per layer)");
  if (raw.contains("layers")) {
    if (!raw["layers"].is_array() || raw["layers"].empty())
      return absl::InvalidArgumentError(absl::StrCat("'layers' must be a non-empty list of layer names, got ",
                                                     raw["layers"].dump()));
    for (const auto& n : raw["layers"]) {
      if (!n.is_string())
        return absl::InvalidArgumentError(absl::StrCat("'layers' entries must be names, got ", n.dump()));
      schedule.push_back(n.get<std::string>());
    }
    if (train_given.contains("n_layer") &&
        (!train_given["n_layer"].is_number_integer() ||
         train_given["n_layer"].get<int64_t>() != static_cast<int64_t>(schedule.size())))
      return absl::InvalidArgumentError(absl::StrCat("n_layer ", train_given["n_layer"].dump(),
                                                     " disagrees with the ", schedule.size(), " entries of 'layers'"));
    train_given["n_layer"] = static_cast<int64_t>(schedule.size());
  }
  HIPPO_ASSIGN_OR_RETURN(Options train, resolve_options(train_schema(), train_given, "the run config"));
  if (train.get_int("batch_size") % train.get_int("grad_accum") != 0)
    return absl::InvalidArgumentError(absl::StrCat("batch_size ", train.get_int("batch_size"),
                                                   " is not divisible by grad_accum ", train.get_int("grad_accum"),
                                                   ": each micro-batch has batch_size / grad_accum examples"));
  const int64_t n_layer = train.get_int("n_layer");
  const int64_t d_model = train.get_int("d_model");
  if (raw.contains("layer")) {
    HIPPO_ASSIGN_OR_RETURN(std::string name, get_name(raw, "layer"));
    schedule.assign(n_layer, name);
  }
  if (raw.contains("attn_layers")) {
    if (raw.contains("layers"))
      return absl::InvalidArgumentError(
          "'attn_layers' goes with 'layer' (a mixer in every layer); with 'layers' write attention into the schedule");
    const Json& a = raw["attn_layers"];
    Json list = a.is_number_integer() ? Json::array({a}) : a;
    if (!list.is_array())
      return absl::InvalidArgumentError(absl::StrCat("'attn_layers' must be a list of layer indices, got ", a.dump()));
    std::set<int64_t> seen_idx;
    for (const auto& i : list) {
      if (!i.is_number_integer() || i.get<int64_t>() < 0 || i.get<int64_t>() >= n_layer)
        return absl::InvalidArgumentError(absl::StrCat("'attn_layers' entry ", i.dump(),
                                                       " is not a layer index in [0, ", n_layer - 1, "]"));
      if (!seen_idx.insert(i.get<int64_t>()).second)
        return absl::InvalidArgumentError(absl::StrCat("'attn_layers' names layer ", i.dump(), " twice"));
      schedule[i.get<int64_t>()] = "attention";
    }
  }
  for (const auto& n : schedule) HIPPO_RETURN_IF_ERROR(layers.find(n, "layer").status());

  // 3. Options of every layer and task named, used or not (a typo in an unused block is still a typo). A layer's
  // checks against the model width (head counts dividing d_model, ...) only for layers the run has: an unused
  // block (a sweep's fixed attention options beside an s4d run) is not built at this width.
  Json layer_options = Json::object();
  std::set<std::string> used(schedule.begin(), schedule.end());
  for (const auto& [name, entry] : layers.entries()) {
    const Json given = raw.contains(name) ? raw[name] : Json();
    if (given.is_null() && !used.count(name)) continue;
    HIPPO_ASSIGN_OR_RETURN(Options o, resolve_options(entry.schema, given, absl::StrCat("layer '", name, "'")));
    if (entry.validate && used.count(name)) HIPPO_RETURN_IF_ERROR(entry.validate(o, d_model));
    if (used.count(name)) layer_options[name] = o.json();
  }
  if (!raw.contains("task")) return absl::InvalidArgumentError("missing 'task'");
  HIPPO_ASSIGN_OR_RETURN(std::string task, get_name(raw, "task"));
  HIPPO_ASSIGN_OR_RETURN(const TaskEntry* task_entry, tasks.find(task, "task"));
  Json task_options;
  for (const auto& [name, entry] : tasks.entries()) {
    if (!raw.contains(name) && name != task) continue;
    const Json given = raw.contains(name) ? raw[name] : Json();
    HIPPO_ASSIGN_OR_RETURN(Options o, resolve_options(entry.schema, given, absl::StrCat("task '", name, "'")));
    if (entry.validate) HIPPO_RETURN_IF_ERROR(entry.validate(o));
    if (name == task) task_options = o.json();
  }
  HIPPO_RETURN_IF_ERROR(check_eval_seq_lens(task, *task_entry, task_options, used, layer_options));

  int64_t seed = 0;
  if (raw.contains("seed")) {
    if (!raw["seed"].is_number_integer() || raw["seed"].get<int64_t>() < 0)
      return absl::InvalidArgumentError(absl::StrCat("'seed' must be an integer >= 0, got ", raw["seed"].dump()));
    seed = raw["seed"].get<int64_t>();
  }

  RunSpec r;
  r.config = {{"config_version", kConfigVersion}, {"layers", schedule}, {"layer_options", layer_options},
              {"task", task}, {"task_options", task_options}, {"seed", seed}, {"train", train.json()}};
  // Options added after the first configs were hashed are left out at their defaults, so that those configs keep
  // their hash (the trainer, layers and tasks resolve their options again, filling them back in).
  for_each_omitted_default(r.config, [](Json& scope, const char* key, const Json& value) {
    if (scope.contains(key) && scope[key] == value) scope.erase(key);
  });
  r.hash = hash_hex(r.config.dump());
  r.layer_label = layer_label(schedule);
  r.task = task;
  r.seed = seed;
  return r;
}

}  // namespace hippo
