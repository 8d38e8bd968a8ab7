// Properties every registered mixer must have, parameterised over the registry so that a newly registered
// mixer is covered automatically: shape, causality (outputs and gradients), determinism, and for mixers that
// decode, conv == step over hundreds of positions and decoding that continues after prompts of any length.
#include "layers/mixer.h"

#include <gtest/gtest.h>

#include <map>

#include "tests/testing.h"

namespace hippo {
namespace {
using testing::all_close;

// Names registered by test files (prefix "test_") are not product mixers.
std::vector<std::string> product_mixers() {
  std::vector<std::string> out;
  for (const auto& n : LayerRegistry::global().names())
    if (n.rfind("test_", 0) != 0) out.push_back(n);
  return out;
}

// A mixer with options: every registered mixer with its defaults, plus variants that change the code path.
struct Variant {
  std::string name;
  Json options;
  std::string label;
};
// Printed in test names and failure messages.
void PrintTo(const Variant& v, std::ostream* os) { *os << v.label << " " << v.options.dump(); }

std::vector<Variant> variants() {
  std::vector<Variant> v;
  for (const auto& n : product_mixers()) v.push_back({n, Json::object(), n});
  v.push_back({"h3", Json{{"head_dim", 2}}, "h3_head_dim2"});
  v.push_back({"h3", Json{{"head_dim", 4}, {"discretization", "zoh"}}, "h3_head_dim4_zoh"});
  v.push_back({"s4d", Json{{"discretization", "bilinear"}, {"d_state", 16}}, "s4d_bilinear"});
  v.push_back({"gss", Json{{"d_ssm", 8}, {"expand", 2}}, "gss_narrow"});
  v.push_back({"attention", Json{{"n_heads", 4}}, "attention_4_heads"});
  v.push_back({"shift_ssm", Json{{"d_state", 4}}, "shift_ssm_4_taps"});
  return v;
}

Mixer build(const Variant& var, int64_t d_model, torch::ScalarType dtype, uint64_t seed = 0) {
  torch::manual_seed(seed);
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find(var.name, "layer"));
  MixerArgs a;
  a.d_model = d_model;
  a.n_layer = 2;
  a.max_seq_len = 1024;
  a.options = value_or_throw(resolve_options(e->schema, var.options, var.name));
  Mixer m = e->factory(a);
  m->to(dtype);
  m->eval();
  return m;
}

TEST(Registry, ExactlyTheseMixers) {
  EXPECT_EQ(product_mixers(), std::vector<std::string>({"attention", "diag_ssm", "gss", "h3", "s4d", "shift_ssm"}));
}

class EveryMixer : public ::testing::TestWithParam<Variant> {};

TEST_P(EveryMixer, MapsBLDToBLD) {
  auto m = build(GetParam(), 16, torch::kFloat);
  auto y = m->forward(torch::randn({3, 17, 16}));
  EXPECT_EQ(y.sizes(), torch::IntArrayRef({3, 17, 16}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
}

TEST_P(EveryMixer, IsCausalInOutputsAndGradients) {
  auto m = build(GetParam(), 16, torch::kDouble);
  const int64_t L = 40, t = 23;
  auto x = torch::randn({2, L, 16}, torch::kDouble);
  auto x2 = x.clone();
  x2.narrow(1, t + 1, L - t - 1).normal_();
  auto y = m->forward(x), y2 = m->forward(x2);
  EXPECT_TRUE(all_close(y.narrow(1, 0, t + 1), y2.narrow(1, 0, t + 1), 1e-12, 1e-12));
  EXPECT_FALSE(torch::allclose(y.narrow(1, t + 1, L - t - 1), y2.narrow(1, t + 1, L - t - 1)));
  // The gradient of output position t with respect to inputs after t vanishes: exactly for attention, up to
  // float64 FFT rounding (~1e-16 of the past gradients) for FFT convolutions.
  auto xg = x.clone().requires_grad_(true);
  m->forward(xg).select(1, t).sum().backward();
  const double past = xg.grad().narrow(1, 0, t + 1).abs().max().item<double>();
  EXPECT_GT(past, 0.0);
  EXPECT_LE(xg.grad().narrow(1, t + 1, L - t - 1).abs().max().item<double>(), 1e-12 * past);
}

TEST_P(EveryMixer, DeterministicForASeed) {
  auto x = torch::randn({2, 33, 16});
  auto a = build(GetParam(), 16, torch::kFloat, 5)->forward(x);
  auto b = build(GetParam(), 16, torch::kFloat, 5)->forward(x);
  auto c = build(GetParam(), 16, torch::kFloat, 6)->forward(x);
  EXPECT_TRUE(torch::equal(a, b));  // bit for bit on the CPU
  EXPECT_FALSE(torch::equal(a, c));
}

TEST_P(EveryMixer, StepMatchesForwardOver520Steps) {
  auto m = build(GetParam(), 8, torch::kDouble);
  if (!m->can_step()) GTEST_SKIP() << GetParam().label << " declares no step()";
  const int64_t L = 520;
  auto x = torch::randn({2, L, 8}, torch::kDouble);
  auto y = m->forward(x);
  auto state = m->initial_state(2);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) ys.push_back(m->step(x.select(1, t), state));
  // float64: the two forms differ only by rounding.
  auto steps = torch::stack(ys, 1);
  EXPECT_TRUE(all_close(steps, y, 1e-9, 1e-9));
  std::printf("[ measured ] %s conv vs step, float64, 520 steps: relative error %.2e, max abs %.2e\n",
              GetParam().label.c_str(), testing::rel_error(steps, y), (steps - y).abs().max().item<double>());
}

TEST_P(EveryMixer, StepMatchesForwardFloat32) {
  auto m = build(GetParam(), 8, torch::kFloat);
  if (!m->can_step()) GTEST_SKIP() << GetParam().label << " declares no step()";
  const int64_t L = 512;
  auto x = torch::randn({2, L, 8});
  auto y = m->forward(x);
  auto state = m->initial_state(2);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) ys.push_back(m->step(x.select(1, t), state));
  const double err = testing::rel_error(torch::stack(ys, 1), y);
  EXPECT_LT(err, 1e-4);
  std::printf("[ measured ] %s conv vs step, float32, 512 steps: relative error %.2e\n", GetParam().label.c_str(), err);
}

TEST_P(EveryMixer, DecodingContinuesAfterPromptsOfAnyLength) {
  auto m = build(GetParam(), 8, torch::kDouble);
  if (!m->can_step()) GTEST_SKIP() << GetParam().label << " declares no step()";
  const int64_t L = 330;
  auto x = torch::randn({2, L, 8}, torch::kDouble);
  auto y = m->forward(x);
  for (int64_t prompt : {1, 7, 64, 257, 300}) {
    auto state = m->state_after(x.narrow(1, 0, prompt));
    std::vector<torch::Tensor> ys;
    for (int64_t t = prompt; t < L; ++t) ys.push_back(m->step(x.select(1, t), state));
    EXPECT_TRUE(all_close(torch::stack(ys, 1), y.narrow(1, prompt, L - prompt), 1e-9, 1e-9)) << GetParam().label << " prompt " << prompt;
  }
}

TEST_P(EveryMixer, StateSizeMatchesHandCount) {
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find(GetParam().name, "layer"));
  auto o = value_or_throw(resolve_options(e->schema, GetParam().options, GetParam().name));
  const int64_t D = 64, L = 100;
  // Hand-computed: real scalars carried per sequence between steps, a complex mode counting 2.
  const std::map<std::string, int64_t> expected = {
      {"attention", 2 * 64 * 100},            // keys and values of 64 channels at 100 positions
      {"attention_4_heads", 2 * 64 * 100},    // heads split the same channels
      {"s4d", 64 * 32 * 2},                   // 64 channels x 32 complex modes
      {"s4d_bilinear", 64 * 8 * 2},           // d_state 16: 8 complex modes
      {"diag_ssm", 64 * 32 * 2},
      {"shift_ssm", 64 * 64},                 // the last 64 inputs of each channel
      {"shift_ssm_4_taps", 64 * 4},
      {"h3", 64 * 64 + 64 * 32 * 2},          // shift state on k + diagonal state on k*v
      {"h3_head_dim2", 64 * 64 + 128 * 32 * 2},  // 32 heads x 2x2 outer-product channels = 128
      {"h3_head_dim4_zoh", 64 * 64 + 256 * 32 * 2},
      {"gss", 256 * 32 * 2},                  // the d_ssm = 256 channels of the SSM branch
      {"gss_narrow", 8 * 32 * 2},
  };
  ASSERT_TRUE(expected.count(GetParam().label)) << "no hand-computed state size for " << GetParam().label;
  EXPECT_EQ(e->state_size(o, D, L), expected.at(GetParam().label));
  if (e->recurrent) {
    // ... and it is exactly what step() carries.
    auto m = build(GetParam(), D, torch::kFloat);
    int64_t n = 0;
    for (auto& s : m->initial_state(1)) n += s.numel();
    EXPECT_EQ(n, e->state_size(o, D, L));
  }
}

TEST_P(EveryMixer, GradientsMatchFiniteDifferences) {
  auto m = build(GetParam(), 8, torch::kDouble);
  auto x = torch::randn({2, 13, 8}, torch::TensorOptions().dtype(torch::kDouble).requires_grad(true));
  auto w = torch::randn({2, 13, 8}, torch::kDouble);
  std::vector<torch::Tensor> inputs = {x};
  for (auto& p : m->parameters()) inputs.push_back(p);
  auto f = [&](const std::vector<torch::Tensor>& in) { return (m->forward(in[0]) * w).sum(); };
  EXPECT_TRUE(testing::grad_check(f, inputs, 2, 1e-6, 1e-5)) << GetParam().label;
}

// float32 gradients agree with float64 ones (the same parameter values, widened): catches a float32-only path that
// is wrong, such as LibTorch 1.13's CPU gelu_backward, which returns garbage in float32 when the incoming gradient's
// strides differ from its input's.
TEST_P(EveryMixer, Float32GradientsMatchFloat64) {
  auto m32 = build(GetParam(), 8, torch::kFloat), m64 = build(GetParam(), 8, torch::kDouble);
  auto x64 = torch::randn({2, 33, 8}, torch::kDouble).requires_grad_(true);
  auto x32 = x64.detach().to(torch::kFloat).requires_grad_(true);
  auto w = torch::randn({2, 33, 8}, torch::kDouble);
  auto grads = [&](Mixer& m, const torch::Tensor& x) {
    std::vector<torch::Tensor> in = {x};
    for (auto& p : m->parameters()) in.push_back(p);
    return torch::autograd::grad({(m->forward(x).to(torch::kDouble) * w).sum()}, in, {}, false, false, true);
  };
  testing::expect_gradients_close(grads(m32, x32), grads(m64, x64), 1e-4, GetParam().label);
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryMixer, ::testing::ValuesIn(variants()),
                         [](const auto& info) { return info.param.label; });

}  // namespace
}  // namespace hippo
