// Building a run's model from its stored config, and saving / loading trained models with that config, for
// `hippo generate` and anything else that reuses a trained run.
#pragma once

#include <memory>
#include <string>

#include "core/options.h"
#include "layers/model.h"
#include "tasks/task.h"

namespace hippo {

// The task of a resolved run config (keys "task" and "task_options"). Throws StatusError on an unknown task
// or options the task rejects (e.g. a text file that is gone).
std::unique_ptr<Task> build_task(const Json& config);

// The model of a resolved run config (keys layers, layer_options, train.d_model, train.embed_dropout,
// train.resid_dropout) sized for `task` (vocab_size, max_seq_len = input_len). Weights freshly initialised
// (H3.md 5). Throws StatusError / c10::Error on an invalid config.
LanguageModel build_model(const Json& config, const Task& task);

// Writes the model's weights and its resolved run config to `path` (a torch::serialize archive with entries
// "model" and "config"), through a temporary file renamed into place. Throws c10::Error on I/O failure.
void save_model(const std::string& path, LanguageModel& model, const Json& config);

struct LoadedModel {
  Json config;                  // the resolved run config the model was trained with
  std::unique_ptr<Task> task;   // its task (tokenizer and sizes)
  LanguageModel model{nullptr};
};
// Reads a file written by save_model (or a mid-run checkpoint, given the run config in `config_if_missing`)
// onto `device`. Errors: kNotFound (no such file), kInvalidArgument (not a hippo model, no config, or
// weights that do not fit the config).
absl::StatusOr<LoadedModel> load_model(const std::string& path, const std::string& device,
                                       const Json& config_if_missing = Json());

}  // namespace hippo
