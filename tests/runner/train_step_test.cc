// One training step: accumulated micro-batch gradients equal the full batch's (masks of unequal token counts, a
// batch that does not split evenly); train.precision's accepted values and devices; the forward pass under bf16
// autocast (on the CPU's autocast, which shares CUDA's mechanism) close to float32 with the SSM left in float32.
#include "runner/train_step.h"

#include <gtest/gtest.h>

#include "core/status.h"
#include "layers/mixer.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::rel_error;

LanguageModel tiny_model(const std::vector<std::string>& schedule) {
  ModelConfig c;
  c.vocab_size = 16;
  c.d_model = 16;
  c.max_seq_len = 12;
  c.schedule = schedule;
  c.embed_dropout = 0.0;
  for (const auto& name : schedule) {
    const LayerEntry* e = value_or_throw(LayerRegistry::global().find(name, "layer"));
    Json given = name == "gss" ? Json{{"d_ssm", 16}, {"d_state", 8}} : Json::object();
    if (name == "h3" || name == "s4d") given["d_state"] = 8;
    if (name == "attention") given["pos_emb"] = true;
    c.layer_options[name] = value_or_throw(resolve_options(e->schema, given, name));
  }
  return LanguageModel(c);
}

std::vector<torch::Tensor> grads_of(LanguageModel& model, const torch::Tensor& x, const torch::Tensor& y,
                                    const torch::Tensor& m, int64_t grad_accum, torch::Tensor* loss) {
  model->zero_grad();
  *loss = accumulate_gradients(model, x, y, m, grad_accum, false);
  std::vector<torch::Tensor> g;
  for (auto& p : model->parameters()) g.push_back(p.grad().clone());
  return g;
}

TEST(TrainStep, AccumulatedGradientsEqualTheFullBatchGradient) {
  torch::manual_seed(0);
  auto model = tiny_model({"h3", "attention"});
  const int64_t B = 6, L = 12;
  auto x = torch::randint(16, {B, L}, torch::kInt64), y = torch::randint(16, {B, L}, torch::kInt64);
  // Rows with very different masked-token counts: a mean per micro-batch would weight them wrongly.
  auto m = torch::rand({B, L}) < torch::linspace(0.05, 0.95, B).unsqueeze(1);
  m[0].fill_(false);  // and a row with no masked token at all
  torch::Tensor full_loss;
  const auto full = grads_of(model, x, y, m, 1, &full_loss);
  // The reference: the masked-token mean over the whole batch, written out.
  auto ce = token_cross_entropy(model->forward(x), y);
  EXPECT_NEAR(full_loss.item<double>(), ((ce * m.reshape({-1})).sum() / m.sum()).item<double>(), 1e-6);
  EXPECT_FALSE(full_loss.requires_grad());
  // 2 and 3 split 6 evenly; 4 gives micro-batches of 2 (three of them), 6 single examples.
  for (int64_t ga : {2, 3, 4, 6}) {
    torch::Tensor loss;
    const auto acc = grads_of(model, x, y, m, ga, &loss);
    // float32: the sums differ only in their order of addition.
    EXPECT_NEAR(loss.item<double>(), full_loss.item<double>(), 1e-6 * full_loss.item<double>()) << "grad_accum " << ga;
    for (size_t i = 0; i < full.size(); ++i)
      EXPECT_LT(rel_error(acc[i], full[i]), 1e-5) << "grad_accum " << ga << " parameter " << i;
  }
}

TEST(TrainStep, PrecisionNamesItsValuesAndNeedsCudaForBf16) {
  EXPECT_FALSE(use_bf16("fp32", torch::Device("cpu")));
  try {
    use_bf16("bf16", torch::Device("cpu"));
    FAIL() << "bf16 on the CPU must be refused";
  } catch (const StatusError& e) {
    EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
    const std::string msg = e.what();
    for (const char* word : {"train.precision", "cpu", "fp32", "bf16", "cuda"})
      EXPECT_NE(msg.find(word), std::string::npos) << "'" << word << "' missing from: " << msg;
  }
  try {
    use_bf16("fp16", torch::Device("cpu"));
    FAIL() << "an unknown precision must be refused";
  } catch (const StatusError& e) {
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("accepted: fp32"), std::string::npos) << e.what();
  }
}

// Every product mixer's model under bf16 autocast: float32 logits near the float32 forward, parameters untouched.
TEST(TrainStep, Bf16ForwardIsCloseToFloat32) {
  for (const char* name : {"attention", "h3", "s4d", "gss"}) {
    torch::manual_seed(1);
    auto model = tiny_model({name, name});
    model->eval();
    auto x = torch::randint(16, {3, 12}, torch::kInt64);
    auto fp32 = forward_logits(model, x, false);
    torch::Tensor bf16;
    try {
      bf16 = forward_logits(model, x, true);
    } catch (const c10::Error& e) {
      ADD_FAILURE() << name << ": " << e.what_without_backtrace();
      continue;
    }
    EXPECT_EQ(bf16.scalar_type(), torch::kFloat) << name;
    // bfloat16 keeps 8 significant bits (relative rounding 2^-9 per operation) through a few dozen operations.
    EXPECT_LT(rel_error(bf16, fp32), 3e-2) << name;
    EXPECT_GT(rel_error(bf16, fp32), 0.0) << name << ": autocast changed nothing";
    for (const auto& p : model->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat) << name;
  }
}

}  // namespace
}  // namespace hippo
