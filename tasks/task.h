// The task interface: a task turns a seed into train and test splits of token sequences with their loss and
// evaluation masks. Tasks register by name with validated options, like layers.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/options.h"
#include "core/registry.h"
#include "tasks/tokenizer.h"

namespace hippo {

// One split, N examples of input length L (next-token prediction: targets are inputs shifted by one).
struct TaskData {
  torch::Tensor inputs;     // (N, L) int64 token ids in [0, vocab_size)
  torch::Tensor targets;    // (N, L) int64
  torch::Tensor loss_mask;  // (N, L) float32, 1 where the training loss counts
  torch::Tensor eval_mask;  // (N, L) bool, the positions scored by `accuracy` (the answer positions)
  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
};

struct TaskSplits {
  TaskData train, test;
};

class Task {
 public:
  virtual ~Task() = default;
  virtual int64_t vocab_size() const = 0;
  // Length of the model input (and target) sequences.
  virtual int64_t input_len() const = 0;
  // Accuracy of a uniform guess among the possible answers, in [0, 1].
  virtual double chance() const = 0;
  // Train and test splits for `seed`: identical for the same seed and options, different for another seed,
  // disjoint, without duplicates. Errors (kInvalidArgument) when the options cannot give enough distinct
  // examples.
  virtual absl::StatusOr<TaskSplits> make(uint64_t seed) const = 0;
  // Named subsets of `data`'s eval_mask ((N, L) bool each) whose accuracy is stored beside the overall one
  // (metric name = the slice's name), e.g. accuracy by query position. Default: none.
  virtual std::vector<std::pair<std::string, torch::Tensor>> eval_slices(const TaskData& data) const { return {}; }
  // The train split of epoch `epoch` for tasks that draw fresh training examples every epoch (the lm task's
  // random windows); deterministic in (seed, epoch) so that a resumed run sees the same data. Default:
  // nullopt, meaning the train split of make() is reused (reshuffled) every epoch.
  virtual std::optional<TaskData> train_epoch(uint64_t seed, int64_t epoch) const { return std::nullopt; }
  // The tokenizer of a text task (prompts in, generations out); nullptr for the synthetic tasks.
  virtual const Tokenizer* tokenizer() const { return nullptr; }
  // UTF-8 bytes of the test text per scored token (1 for the byte tokenizer), to turn nats per token into
  // bits per byte; 0 for tasks that are not text.
  virtual double test_bytes_per_token() const { return 0; }
};

struct TaskEntry {
  std::string name;
  std::string doc;
  OptionSchema schema;
  std::function<std::unique_ptr<Task>(const Options&)> factory;
  // Cross-option checks (e.g. vocabulary large enough); may be empty.
  std::function<absl::Status(const Options&)> validate;
};
using TaskRegistry = Registry<TaskEntry>;

}  // namespace hippo
