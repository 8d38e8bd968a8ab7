// The model of H3.md 5: shapes, initialisation, parameter groups for the optimiser, position embeddings,
// tied output, state size.
#include "layers/model.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/testing.h"

namespace hippo {
namespace {

ModelConfig config(std::vector<std::string> schedule, bool pos_emb = false) {
  ModelConfig c;
  c.vocab_size = 20;
  c.d_model = 32;
  c.max_seq_len = 31;
  c.schedule = schedule;
  for (const auto& n : schedule) {
    const LayerEntry* e = value_or_throw(LayerRegistry::global().find(n, "layer"));
    Json given = (n == "attention" && pos_emb) ? Json{{"pos_emb", true}} : Json();
    c.layer_options[n] = value_or_throw(resolve_options(e->schema, given, n));
  }
  return c;
}

TEST(Model, ForwardGivesLogitsPerPosition) {
  torch::manual_seed(1);
  LanguageModel m(config({"s4d", "attention"}));
  auto logits = m->forward(torch::randint(20, {3, 31}, torch::kLong));
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({3, 31, 20}));
  EXPECT_EQ(m->blocks().size(), 2u);
}

// The whole model's float32 gradients against float64 ones with the same parameter values (embedding, norms, MLP
// with tanh GELU, head, every mixer kind): catches a float32-only wrong path, as EveryMixer.Float32GradientsMatch
// Float64 does for the mixers alone (LibTorch 1.13's CPU gelu_backward is wrong for some gradient layouts).
TEST(Model, Float32GradientsMatchFloat64) {
  torch::manual_seed(5);
  LanguageModel m32(config({"h3", "attention", "s4d", "gss"}));
  torch::manual_seed(5);
  LanguageModel m64(config({"h3", "attention", "s4d", "gss"}));
  m64->to(torch::kDouble);
  m32->eval();  // no dropout: both runs must compute the same function
  m64->eval();
  auto tokens = torch::randint(20, {2, 31}, torch::kLong);
  auto w = torch::randn({2, 31, 20}, torch::kDouble);
  auto grads = [&](LanguageModel& m) {
    auto params = m->parameters();
    return torch::autograd::grad({(m->forward(tokens).to(torch::kDouble) * w).sum()}, params, {}, false, false, true);
  };
  testing::expect_gradients_close(grads(m32), grads(m64), 1e-4, "language model");
}

TEST(Model, InitialisationOfH3Section5) {
  torch::manual_seed(2);
  ModelConfig c = config({"attention", "attention"});
  c.d_model = 128;
  LanguageModel m(c);
  EXPECT_NEAR(m->embed_->weight.std().item<double>(), 0.02, 0.002);
  EXPECT_NEAR(m->blocks()[0]->fc1_->weight.std().item<double>(), 0.02, 0.001);
  EXPECT_NEAR(m->blocks()[0]->fc2_->weight.std().item<double>(), 0.02 / 2.0, 0.001);  // 1/sqrt(2 * 2 layers)
  EXPECT_EQ(m->blocks()[0]->fc1_->bias.abs().max().item<double>(), 0.0);
}

TEST(Model, MlpRatioZeroLeavesOutTheMlp) {
  // mlp_ratio 0: blocks are x += mixer(LN(x)) only (Zoology's MQAR models): no ln2/fc1/fc2 parameters, and the
  // block's output is exactly x + mixer(LN(x)).
  torch::manual_seed(3);
  ModelConfig c = config({"attention", "s4d"}, /*pos_emb=*/true);
  c.mlp_ratio = 0;
  LanguageModel m(c);
  for (auto& item : m->named_parameters())
    EXPECT_EQ(item.key().find("fc"), std::string::npos) << item.key();
  const int64_t D = c.d_model;
  const int64_t per_block_mlp = 2 * D + (D * 4 * D + 4 * D) + (4 * D * D + D);  // ln2 + fc1 + fc2 at ratio 4
  EXPECT_EQ(LanguageModel(config({"attention", "s4d"}, true))->param_count() - m->param_count(), 2 * per_block_mlp);
  auto x = torch::randn({2, 31, D});
  auto& b = m->blocks()[1];
  EXPECT_TRUE(torch::allclose(b->forward(x), x + b->mixer_->forward(b->ln1_->forward(x))));
  auto tokens = torch::randint(20, {2, 31}, torch::kLong);
  auto logits = m->forward(tokens);
  EXPECT_EQ(logits.sizes(), torch::IntArrayRef({2, 31, 20}));
  // Recurrent decoding goes through the same blocks: it still equals the parallel forward.
  m->eval();
  torch::NoGradGuard no_grad;
  DecodeState st;
  auto first = m->prefill(tokens.narrow(1, 0, 30), st);
  EXPECT_TRUE(torch::allclose(first, m->forward(tokens).select(1, 29), 1e-4, 1e-5));
  auto next = m->decode_step(tokens.select(1, 30), st);
  EXPECT_TRUE(torch::allclose(next, m->forward(tokens).select(1, 30), 1e-4, 1e-5));
}

TEST(Model, ParamGroupsPartitionEveryParameter) {
  LanguageModel m(config({"s4d", "attention"}));
  auto g = m->param_groups();
  std::set<const void*> seen;
  for (auto* group : {&g.ssm, &g.decay, &g.no_decay})
    for (auto& p : *group) EXPECT_TRUE(seen.insert(p.unsafeGetTensorImpl()).second) << "parameter in two groups";
  EXPECT_EQ(seen.size(), m->parameters().size());
  EXPECT_EQ(g.ssm.size(), 4u);  // log_dt, log_A_real, A_imag, B of the one s4d layer
  for (auto& p : g.no_decay) EXPECT_LT(p.dim(), 2);
  EXPECT_DOUBLE_EQ(g.ssm_lr, 1e-3);
}

TEST(Model, PositionEmbeddingOnlyWhenAMixerAsks) {
  EXPECT_FALSE(LanguageModel(config({"attention"}))->pos_embed_);
  EXPECT_TRUE(LanguageModel(config({"attention"}, true))->pos_embed_);
  EXPECT_FALSE(LanguageModel(config({"s4d"}))->pos_embed_);
}

TEST(Model, OutputIsTiedToEmbedding) {
  torch::manual_seed(3);
  LanguageModel m(config({"s4d"}));
  m->eval();
  auto tokens = torch::randint(20, {1, 5}, torch::kLong);
  auto before = m->forward(tokens);
  {
    torch::NoGradGuard ng;
    m->embed_->weight[7].mul_(3.0);
  }
  auto after = m->forward(tokens);
  EXPECT_FALSE(torch::allclose(before.select(2, 7), after.select(2, 7)));
}

TEST(Model, StateSizeSumsLayers) {
  LanguageModel m(config({"s4d", "attention"}));
  EXPECT_EQ(m->state_size(31), 32 * 64 + 2 * 32 * 31);
}

}  // namespace
}  // namespace hippo
