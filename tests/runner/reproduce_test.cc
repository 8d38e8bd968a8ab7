// Table 2's plan: the protocol of H3.md 6.4 in every run, the grid, the paper's numbers, and bad options.
#include "runner/reproduce.h"

#include <gtest/gtest.h>

#include <set>

namespace hippo {
namespace {

TEST(Table2, PlanHasTheProtocolOfTheSpec) {
  auto plan = table2_plan({});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->sweep_name, "table2");
  EXPECT_EQ(plan->runs.size(), 2u * 4 * 3 * 3);  // tasks x layers x lrs x seeds
  std::set<std::string> hashes, layers;
  std::set<double> lrs;
  for (const auto& r : plan->runs) {
    hashes.insert(r.hash);
    layers.insert(r.layer_label);
    const Json& t = r.config["train"];
    lrs.insert(t["lr"].get<double>());
    EXPECT_EQ(t["n_layer"], 2);
    EXPECT_EQ(t["d_model"], 32);
    EXPECT_EQ(t["weight_decay"], 0.1);
    EXPECT_EQ(t["batch_size"], 32);
    EXPECT_EQ(t["embed_dropout"], 0.1);
    EXPECT_EQ(t["warmup_fraction"], 0.1);
    EXPECT_EQ(t["min_lr_ratio"], 0.1);
    EXPECT_EQ(t["warmup_start_lr"], 1e-6);
    const Json& task = r.config["task_options"];
    EXPECT_EQ(task["num_train"], 5000);
    EXPECT_EQ(task["num_test"], 500);
    if (r.task == "induction_head") {
      EXPECT_EQ(t["epochs"], 400);  // 62,800 steps
      EXPECT_EQ(task["vocab_size"], 20);
      EXPECT_EQ(task["seq_len"], 30);
    } else {
      EXPECT_EQ(r.task, "associative_recall");
      EXPECT_EQ(t["epochs"], 200);  // 31,400 steps
      EXPECT_EQ(task["vocab_size"], 10);
      EXPECT_EQ(task["seq_len"], 20);
    }
    if (r.layer_label == "attention") {
      EXPECT_EQ(r.config["layer_options"]["attention"]["n_heads"], 1);
      EXPECT_EQ(r.config["layer_options"]["attention"]["pos_emb"], true);
    }
  }
  EXPECT_EQ(hashes.size(), plan->runs.size());
  EXPECT_EQ(layers, (std::set<std::string>{"s4d", "gss", "h3", "attention"}));
  EXPECT_EQ(lrs, (std::set<double>{5e-4, 1e-3, 2e-3}));
}

TEST(Table2, SchedulesNameTheirSweeps) {
  Table2Options o;
  o.schedule = "quick";
  o.seeds = 2;
  o.lrs = {5e-4};
  auto q = table2_plan(o);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->sweep_name, "table2-quick");
  EXPECT_EQ(q->runs.size(), 2u * 4 * 2);
  o.schedule = "tiny";
  auto t = table2_plan(o);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->sweep_name, "table2-tiny");
  EXPECT_EQ(t->runs[0].config["task_options"]["num_train"], 64);
  // Another schedule is another config: no run is shared between the sweeps.
  EXPECT_NE(q->runs[0].hash, t->runs[0].hash);
}

TEST(Table2, BadOptionsNameTheAcceptedValues) {
  Table2Options o;
  o.schedule = "fast";
  EXPECT_NE(std::string(table2_plan(o).status().message()).find("accepted: paper, quick, tiny"),
            std::string::npos);
  o = {};
  o.seeds = 0;
  EXPECT_EQ(table2_plan(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.lrs = {};
  EXPECT_EQ(table2_plan(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.lrs = {-1};
  EXPECT_EQ(table2_plan(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Table2, PaperNumbersAsInTheSpec) {
  // H3.md 6.5.
  const auto& p = table2_paper();
  ASSERT_EQ(p.size(), 8u);
  auto at = [&](const std::string& task, const std::string& layer) {
    for (const auto& c : p)
      if (c.task == task && c.layer == layer) return c;
    ADD_FAILURE() << task << " " << layer;
    return PaperCell{};
  };
  EXPECT_EQ(at("induction_head", "s4d").paper, 35.6);
  EXPECT_EQ(at("induction_head", "gss").paper, 6.8);
  EXPECT_EQ(at("induction_head", "h3").paper, 100.0);
  EXPECT_EQ(at("associative_recall", "s4d").paper, 86.0);
  EXPECT_EQ(at("associative_recall", "gss").paper, 78.0);
  EXPECT_EQ(at("associative_recall", "h3").paper, 99.8);
  EXPECT_EQ(*at("associative_recall", "s4d").rerun, 32.4);
  EXPECT_EQ(*at("induction_head", "attention").rerun, 97.2);
  EXPECT_FALSE(at("induction_head", "gss").rerun.has_value());
  EXPECT_EQ(table2_paper_random("induction_head"), 5.0);
  EXPECT_EQ(table2_paper_random("associative_recall"), 25.0);
}

}  // namespace
}  // namespace hippo
