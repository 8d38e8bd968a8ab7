// Task "mqar".
#include "tasks/mqar.h"

#include <torch/torch.h>

#include <cmath>

namespace hippo {

Sequence draw_mqar(Rng& rng, const MqarOptions& o, std::vector<int64_t>* query_positions) {
  const int64_t K = o.num_kv_pairs, half = o.vocab_size / 2, slots = (o.seq_len - 2 * K) / 2;
  Sequence s(o.seq_len + 1);
  for (auto& t : s) t = static_cast<int64_t>(rng.uniform(o.vocab_size));
  // Distinct keys: a partial Fisher-Yates draw from [0, half).
  std::vector<int64_t> keys;
  while (static_cast<int64_t>(keys.size()) < K) {
    const int64_t k = static_cast<int64_t>(rng.uniform(half));
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) keys.push_back(k);
  }
  std::vector<int64_t> values(K);
  for (int64_t i = 0; i < K; ++i) {
    values[i] = half + static_cast<int64_t>(rng.uniform(o.vocab_size - half));
    s[2 * i] = keys[i];
    s[2 * i + 1] = values[i];
  }
  // Query slots without replacement, weight (slot+1)^(a-1): most queries come soon after the pairs.
  std::vector<double> w(slots);
  for (int64_t j = 0; j < slots; ++j) w[j] = std::pow(static_cast<double>(j + 1), o.power_a - 1.0);
  std::vector<int64_t> order(K);
  for (int64_t i = 0; i < K; ++i) order[i] = i;
  rng.shuffle(order);
  query_positions->clear();
  for (int64_t i : order) {
    double total = 0;
    for (double x : w) total += x;
    double r = rng.uniform_double() * total;
    int64_t j = 0;
    while (j < slots - 1 && (r -= w[j]) >= 0) ++j;
    while (w[j] == 0) j = (j + 1) % slots;  // rounding landed on a taken slot: take the next free one
    w[j] = 0;
    const int64_t pos = 2 * K + 2 * j;
    s[pos] = keys[i];
    s[pos + 1] = values[i];
    query_positions->push_back(pos);
  }
  return s;
}

namespace {
class Mqar : public Task {
 public:
  Mqar(const MqarOptions& o, int64_t num_train, int64_t num_test) : o_(o), num_train_(num_train), num_test_(num_test) {}
  int64_t vocab_size() const override { return o_.vocab_size; }
  int64_t input_len() const override { return o_.seq_len; }
  double chance() const override { return 1.0 / static_cast<double>(o_.vocab_size - o_.vocab_size / 2); }

  absl::StatusOr<TaskSplits> make(uint64_t seed) const override {
    // The query positions are a function of the sequence's draw; they are recomputed with the same stream.
    HIPPO_ASSIGN_OR_RETURN(auto split, draw_distinct(num_train_, num_test_, seed, [this](Rng& r) {
                             std::vector<int64_t> q;
                             auto s = draw_mqar(r, o_, &q);
                             // Encode the query positions after the tokens so that they travel with the example.
                             s.insert(s.end(), q.begin(), q.end());
                             return s;
                           }));
    return TaskSplits{to_data(split.first), to_data(split.second)};
  }

  std::vector<std::pair<std::string, torch::Tensor>> eval_slices(const TaskData& d) const override {
    // Accuracy by where the query sits: quarters of the sequence.
    return quarter_slices("accuracy_pos", d.eval_mask, torch::arange(o_.seq_len, torch::kInt64).unsqueeze(0),
                          o_.seq_len);
  }

 private:
  TaskData to_data(const std::vector<Sequence>& seqs) const {
    const int64_t N = static_cast<int64_t>(seqs.size()), T = o_.seq_len + 1, K = o_.num_kv_pairs;
    std::vector<Sequence> tokens;
    tokens.reserve(N);
    for (const auto& s : seqs) tokens.emplace_back(s.begin(), s.begin() + T);
    TaskData d = last_answer_data(tokens);
    d.eval_mask.zero_();
    for (int64_t i = 0; i < N; ++i)
      for (int64_t k = 0; k < K; ++k) d.eval_mask[i][seqs[i][T + k]] = true;
    d.loss_mask = d.eval_mask.to(torch::kFloat);  // MQAR scores and trains on the query positions only
    return d;
  }

  MqarOptions o_;
  int64_t num_train_, num_test_;
};

TaskEntry make_entry() {
  TaskEntry e;
  e.name = "mqar";
  e.doc = "multi-query associative recall (Zoology; H3.md 6.6): recall the value of each re-presented key; loss "
          "and accuracy on the query positions only; chance 1/(vocab_size/2)";
  e.schema.add_int("vocab_size", 8192, "tokens: keys from the first half, values from the second", 4, 1 << 24)
      .add_int("seq_len", 64, "model input length (even)", 4, 1 << 20)
      .add_int("num_kv_pairs", 4, "key-value pairs per example, each queried once (4 * pairs <= seq_len)", 1, 1 << 16)
      .add_float("power_a", 0.01, "query gaps drawn with probability proportional to gap^(power_a - 1)", 1e-6, 1);
  add_split_options(e.schema, 100000, 3000);
  add_eval_seq_lens_option(e.schema);
  e.validate = [](const Options& o) -> absl::Status {
    const int64_t V = o.get_int("vocab_size"), L = o.get_int("seq_len"), K = o.get_int("num_kv_pairs");
    if (L % 2 != 0)
      return absl::InvalidArgumentError(absl::StrCat("option 'seq_len' of task 'mqar' must be even, got ", L));
    if (V <= L)
      return absl::InvalidArgumentError(
          absl::StrCat("task 'mqar' needs vocab_size > seq_len, got vocab_size ", V, " and seq_len ", L));
    if (4 * K > L)
      return absl::InvalidArgumentError(absl::StrCat("task 'mqar' needs 4 * num_kv_pairs <= seq_len, got num_kv_pairs ",
                                                     K, " and seq_len ", L));
    if (K > V / 2)
      return absl::InvalidArgumentError("task 'mqar': more key-value pairs than distinct keys (vocab_size / 2)");
    return absl::OkStatus();
  };
  e.factory = [](const Options& o) -> std::unique_ptr<Task> {
    MqarOptions m{o.get_int("vocab_size"), o.get_int("seq_len"), o.get_int("num_kv_pairs"), o.get_float("power_a")};
    return std::make_unique<Mqar>(m, o.get_int("num_train"), o.get_int("num_test"));
  };
  return e;
}
const Registrar<TaskEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
