// Task "lm": next-token prediction on real text (H3.md 7), e.g. ../shared/data/tinyshakespeare/input.txt.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tasks/task.h"

namespace hippo {

// The text is split by bytes: the first (1 - val_fraction) is training text, the rest validation, each
// tokenized on its own so no token spans the boundary. Training: num_train windows of seq_len + 1 tokens at
// uniform random offsets, drawn afresh every epoch from (seed, epoch). Test: the validation tokens cut into
// consecutive windows of seq_len inputs (each target is the next token; the last window is padded and masked),
// so that every validation token after the first is scored exactly once. Loss, accuracy and eval masks cover
// every real position (accuracy = next-token accuracy).
class LmTask : public Task {
 public:
  // Reads and tokenizes the text. Errors (kInvalidArgument) name the file or option: unreadable, empty,
  // binary or non-UTF-8 file; too little text for one window of seq_len + 1 tokens in either split; a
  // tokenizer that cannot be loaded.
  static absl::StatusOr<std::unique_ptr<LmTask>> create(const Options& options);

  int64_t vocab_size() const override { return tokenizer_->vocab_size(); }
  int64_t input_len() const override { return seq_len_; }
  double chance() const override { return 1.0 / static_cast<double>(vocab_size()); }
  absl::StatusOr<TaskSplits> make(uint64_t seed) const override;
  std::optional<TaskData> train_epoch(uint64_t seed, int64_t epoch) const override;
  const Tokenizer* tokenizer() const override { return tokenizer_.get(); }
  double test_bytes_per_token() const override { return bytes_per_token_; }

  int64_t train_tokens() const { return static_cast<int64_t>(train_.size()); }
  int64_t val_tokens() const { return static_cast<int64_t>(val_.size()); }

 private:
  LmTask() = default;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int64_t> train_, val_;
  int64_t seq_len_ = 0, num_train_ = 0, max_test_windows_ = 0;
  double bytes_per_token_ = 1;
};

}  // namespace hippo
