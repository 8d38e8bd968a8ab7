// Attention against an explicit per-position softmax computed with plain loops.
#include "layers/attention.h"

#include <gtest/gtest.h>

#include "tests/testing.h"

namespace hippo {
namespace {

TEST(Attention, MatchesExplicitSoftmaxAttention) {
  torch::manual_seed(21);
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("attention", "layer"));
  MixerArgs a;
  a.d_model = 8;
  a.options = value_or_throw(resolve_options(e->schema, Json{{"n_heads", 2}}, "attention"));
  auto m = std::make_shared<AttentionImpl>(a);
  m->to(torch::kDouble);
  const int64_t L = 6, hd = 4;
  auto x = torch::randn({1, L, 8}, torch::kDouble);
  auto qkv = m->qkv_->forward(x)[0];  // (L, 24): q | k | v, heads contiguous inside each
  auto out = torch::zeros({L, 8}, torch::kDouble);
  for (int64_t h = 0; h < 2; ++h)
    for (int64_t t = 0; t < L; ++t) {
      auto q = qkv[t].narrow(0, h * hd, hd);
      std::vector<double> w;
      double mx = -1e300, z = 0;
      for (int64_t s = 0; s <= t; ++s) {
        w.push_back((q * qkv[s].narrow(0, 8 + h * hd, hd)).sum().item<double>() / 2.0);  // sqrt(4) = 2
        mx = std::max(mx, w.back());
      }
      for (auto& v : w) z += (v = std::exp(v - mx));
      for (int64_t s = 0; s <= t; ++s) out[t].narrow(0, h * hd, hd) += w[s] / z * qkv[s].narrow(0, 16 + h * hd, hd);
    }
  auto expected = m->out_proj_->forward(out);
  EXPECT_TRUE(testing::all_close(m->forward(x)[0], expected, 1e-12, 1e-12));
}

TEST(Attention, RotaryScoresDependOnRelativePositionOnly) {
  torch::manual_seed(22);
  auto q = torch::randn({1, 1, 1, 8}, torch::kDouble), k = torch::randn({1, 1, 1, 8}, torch::kDouble);
  auto score = [&](int64_t i, int64_t j) { return (rotary(q, i) * rotary(k, j)).sum().item<double>(); };
  EXPECT_NEAR(score(5, 3), score(12, 10), 1e-12);
  EXPECT_NEAR(score(3, 3), (q * k).sum().item<double>(), 1e-12);
  EXPECT_GT(std::abs(score(5, 3) - score(5, 4)), 1e-3);
  // A rotation: norms kept; position 0 unchanged; rotating L positions at once equals one at a time.
  auto x = torch::randn({2, 3, 7, 8}, torch::kDouble);
  auto r = rotary(x, 4);
  EXPECT_TRUE(testing::all_close(r.norm(2, -1), x.norm(2, -1), 1e-12, 1e-12));
  EXPECT_TRUE(testing::all_close(rotary(x, 0).select(2, 0), x.select(2, 0), 1e-12, 1e-12));
  EXPECT_TRUE(testing::all_close(r.narrow(2, 2, 1), rotary(x.narrow(2, 2, 1), 6), 1e-12, 1e-12));
}

TEST(Attention, RotaryDecodingMatchesForward) {
  torch::manual_seed(23);
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("attention", "layer"));
  MixerArgs a;
  a.d_model = 8;
  a.options = value_or_throw(resolve_options(e->schema, Json{{"n_heads", 2}, {"rotary", true}}, "attention"));
  auto m = std::make_shared<AttentionImpl>(a);
  m->to(torch::kDouble);
  m->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 9, 8}, torch::kDouble);
  auto full = m->forward(x);
  // Without rotary the same weights give another output: the option is used.
  a.options = value_or_throw(resolve_options(e->schema, Json{{"n_heads", 2}}, "attention"));
  auto plain = std::make_shared<AttentionImpl>(a);
  plain->to(torch::kDouble);
  for (size_t i = 0; i < m->parameters().size(); ++i) plain->parameters()[i].copy_(m->parameters()[i]);
  EXPECT_FALSE(testing::all_close(plain->forward(x), full, 1e-6, 1e-6));
  // Prompt of 4 through forward_with_state, then 5 steps: every position equals the parallel forward.
  MixerState st;
  auto y = m->forward_with_state(x.narrow(1, 0, 4), st);
  EXPECT_TRUE(testing::all_close(y, full.narrow(1, 0, 4), 1e-12, 1e-12));
  for (int64_t t = 4; t < 9; ++t)
    EXPECT_TRUE(testing::all_close(m->step(x.select(1, t), st), full.select(1, t), 1e-12, 1e-12)) << t;
  // And from an empty state, step by step from position 0.
  auto st0 = m->initial_state(2);
  for (int64_t t = 0; t < 9; ++t)
    EXPECT_TRUE(testing::all_close(m->step(x.select(1, t), st0), full.select(1, t), 1e-12, 1e-12)) << t;
}

TEST(Attention, RotaryNeedsAnEvenHeadWidth) {
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("attention", "layer"));
  auto o = value_or_throw(resolve_options(e->schema, Json{{"n_heads", 4}, {"rotary", true}}, "attention"));
  EXPECT_TRUE(e->validate(o, 32).ok());
  auto st = e->validate(o, 12);  // head width 3
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("rotary needs an even head width"), std::string::npos);
}

TEST(Attention, RejectsIndivisibleHeads) {
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("attention", "layer"));
  auto o = value_or_throw(resolve_options(e->schema, Json{{"n_heads", 3}}, "attention"));
  auto st = e->validate(o, 32);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("not divisible by n_heads 3"), std::string::npos);
}

}  // namespace
}  // namespace hippo
