// The CUDA-graph training step (--cuda-graph) on the GPU: GraphTrainStep against eager steps on a small model,
// graphed training of the Table 2 models (H3.md 6.4: 2 layers, d_model 32) against the eager GPU path over the
// first 30 steps, ensembles of runs in one graph against the runs alone, dropout under replay, and divergence reported at its first step. Every test skips, with the
// reason, without a CUDA-graph build or a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "layers/mixer.h"
#include "runner/graph_step.h"
#include "runner/run_config.h"
#include "runner/trainer.h"
#include "tests/testing.h"

namespace hippo {
namespace {

#define HIPPO_REQUIRE_CUDA_GRAPHS()                                                                     \
  do {                                                                                                  \
    if (!cuda_graphs_built()) GTEST_SKIP() << "this build has no CUDA graphs (LibTorch without CUDA)"; \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device present";                         \
  } while (0)

// GraphTrainStep against train_step_on_device on twin models: warm-up, capture, replays, a partial batch.
TEST(GraphStepCuda, ReplaysMatchEagerStepsOnTwinModels) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  torch::manual_seed(3);
  const torch::Device dev(torch::kCUDA);
  torch::nn::Sequential a(torch::nn::Embedding(11, 24), torch::nn::Linear(24, 40), torch::nn::GELU(),
                          torch::nn::Linear(40, 11));
  a->to(dev);
  torch::nn::Sequential bs(std::dynamic_pointer_cast<torch::nn::SequentialImpl>(a->clone()));
  bs->to(dev);
  auto loss_of = [](torch::nn::Sequential& model) -> BatchLoss {
    return [&model](const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& m) {
      auto logits = model->forward(x);
      auto ce = torch::nn::functional::cross_entropy(
          logits.reshape({-1, 11}), y.reshape({-1}),
          torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
      return (ce * m.reshape({-1})).sum() / m.sum().clamp_min(1);
    };
  };
  DeviceAdamW opt_a({{a->parameters(), 1e-2, 0.1}}), opt_b({{bs->parameters(), 1e-2, 0.1}});
  GraphTrainStep graph(loss_of(a), opt_a, a->parameters(), 0.5, 8);
  auto gen = at::detail::createCPUGenerator(5);
  for (int step = 0; step < 16; ++step) {
    // Partial batches after the main capture: the first runs eagerly (warm-up), the second is captured in a graph
    // of its own, the third replays it.
    const int64_t B = step == 9 || step == 12 || step == 15 ? 5 : 8;
    auto x = torch::randint(11, {B, 6}, gen).to(dev), y = torch::randint(11, {B, 6}, gen).to(dev);
    auto m = (torch::rand({B, 6}, gen) > 0.3).to(torch::kFloat32).to(dev);
    const double lr = 1e-2 * (1 + step % 3);
    opt_a.set_lr(0, lr);
    opt_b.set_lr(0, lr);
    const double la = graph.step(x, y, m).item<double>();
    const double lb = train_step_on_device(loss_of(bs), opt_b, bs->parameters(), 0.5, x, y, m).item<double>();
    // Same kernels in the same order: float32 rounding, accumulated over up to 12 optimiser steps.
    EXPECT_NEAR(la, lb, 1e-4 * std::abs(lb)) << "step " << step;
    EXPECT_EQ(graph.captured(), step >= 3) << "step " << step;
    EXPECT_EQ(graph.captured(5), step >= 12) << "step " << step;
  }
  for (size_t i = 0; i < a->parameters().size(); ++i)
    EXPECT_TRUE(testing::all_close(a->parameters()[i], bs->parameters()[i], 1e-4, 1e-6)) << "parameter " << i;
}

// The Table 2 model (H3.md 6.4) on induction head, on a short schedule whose learning rate moves the losses.
RunSpec table2_model(const std::string& layer, double embed_dropout, int64_t epochs, double lr, int64_t seed = 0,
                     int64_t num_train = 500) {
  Json raw = {{"layer", layer},
              {"seed", seed},
              {"task", "induction_head"},
              {"n_layer", 2},
              {"d_model", 32},
              {"batch_size", 32},
              {"weight_decay", 0.1},
              {"embed_dropout", embed_dropout},
              {"resid_dropout", 0.0},
              {"epochs", epochs},
              {"eval_every", 1},
              {"lr", lr},
              {"attention", {{"n_heads", 1}, {"pos_emb", true}}},
              // 500 examples: 15 full batches and a partial one of 20 per epoch (its first one eager under
              // --cuda-graph, then a graph of its own).
              {"induction_head", {{"vocab_size", 20}, {"seq_len", 30}, {"num_train", num_train}, {"num_test", 64}}}};
  return value_or_throw(resolve_run(raw));
}

std::vector<double> step_losses(const RunSpec& spec, bool graph, TrainResult* result = nullptr) {
  std::vector<double> losses;
  TrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t, double loss) {
    EXPECT_EQ(step, static_cast<int64_t>(losses.size()) + 1);
    losses.push_back(loss);
  };
  TrainExecution exec;
  exec.cuda_graph = graph;
  TrainResult r = train_run(spec, "cuda", cb, {}, exec);
  if (result) *result = r;
  return losses;
}

class GraphedTable2 : public ::testing::TestWithParam<std::string> {};

TEST_P(GraphedTable2, SameLossesAsEagerOverTheFirst30Steps) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  const RunSpec spec = table2_model(GetParam(), 0.0, 2, 5e-3);
  const auto eager = step_losses(spec, false), graphed = step_losses(spec, true);
  ASSERT_GE(eager.size(), 30u);
  ASSERT_EQ(graphed.size(), eager.size());
  for (size_t s = 0; s < 30; ++s)
    // float32 rounding, amplified over 30 optimiser steps (atomics in the embedding's backward differ run to run).
    EXPECT_NEAR(graphed[s], eager[s], 1e-4 * std::abs(eager[s])) << GetParam() << " step " << s + 1;
  EXPECT_LT(eager[29], eager[0]) << "the schedule must move the loss for this comparison to mean anything";
}

// 200 examples: 6 full batches and a partial one of 8 per epoch, 5 epochs: the partial batch runs eagerly (step 7),
// is captured (step 14) and replayed (steps 21, 28, 35); every step's loss as eager training's.
TEST_P(GraphedTable2, PartialBatchesGetAGraphOfTheirOwnWithTheSameLosses) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  const RunSpec spec = table2_model(GetParam(), 0.0, 5, 5e-3, 0, 200);
  const auto eager = step_losses(spec, false), graphed = step_losses(spec, true);
  ASSERT_EQ(eager.size(), 35u);
  ASSERT_EQ(graphed.size(), eager.size());
  for (size_t s = 0; s < eager.size(); ++s)
    EXPECT_NEAR(graphed[s], eager[s], 1e-4 * std::abs(eager[s])) << GetParam() << " step " << s + 1;
  EXPECT_LT(eager[34], eager[0]) << "the schedule must move the loss for this comparison to mean anything";
}

INSTANTIATE_TEST_SUITE_P(Layers, GraphedTable2, ::testing::Values("attention", "h3", "s4d", "gss"));

// An ensemble of three runs (two seeds, two learning rates) in one graph, each member a branch on its own stream:
// every member's losses over the first 30 steps equal its run trained alone (eager), within float32 rounding; and
// an eager ensemble on the GPU gives the same. A branch that read another member's buffers, or a join that let a
// member run ahead of its inputs, would break this.
class GraphedEnsemble : public ::testing::TestWithParam<std::string> {};

TEST_P(GraphedEnsemble, MembersMatchTheirRunsAlone) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  const std::vector<RunSpec> specs = {table2_model(GetParam(), 0.0, 2, 5e-3, 0),
                                      table2_model(GetParam(), 0.0, 2, 5e-3, 1),
                                      table2_model(GetParam(), 0.0, 2, 2e-3, 0)};
  std::vector<std::vector<double>> alone;
  for (const auto& s : specs) alone.push_back(step_losses(s, false));
  for (const bool graph : {true, false}) {
    std::vector<std::vector<double>> member(specs.size());
    std::vector<TrainCallbacks> cbs(specs.size());
    for (size_t i = 0; i < specs.size(); ++i)
      cbs[i].on_step = [&member, i](int64_t, int64_t, double loss) { member[i].push_back(loss); };
    TrainExecution exec;
    exec.cuda_graph = graph;
    auto results = train_ensemble(specs, "cuda", cbs, std::vector<CheckpointOptions>(specs.size()), exec);
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_EQ(results[i].status, "finished");
      ASSERT_EQ(member[i].size(), alone[i].size()) << GetParam() << " member " << i;
      for (size_t s = 0; s < 30; ++s)
        EXPECT_NEAR(member[i][s], alone[i][s], 1e-4 * std::abs(alone[i][s]))
            << GetParam() << (graph ? " graphed" : " eager") << " member " << i << " step " << s + 1;
    }
  }
  EXPECT_NE(alone[0][29], alone[1][29]) << "the seeds must give different runs";
  EXPECT_NE(alone[0][29], alone[2][29]) << "the learning rates must give different runs";
}

INSTANTIATE_TEST_SUITE_P(Layers, GraphedEnsemble, ::testing::Values("attention", "h3", "s4d", "gss"));

// With dropout the graphed and the eager run draw different masks, so their losses are not equal step by step;
// over the same 128 batches both must fall, and the graphed run must end where the eager one does (within 5% of
// the mean loss of the last 16 steps). A replay that reused one mask or dropped the gradient would fall behind.
TEST(GraphStepCuda, DropoutUnderReplayTrainsLikeTheEagerRun) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  TrainResult r, re;
  const RunSpec spec = table2_model("h3", 0.1, 8, 5e-3);
  const auto graphed = step_losses(spec, true, &r), eager = step_losses(spec, false, &re);
  ASSERT_EQ(r.status, "finished");
  ASSERT_EQ(re.status, "finished");
  ASSERT_EQ(graphed.size(), 128u);
  ASSERT_EQ(eager.size(), 128u);
  auto mean = [](const std::vector<double>& v, size_t from) {
    double m = 0;
    for (size_t i = from; i < from + 16; ++i) m += v[i] / 16;
    return m;
  };
  for (double l : graphed) ASSERT_TRUE(std::isfinite(l));
  const double g_first = mean(graphed, 0), g_last = mean(graphed, 112);
  const double e_first = mean(eager, 0), e_last = mean(eager, 112);
  EXPECT_LT(e_last, e_first) << "the eager run must learn for the comparison to mean anything";
  EXPECT_LT(g_last, g_first) << "graphed: mean loss of the first 16 steps " << g_first << ", of the last 16 " << g_last;
  EXPECT_NEAR(g_last, e_last, 0.05 * e_last) << "graphed " << g_first << " -> " << g_last << ", eager " << e_first
                                             << " -> " << e_last;
}

// Each replay draws a new dropout mask: with lr 0 and one fixed batch the loss still changes from replay to replay.
TEST(GraphStepCuda, DropoutMasksChangeBetweenReplays) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  torch::manual_seed(4);
  const torch::Device dev(torch::kCUDA);
  torch::nn::Sequential model(torch::nn::Embedding(7, 16), torch::nn::Dropout(0.5), torch::nn::Linear(16, 7));
  model->to(dev);
  model->train();
  BatchLoss loss = [&](const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor&) {
    return torch::nn::functional::cross_entropy(model->forward(x).reshape({-1, 7}), y.reshape({-1}));
  };
  DeviceAdamW opt({{model->parameters(), 0.0, 0.0}});
  GraphTrainStep graph(loss, opt, model->parameters(), 0.0, 4);
  auto x = torch::randint(7, {4, 9}, torch::kInt64).to(dev), y = torch::randint(7, {4, 9}, torch::kInt64).to(dev);
  auto m = torch::ones({4, 9}, torch::kFloat32).to(dev);
  std::vector<double> replays;
  for (int step = 0; step < 8; ++step) {
    const double l = graph.step(x, y, m).item<double>();
    if (graph.captured()) replays.push_back(l);
  }
  ASSERT_EQ(replays.size(), 5u);
  for (size_t i = 1; i < replays.size(); ++i) EXPECT_NE(replays[i], replays[0]) << "replay " << i;
}

// A mixer whose output turns NaN from training step kBadStep on: a step counter kept on the device (a buffer),
// so that graph replays advance it as eager steps do. Evaluation (eval mode) does not count.
constexpr int64_t kBadStep = 37;
class NanAfterMixer : public MixerImpl {
 public:
  NanAfterMixer() { count_ = register_buffer("count", torch::zeros({})); }
  torch::Tensor forward(const torch::Tensor& x) override {
    if (!is_training()) return x;
    count_.add_(1);
    auto nan = torch::full({}, std::numeric_limits<float>::quiet_NaN(), x.options());
    return x * torch::where(count_ > kBadStep, nan, torch::ones({}, x.options()));
  }
  torch::Tensor count_;
};
const Registrar<LayerEntry> kNanAfter([] {
  LayerEntry e;
  e.name = "test_nan_after_37";
  e.doc = "test only";
  e.state_size = [](const Options&, int64_t, int64_t) { return int64_t{0}; };
  e.factory = [](const MixerArgs&) -> Mixer { return std::make_shared<NanAfterMixer>(); };
  return e;
}());

TEST(GraphStepCuda, DivergenceIsReportedAtItsFirstStep) {
  HIPPO_REQUIRE_CUDA_GRAPHS();
  for (bool graph : {false, true}) {
    TrainResult r;
    const auto losses = step_losses(table2_model("test_nan_after_37", 0.0, 4, 5e-3), graph, &r);
    EXPECT_EQ(r.status, "diverged") << "graph " << graph;
    ASSERT_TRUE(r.diverged_step.has_value());
    EXPECT_EQ(*r.diverged_step, kBadStep) << "graph " << graph;
    EXPECT_EQ(r.steps, kBadStep);
    EXPECT_EQ(static_cast<int64_t>(losses.size()), kBadStep) << "graph " << graph;  // every finite step reported
  }
}

}  // namespace
}  // namespace hippo
