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

TEST(Attention, RejectsIndivisibleHeads) {
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("attention", "layer"));
  auto o = value_or_throw(resolve_options(e->schema, Json{{"n_heads", 3}}, "attention"));
  auto st = e->validate(o, 32);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(st.message()).find("not divisible by n_heads 3"), std::string::npos);
}

}  // namespace
}  // namespace hippo
