// Run-config resolution: defaults, canonical hashing, schedules, and every kind of bad key or value.
#include "runner/run_config.h"

#include <gtest/gtest.h>

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
