// transpose_contiguous (kernels/transpose.h): on the CPU against ATen's transpose + contiguous (values, the no-copy
// case, gradients, errors); on a GPU the tiled kernel bit for bit against ATen's copy for every element size, odd
// tile remainders and both grid-stride loops, and its gradient. GPU tests skip, with the reason, without a CUDA
// device or without the CUDA kernels.
#include <gtest/gtest.h>

#include <string>

#include "kernels/transpose.h"
#include "tests/kernels/cuda_required.h"

namespace hippo {
namespace {

TEST(Transpose, MatchesAtenOnTheCpuForAnyStrides) {
  torch::manual_seed(0);
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf}) {
    for (auto shape : {std::vector<int64_t>{1, 1, 1}, {2, 3, 5}, {3, 31, 33}}) {
      auto x = torch::randn(shape).to(dtype);
      auto y = transpose_contiguous(x);
      EXPECT_TRUE(y.is_contiguous());
      EXPECT_EQ(y.sizes(), (std::vector<int64_t>{shape[0], shape[2], shape[1]}));
      EXPECT_TRUE(torch::equal(y, x.transpose(1, 2))) << dtype << " " << x.sizes();
    }
    // A strided slice (not contiguous, not a transposed view) goes through the copy too.
    auto big = torch::randn({2, 8, 10}).to(dtype);
    auto slice = big.slice(2, 0, 10, 2);
    EXPECT_TRUE(torch::equal(transpose_contiguous(slice), slice.transpose(1, 2)));
  }
}

TEST(Transpose, ATransposedViewIsReturnedWithoutACopy) {
  auto base = torch::randn({2, 4, 3});
  auto view = base.transpose(1, 2);  // (2, 3, 4), its own transpose is contiguous
  auto y = transpose_contiguous(view);
  EXPECT_EQ(y.data_ptr(), base.data_ptr());
  EXPECT_TRUE(torch::equal(y, base));
}

TEST(Transpose, GradientIsTheTransposedIncomingGradient) {
  auto x = torch::randn({2, 5, 7}, torch::requires_grad());
  auto g = torch::randn({2, 7, 5});
  transpose_contiguous(x).backward(g);
  EXPECT_TRUE(torch::equal(x.grad(), g.transpose(1, 2)));
}

TEST(Transpose, RejectsTensorsThatAreNot3D) {
  for (auto shape : {std::vector<int64_t>{4, 4}, {2, 2, 2, 2}}) {
    try {
      transpose_contiguous(torch::zeros(shape));
      ADD_FAILURE() << "no error for " << shape.size() << "-D";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("transpose_contiguous: x must be 3-D (B, R, C)"), std::string::npos)
          << e.what();
    }
  }
}

// Every element size (2, 4, 8 bytes), sizes that leave partial 32 x 32 (and 64 x 64) tiles, a batch past the grid's
// 65535 in z (both 2-byte kernels: pairs when R and C are even, single elements otherwise) and a row count past
// 65535 tiles in y (the pairs kernel, and the single-element kernel for 4 and 8 bytes), an H3-sized activation, a
// strided input, and a contiguous 2-byte input that starts 2 bytes off a 4-byte boundary (single elements). Shapes
// with R or C of 1 are returned as views and never reach a kernel.
TEST(TransposeCuda, KernelMatchesAtenBitForBit) {
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(1);
  const std::vector<std::vector<int64_t>> shapes = {
      {1, 1, 1},     {3, 31, 33},     {2, 1000, 768},  {4, 2048, 768}, {70000, 2, 3}, {70000, 2, 4},
      {1, 2100000, 2}, {1, 4200000, 2}, {2, 33, 1},    {1, 1, 100},    {2, 100, 130}, {3, 66, 2}};
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf}) {
    for (const auto& shape : shapes) {
      auto x = torch::randn(shape, torch::device(torch::kCUDA)).to(dtype);
      auto y = transpose_contiguous(x);
      EXPECT_TRUE(y.is_contiguous() && y.is_cuda());
      EXPECT_TRUE(torch::equal(y, x.transpose(1, 2).contiguous())) << dtype << " " << x.sizes();
    }
    auto big = torch::randn({3, 40, 70}, torch::device(torch::kCUDA)).to(dtype);
    auto slice = big.slice(1, 1, 40, 3);
    EXPECT_TRUE(torch::equal(transpose_contiguous(slice), slice.transpose(1, 2).contiguous())) << dtype;
  }
  auto flat = torch::randn({1 + 2 * 64 * 6}, torch::device(torch::kCUDA)).to(torch::kBFloat16);
  auto off = flat.narrow(0, 1, 2 * 64 * 6).view({2, 64, 6});
  ASSERT_TRUE(off.is_contiguous());
  EXPECT_TRUE(torch::equal(transpose_contiguous(off), off.transpose(1, 2).contiguous()));
  // An 8-byte integer tensor takes the kernel as well; a 1-byte one takes ATen's copy.
  auto i64 = torch::randint(0, 1000, {2, 45, 77}, torch::device(torch::kCUDA).dtype(torch::kLong));
  EXPECT_TRUE(torch::equal(transpose_contiguous(i64), i64.transpose(1, 2).contiguous()));
  auto u8 = i64.to(torch::kUInt8);
  EXPECT_TRUE(torch::equal(transpose_contiguous(u8), u8.transpose(1, 2).contiguous()));
}

TEST(TransposeCuda, GradientsFlowThroughTheKernel) {
  HIPPO_REQUIRE_CUDA();
  auto x = torch::randn({3, 100, 65}, torch::device(torch::kCUDA).requires_grad(true));
  auto g = torch::randn({3, 65, 100}, torch::device(torch::kCUDA));
  auto y = transpose_contiguous(x);
  EXPECT_NE(y.grad_fn(), nullptr);
  y.backward(g);
  EXPECT_TRUE(torch::equal(x.grad(), g.transpose(1, 2)));
  // Twice through (the layers' round trip): the identity, gradient included.
  auto x2 = torch::randn({2, 50, 40}, torch::device(torch::kCUDA).requires_grad(true));
  auto back = transpose_contiguous(transpose_contiguous(x2));
  EXPECT_TRUE(torch::equal(back, x2));
  back.sum().backward();
  EXPECT_TRUE(torch::equal(x2.grad(), torch::ones_like(x2)));
}

}  // namespace
}  // namespace hippo
