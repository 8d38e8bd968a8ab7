// Option schemas: defaults, and the error for every kind of bad value names the key, owner and accepted values.
#include "core/options.h"

#include <gtest/gtest.h>

namespace hippo {
namespace {

OptionSchema schema() {
  OptionSchema s;
  s.add_int("n_heads", 1, "heads", 1, 64)
      .add_float("dt_min", 1e-3, "dt", 1e-6, 1)
      .add_bool("pos_emb", false, "positions")
      .add_string("discretization", "zoh", "disc", {"bilinear", "zoh"})
      .add_int_list("eval_seq_lens", {64}, "lengths", 1);
  return s;
}

TEST(Options, DefaultsFillEveryKey) {
  auto o = resolve_options(schema(), nullptr, "layer 'x'");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->get_int("n_heads"), 1);
  EXPECT_DOUBLE_EQ(o->get_float("dt_min"), 1e-3);
  EXPECT_FALSE(o->get_bool("pos_emb"));
  EXPECT_EQ(o->get_string("discretization"), "zoh");
  EXPECT_EQ(o->get_int_list("eval_seq_lens"), std::vector<int64_t>({64}));
  EXPECT_EQ(o->json().size(), 5u);
}

TEST(Options, GivenValuesOverride) {
  auto o = resolve_options(schema(), Json{{"n_heads", 4}, {"dt_min", 1}, {"eval_seq_lens", {64, 128}}}, "layer 'x'");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->get_int("n_heads"), 4);
  EXPECT_DOUBLE_EQ(o->get_float("dt_min"), 1.0);  // an integer is accepted for a float
  EXPECT_EQ(o->get_int_list("eval_seq_lens"), std::vector<int64_t>({64, 128}));
}

void expect_error(const Json& given, const std::vector<std::string>& fragments) {
  auto o = resolve_options(schema(), given, "layer 'attention'");
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  for (const auto& f : fragments) EXPECT_NE(std::string(o.status().message()).find(f), std::string::npos)
      << "message '" << o.status().message() << "' lacks '" << f << "'";
}

TEST(Options, UnknownKeyListsAccepted) {
  expect_error(Json{{"n_head", 2}}, {"unknown option 'n_head'", "layer 'attention'", "n_heads, dt_min, pos_emb"});
}
TEST(Options, WrongType) {
  expect_error(Json{{"n_heads", "two"}}, {"'n_heads'", "must be int", "\"two\""});
  expect_error(Json{{"n_heads", 2.5}}, {"'n_heads'", "int"});
  expect_error(Json{{"pos_emb", 1}}, {"'pos_emb'", "bool"});
  expect_error(Json{{"eval_seq_lens", {1, "a"}}}, {"'eval_seq_lens'", "int list"});
  // A whole number written as a float (1e1, 10.0) is refused with the reason, not only "got 10.0".
  expect_error(Json{{"n_heads", 10.0}}, {"'n_heads'", "got 10.0", "floating-point number: write it as the integer 10"});
  expect_error(Json{{"eval_seq_lens", {64, 128.0}}}, {"'eval_seq_lens'", "write it as the integer 128"});
  auto frac = resolve_options(schema(), Json{{"n_heads", 2.5}}, "layer 'attention'");
  EXPECT_EQ(std::string(frac.status().message()).find("write it as"), std::string::npos) << frac.status();
}
TEST(Options, OutOfRange) {
  expect_error(Json{{"n_heads", 0}}, {"'n_heads'", "int in [1, 64]", "got 0"});
  expect_error(Json{{"dt_min", 5.0}}, {"'dt_min'", "got 5"});
  expect_error(Json{{"eval_seq_lens", {0}}}, {"'eval_seq_lens'", ">= 1"});
}
TEST(Options, Choices) { expect_error(Json{{"discretization", "euler"}}, {"one of bilinear|zoh", "euler"}); }
TEST(Options, NotAMapping) { expect_error(Json::array({1, 2}), {"must be a mapping"}); }

TEST(Options, ParseScalar) {
  EXPECT_EQ(parse_scalar("3"), Json(3));
  EXPECT_EQ(parse_scalar("-2.5e-3"), Json(-2.5e-3));
  EXPECT_EQ(parse_scalar("true"), Json(true));
  EXPECT_EQ(parse_scalar("zoh"), Json("zoh"));
  EXPECT_EQ(parse_scalar("[1, 8]"), Json::array({1, 8}));
  EXPECT_EQ(parse_scalar("[]"), Json::array());
  EXPECT_EQ(parse_scalar("nan"), Json("nan"));  // not a number hippo accepts
}

TEST(Options, UndeclaredGetterThrows) {
  auto o = resolve_options(schema(), nullptr, "x");
  EXPECT_THROW(o->get_int("nope"), StatusError);
}

}  // namespace
}  // namespace hippo
