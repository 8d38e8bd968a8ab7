// Task "associative_recall".
#include "tasks/associative_recall.h"

namespace hippo {

Sequence draw_associative_recall(Rng& rng, const SyntheticVocab& vocab, int64_t seq_len) {
  const int64_t K = vocab.num_ordinary() / 2;
  std::vector<int64_t> value_of(K);
  for (auto& v : value_of) v = K + static_cast<int64_t>(rng.uniform(K));
  Sequence s;
  s.reserve(seq_len + 3);
  for (int64_t i = 0; i < seq_len / 2; ++i) {
    const int64_t k = static_cast<int64_t>(rng.uniform(K));
    s.push_back(k);
    s.push_back(value_of[k]);
  }
  const int64_t query = s[2 * rng.uniform(seq_len / 2)];
  s.push_back(vocab.trigger());
  s.push_back(query);
  s.push_back(value_of[query]);
  return s;
}

namespace {
TaskEntry make_entry() {
  TaskEntry e;
  e.name = "associative_recall";
  e.doc = "recall the value of the queried key (H3.md 6.3); accuracy on the answer position; "
          "chance 1/((vocab_size-2)/2)";
  e.schema.add_int("vocab_size", 10, "tokens: (vocab_size-2)/2 keys + as many values + trigger + no-op", 6, 1 << 20)
      .add_int("seq_len", 20, "body length: seq_len/2 key-value pairs (model input: seq_len+2)", 2, 1 << 20);
  add_split_options(e.schema, 5000, 500);
  add_eval_seq_lens_option(e.schema);
  e.validate = [](const Options& o) -> absl::Status {
    if (o.get_int("vocab_size") % 2 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "option 'vocab_size' of task 'associative_recall' must be even (keys and values split the ",
          "ordinary tokens in half), got ", o.get_int("vocab_size")));
    if (o.get_int("seq_len") % 2 != 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "option 'seq_len' of task 'associative_recall' must be even (key-value pairs), got ",
          o.get_int("seq_len")));
    return absl::OkStatus();
  };
  e.factory = [](const Options& o) -> std::unique_ptr<Task> {
    const SyntheticVocab vocab{o.get_int("vocab_size")};
    const int64_t seq_len = o.get_int("seq_len");
    return std::make_unique<LastAnswerTask>(
        vocab.vocab_size, seq_len + 2, 1.0 / static_cast<double>(vocab.num_ordinary() / 2), o.get_int("num_train"),
        o.get_int("num_test"), [vocab, seq_len](Rng& r) { return draw_associative_recall(r, vocab, seq_len); });
  };
  return e;
}
const Registrar<TaskEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
