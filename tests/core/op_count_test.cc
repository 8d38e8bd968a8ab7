// OpCounter: counts the operator calls made while it lives, top level apart from nested ones, backward nodes
// too.
#include "core/op_count.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace hippo {
namespace {

TEST(OpCounter, CountsTopLevelCallsByNameAndBackwardNodes) {
  auto a = torch::randn({3, 4}, torch::requires_grad()), b = torch::randn({3, 4});
  std::map<std::string, int64_t> fwd, bwd;
  {
    OpCounter c;
    auto y = (a + b) * b;
    y = y + b;
    fwd = c.top_level();
    EXPECT_GE(c.all_total(), c.top_level_total());
  }
  EXPECT_EQ(fwd["aten::add"], 2);
  EXPECT_EQ(fwd["aten::mul"], 1);
  auto y = ((a + b) * b).sum();
  {
    OpCounter c;
    y.backward();
    bwd = c.top_level();
  }
  int64_t backward_nodes = 0;
  for (const auto& [name, n] : bwd)
    if (name.find("Backward") != std::string::npos) backward_nodes += n;
  EXPECT_GE(backward_nodes, 3);  // SumBackward0, MulBackward0, AddBackward0
  // Nothing is counted once the counter is gone, and a second counter may then start.
  OpCounter again;
  EXPECT_EQ(again.top_level_total(), 0);
  EXPECT_THROW(OpCounter(), c10::Error);
}

}  // namespace
}  // namespace hippo
