// Recurrent generation (H3.md 3, 8, 9): decoding through step() and the key-value cache must pick exactly the
// tokens that recomputing the whole forward at every position picks, for every kind of model, for any prompt
// length (1 included) and over hundreds of steps.
#include <gtest/gtest.h>

#include "layers/model.h"
#include "tests/testing.h"

namespace hippo {
namespace {

struct Kind {
  std::vector<std::string> schedule;
  Json attention_options;  // for schedules with attention
  std::string label;
};

void PrintTo(const Kind& k, std::ostream* os) { *os << k.label; }

LanguageModel make_model(const Kind& k, int64_t max_len) {
  ModelConfig c;
  c.vocab_size = 13;
  c.d_model = 16;
  c.max_seq_len = max_len;
  c.schedule = k.schedule;
  c.embed_dropout = 0.3;  // must be off while generating
  for (const auto& n : k.schedule) {
    const LayerEntry* e = value_or_throw(LayerRegistry::global().find(n, "layer"));
    Json given = n == "attention" ? k.attention_options : (n == "h3" ? Json{{"head_dim", 1}} : Json());
    if (given.is_null()) given = Json::object();
    c.layer_options[n] = value_or_throw(resolve_options(e->schema, given, n));
  }
  torch::manual_seed(7);
  LanguageModel m(c);
  m->to(torch::kFloat64);
  // Larger weights than the initialisation, so that logits differ clearly and argmax is not a near tie.
  torch::NoGradGuard g;
  m->embed_->weight.mul_(30);
  return m;
}

// Greedy decoding by recomputing forward() over the whole sequence at every step: the reference.
torch::Tensor greedy_by_recompute(LanguageModel& m, torch::Tensor seq, int64_t n) {
  torch::NoGradGuard g;
  m->eval();
  for (int64_t i = 0; i < n; ++i) {
    auto next = m->forward(seq).select(1, seq.size(1) - 1).argmax(-1, true);
    seq = torch::cat({seq, next}, 1);
  }
  return seq;
}

class EveryModelKind : public ::testing::TestWithParam<Kind> {};

TEST_P(EveryModelKind, GreedyRecurrentDecodingEqualsRecomputingTheForward) {
  for (int64_t prompt_len : {1, 2, 7}) {
    auto m = make_model(GetParam(), 64);
    torch::manual_seed(prompt_len);
    auto prompt = torch::randint(13, {3, prompt_len}, torch::kLong);
    const int64_t n = 40;
    SamplingOptions greedy;
    greedy.temperature = 0;
    auto fast = m->generate(prompt, n, greedy);
    auto slow = greedy_by_recompute(m, prompt, n);
    ASSERT_EQ(fast.sizes(), slow.sizes());
    EXPECT_TRUE(torch::equal(fast, slow)) << GetParam().label << ", prompt length " << prompt_len << "\nrecurrent "
                                          << fast << "\nrecompute " << slow;
    // More than the tokens: the step logits equal the forward logits at every position.
    DecodeState st;
    torch::NoGradGuard g;
    auto full = m->forward(fast);
    auto logits = m->prefill(fast.narrow(1, 0, prompt_len), st);
    for (int64_t t = prompt_len; t < fast.size(1); ++t) {
      EXPECT_TRUE(testing::all_close(logits, full.select(1, t - 1), 1e-9, 1e-9)) << "position " << t - 1;
      logits = m->decode_step(fast.select(1, t), st);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Generate, EveryModelKind,
    ::testing::Values(Kind{{"attention", "attention"}, Json::object(), "transformer_no_positions"},
                      Kind{{"attention", "attention"}, Json{{"pos_emb", true}, {"n_heads", 2}}, "transformer_positions"},
                      Kind{{"h3", "h3"}, Json(), "h3"}, Kind{{"h3", "attention"}, Json{{"n_heads", 2}}, "hybrid_h3"},
                      Kind{{"s4d", "s4d"}, Json(), "s4d"}, Kind{{"gss", "gss"}, Json(), "gss"},
                      Kind{{"gss", "attention"}, Json(), "hybrid_gss"}, Kind{{"shift_ssm"}, Json(), "shift_ssm"},
                      Kind{{"diag_ssm"}, Json(), "diag_ssm"}),
    [](const ::testing::TestParamInfo<Kind>& i) { return i.param.label; });

TEST(Generate, RecurrentDecodingDoesNotDriftOverHundredsOfSteps) {
  auto m = make_model(Kind{{"h3", "attention"}, Json::object(), "hybrid"}, 512);
  auto prompt = torch::randint(13, {2, 3}, torch::kLong);
  SamplingOptions greedy;
  greedy.temperature = 0;
  auto seq = m->generate(prompt, 300, greedy);
  torch::NoGradGuard g;
  auto full = m->forward(seq);
  DecodeState st;
  auto logits = m->prefill(seq.narrow(1, 0, 3), st);
  double worst = 0;
  for (int64_t t = 3; t < seq.size(1); ++t) {
    worst = std::max(worst, (logits - full.select(1, t - 1)).abs().max().item<double>());
    EXPECT_TRUE(torch::equal(logits.argmax(-1), seq.select(1, t))) << "position " << t;
    logits = m->decode_step(seq.select(1, t), st);
  }
  EXPECT_LT(worst, 1e-8) << "largest logit difference between step and forward over 300 steps";
}

TEST(Generate, SamplingIsSeededAndHonoursTopK) {
  auto m = make_model(Kind{{"s4d"}, Json(), "s4d"}, 64);
  auto prompt = torch::randint(13, {4, 2}, torch::kLong);
  SamplingOptions s;
  s.temperature = 1.0;
  s.seed = 5;
  auto a = m->generate(prompt, 30, s), b = m->generate(prompt, 30, s);
  EXPECT_TRUE(torch::equal(a, b)) << "same seed, different samples";
  s.seed = 6;
  EXPECT_FALSE(torch::equal(a, m->generate(prompt, 30, s))) << "another seed gave the same 120 samples";
  // top_k = 1 is greedy whatever the temperature.
  s.top_k = 1;
  s.temperature = 5.0;
  SamplingOptions greedy;
  greedy.temperature = 0;
  EXPECT_TRUE(torch::equal(m->generate(prompt, 30, s), m->generate(prompt, 30, greedy)));
}

TEST(Generate, PositionEmbeddingsBoundTheLength) {
  auto m = make_model(Kind{{"attention"}, Json{{"pos_emb", true}}, "t"}, 8);
  SamplingOptions greedy;
  greedy.temperature = 0;
  // The last new token is never fed back: 3 + 6 tokens use positions 0..7, all there is.
  EXPECT_NO_THROW(m->generate(torch::zeros({1, 3}, torch::kLong), 6, greedy));
  EXPECT_THROW(m->generate(torch::zeros({1, 3}, torch::kLong), 7, greedy), c10::Error);
  EXPECT_THROW(m->generate(torch::zeros({1, 9}, torch::kLong), 1, greedy), c10::Error);
  EXPECT_EQ(m->generate(torch::zeros({1, 3}, torch::kLong), 0, greedy).size(1), 3);
}

}  // namespace
}  // namespace hippo
