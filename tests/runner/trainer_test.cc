// The trainer: schedule shape, a tiny run per mixer whose loss falls, determinism, and divergence capture.
#include "runner/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <torch/torch.h>

#include "core/status.h"
#include "layers/mixer.h"
#include "runner/model_io.h"
#include "tests/testing.h"

namespace hippo {
namespace {

TEST(LrSchedule, WarmupThenCosineToFloor) {
  const int64_t T = 1000;
  EXPECT_NEAR(lr_factor(0, T, 0.1, 0.002, 0.1), 0.002, 1e-12);
  EXPECT_NEAR(lr_factor(50, T, 0.1, 0.002, 0.1), 0.002 + 0.998 * 0.5, 1e-12);
  EXPECT_NEAR(lr_factor(100, T, 0.1, 0.002, 0.1), 1.0, 1e-12);
  EXPECT_NEAR(lr_factor(550, T, 0.1, 0.002, 0.1), 0.55, 1e-12);  // halfway through the cosine
  EXPECT_NEAR(lr_factor(1000, T, 0.1, 0.002, 0.1), 0.1, 1e-12);
  for (int64_t s = 101; s <= T; ++s) EXPECT_LE(lr_factor(s, T, 0.1, 0.002, 0.1), lr_factor(s - 1, T, 0.1, 0.002, 0.1));
}

RunSpec tiny(const std::string& layer, int64_t seed = 0) {
  Json raw = {{"layer", layer},
              {"task", "associative_recall"},
              {"seed", seed},
              {"d_model", 32},
              {"epochs", 6},
              {"lr", 3e-3},
              {"eval_every", 3},
              {"associative_recall", {{"num_train", 320}, {"num_test", 64}}}};
  return value_or_throw(resolve_run(raw));
}

struct Collected {
  std::vector<MetricRow> rows;
  int64_t params = 0, state = 0;
  double first_loss = -1, last_loss = -1;
};

TrainResult run(const RunSpec& spec, Collected& c) {
  TrainCallbacks cb;
  cb.on_start = [&](int64_t p, int64_t s) { c.params = p, c.state = s; };
  cb.on_metrics = [&](const std::vector<MetricRow>& r) { c.rows.insert(c.rows.end(), r.begin(), r.end()); };
  cb.on_step = [&](int64_t, int64_t, double loss) {
    if (c.first_loss < 0) c.first_loss = loss;
    c.last_loss = loss;
  };
  torch::set_num_threads(1);
  return train_run(spec, "cpu", cb);
}

double metric(const Collected& c, const std::string& split, const std::string& name, int64_t step) {
  for (const auto& m : c.rows)
    if (m.split == split && m.name == name && m.step == step) return m.value;
  return -1;
}

// Throughput rows measure the machine, not the run: they differ between identical runs.
bool is_wall_clock(const std::string& name) { return name == "tokens_per_second" || name == "step_ms"; }

class TinyRun : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyRun, LossFalls) {
  Collected c;
  auto r = run(tiny(GetParam()), c);
  EXPECT_EQ(r.status, "finished");
  EXPECT_EQ(r.steps, 60);  // 320 / 32 * 6
  const double before = metric(c, "train", "loss", 0), after = metric(c, "train", "loss", 60);
  ASSERT_GT(before, 0);
  EXPECT_LT(after, 0.8 * before) << GetParam() << ": train loss " << before << " -> " << after;
  EXPECT_GT(c.params, 0);
  EXPECT_GT(c.state, 0);
  EXPECT_DOUBLE_EQ(metric(c, "test", "chance", 0), 0.25);
  EXPECT_GE(metric(c, "test", "accuracy", 30), 0.0);  // intermediate evaluation present
}

INSTANTIATE_TEST_SUITE_P(Mixers, TinyRun,
                         ::testing::Values("attention", "diag_ssm", "gss", "h3", "s4d", "shift_ssm"));

TEST(Trainer, SameSeedGivesIdenticalMetrics) {
  Collected a, b, c;
  run(tiny("s4d", 4), a);
  run(tiny("s4d", 4), b);
  run(tiny("s4d", 5), c);
  ASSERT_EQ(a.rows.size(), b.rows.size());
  for (size_t i = 0; i < a.rows.size(); ++i)
    if (!is_wall_clock(a.rows[i].name)) EXPECT_EQ(a.rows[i].value, b.rows[i].value) << a.rows[i].name;
  EXPECT_NE(metric(a, "train", "loss", 60), metric(c, "train", "loss", 60));
}

TEST(Trainer, ResumingFromACheckpointContinuesExactly) {
  testing::TempDir dir;
  const std::string ck = dir.file("run.pt");
  Collected full, first, second;
  run(tiny("s4d", 2), full);
  // An attempt that dies at step 47; checkpoints every 20 steps leave one at step 40.
  TrainCallbacks cb;
  cb.on_metrics = [&](const std::vector<MetricRow>& r) { first.rows.insert(first.rows.end(), r.begin(), r.end()); };
  cb.on_step = [&](int64_t step, int64_t, double) {
    if (step == 47) throw std::runtime_error("simulated crash");
  };
  EXPECT_THROW(train_run(tiny("s4d", 2), "cpu", cb, {ck, 20}), std::runtime_error);
  // The next attempt resumes at step 40 and ends exactly as the uninterrupted run.
  TrainCallbacks cb2;
  cb2.on_metrics = [&](const std::vector<MetricRow>& r) { second.rows.insert(second.rows.end(), r.begin(), r.end()); };
  auto r = train_run(tiny("s4d", 2), "cpu", cb2, {ck, 20});
  EXPECT_EQ(r.resumed_from, 40);
  EXPECT_EQ(r.steps, 60);
  for (const char* name : {"loss", "accuracy", "token_accuracy"})
    for (const char* split : {"train", "test"})
      EXPECT_EQ(metric(second, split, name, 60), metric(full, split, name, 60)) << split << " " << name;
  EXPECT_EQ(metric(second, "test", "loss", 0), -1);  // step 0 was not evaluated again
}

// The lm task draws new windows every epoch: a resumed run must draw the same ones.
TEST(Trainer, LanguageModelResumesExactlyAndReportsTextMetrics) {
  testing::TempDir dir;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "All the world's a stage, and all the men and women merely players. ";
  testing::write_file(dir.file("t.txt"), text);
  Json raw = {{"layers", {"h3", "attention"}},
              {"task", "lm"},
              {"d_model", 16},
              {"epochs", 6},
              {"lr", 3e-3},
              {"eval_every", 3},
              {"lm", {{"path", dir.file("t.txt")}, {"seq_len", 32}, {"num_train", 320}}}};
  const RunSpec spec = value_or_throw(resolve_run(raw));
  Collected full, second;
  auto r0 = run(spec, full);
  ASSERT_EQ(r0.status, "finished");
  EXPECT_EQ(r0.steps, 60);
  const double loss = metric(full, "test", "loss", 60);
  EXPECT_LT(loss, metric(full, "test", "loss", 0));
  EXPECT_NEAR(metric(full, "test", "perplexity", 60), std::exp(loss), 1e-9);
  EXPECT_NEAR(metric(full, "test", "bits_per_byte", 60), loss / std::log(2.0), 1e-9);  // byte tokens
  EXPECT_EQ(metric(full, "train", "tokens_seen", 60), 60.0 * 32 * 32);
  TrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t, double) {
    if (step == 47) throw std::runtime_error("simulated crash");
  };
  const std::string ck = dir.file("run.pt");
  EXPECT_THROW(train_run(spec, "cpu", cb, {ck, 20}), std::runtime_error);
  TrainCallbacks cb2;
  cb2.on_metrics = [&](const std::vector<MetricRow>& r) { second.rows.insert(second.rows.end(), r.begin(), r.end()); };
  CheckpointOptions ck2{ck, 20, dir.file("final.pt")};
  auto r = train_run(spec, "cpu", cb2, ck2);
  EXPECT_EQ(r.resumed_from, 40);
  for (const char* name : {"loss", "accuracy"})
    for (const char* split : {"train", "test"})
      EXPECT_EQ(metric(second, split, name, 60), metric(full, split, name, 60)) << split << " " << name;
  EXPECT_EQ(r.model_path, dir.file("final.pt"));  // text tasks save their final model
  EXPECT_TRUE(std::ifstream(dir.file("final.pt")).good());
}

TEST(Trainer, MqarStoresAccuracyPerQuerySlice) {
  Json raw = {{"layer", "attention"}, {"task", "mqar"}, {"d_model", 32}, {"epochs", 4}, {"lr", 3e-3},
              {"mqar", {{"vocab_size", 64}, {"seq_len", 16}, {"num_kv_pairs", 2}, {"num_train", 256}, {"num_test", 64}}}};
  Collected c;
  auto r = run(value_or_throw(resolve_run(raw)), c);
  EXPECT_EQ(r.status, "finished");
  int slices = 0;
  for (const auto& m : c.rows)
    if (m.step == r.steps && m.name.rfind("accuracy_pos_", 0) == 0) {
      ++slices;
      EXPECT_GE(m.value, 0.0);
    }
  EXPECT_EQ(slices, 3);  // positions 0-3 hold the pairs, so the first quarter has no query and no row
  EXPECT_LT(metric(c, "train", "loss", r.steps), metric(c, "train", "loss", 0));
}

TEST(Trainer, MqarStoresAccuracyPerNumberOfPairs) {
  Json raw = {{"layer", "s4d"}, {"task", "mqar"}, {"d_model", 16}, {"epochs", 1}, {"lr", 3e-3},
              {"mqar", {{"vocab_size", 64}, {"seq_len", 16}, {"num_kv_pairs", 2}, {"num_train", 64}, {"num_test", 30},
                        {"test_kv_pairs", {1, 2, 3}}}}};
  Collected c;
  auto r = run(value_or_throw(resolve_run(raw)), c);
  ASSERT_EQ(r.status, "finished");
  for (const char* name : {"accuracy_pairs_1", "accuracy_pairs_2", "accuracy_pairs_3"}) {
    const double v = metric(c, "test", name, r.steps);
    EXPECT_GE(v, 0.0) << name << " missing";
    EXPECT_LE(v, 1.0) << name;
  }
}

TEST(Trainer, EvalSeqLensStoresAccuracyAtEachLength) {
  for (const char* task : {"mqar", "associative_recall"}) {
    Json raw = {{"layer", "s4d"}, {"task", task}, {"d_model", 16}, {"epochs", 1}, {"lr", 3e-3}};
    if (std::string(task) == "mqar")
      raw["mqar"] = {{"vocab_size", 128}, {"seq_len", 16}, {"num_kv_pairs", 2}, {"num_train", 64}, {"num_test", 32},
                     {"eval_seq_lens", {16, 32, 64}}};
    else
      raw["associative_recall"] = {{"num_train", 64}, {"num_test", 32}, {"eval_seq_lens", {20, 40, 64}}};
    Collected c;
    auto r = run(value_or_throw(resolve_run(raw)), c);
    ASSERT_EQ(r.status, "finished") << task;
    const int64_t first = raw[task]["eval_seq_lens"][0].get<int64_t>();
    for (const auto& l : raw[task]["eval_seq_lens"]) {
      const std::string L = std::to_string(l.get<int64_t>());
      const double acc = metric(c, "test", "accuracy_len_" + L, r.steps);
      EXPECT_GE(acc, 0.0) << task << " " << L;
      EXPECT_LE(acc, 1.0) << task << " " << L;
      EXPECT_GT(metric(c, "test", "loss_len_" + L, r.steps), 0.0) << task << " " << L;
    }
    // At the training length the length metric is the test split's own accuracy.
    EXPECT_EQ(metric(c, "test", "accuracy_len_" + std::to_string(first), r.steps), metric(c, "test", "accuracy", r.steps))
        << task;
  }
}

// A mixer whose output turns NaN: the run must end as diverged, not as an exception.
class NanMixer : public MixerImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) override { return x * std::numeric_limits<float>::quiet_NaN(); }
};
const Registrar<LayerEntry> kNan([] {
  LayerEntry e;
  e.name = "test_nan";
  e.doc = "test only";
  e.state_size = [](const Options&, int64_t, int64_t) { return int64_t{0}; };
  e.factory = [](const MixerArgs&) -> Mixer { return std::make_shared<NanMixer>(); };
  return e;
}());

TEST(Trainer, NanLossIsRecordedAsDiverged) {
  Collected c;
  auto r = run(tiny("test_nan"), c);
  EXPECT_EQ(r.status, "diverged");
  ASSERT_TRUE(r.diverged_step.has_value());
  EXPECT_EQ(*r.diverged_step, 0);
}

// A mixer that is the identity until its 8th training forward pass, NaN from then on: step 7 is the first bad one.
class NanLaterMixer : public MixerImpl {
 public:
  torch::Tensor forward(const torch::Tensor& x) override {
    if (!is_training() || calls_++ < 7) return x;
    return x * std::numeric_limits<float>::quiet_NaN();
  }

 private:
  int64_t calls_ = 0;
};
const Registrar<LayerEntry> kNanLater([] {
  LayerEntry e;
  e.name = "test_nan_later";
  e.doc = "test only";
  e.state_size = [](const Options&, int64_t, int64_t) { return int64_t{0}; };
  e.factory = [](const MixerArgs&) -> Mixer { return std::make_shared<NanLaterMixer>(); };
  return e;
}());

void expect_diverged_at_step_7(const std::string& device) {
  TrainCallbacks cb;
  int64_t evaluations_after_start = 0;
  cb.on_metrics = [&](const std::vector<MetricRow>& rows) { evaluations_after_start += rows.at(0).step > 0; };
  auto r = train_run(tiny("test_nan_later"), device, cb);
  EXPECT_EQ(r.status, "diverged");
  ASSERT_TRUE(r.diverged_step.has_value());
  EXPECT_EQ(*r.diverged_step, 7) << device;
  EXPECT_EQ(r.steps, 7);
  EXPECT_EQ(evaluations_after_start, 0) << "a diverged model was evaluated";
}

TEST(Trainer, DivergenceNamesTheFirstBadStep) { expect_diverged_at_step_7("cpu"); }

// grad_accum splits each step into micro-batches whose gradients add up to the full batch's: the same losses.
TEST(Trainer, GradAccumGivesTheSameLossesAsTheFullBatch) {
  auto losses = [](int64_t grad_accum) {
    Json raw = {{"layers", {"h3", "attention"}},
                {"task", "associative_recall"},
                {"d_model", 32},
                {"epochs", 1},
                {"max_steps", 10},
                {"lr", 3e-3},
                {"embed_dropout", 0.0},
                {"grad_accum", grad_accum},
                {"associative_recall", {{"num_train", 320}, {"num_test", 64}}}};
    std::vector<double> out;
    TrainCallbacks cb;
    cb.on_step = [&](int64_t, int64_t, double loss) { out.push_back(loss); };
    torch::set_num_threads(1);
    EXPECT_EQ(train_run(value_or_throw(resolve_run(raw)), "cpu", cb).status, "finished");
    return out;
  };
  const auto one = losses(1), two = losses(2), four = losses(4);
  ASSERT_EQ(one.size(), 10u);
  ASSERT_EQ(two.size(), 10u);
  ASSERT_EQ(four.size(), 10u);
  for (size_t s = 0; s < one.size(); ++s) {
    // float32 rounding of sums taken in another order, carried through s AdamW steps.
    EXPECT_NEAR(two[s], one[s], 1e-4 * one[s]) << "step " << s;
    EXPECT_NEAR(four[s], one[s], 1e-4 * one[s]) << "step " << s;
  }
  EXPECT_LT(one.back(), one.front());  // the steps did train
}

// Every evaluation after training steps stores the throughput since the previous one; they agree with each
// other (tokens per step = batch x input length) and are absent at step 0, where nothing was trained.
TEST(Trainer, StoresThroughputAtEachEvaluation) {
  Collected c;
  auto r = run(tiny("s4d"), c);
  ASSERT_EQ(r.status, "finished");
  EXPECT_EQ(metric(c, "train", "tokens_per_second", 0), -1);
  EXPECT_EQ(metric(c, "train", "step_ms", 0), -1);
  const double tokens_per_step = metric(c, "train", "tokens_seen", 60) / 60.0;  // batch 32 x input length
  for (int64_t step : {30, 60}) {
    const double tps = metric(c, "train", "tokens_per_second", step), ms = metric(c, "train", "step_ms", step);
    ASSERT_GT(tps, 0) << step;
    ASSERT_GT(ms, 0) << step;
    EXPECT_NEAR(tps * ms / 1e3, tokens_per_step, 1e-6 * tokens_per_step) << step;
  }
}

TEST(Trainer, Bf16OnTheCpuFailsBeforeAnythingIsBuilt) {
  Json raw = {{"layer", "h3"}, {"task", "associative_recall"}, {"precision", "bf16"}};
  bool started = false;
  TrainCallbacks cb;
  cb.on_start = [&](int64_t, int64_t) { started = true; };
  try {
    train_run(value_or_throw(resolve_run(raw)), "cpu", cb);
    FAIL() << "bf16 on the CPU must be refused";
  } catch (const StatusError& e) {
    EXPECT_NE(std::string(e.what()).find("train.precision 'bf16' needs a CUDA device"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(started);
}

// --- On CUDA (each test skips, saying why, without a CUDA device) ---

#define HIPPO_REQUIRE_CUDA_DEVICE() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device present (or a LibTorch without CUDA)"

TEST(TrainerCuda, DivergenceNamesTheFirstBadStep) {
  HIPPO_REQUIRE_CUDA_DEVICE();
  expect_diverged_at_step_7("cuda");  // losses are read every 50 steps there, the first bad one still named
}

struct LmRun {
  double first_loss = -1;  // of the first training step (read back at step 1 on CUDA too)
  Collected c;
  TrainResult result;
};

// A tiny language model (two layers of `mixer`, d_model 32, context 64) trained for 30 steps without dropout.
LmRun train_tiny_lm(const std::string& mixer, const std::string& precision, const testing::TempDir& dir) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "Now is the winter of our discontent made glorious summer by this sun. ";
  testing::write_file(dir.file("t.txt"), text);
  Json raw = {{"layers", {mixer, mixer}},
              {"task", "lm"},
              {"d_model", 32},
              {"epochs", 1},
              {"batch_size", 8},
              {"lr", 3e-3},
              {"embed_dropout", 0.0},
              {"precision", precision},
              {"lm", {{"path", dir.file("t.txt")}, {"seq_len", 64}, {"num_train", 240}}}};
  LmRun out;
  TrainCallbacks cb;
  cb.on_metrics = [&](const std::vector<MetricRow>& r) { out.c.rows.insert(out.c.rows.end(), r.begin(), r.end()); };
  cb.on_step = [&](int64_t step, int64_t, double loss) {
    if (step == 1) out.first_loss = loss;
  };
  out.result = train_run(value_or_throw(resolve_run(raw)), "cuda", cb, {"", 0, dir.file(precision + ".model.pt")});
  return out;
}

class TrainerCudaBf16 : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainerCudaBf16, TrainsWithTheSsmInFloat32) {
  HIPPO_REQUIRE_CUDA_DEVICE();
  testing::TempDir dir;
  const LmRun fp32 = train_tiny_lm(GetParam(), "fp32", dir), bf16 = train_tiny_lm(GetParam(), "bf16", dir);
  ASSERT_EQ(fp32.result.status, "finished");
  ASSERT_EQ(bf16.result.status, "finished") << "bf16 run diverged at step " << bf16.result.diverged_step.value_or(-1);
  ASSERT_EQ(bf16.result.steps, 30);
  const double before = metric(bf16.c, "train", "loss", 0), after = metric(bf16.c, "train", "loss", 30);
  EXPECT_TRUE(std::isfinite(after));
  EXPECT_LT(after, 0.8 * before) << "bf16 train loss " << before << " -> " << after;
  // Same weights, same first batch: only bf16 rounding separates the two first losses.
  EXPECT_NEAR(bf16.first_loss, fp32.first_loss, 0.02 * fp32.first_loss);
  EXPECT_GT(metric(bf16.c, "train", "tokens_per_second", 30), 0);
  auto loaded = value_or_throw(load_model(bf16.result.model_path, "cpu"));
  int64_t ssm_params = 0;
  for (auto& b : loaded.model->blocks())
    for (const auto& p : b->mixer_->ssm_parameters()) {
      EXPECT_EQ(p.scalar_type(), torch::kFloat);
      ++ssm_params;
    }
  if (GetParam() != "attention") EXPECT_GT(ssm_params, 0);
  for (const auto& p : loaded.model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat);
}

INSTANTIATE_TEST_SUITE_P(Mixers, TrainerCudaBf16, ::testing::Values("attention", "gss", "h3", "s4d"));

}  // namespace
}  // namespace hippo
