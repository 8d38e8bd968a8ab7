// Sweep files: expansion of the grid, and errors with file, line and column.
#include "runner/sweep.h"

#include <gtest/gtest.h>

namespace hippo {
namespace {

const char* kSweep = R"(
name: demo
fixed:
  epochs: 2
  s4d.d_state: 16
  induction_head: {seq_len: 10, num_train: 50, num_test: 10}
grid:
  layer: [attention, s4d]
  task: [induction_head, associative_recall]
  seed: [0, 1, 2]
)";

TEST(Sweep, ExpandsTheCartesianProduct) {
  auto s = parse_sweep(kSweep, "sweeps/demo.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "demo");
  auto runs = expand_sweep(*s);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 12u);
  EXPECT_EQ((*runs)[0].layer_label, "attention");
  EXPECT_EQ((*runs)[0].seed, 0);
  EXPECT_EQ((*runs)[1].seed, 1);  // last key fastest
  EXPECT_EQ((*runs)[11].layer_label, "s4d");
  EXPECT_EQ((*runs)[11].task, "associative_recall");
  EXPECT_EQ((*runs)[6].config["layer_options"]["s4d"]["d_state"], 16);
  EXPECT_EQ((*runs)[6].config["task_options"]["seq_len"], 10);
}

TEST(Sweep, NameDefaultsToFileAndDuplicatesCollapse) {
  auto s = parse_sweep("fixed: {layer: s4d, task: induction_head}\ngrid: {seed: [1, 1]}\n", "dir/my-sweep.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->name, "my-sweep");
  EXPECT_EQ(expand_sweep(*s)->size(), 1u);
}

TEST(Sweep, QuotedScalarsStayStrings) {
  auto s = parse_sweep("fixed: {layer: s4d, task: induction_head, lr: \"0.1\"}\n", "q.yaml");
  ASSERT_TRUE(s.ok());
  auto runs = expand_sweep(*s);
  ASSERT_FALSE(runs.ok());
  EXPECT_NE(std::string(runs.status().message()).find("option 'lr'"), std::string::npos);
}

std::string error_of(const std::string& yaml) {
  auto s = parse_sweep(yaml, "f.yaml");
  if (!s.ok()) return std::string(s.status().message());
  auto r = expand_sweep(*s);
  EXPECT_FALSE(r.ok()) << yaml;
  return std::string(r.status().message());
}

TEST(Sweep, NumericKeysAreKeysNotArrayIndices) {
  // Found by the fuzzer: a numeric key inside 'fixed' once made the JSON-pointer code throw.
  EXPECT_NE(error_of("fixed: {layer: attention, task: induction_head, attention: {n_heads: 2, 50: 1}}\n")
                .find("unknown option '50' for layer 'attention'"),
            std::string::npos);
  EXPECT_NE(error_of("fixed: {layer: s4d, task: induction_head, s4d: [1, 2], s4d.d_state: 4}\n").find("fixed:"),
            std::string::npos);
}

TEST(Sweep, AnEmptyGridKeyIsAnError) {
  // Found by the fuzzer: a key that is a bare tag ('!') is an empty name; parsing accepted it.
  EXPECT_NE(error_of("\ngrid:\n 1!s,:\n !").find("a grid key must be a non-empty name"), std::string::npos)
      << error_of("\ngrid:\n 1!s,:\n !");
  EXPECT_NE(error_of("grid: {\"\": [1]}\n").find("a grid key must be a non-empty name"), std::string::npos);
}

TEST(Sweep, ErrorsNameTheFileLineAndColumn) {
  EXPECT_NE(error_of("fixed:\n  epochs: [1, 2\n").find("f.yaml:"), std::string::npos);
  EXPECT_NE(error_of("fixed: {layer: s4d}\ngrid:\n  seed: []\n").find("f.yaml:3:9: grid key 'seed' has an empty list"),
            std::string::npos);
  EXPECT_NE(error_of("fixd: {}\n").find("f.yaml:1:1: unknown key 'fixd'"), std::string::npos);
  EXPECT_NE(error_of("grid: {seed: [1]}\ngrid: {seed: [2]}\n").find("duplicate key 'grid'"), std::string::npos);
  EXPECT_NE(error_of("- a\n- b\n").find("must be a mapping"), std::string::npos);
  EXPECT_NE(error_of("fixed: 3\n").find("'fixed' must be a mapping"), std::string::npos);
  EXPECT_NE(error_of("fixed: {task: induction_head}\ngrid: {layer: [s4d, mamba]}\n")
                .find("grid point layer=\"mamba\": unknown layer 'mamba'"),
            std::string::npos);
}

}  // namespace
}  // namespace hippo
