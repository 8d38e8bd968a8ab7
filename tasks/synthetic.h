// Shared machinery of the synthetic tasks (H3.md 6.1): vocabulary layout, drawing distinct examples into
// disjoint train and test splits, and turning token sequences into TaskData.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/rng.h"
#include "core/status.h"
#include "tasks/task.h"

namespace hippo {

using Sequence = std::vector<int64_t>;

// Token ids of a synthetic vocabulary of V tokens: ordinary tokens 0..V-3, the trigger "=>" V-2 and the
// no-op "." V-1. (The public generator sorted names as strings; only the ids differ, not the task.)
struct SyntheticVocab {
  int64_t vocab_size;
  int64_t num_ordinary() const { return vocab_size - 2; }
  int64_t trigger() const { return vocab_size - 2; }
  int64_t noop() const { return vocab_size - 1; }
};

// Declares num_train and num_test, the split sizes every synthetic task takes.
void add_split_options(OptionSchema& schema, int64_t num_train, int64_t num_test);

// Declares eval_seq_lens (int list, default empty): after training, the final model is also evaluated at each
// of these values of the task's seq_len option (length extrapolation), on num_test fresh test examples drawn
// from the run's seed at that length; the trainer stores them as test metrics accuracy_len_<L> and loss_len_<L>
// (at the training length: the test split itself). resolve_run checks each length against the task's own rules
// and refuses lengths past the training length for models with learned position embeddings.
void add_eval_seq_lens_option(OptionSchema& schema);

// Draws examples with `draw` until num_train + num_test distinct sequences exist (duplicates dropped), the
// first num_train forming train and the rest test, so the splits are disjoint. Errors (kInvalidArgument)
// after too many duplicate draws (the options allow too few distinct sequences).
absl::StatusOr<std::pair<std::vector<Sequence>, std::vector<Sequence>>> draw_distinct(
    int64_t num_train, int64_t num_test, uint64_t seed, const std::function<Sequence(Rng&)>& draw);

// A synthetic task whose examples come from one drawing function and are scored at the last position
// (induction_head, associative_recall): distinct examples, disjoint splits (draw_distinct), last_answer_data.
class LastAnswerTask : public Task {
 public:
  // draw: one example of input_len + 1 tokens; chance: accuracy of a uniform guess among the answers.
  LastAnswerTask(int64_t vocab_size, int64_t input_len, double chance, int64_t num_train, int64_t num_test,
                 std::function<Sequence(Rng&)> draw)
      : vocab_size_(vocab_size), input_len_(input_len), chance_(chance), num_train_(num_train),
        num_test_(num_test), draw_(std::move(draw)) {}
  int64_t vocab_size() const override { return vocab_size_; }
  int64_t input_len() const override { return input_len_; }
  double chance() const override { return chance_; }
  absl::StatusOr<TaskSplits> make(uint64_t seed) const override;

 private:
  int64_t vocab_size_, input_len_;
  double chance_;
  int64_t num_train_, num_test_;
  std::function<Sequence(Rng&)> draw_;
};

// Eval slices by quarter: for q = 0..3 the slice "<prefix>_<lo>_<hi-1>" keeps the answers of eval_mask (N, L) whose
// `where` (int64, broadcastable to (N, L): a per-example position (N, 1) or the position of each column (1, L))
// lies in [lo, hi) = [q * span / 4, (q + 1) * span / 4). Empty quarters (span < 4) are left out.
std::vector<std::pair<std::string, torch::Tensor>> quarter_slices(const std::string& prefix,
                                                                  const torch::Tensor& eval_mask,
                                                                  const torch::Tensor& where, int64_t span);

// Sequences of equal length T -> TaskData with inputs s[:-1], targets s[1:], loss over every position and
// accuracy on the last position only (the answer). H3.md 6.1.
TaskData last_answer_data(const std::vector<Sequence>& seqs);

}  // namespace hippo
