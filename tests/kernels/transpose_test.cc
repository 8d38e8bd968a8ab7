// transpose_contiguous (kernels/transpose.h): on the CPU against ATen's transpose + contiguous (values, the no-copy
// case, gradients, errors); on a GPU the tiled kernel bit for bit against ATen's copy for every element size, odd
// tile remainders and both grid-stride loops, and its gradient. GPU tests skip, with the reason, without a CUDA
// device or without the CUDA kernels.
#include <gtest/gtest.h>

#include <algorithm>
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
// transpose_add_bias: x + bias transposed, its gradients the transposed incoming gradient and its sum over (b, r).
TEST(Transpose, AddBiasMatchesAtenWithGradientsOnTheCpu) {
  torch::manual_seed(2);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto x = torch::randn({3, 5, 7}, torch::dtype(dtype).requires_grad(true));
    auto b = torch::randn({7}, torch::requires_grad());
    auto y = transpose_add_bias(x, b);
    EXPECT_TRUE(y.is_contiguous());
    EXPECT_EQ(y.scalar_type(), dtype);
    EXPECT_TRUE(torch::allclose(y, (x + b.to(dtype)).transpose(1, 2)));
    auto g = torch::randn({3, 7, 5}, torch::dtype(dtype));
    y.backward(g);
    EXPECT_TRUE(torch::allclose(x.grad(), g.transpose(1, 2)));
    EXPECT_TRUE(torch::allclose(b.grad(), g.sum(std::vector<int64_t>{0, 2}).to(torch::kFloat), 1e-5, 1e-5));
  }
}

TEST(Transpose, AddBiasRejectsBadShapesNamingThem) {
  auto expect_error = [](const torch::Tensor& x, const torch::Tensor& b, const std::string& what) {
    try {
      transpose_add_bias(x, b);
      ADD_FAILURE() << "no error for x " << x.sizes() << " bias " << b.sizes();
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(torch::zeros({4, 4}), torch::zeros({4}), "transpose_add_bias: x must be 3-D (B, R, C) floating");
  expect_error(torch::zeros({2, 3, 4}, torch::kLong), torch::zeros({4}), "x must be 3-D (B, R, C) floating");
  expect_error(torch::zeros({2, 3, 4}), torch::zeros({3}), "transpose_add_bias: bias must be (C) = (4)");
  expect_error(torch::zeros({2, 3, 4}), torch::zeros({1, 4}), "bias must be (C) = (4)");
}

TEST(Transpose, BiasEnvironmentSwitchAcceptsFusedAndAtenOnly) {
  EXPECT_TRUE(internal::parse_transpose_bias_env(""));
  EXPECT_TRUE(internal::parse_transpose_bias_env("fused"));
  EXPECT_FALSE(internal::parse_transpose_bias_env("aten"));
  for (const char* bad : {"Fused", "gemm", "aten\t"}) {
    try {
      internal::parse_transpose_bias_env(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const c10::Error& e) {
      const std::string m = e.what_without_backtrace();
      EXPECT_NE(m.find("HIPPO_TRANSPOSE_BIAS: unknown value"), std::string::npos) << m;
      EXPECT_NE(m.find("accepted: fused, aten"), std::string::npos) << m;
      EXPECT_EQ(m.find('\t'), std::string::npos) << m;
    }
  }
}

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

// The fused bias and its gradient on the GPU against ATen in float64: float32 and both 2-byte types (the pair kernel,
// R and C even; odd sizes take the ATen way), partial tiles, a batch past the grid's 65535 in z, the H3 projection's
// shape, and a 2-byte view off a 4-byte boundary (the unfused way, same results).
TEST(TransposeCuda, AddBiasAndItsGradientMatchAten) {
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(3);
  const auto cuda = torch::device(torch::kCUDA);
  const std::vector<std::vector<int64_t>> shapes = {{1, 2, 2}, {3, 30, 34}, {2, 100, 130}, {4, 2048, 768},
                                                    {3, 31, 33}, {70000, 2, 4}, {2, 64, 6}};
  for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& shape : shapes) {
      SCOPED_TRACE(::testing::Message() << dtype << " " << shape[0] << "x" << shape[1] << "x" << shape[2]);
      auto x = torch::randn(shape, cuda).to(dtype).requires_grad_(true);
      auto b = torch::randn({shape[2]}, cuda).requires_grad_(true);
      auto y = transpose_add_bias(x, b);
      ASSERT_TRUE(y.is_contiguous());
      ASSERT_EQ(y.scalar_type(), dtype);
      // The float32 sum rounded once to dtype: within half a unit (relative spacing 2^-23, 2^-7, 2^-10) of the
      // float64 value, plus float16's subnormal spacing (2^-24) near zero.
      const auto want = (x.detach().to(torch::kDouble) + b.detach().to(torch::kDouble)).transpose(1, 2);
      const double unit = dtype == torch::kFloat ? 1.2e-7 : dtype == torch::kBFloat16 ? 7.9e-3 : 9.8e-4;
      const double tiny = dtype == torch::kHalf ? 6e-8 : 0.0;
      const auto err = (y.detach().to(torch::kDouble) - want).abs() - (0.5 * unit) * want.abs() - tiny;
      EXPECT_LE(err.max().item<double>(), 0.0);
      auto g = torch::randn(y.sizes(), cuda).to(dtype);
      y.backward(g);
      EXPECT_TRUE(torch::equal(x.grad(), g.transpose(1, 2)));
      const auto db = g.to(torch::kDouble).sum(std::vector<int64_t>{0, 2});
      // float32 partial sums of at most 64 terms, then a float32 sum over the partials.
      EXPECT_LE((b.grad().to(torch::kDouble) - db).abs().max().item<double>(),
                1e-5 * std::max(1.0, g.to(torch::kDouble).abs().sum(std::vector<int64_t>{0, 2}).max().item<double>()));
      EXPECT_EQ(b.grad().scalar_type(), torch::kFloat);
    }
  }
  // A bf16 view starting 2 bytes off a 4-byte boundary.
  auto flat = torch::randn({1 + 2 * 64 * 6}, cuda).to(torch::kBFloat16);
  auto off = flat.narrow(0, 1, 2 * 64 * 6).view({2, 64, 6}).detach().requires_grad_(true);
  auto b = torch::randn({6}, cuda).requires_grad_(true);
  auto y = transpose_add_bias(off, b);
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat), (off.detach().to(torch::kFloat) + b.detach()).transpose(1, 2),
                              1e-2, 1e-2));
  y.sum().backward();
  EXPECT_TRUE(torch::allclose(b.grad(), torch::full({6}, 128.0, cuda)));
  // The repeatable sum: the same gradient twice gives the same bits.
  auto x = torch::randn({4, 2048, 768}, cuda).to(torch::kBFloat16).requires_grad_(true);
  auto b1 = torch::randn({768}, cuda).requires_grad_(true), b2 = b1.detach().clone().requires_grad_(true);
  auto g = torch::randn({4, 768, 2048}, cuda).to(torch::kBFloat16);
  transpose_add_bias(x, b1).backward(g);
  transpose_add_bias(x.detach(), b2).backward(g);
  EXPECT_TRUE(torch::equal(b1.grad(), b2.grad()));
}

}  // namespace
}  // namespace hippo
