// Task "mqar".
#include "tasks/mqar.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

namespace hippo {

Sequence draw_mqar(Rng& rng, const MqarOptions& o, std::vector<int64_t>* query_positions,
                   std::vector<int64_t>* fillers) {
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
  if (!o.answer_in_input && fillers) {  // drawn last: the example's other tokens are as with answer_in_input true
    fillers->clear();
    for (int64_t i = 0; i < K; ++i) fillers->push_back(static_cast<int64_t>(rng.uniform(o.vocab_size)));
  }
  return s;
}

namespace {
class Mqar : public Task {
 public:
  Mqar(const MqarOptions& o, int64_t num_train, int64_t num_test, std::vector<int64_t> test_kv_pairs)
      : o_(o), num_train_(num_train), num_test_(num_test), test_kv_pairs_(std::move(test_kv_pairs)) {}
  int64_t vocab_size() const override { return o_.vocab_size; }
  int64_t input_len() const override { return o_.seq_len; }
  double chance() const override { return 1.0 / static_cast<double>(o_.vocab_size - o_.vocab_size / 2); }

  absl::StatusOr<TaskSplits> make(uint64_t seed) const override {
    if (test_kv_pairs_.empty()) {
      HIPPO_ASSIGN_OR_RETURN(auto split, draw_distinct(num_train_, num_test_, seed, drawer(o_)));
      return TaskSplits{to_data(split.first), to_data(split.second)};
    }
    // Training at num_kv_pairs; the test split's row i has test_kv_pairs[i % n] pairs. Pair counts other than
    // num_kv_pairs are drawn from their own streams and any example equal to a training one is dropped, so the
    // splits stay disjoint.
    const int64_t n = static_cast<int64_t>(test_kv_pairs_.size());
    HIPPO_ASSIGN_OR_RETURN(auto split, draw_distinct(num_train_, num_test_, seed, drawer(o_)));
    std::set<Sequence> train_tokens;
    for (const auto& s : split.first) train_tokens.insert(Sequence(s.begin(), s.begin() + o_.seq_len + 1));
    std::vector<std::vector<Sequence>> by_count(n);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t want = (num_test_ - j + n - 1) / n;  // rows j, j + n, ... below num_test
      if (want <= 0) continue;
      if (test_kv_pairs_[j] == o_.num_kv_pairs) {
        by_count[j].assign(split.second.begin(), split.second.begin() + want);
        continue;
      }
      MqarOptions at = o_;
      at.num_kv_pairs = test_kv_pairs_[j];
      const uint64_t stream = seed * 1000003ULL + 7919ULL * static_cast<uint64_t>(at.num_kv_pairs) + 17ULL;
      HIPPO_ASSIGN_OR_RETURN(auto drawn, draw_distinct(0, want + 64, stream, drawer(at)));
      for (auto& s : drawn.second)
        if (static_cast<int64_t>(by_count[j].size()) < want &&
            !train_tokens.count(Sequence(s.begin(), s.begin() + o_.seq_len + 1)))
          by_count[j].push_back(std::move(s));
      if (static_cast<int64_t>(by_count[j].size()) < want)
        return absl::InvalidArgumentError(absl::StrCat(
            "task 'mqar': too few test examples with ", at.num_kv_pairs, " pairs differ from the training split"));
    }
    std::vector<Sequence> test;
    for (int64_t i = 0; i < num_test_; ++i) test.push_back(by_count[i % n][i / n]);
    return TaskSplits{to_data(split.first), to_data(test)};
  }

  std::vector<std::pair<std::string, torch::Tensor>> eval_slices(const TaskData& d) const override {
    // Accuracy by where the query sits: quarters of the sequence.
    auto slices = quarter_slices("accuracy_pos", d.eval_mask, torch::arange(o_.seq_len, torch::kInt64).unsqueeze(0),
                                 o_.seq_len);
    // And by the number of pairs of the example (test_kv_pairs: row i has test_kv_pairs[i % n]).
    const int64_t n = static_cast<int64_t>(test_kv_pairs_.size());
    if (n > 0 && d.size() == num_test_) {
      auto row = torch::arange(d.size(), torch::kInt64).remainder(n);
      for (int64_t j = 0; j < n; ++j)
        slices.emplace_back(absl::StrCat("accuracy_pairs_", test_kv_pairs_[j]),
                            d.eval_mask.logical_and(row.eq(j).unsqueeze(1)));
    }
    return slices;
  }

 private:
  TaskData to_data(const std::vector<Sequence>& seqs) const {
    const int64_t N = static_cast<int64_t>(seqs.size()), T = o_.seq_len + 1;
    std::vector<Sequence> tokens;
    tokens.reserve(N);
    for (const auto& s : seqs) tokens.emplace_back(s.begin(), s.begin() + T);
    TaskData d = last_answer_data(tokens);
    d.eval_mask.zero_();
    auto inputs = d.inputs.accessor<int64_t, 2>();
    // Each example is T tokens, its K query positions, then (answer_in_input false) its K fillers.
    const size_t per_query = o_.answer_in_input ? 1 : 2;
    for (int64_t i = 0; i < N; ++i) {
      const size_t K = (seqs[i].size() - T) / per_query;
      for (size_t k = 0; k < K; ++k) {
        const int64_t pos = seqs[i][T + k];
        d.eval_mask[i][pos] = true;  // the query positions
        if (!o_.answer_in_input && pos + 1 < o_.seq_len) inputs[i][pos + 1] = seqs[i][T + K + k];
      }
    }
    d.loss_mask = d.eval_mask.to(torch::kFloat);  // MQAR scores and trains on the query positions only
    return d;
  }

  // One example (tokens, then its query positions, which travel with it) at the options `o`.
  static std::function<Sequence(Rng&)> drawer(const MqarOptions& o) {
    return [o](Rng& r) {
      std::vector<int64_t> q, fillers;
      auto s = draw_mqar(r, o, &q, &fillers);
      s.insert(s.end(), q.begin(), q.end());
      s.insert(s.end(), fillers.begin(), fillers.end());  // empty when answer_in_input
      return s;
    };
  }

  MqarOptions o_;
  int64_t num_train_, num_test_;
  std::vector<int64_t> test_kv_pairs_;
};

TaskEntry make_entry() {
  TaskEntry e;
  e.name = "mqar";
  e.doc = "multi-query associative recall (Zoology; H3.md 6.6): recall the value of each re-presented key; loss "
          "and accuracy on the query positions only; chance 1/(vocab_size/2)";
  e.schema.add_int("vocab_size", 8192, "tokens: keys from the first half, values from the second", 4, 1 << 24)
      .add_int("seq_len", 64, "model input length (even)", 4, 1 << 20)
      .add_int("num_kv_pairs", 4, "key-value pairs per example, each queried once (4 * pairs <= seq_len)", 1, 1 << 16)
      .add_float("power_a", 0.01, "query gaps drawn with probability proportional to gap^(power_a - 1)", 1e-6, 1)
      .add_int_list("test_kv_pairs", {},
                    "test at these numbers of pairs instead (row i of the test split has entry i mod n; training "
                    "stays at num_kv_pairs); accuracy per count as accuracy_pairs_K",
                    1, 1 << 16)
      .add_bool("answer_in_input", true,
                "the value also follows its query in the input; false: a noise token there (Zoology's layout), "
                "so later queries cannot tell which values were already answered");
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
    const auto test_pairs =
        o.json().contains("test_kv_pairs") ? o.get_int_list("test_kv_pairs") : std::vector<int64_t>{};
    std::set<int64_t> seen;
    for (int64_t k : test_pairs) {
      if (4 * k > L || k > V / 2)
        return absl::InvalidArgumentError(absl::StrCat("task 'mqar': test_kv_pairs entry ", k,
                                                       " needs 4 * pairs <= seq_len (", L, ") and pairs <= vocab_size / 2"));
      if (!seen.insert(k).second)
        return absl::InvalidArgumentError(absl::StrCat("task 'mqar': test_kv_pairs lists ", k, " twice"));
    }
    if (static_cast<int64_t>(test_pairs.size()) > o.get_int("num_test"))
      return absl::InvalidArgumentError("task 'mqar': test_kv_pairs has more entries than num_test examples");
    return absl::OkStatus();
  };
  e.factory = [](const Options& o) -> std::unique_ptr<Task> {
    MqarOptions m{o.get_int("vocab_size"), o.get_int("seq_len"), o.get_int("num_kv_pairs"), o.get_float("power_a")};
    // A stored config leaves answer_in_input out at its default (runner/run_config.cc).
    m.answer_in_input = !o.json().contains("answer_in_input") || o.get_bool("answer_in_input");
    // A stored config leaves an empty test_kv_pairs out (runner/run_config.cc).
    const bool listed = o.json().contains("test_kv_pairs");
    return std::make_unique<Mqar>(m, o.get_int("num_train"), o.get_int("num_test"),
                                  listed ? o.get_int_list("test_kv_pairs") : std::vector<int64_t>{});
  };
  return e;
}
const Registrar<TaskEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
