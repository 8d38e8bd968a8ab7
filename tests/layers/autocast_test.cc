// The autocast scopes, on the CPU's bf16 autocast (the same dispatch mechanism as CUDA's): a scope turns matrix
// products to bfloat16 and restores the previous state at exit; under it the SSM layers still compute their
// kernels, discretisation, recurrence and states in float32, bit for bit as without autocast.
#include "layers/autocast.h"

#include <gtest/gtest.h>

#include "layers/ssm.h"
#include "tests/testing.h"

namespace hippo {
namespace {

TEST(Autocast, ScopeTurnsMatrixProductsToBf16AndRestores) {
  auto a = torch::randn({4, 4}), b = torch::randn({4, 4});
  ASSERT_FALSE(autocast_enabled(torch::kCPU));
  {
    AutocastScope scope(torch::kCPU, torch::kBFloat16);
    EXPECT_TRUE(autocast_enabled(torch::kCPU));
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);
    {
      NoAutocastScope fp32;
      EXPECT_FALSE(autocast_enabled(torch::kCPU));
      EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
    }
    EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kBFloat16);  // the inner scope restored autocast
  }
  EXPECT_FALSE(autocast_enabled(torch::kCPU));
  EXPECT_EQ(torch::mm(a, b).scalar_type(), torch::kFloat);
  EXPECT_THROW(AutocastScope(torch::kCPU, torch::kFloat), c10::Error);
}

// Everything the diagonal and shift SSMs compute, under bf16 autocast, against the same without it: float32 and
// identical. (Without the SSM's NoAutocastScope the kernel's and state's batched products would run in bf16.)
TEST(Autocast, SsmStaysFloat32UnderBf16Autocast) {
  torch::manual_seed(3);
  for (const char* disc : {"bilinear", "zoh"}) {
    DiagSSM ssm(6, 8, disc, 1e-3, 1e-1);
    ShiftSSM shift(6, 4);
    auto u = torch::randn({2, 6, 37});
    auto u_t = torch::randn({2, 6});
    auto run = [&] {
      auto state = ssm->initial_state(2), shift_state = shift->initial_state(2);
      auto y_t = ssm->step(u_t, state);
      auto z_t = shift->step(u_t, shift_state);
      return std::vector<torch::Tensor>{ssm->kernel(37), ssm->forward(u), ssm->state_after(u), state, y_t,
                                        shift->kernel(), shift->forward(u), shift->state_after(u), shift_state, z_t};
    };
    const auto plain = run();
    std::vector<torch::Tensor> mixed;
    {
      AutocastScope scope(torch::kCPU, torch::kBFloat16);
      mixed = run();
    }
    for (size_t i = 0; i < plain.size(); ++i) {
      EXPECT_EQ(mixed[i].scalar_type(), torch::kFloat) << disc << " output " << i;
      EXPECT_TRUE(torch::equal(mixed[i], plain[i])) << disc << " output " << i << " differs under autocast";
    }
  }
}

}  // namespace
}  // namespace hippo
