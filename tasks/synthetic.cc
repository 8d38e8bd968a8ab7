// Distinct-example drawing and tensor conversion for the synthetic tasks.
#include "tasks/synthetic.h"

#include <torch/torch.h>

#include <set>

namespace hippo {

void add_split_options(OptionSchema& schema, int64_t num_train, int64_t num_test) {
  schema.add_int("num_train", num_train, "distinct training examples", 1, 100000000)
      .add_int("num_test", num_test, "distinct test examples, disjoint from training", 1, 100000000);
}

void add_eval_seq_lens_option(OptionSchema& schema) {
  schema.add_int_list("eval_seq_lens", {},
                      "after training, also evaluate at these seq_len values (metrics accuracy_len_L, loss_len_L)", 2,
                      1 << 20);
}

absl::StatusOr<std::pair<std::vector<Sequence>, std::vector<Sequence>>> draw_distinct(
    int64_t num_train, int64_t num_test, uint64_t seed, const std::function<Sequence(Rng&)>& draw) {
  Rng rng(seed);
  std::set<Sequence> seen;
  std::vector<Sequence> all;
  const int64_t want = num_train + num_test;
  int64_t duplicates = 0;
  while (static_cast<int64_t>(all.size()) < want) {
    Sequence s = draw(rng);
    if (seen.insert(s).second) {
      all.push_back(std::move(s));
    } else if (++duplicates > 10 * want + 1000) {
      return absl::InvalidArgumentError(
          absl::StrCat("could not draw ", want, " distinct examples (", all.size(),
                       " found): the vocabulary or length allows too few; lower num_train/num_test"));
    }
  }
  std::vector<Sequence> test(all.begin() + num_train, all.end());
  all.resize(num_train);
  return std::make_pair(std::move(all), std::move(test));
}

absl::StatusOr<TaskSplits> LastAnswerTask::make(uint64_t seed) const {
  HIPPO_ASSIGN_OR_RETURN(auto split, draw_distinct(num_train_, num_test_, seed, draw_));
  return TaskSplits{last_answer_data(split.first), last_answer_data(split.second)};
}

TaskData last_answer_data(const std::vector<Sequence>& seqs) {
  TORCH_CHECK(!seqs.empty(), "synthetic task: no sequences");
  const int64_t N = static_cast<int64_t>(seqs.size()), T = static_cast<int64_t>(seqs[0].size());
  auto all = torch::empty({N, T}, torch::kInt64);
  auto* p = all.data_ptr<int64_t>();
  for (int64_t i = 0; i < N; ++i) {
    TORCH_CHECK(static_cast<int64_t>(seqs[i].size()) == T, "synthetic task: sequences of unequal length");
    std::copy(seqs[i].begin(), seqs[i].end(), p + i * T);
  }
  TaskData d;
  d.inputs = all.narrow(1, 0, T - 1).contiguous();
  d.targets = all.narrow(1, 1, T - 1).contiguous();
  d.loss_mask = torch::ones({N, T - 1}, torch::kFloat);
  d.eval_mask = torch::zeros({N, T - 1}, torch::kBool);
  d.eval_mask.select(1, T - 2).fill_(true);
  return d;
}

std::vector<std::pair<std::string, torch::Tensor>> quarter_slices(const std::string& prefix,
                                                                  const torch::Tensor& eval_mask,
                                                                  const torch::Tensor& where, int64_t span) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (int64_t q = 0; q < 4; ++q) {
    const int64_t lo = q * span / 4, hi = (q + 1) * span / 4;
    if (hi <= lo) continue;
    out.emplace_back(absl::StrCat(prefix, "_", lo, "_", hi - 1), eval_mask & (where >= lo) & (where < hi));
  }
  return out;
}

}  // namespace hippo
