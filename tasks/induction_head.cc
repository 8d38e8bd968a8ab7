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
// Induction head with accuracy sliced by where the earlier trigger sits (quarters of the body): a model that
// solved the task for some trigger positions only shows it here.
class InductionHeadTask : public LastAnswerTask {
 public:
  InductionHeadTask(const SyntheticVocab& vocab, int64_t seq_len, int64_t num_train, int64_t num_test)
      : LastAnswerTask(vocab.vocab_size, seq_len + 1, 1.0 / static_cast<double>(vocab.num_ordinary()), num_train,
                       num_test, [vocab, seq_len](Rng& r) { return draw_induction_head(r, vocab, seq_len); }),
        trigger_(vocab.trigger()), seq_len_(seq_len) {}

  std::vector<std::pair<std::string, torch::Tensor>> eval_slices(const TaskData& d) const override {
    // The earlier trigger's position in the body (the final trigger, at seq_len, is excluded).
    auto body = d.inputs.narrow(1, 0, seq_len_);
    auto p = (body == trigger_).to(torch::kInt64).argmax(1, /*keepdim=*/true);  // (N, 1)
    return quarter_slices("accuracy_trigger", d.eval_mask, p, seq_len_ - 2);  // p in 0..seq_len-3
  }

 private:
  int64_t trigger_, seq_len_;
};

TaskEntry make_entry() {
  TaskEntry e;
  e.name = "induction_head";
  e.doc = "recall the token after the earlier trigger (H3.md 6.2); accuracy on the answer position; "
          "chance 1/(vocab_size-2)";
  e.schema.add_int("vocab_size", 20, "tokens: vocab_size-2 ordinary + trigger + no-op", 4, 1 << 20)
      .add_int("seq_len", 30, "ordinary tokens before the final trigger (model input: seq_len+1)", 3, 1 << 20);
  add_split_options(e.schema, 5000, 500);
  add_eval_seq_lens_option(e.schema);
  e.factory = [](const Options& o) -> std::unique_ptr<Task> {
    return std::make_unique<InductionHeadTask>(SyntheticVocab{o.get_int("vocab_size")}, o.get_int("seq_len"),
                                               o.get_int("num_train"), o.get_int("num_test"));
  };
  return e;
}
const Registrar<TaskEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
