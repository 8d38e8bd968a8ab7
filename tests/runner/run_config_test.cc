// Run-config resolution: defaults, canonical hashing, schedules, and every kind of bad key or value.
#include "runner/run_config.h"

#include <absl/strings/str_join.h>
#include <gtest/gtest.h>

#include <set>

#include "runner/model_io.h"

namespace hippo {
namespace {

Json base() { return Json{{"layer", "s4d"}, {"task", "induction_head"}}; }

std::string error_of(const Json& raw) {
  auto r = resolve_run(raw);
  EXPECT_FALSE(r.ok()) << raw.dump();
  return std::string(r.status().message());
}

TEST(RunConfig, ResolvesDefaultsIntoCanonicalConfig) {
  auto r = resolve_run(base());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config["layers"], Json::array({"s4d", "s4d"}));
  EXPECT_EQ(r->config["layer_options"]["s4d"]["d_state"], 64);
  EXPECT_EQ(r->config["task_options"]["vocab_size"], 20);
  EXPECT_EQ(r->config["train"]["lr"], 5e-4);
  EXPECT_EQ(r->config["seed"], 0);
  EXPECT_EQ(r->layer_label, "s4d");
  EXPECT_EQ(r->hash.size(), 16u);
}

TEST(RunConfig, HashCoversEveryResolvedValue) {
  auto a = resolve_run(base());
  auto same = resolve_run(Json{{"task", "induction_head"}, {"layer", "s4d"}, {"d_model", 64}, {"s4d", {{"d_state", 64}}}});
  EXPECT_EQ(a->hash, same->hash);  // explicit defaults and key order do not matter
  Json other = base();
  other["seed"] = 1;
  EXPECT_NE(a->hash, resolve_run(other)->hash);
  other = base();
  other["induction_head"] = {{"seq_len", 31}};
  EXPECT_NE(a->hash, resolve_run(other)->hash);  // a generator parameter changes the hash
  other = base();
  other["attention"] = {{"n_heads", 1}};  // options of an unused layer: checked, then dropped
  EXPECT_EQ(a->hash, resolve_run(other)->hash);
}

TEST(RunConfig, SchedulesAndHybridShorthand) {
  auto r = resolve_run(Json{{"layers", {"s4d", "attention", "s4d"}}, {"task", "associative_recall"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config["train"]["n_layer"], 3);
  EXPECT_EQ(r->layer_label, "s4d+attention@1");
  auto h = resolve_run(Json{{"layer", "s4d"}, {"n_layer", 4}, {"attn_layers", {1, 3}}, {"task", "associative_recall"}});
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->config["layers"], Json::array({"s4d", "attention", "s4d", "attention"}));
  EXPECT_EQ(h->config["layer_options"].size(), 2u);
}

TEST(RunConfig, BadInputNamesTheProblem) {
  Json j = base();
  j["d_modle"] = 32;
  EXPECT_NE(error_of(j).find("unknown key 'd_modle'"), std::string::npos);
  EXPECT_NE(error_of(Json{{"layer", "mamba"}, {"task", "induction_head"}}).find("unknown layer 'mamba'; registered: attention, diag_ssm, gss, h3, s4d, shift_ssm"),
            std::string::npos);
  EXPECT_NE(error_of(Json{{"layer", "s4d"}, {"task", "copying"}}).find("unknown task 'copying'"), std::string::npos);
  j = base();
  j["s4d"] = {{"d_stat", 4}};
  EXPECT_NE(error_of(j).find("unknown option 'd_stat' for layer 's4d'"), std::string::npos);
  j = base();
  j["lr"] = "fast";
  EXPECT_NE(error_of(j).find("option 'lr'"), std::string::npos);
  j = base();
  j["s4d"] = {{"d_state", 7}};
  EXPECT_NE(error_of(j).find("must be even"), std::string::npos);
  EXPECT_NE(error_of(Json{{"layer", "attention"}, {"attention", {{"n_heads", 3}}}, {"d_model", 64}, {"task", "induction_head"}})
                .find("not divisible by n_heads 3"),
            std::string::npos);
  EXPECT_NE(error_of(Json{{"task", "induction_head"}}).find("exactly one of 'layer'"), std::string::npos);
  EXPECT_NE(error_of(Json{{"layer", "s4d"}}).find("missing 'task'"), std::string::npos);
  j = base();
  j["attn_layers"] = {2};
  EXPECT_NE(error_of(j).find("not a layer index in [0, 1]"), std::string::npos);
  EXPECT_NE(error_of(Json{{"layers", {"s4d"}}, {"n_layer", 3}, {"task", "induction_head"}}).find("disagrees"), std::string::npos);
  j = base();
  j["seed"] = -1;
  EXPECT_NE(error_of(j).find("'seed'"), std::string::npos);
  j = base();
  j["associative_recall"] = {{"vocab_size", 9}};  // an unused task's options are still checked
  EXPECT_NE(error_of(j).find("must be even"), std::string::npos);
  EXPECT_NE(error_of(Json::array()).find("must be a mapping"), std::string::npos);
}

TEST(RunConfig, MlpRatio) {
  // At its default (4) mlp_ratio is left out of the canonical config, so configs from before it keep their hash.
  Json explicit_default = base();
  explicit_default["mlp_ratio"] = 4;
  auto a = resolve_run(base());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(resolve_run(explicit_default)->hash, a->hash);
  EXPECT_FALSE(a->config["train"].contains("mlp_ratio"));
  Json none = base();
  none["mlp_ratio"] = 0;
  auto b = resolve_run(none);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->config["train"]["mlp_ratio"], 0);
  EXPECT_NE(b->hash, a->hash);
  // build_model honours it; a stored config without the key (older, or at the default) builds the MLP.
  auto task = build_task(b->config);
  auto params = [](LanguageModel m) {
    std::set<std::string> names;
    for (auto& item : m->named_parameters()) names.insert(item.key());
    return names;
  };
  EXPECT_FALSE(params(build_model(b->config, *task)).count("block0.fc1.weight"));
  EXPECT_TRUE(params(build_model(a->config, *task)).count("block0.fc1.weight"));
  Json bad = base();
  bad["mlp_ratio"] = -1;
  EXPECT_NE(error_of(bad).find("option 'mlp_ratio'"), std::string::npos) << error_of(bad);
}

TEST(RunConfig, AttentionRotaryLeftOutWhenOff) {
  // Off by default and left out then, so that attention configs from before the option keep their hash.
  Json plain = Json{{"layer", "attention"}, {"task", "induction_head"}};
  Json off = plain;
  off["attention"] = {{"rotary", false}};
  auto a = resolve_run(plain);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->config["layer_options"]["attention"].contains("rotary"));
  EXPECT_EQ(resolve_run(off)->hash, a->hash);
  Json on = plain;
  on["attention"] = {{"rotary", true}};
  auto b = resolve_run(on);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->config["layer_options"]["attention"]["rotary"], true);
  EXPECT_NE(b->hash, a->hash);
}

TEST(RunConfig, MqarAnswerInInputLeftOutAtItsDefault) {
  Json plain = Json{{"layer", "s4d"}, {"task", "mqar"}};
  Json on = plain;
  on["mqar"] = {{"answer_in_input", true}};
  auto a = resolve_run(plain);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(a->config["task_options"].contains("answer_in_input"));
  EXPECT_EQ(resolve_run(on)->hash, a->hash);
  Json off = plain;
  off["mqar"] = {{"answer_in_input", false}};
  auto b = resolve_run(off);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->config["task_options"]["answer_in_input"], false);
  EXPECT_NE(b->hash, a->hash);
}

// with_omitted_defaults puts back exactly what resolve_run leaves out, where its scope exists.
TEST(RunConfig, WithOmittedDefaultsRestoresWhatTheCanonicalConfigLeavesOut) {
  auto r = resolve_run(Json{{"layers", {"attention", "h3"}}, {"task", "mqar"}});
  ASSERT_TRUE(r.ok()) << r.status();
  for (const char* k : {"precision", "grad_accum", "mlp_ratio"}) EXPECT_FALSE(r->config["train"].contains(k)) << k;
  const Json full = with_omitted_defaults(r->config);
  EXPECT_EQ(full["train"]["precision"], "fp32");
  EXPECT_EQ(full["train"]["grad_accum"], 1);
  EXPECT_EQ(full["train"]["mlp_ratio"], 4);
  EXPECT_EQ(full["layer_options"]["attention"]["rotary"], false);
  EXPECT_FALSE(full["layer_options"]["h3"].contains("rotary"));
  EXPECT_EQ(full["task_options"]["answer_in_input"], true);
  EXPECT_EQ(full["task_options"]["test_kv_pairs"], Json::array());
  // A value set away from its default stays; a config without attention or mqar gets none of theirs.
  auto set = resolve_run(Json{{"layer", "attention"}, {"task", "mqar"}, {"mlp_ratio", 0},
                              {"attention", {{"rotary", true}}}});
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(with_omitted_defaults(set->config)["train"]["mlp_ratio"], 0);
  EXPECT_EQ(with_omitted_defaults(set->config)["layer_options"]["attention"]["rotary"], true);
  auto other = resolve_run(Json{{"layer", "s4d"}, {"task", "induction_head"}});
  ASSERT_TRUE(other.ok()) << other.status();
  const Json o = with_omitted_defaults(other->config);
  EXPECT_FALSE(o["layer_options"].contains("attention"));
  EXPECT_FALSE(o["task_options"].contains("answer_in_input"));
  EXPECT_FALSE(o["task_options"].contains("test_kv_pairs"));
}

// Option maps for a layer or task the run does not have are named (hippo train prints them as notes).
TEST(RunConfig, UnusedOptionMapsNameTheLayerOrTaskAndWhatTheRunUses) {
  const Json raw = {{"layer", "s4d"}, {"task", "induction_head"}, {"attention", {{"n_heads", 2}}},
                    {"s4d", {{"d_state", 8}}}, {"mqar", {{"seq_len", 64}}}, {"induction_head", {{"seq_len", 30}}}};
  auto r = resolve_run(raw);
  ASSERT_TRUE(r.ok()) << r.status();
  const auto unused = unused_option_maps(raw, *r);
  ASSERT_EQ(unused.size(), 2u) << absl::StrJoin(unused, " | ");
  EXPECT_EQ(unused[0], "options for layer 'attention' are not used: this run's layers are s4d, s4d");
  EXPECT_EQ(unused[1], "options for task 'mqar' are not used: this run's task is induction_head");
  const Json hybrid = {{"layers", {"h3", "attention"}}, {"task", "mqar"}, {"attention", {{"n_heads", 2}}}};
  auto h = resolve_run(hybrid);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(unused_option_maps(hybrid, *h).empty());
}

// A layer's checks against d_model apply to the layers the run has; an unused block is still checked for names and
// types.
TEST(RunConfig, WidthChecksOfAnUnusedLayerDoNotRefuseTheRun) {
  const Json s4d = {{"layer", "s4d"}, {"task", "induction_head"}, {"d_model", 16}, {"attention", {{"n_heads", 3}}}};
  EXPECT_TRUE(resolve_run(s4d).ok()) << resolve_run(s4d).status();
  Json attention = s4d;
  attention["layer"] = "attention";
  const auto r = resolve_run(attention);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("not divisible by n_heads 3"), std::string::npos) << r.status();
  Json typo = s4d;
  typo["attention"] = {{"n_head", 3}};
  EXPECT_FALSE(resolve_run(typo).ok());
  Json wrong_type = s4d;
  wrong_type["attention"] = {{"n_heads", "three"}};
  EXPECT_FALSE(resolve_run(wrong_type).ok());
}

TEST(RunConfig, PrecisionAndGradAccum) {
  // At their defaults both are left out of the canonical config: configs from before the options keep their hash.
  Json explicit_defaults = base();
  explicit_defaults["precision"] = "fp32";
  explicit_defaults["grad_accum"] = 1;
  auto a = resolve_run(base());
  EXPECT_EQ(resolve_run(explicit_defaults)->hash, a->hash);
  EXPECT_FALSE(a->config["train"].contains("precision"));
  EXPECT_FALSE(a->config["train"].contains("grad_accum"));
  Json bf16 = base();
  bf16["precision"] = "bf16";
  auto b = resolve_run(bf16);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->config["train"]["precision"], "bf16");
  EXPECT_NE(b->hash, a->hash);
  Json accum = base();
  accum["grad_accum"] = 4;
  auto c = resolve_run(accum);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config["train"]["grad_accum"], 4);
  EXPECT_NE(c->hash, a->hash);

  Json bad = base();
  bad["precision"] = "fp16";
  EXPECT_NE(error_of(bad).find("option 'precision' of the run config must be one of fp32|bf16, got"), std::string::npos)
      << error_of(bad);
  bad = base();
  bad["batch_size"] = 30;
  bad["grad_accum"] = 4;
  EXPECT_NE(error_of(bad).find("batch_size 30 is not divisible by grad_accum 4"), std::string::npos) << error_of(bad);
  bad["grad_accum"] = 0;
  EXPECT_NE(error_of(bad).find("option 'grad_accum'"), std::string::npos) << error_of(bad);
}

TEST(RunConfig, EvalSeqLens) {
  // Empty (the default) is left out of the canonical config: configs from before the option keep their hash.
  Json with_empty = base();
  with_empty["induction_head"] = {{"eval_seq_lens", Json::array()}};
  EXPECT_EQ(resolve_run(with_empty)->hash, resolve_run(base())->hash);
  EXPECT_FALSE(resolve_run(base())->config["task_options"].contains("eval_seq_lens"));

  Json mq = {{"layer", "h3"}, {"task", "mqar"}, {"mqar", {{"seq_len", 64}, {"eval_seq_lens", {64, 128, 256}}}}};
  auto r = resolve_run(mq);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->config["task_options"]["eval_seq_lens"], Json::array({64, 128, 256}));
  EXPECT_NE(r->hash, resolve_run(Json{{"layer", "h3"}, {"task", "mqar"}})->hash);

  // Each length must be one the task accepts, once.
  mq["mqar"]["eval_seq_lens"] = {64, 129};
  EXPECT_NE(error_of(mq).find("eval_seq_lens entry 129"), std::string::npos) << error_of(mq);
  EXPECT_NE(error_of(mq).find("even"), std::string::npos) << error_of(mq);
  mq["mqar"]["eval_seq_lens"] = {128, 128};
  EXPECT_NE(error_of(mq).find("128 twice"), std::string::npos) << error_of(mq);
  mq["mqar"]["eval_seq_lens"] = {8};  // 4 * num_kv_pairs > 8
  EXPECT_NE(error_of(mq).find("eval_seq_lens entry 8"), std::string::npos) << error_of(mq);

  // Learned position embeddings stop at the training length: longer is refused here, shorter is fine.
  Json at = {{"layer", "attention"}, {"task", "associative_recall"}, {"attention", {{"pos_emb", true}}},
             {"associative_recall", {{"eval_seq_lens", {10, 40}}}}};
  const std::string e = error_of(at);
  EXPECT_NE(e.find("position embeddings"), std::string::npos) << e;
  EXPECT_NE(e.find("eval_seq_lens entry 40"), std::string::npos) << e;
  EXPECT_NE(e.find("pos_emb: false"), std::string::npos) << e;
  at["associative_recall"]["eval_seq_lens"] = {10, 20};
  EXPECT_TRUE(resolve_run(at).ok());
  at["associative_recall"]["eval_seq_lens"] = {10, 40};
  at["attention"]["pos_emb"] = false;
  EXPECT_TRUE(resolve_run(at).ok());
}

TEST(RunConfig, SetPathBuildsNestedKeys) {
  Json j = Json::object();
  ASSERT_TRUE(set_path(j, "s4d.d_state", 32).ok());
  ASSERT_TRUE(set_path(j, "seed", 2).ok());
  EXPECT_EQ(j, Json({{"s4d", {{"d_state", 32}}}, {"seed", 2}}));
  EXPECT_FALSE(set_path(j, "seed.x", 1).ok());
  EXPECT_FALSE(set_path(j, "a..b", 1).ok());
}

}  // namespace
}  // namespace hippo
