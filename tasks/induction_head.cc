// Task "induction_head".
#include "tasks/induction_head.h"

namespace hippo {

Sequence draw_induction_head(Rng& rng, const SyntheticVocab& vocab, int64_t seq_len) {
  Sequence s(seq_len);
  for (auto& t : s) t = static_cast<int64_t>(rng.uniform(vocab.num_ordinary()));
  const int64_t p = static_cast<int64_t>(rng.uniform(seq_len - 2));  // 0..seq_len-3
  s[p] = vocab.trigger();
  const int64_t answer = s[p + 1];
  s.push_back(vocab.trigger());
  s.push_back(answer);
  return s;
}

namespace {
class InductionHead : public Task {
 public:
  explicit InductionHead(const Options& o)
      : vocab_{o.get_int("vocab_size")},
        seq_len_(o.get_int("seq_len")),
        num_train_(o.get_int("num_train")),
        num_test_(o.get_int("num_test")) {}
  int64_t vocab_size() const override { return vocab_.vocab_size; }
  int64_t input_len() const override { return seq_len_ + 1; }
  double chance() const override { return 1.0 / static_cast<double>(vocab_.num_ordinary()); }
  absl::StatusOr<TaskSplits> make(uint64_t seed) const override {
    HIPPO_ASSIGN_OR_RETURN(auto split, draw_distinct(num_train_, num_test_, seed, [this](Rng& r) {
                             return draw_induction_head(r, vocab_, seq_len_);
                           }));
    return TaskSplits{last_answer_data(split.first), last_answer_data(split.second)};
  }

 private:
  SyntheticVocab vocab_;
  int64_t seq_len_, num_train_, num_test_;
};

TaskEntry make_entry() {
  TaskEntry e;
  e.name = "induction_head";
  e.doc = "recall the token after the earlier trigger (H3.md 6.2); accuracy on the answer position; "
          "chance 1/(vocab_size-2)";
  e.schema.add_int("vocab_size", 20, "tokens: vocab_size-2 ordinary + trigger + no-op", 4, 1 << 20)
      .add_int("seq_len", 30, "ordinary tokens before the final trigger (model input: seq_len+1)", 3, 1 << 20)
      .add_int("num_train", 5000, "distinct training examples", 1, 100000000)
      .add_int("num_test", 500, "distinct test examples, disjoint from training", 1, 100000000);
  e.factory = [](const Options& o) -> std::unique_ptr<Task> { return std::make_unique<InductionHead>(o); };
  return e;
}
const Registrar<TaskEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
