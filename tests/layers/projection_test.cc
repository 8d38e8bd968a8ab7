// layers/projection.h: the batched-GEMM projections between (B, L, D) and (B, D, L) against torch::linear plus a
// transpose, values and gradients of x, W and bias, in float32, float64 and under bf16 autocast, on the CPU (through
// internal::linear_rows_direct) and on a GPU (the public functions; skipped with the reason without one).
#include "layers/projection.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "kernels/bias.h"
#include "layers/autocast.h"
#include "tests/kernels/cuda_required.h"
#include "tests/testing.h"

namespace hippo {
namespace {

using torch::Tensor;

struct Grads {
  Tensor y, dx, dW, db;
};

// y and the gradients of (y * w).sum() for x, W, bias (bias undefined: none), by f(x, W, bias).
template <typename F>
Grads run(F f, const Tensor& x0, const Tensor& W0, const Tensor& b0, const Tensor& w) {
  auto x = x0.detach().clone().requires_grad_(true), W = W0.detach().clone().requires_grad_(true);
  Tensor b = b0.defined() ? b0.detach().clone().requires_grad_(true) : Tensor();
  Grads g;
  g.y = f(x, W, b);
  std::vector<Tensor> wrt = {x, W};
  if (b.defined()) wrt.push_back(b);
  auto d = torch::autograd::grad({(g.y.to(torch::kDouble) * w).sum()}, wrt);
  g.dx = d[0], g.dW = d[1];
  if (b.defined()) g.db = d[2];
  return g;
}

Tensor reference(const Tensor& x, const Tensor& W, const Tensor& b, bool to_rows) {
  if (to_rows) return torch::linear(x, W, b).transpose(1, 2).contiguous();
  return torch::linear(x.transpose(1, 2), W, b);
}

double rel(const Tensor& a, const Tensor& b) {
  return ((a.to(torch::kDouble) - b.to(torch::kDouble)).norm() / b.to(torch::kDouble).norm().clamp_min(1e-300))
      .item<double>();
}

// Both directions, with and without a bias, x of (B, L, in) or (B, in, L): the batched GEMMs agree with linear plus
// transpose to float rounding, and so do the gradients (each in its own input's layout and dtype).
void check_against_linear(torch::Device device, torch::ScalarType dtype, double tol, bool autocast) {
  torch::manual_seed(7);
  const auto o = torch::TensorOptions().device(device).dtype(dtype);
  const int64_t B = 3, L = 37, in = 24, out = 40;
  for (const bool to_rows : {true, false}) {
    for (const bool with_bias : {true, false}) {
      SCOPED_TRACE(std::string(to_rows ? "to_rows" : "from_rows") + (with_bias ? " bias" : " no bias"));
      const auto x = to_rows ? torch::randn({B, L, in}, o) : torch::randn({B, in, L}, o);
      const auto W = torch::randn({out, in}, o) / 5.0, b = with_bias ? torch::randn({out}, o) : Tensor();
      const auto w = torch::randn(to_rows ? std::vector<int64_t>{B, out, L} : std::vector<int64_t>{B, L, out},
                                  torch::TensorOptions().device(device).dtype(torch::kDouble));
      auto direct = [&](const Tensor& xx, const Tensor& WW, const Tensor& bb) {
        if (!autocast) return internal::linear_rows_direct(xx, WW, bb, to_rows);
        AutocastScope scope(device.type(), torch::kBFloat16);
        return internal::linear_rows_direct(xx, WW, bb, to_rows);
      };
      auto plain = [&](const Tensor& xx, const Tensor& WW, const Tensor& bb) {
        if (!autocast) return reference(xx, WW, bb, to_rows);
        AutocastScope scope(device.type(), torch::kBFloat16);
        return reference(xx, WW, bb, to_rows);
      };
      const auto got = run(direct, x, W, b, w), want = run(plain, x, W, b, w);
      ASSERT_EQ(got.y.sizes(), want.y.sizes());
      EXPECT_TRUE(got.y.is_contiguous());
      EXPECT_EQ(got.y.scalar_type(), want.y.scalar_type());
      EXPECT_LT(rel(got.y, want.y), tol);
      EXPECT_EQ(got.dx.scalar_type(), x.scalar_type());
      EXPECT_EQ(got.dW.scalar_type(), W.scalar_type());
      EXPECT_LT(rel(got.dx, want.dx), tol);
      EXPECT_LT(rel(got.dW, want.dW), tol);
      if (with_bias) EXPECT_LT(rel(got.db, want.db), tol);
    }
  }
}

TEST(Projection, BatchedGemmsMatchLinearAndTransposeOnTheCpu) {
  check_against_linear(torch::kCPU, torch::kFloat, 1e-6, false);
  check_against_linear(torch::kCPU, torch::kDouble, 1e-14, false);
  // bf16 operands, float32 accumulation: a few bf16 roundings apart (the per-batch weight gradients are rounded
  // before their float32 sum; linear's one GEMM rounds once).
  check_against_linear(torch::kCPU, torch::kFloat, 2e-2, true);
}

TEST(Projection, PublicFunctionsAreLinearPlusTransposeOnTheCpu) {
  torch::manual_seed(8);
  torch::nn::Linear l(6, 10);
  const auto x = torch::randn({2, 9, 6});
  EXPECT_TRUE(torch::equal(linear_to_rows(l, x), torch::linear(x, l->weight, l->bias).transpose(1, 2).contiguous()));
  const auto y = torch::randn({2, 6, 9});
  EXPECT_TRUE(torch::equal(linear_from_rows(l, y), torch::linear(y.transpose(1, 2), l->weight, l->bias)));
}

TEST(Projection, BadShapesAreRefusedNamingThem) {
  torch::nn::Linear l(6, 10);
  auto expect_error = [](auto f, const std::string& what) {
    try {
      f();
      ADD_FAILURE() << "no error, expected " << what;
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error([&] { linear_to_rows(l, torch::randn({2, 9, 5})); },
               "linear_to_rows: x must be (B, L, in) with in = 6, got [2, 9, 5]");
  expect_error([&] { linear_from_rows(l, torch::randn({2, 9, 6})); },
               "linear_from_rows: y must be (B, in, L) with in = 6, got [2, 9, 6]");
  expect_error([&] { linear_to_rows(l, torch::randn({9, 6})); }, "linear_to_rows: x must be (B, L, in)");
  expect_error([&] { internal::linear_rows_direct(torch::randn({2, 9, 6}), torch::randn({6}), Tensor(), true); },
               "linear_to_rows: weight must be (out, in)");
}

// Only the gradients asked for are computed (needs_input_grad), and a graph of the backward is refused, not left
// silently incomplete.
TEST(Projection, GradientsOfASubsetAndDoubleBackwardRefused) {
  torch::manual_seed(11);
  const auto x = torch::randn({2, 7, 6}, torch::requires_grad()), W = torch::randn({5, 6}, torch::requires_grad()),
             b = torch::randn({5}, torch::requires_grad());
  const auto y = internal::linear_rows_direct(x, W, b, true);
  const auto w = torch::randn(y.sizes());
  const auto dx = torch::autograd::grad({(y * w).sum()}, {x}, {}, /*retain_graph=*/true);
  EXPECT_TRUE(torch::allclose(dx[0], torch::linear(w.transpose(1, 2), W.t().detach()), 1e-5, 1e-5));
  try {
    torch::autograd::grad({(y * w).sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true);
    ADD_FAILURE() << "create_graph accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not differentiable (create_graph / double backward)"), std::string::npos)
        << e.what();
  }
}

// Several projections of one x as one node (linear_to_rows_many, H3's q, k and v): values and every gradient
// against separate torch::linear references, where the gradient of x is the sum over the projections (added inside
// the GEMMs here, by autograd there); one projection without a bias, the first or the second output left out of the
// loss (its weight's and bias's gradients undefined; without the first, dx starts from a later projection), and only
// x's gradient asked for while the weights and biases require theirs.
void check_several(torch::Device device, torch::ScalarType dtype, double tol, bool autocast) {
  torch::manual_seed(13);
  const auto o = torch::TensorOptions().device(device).dtype(dtype);
  const int64_t B = 3, L = 29, in = 16;
  const auto x0 = torch::randn({B, L, in}, o);
  const std::vector<int64_t> outs = {24, 16, 8};
  std::vector<Tensor> W0, b0;
  for (size_t i = 0; i < outs.size(); ++i) {
    W0.push_back(torch::randn({outs[i], in}, o) / 4.0);
    b0.push_back(i == 1 ? Tensor() : torch::randn({outs[i]}, o));
  }
  for (const int left_out : {-1, 0, 1}) {
    SCOPED_TRACE("output left out of the loss: " + std::to_string(left_out));
    auto leaf = [](const Tensor& t) { return t.defined() ? t.detach().clone().requires_grad_(true) : Tensor(); };
    auto run_with = [&](bool several) {
      auto x = leaf(x0);
      std::vector<Tensor> W, b, wrt = {x};
      for (size_t i = 0; i < outs.size(); ++i) {
        W.push_back(leaf(W0[i]));
        b.push_back(leaf(b0[i]));
        wrt.push_back(W.back());
        if (b.back().defined()) wrt.push_back(b.back());
      }
      std::vector<Tensor> ys;
      {
        std::optional<AutocastScope> scope;
        if (autocast) scope.emplace(device.type(), torch::kBFloat16);
        if (several) {
          ys = internal::linear_to_rows_direct(x, W, b);
        } else {
          for (size_t i = 0; i < outs.size(); ++i) ys.push_back(reference(x, W[i], b[i], true));
        }
      }
      Tensor loss = torch::zeros({}, o.dtype(torch::kDouble));
      for (size_t i = 0; i < ys.size(); ++i) {
        if (static_cast<int>(i) == left_out) continue;
        const auto w = torch::randn(ys[i].sizes(), torch::TensorOptions().device(device).dtype(torch::kDouble)
                                                        .requires_grad(false));
        loss = loss + (ys[i].to(torch::kDouble) * w).sum();
      }
      auto grads = torch::autograd::grad({loss}, wrt, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                         /*allow_unused=*/true);
      grads.insert(grads.begin(), ys.begin(), ys.end());
      return grads;
    };
    torch::manual_seed(14);
    const auto got = run_with(true);
    torch::manual_seed(14);
    const auto want = run_with(false);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      SCOPED_TRACE("tensor " + std::to_string(i) + " (3 outputs, then x, W0, b0, W1, W2, b2)");
      ASSERT_EQ(got[i].defined(), want[i].defined());
      if (!got[i].defined()) continue;
      EXPECT_EQ(got[i].scalar_type(), want[i].scalar_type());
      EXPECT_LT(rel(got[i], want[i]), tol);
    }
    // got: y0, y1, y2, then x, W0, b0, W1, W2, b2.
    if (left_out == 0) EXPECT_FALSE(got[4].defined() || got[5].defined()) << "W0's and b0's gradients, y0 unused";
    if (left_out == 1) EXPECT_FALSE(got[6].defined()) << "W1's gradient, y1 unused";
  }
  // Only x's gradient asked for, the weights and biases requiring theirs (no autocast here: float32 or float64).
  auto x = x0.detach().clone().requires_grad_(true);
  std::vector<Tensor> W, b;
  for (size_t i = 0; i < outs.size(); ++i) {
    W.push_back(W0[i].detach().clone().requires_grad_(true));
    b.push_back(b0[i].defined() ? b0[i].detach().clone().requires_grad_(true) : Tensor());
  }
  const auto ys = internal::linear_to_rows_direct(x, W, b);
  const auto dx = torch::autograd::grad({ys[0].sum() + ys[2].sum()}, {x})[0];
  EXPECT_LT(rel(dx, (W0[0].sum(0) + W0[2].sum(0)).expand({B, L, in})), dtype == torch::kDouble ? tol : 1e-5);
}

TEST(Projection, SeveralProjectionsOfOneInputMatchSeparateLinears) {
  check_several(torch::kCPU, torch::kFloat, 1e-5, false);
  check_several(torch::kCPU, torch::kDouble, 1e-12, false);
  check_several(torch::kCPU, torch::kFloat, 2e-2, true);
  try {
    internal::linear_to_rows_direct(torch::randn({2, 3, 4}), {torch::randn({5, 4})}, {});
    ADD_FAILURE() << "a missing bias entry accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("one bias entry (possibly undefined) per weight"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(linear_to_rows_many({}, torch::randn({2, 3, 4})), c10::Error);
  // The public function on the CPU: separate projections, the same values.
  torch::nn::Linear a(4, 6), b(4, 2);
  const auto xx = torch::randn({2, 5, 4});
  const auto ys = linear_to_rows_many({a, b}, xx);
  ASSERT_EQ(ys.size(), 2u);
  EXPECT_TRUE(torch::equal(ys[0], linear_to_rows(a, xx)));
  EXPECT_TRUE(torch::equal(ys[1], linear_to_rows(b, xx)));
}

TEST(Projection, EnvironmentSwitchAcceptsDirectAndTransposeOnly) {
  EXPECT_TRUE(internal::parse_projection_env(""));
  EXPECT_TRUE(internal::parse_projection_env("direct"));
  EXPECT_FALSE(internal::parse_projection_env("transpose"));
  for (const char* bad : {"Direct", "bmm", "direct\n"}) {
    const auto m = testing::c10_error_of([&] { internal::parse_projection_env(bad); });
    EXPECT_NE(m.find("HIPPO_PROJECTION: unknown value"), std::string::npos) << m;
    EXPECT_NE(m.find("accepted: direct, transpose"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

// On a GPU: float32 (TF32 off by default in LibTorch's matmuls), and bf16 autocast as the layers train; then the
// public functions, which take the batched GEMMs there unless HIPPO_PROJECTION=transpose.
TEST(ProjectionCuda, BatchedGemmsMatchLinearAndTranspose) {
  HIPPO_REQUIRE_CUDA();
  check_against_linear(torch::kCUDA, torch::kFloat, 1e-5, false);
  check_against_linear(torch::kCUDA, torch::kFloat, 2e-2, true);
  check_several(torch::kCUDA, torch::kFloat, 1e-5, false);
  check_several(torch::kCUDA, torch::kFloat, 2e-2, true);
  // The public several-projection function takes one node on a GPU (the three outputs share their grad_fn), with
  // the values and the gradient of x of separate projections.
  {
    torch::manual_seed(8);
    torch::nn::Linear la(32, 48), lb(32, 32), lc(32, 16);
    la->to(torch::kCUDA), lb->to(torch::kCUDA), lc->to(torch::kCUDA);
    const auto x = torch::randn({2, 40, 32}, torch::kCUDA).requires_grad_(true);
    const auto ys = linear_to_rows_many({la, lb, lc}, x);
    ASSERT_EQ(ys.size(), 3u);
    ASSERT_NE(ys[0].grad_fn(), nullptr);
    EXPECT_EQ(ys[0].grad_fn(), ys[1].grad_fn());
    EXPECT_EQ(ys[0].grad_fn(), ys[2].grad_fn());
    const std::vector<Tensor> sep = {linear_to_rows(la, x), linear_to_rows(lb, x), linear_to_rows(lc, x)};
    Tensor l_many = torch::zeros({}, torch::kCUDA), l_sep = torch::zeros({}, torch::kCUDA);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_LT(rel(ys[i], sep[i]), 1e-6) << "output " << i;
      const auto w = torch::randn(ys[i].sizes(), torch::kCUDA);
      l_many = l_many + (ys[i] * w).sum();
      l_sep = l_sep + (sep[i] * w).sum();
    }
    const auto dx_many = torch::autograd::grad({l_many}, {x})[0], dx_sep = torch::autograd::grad({l_sep}, {x})[0];
    EXPECT_LT(rel(dx_many, dx_sep), 1e-5);
  }
  torch::manual_seed(9);
  torch::nn::Linear l(64, 96);
  l->to(torch::kCUDA);
  const auto x = torch::randn({4, 128, 64}, torch::kCUDA);
  const auto want = torch::linear(x, l->weight, l->bias).transpose(1, 2);
  EXPECT_LT(rel(linear_to_rows(l, x), want), 1e-5);
  const auto y = torch::randn({4, 64, 128}, torch::kCUDA);
  EXPECT_LT(rel(linear_from_rows(l, y), torch::linear(y.transpose(1, 2), l->weight, l->bias)), 1e-5);
}

// The bias kernels behind the GPU path (kernels/bias.h): the broadcast equals ATen's cast-and-expand bit for bit in both
// layouts (16-byte chunks and, for rows not a multiple of 16 bytes, element by element), and the row sums match a
// float64 sum and repeat bit for bit. Undefined results on the CPU (the ATen fallback's signal).
TEST(ProjectionCuda, BiasKernelsMatchAten) {
  EXPECT_FALSE(internal::bias_broadcast(torch::randn({5}), {2, 5, 7}, true, torch::kFloat).defined());
  EXPECT_FALSE(internal::bias_row_sums(torch::randn({2, 5, 7})).defined());
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(10);
  for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& s : {std::vector<int64_t>{2, 5, 7}, {4, 768, 2048}, {3, 40, 64}, {1, 1, 1}}) {
      SCOPED_TRACE(::testing::Message() << dtype << " " << s[0] << "x" << s[1] << "x" << s[2]);
      for (const bool per_row : {true, false}) {
        const int64_t C = per_row ? s[1] : s[2];
        const auto bias = torch::randn({C}, torch::kCUDA);
        const auto got = internal::bias_broadcast(bias, s, per_row, dtype);
        ASSERT_TRUE(got.defined());
        const auto b = bias.to(dtype);
        const auto want = per_row ? b.view({1, C, 1}).expand(s) : b.view({1, 1, C}).expand(s);
        EXPECT_TRUE(torch::equal(got, want)) << (per_row ? "per row" : "per column");
      }
      const auto g = torch::randn(s, torch::kCUDA).to(dtype);
      const auto sums = internal::bias_row_sums(g);
      ASSERT_TRUE(sums.defined());
      const auto want = g.to(torch::kDouble).sum(std::vector<int64_t>{0, 2});
      const double scale = g.to(torch::kDouble).abs().sum(std::vector<int64_t>{0, 2}).max().item<double>();
      EXPECT_LE((sums.to(torch::kDouble) - want).abs().max().item<double>(), 1e-6 * std::max(1.0, scale));
      EXPECT_TRUE(torch::equal(sums, internal::bias_row_sums(g)));
      // A strided gradient (a transposed view) is made contiguous first.
      const auto gt = torch::randn({s[0], s[2], s[1]}, torch::kCUDA).to(dtype).transpose(1, 2);
      EXPECT_LE((internal::bias_row_sums(gt).to(torch::kDouble) - gt.to(torch::kDouble).sum(std::vector<int64_t>{0, 2}))
                    .abs().max().item<double>(),
                1e-6 * std::max(1.0, gt.to(torch::kDouble).abs().sum(std::vector<int64_t>{0, 2}).max().item<double>()));
    }
  }
}

// A random CUDA tensor of `sizes` and dtype, contiguous, starting one element past an aligned allocation when
// `misaligned` (so that 16-byte loads do not apply).
Tensor random_view(const std::vector<int64_t>& sizes, torch::ScalarType dtype, bool misaligned) {
  int64_t n = 1;
  for (const auto d : sizes) n *= d;
  const auto flat = torch::randn({n + 1}, torch::kCUDA).to(dtype);
  return (misaligned ? flat.narrow(0, 1, n) : flat.narrow(0, 0, n)).view(sizes);
}

// The column sums (torch::linear's bias gradient in the (B, L, C) layout, kernels/bias.h) against a float64 sum, and
// repeatable bit for bit: row counts below, at and past one slab of 64 and past 256 slabs (uneven slabs), channel
// counts a multiple of 16 bytes (vector loads) and not (element loads), and a misaligned start (element loads).
TEST(ProjectionCuda, ColumnSumsMatchFloat64AndRepeat) {
  EXPECT_FALSE(internal::bias_col_sums(torch::randn({2, 5, 7})).defined());
  EXPECT_THROW(internal::bias_col_sums(torch::randn({5, 7})), c10::Error);
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(11);
  for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& s : {std::vector<int64_t>{4, 2048, 768}, {1, 1, 1}, {2, 32, 8}, {1, 65, 7}, {3, 7000, 40},
                          {1, 20000, 300}, {0, 5, 16}}) {
      SCOPED_TRACE(::testing::Message() << dtype << " " << s[0] << "x" << s[1] << "x" << s[2]);
      for (const bool misaligned : {false, true}) {
        const auto g = random_view(s, dtype, misaligned);
        const auto sums = internal::bias_col_sums(g);
        ASSERT_TRUE(sums.defined());
        ASSERT_EQ(sums.sizes(), torch::IntArrayRef({s[2]}));
        EXPECT_EQ(sums.scalar_type(), torch::kFloat);
        const auto g64 = g.to(torch::kDouble);
        const auto want = g64.sum(std::vector<int64_t>{0, 1});
        const double scale = s[0] * s[1] == 0 ? 1.0 : g64.abs().sum(std::vector<int64_t>{0, 1}).max().item<double>();
        EXPECT_LE((sums.to(torch::kDouble) - want).abs().max().item<double>(), 1e-6 * std::max(1.0, scale))
            << (misaligned ? "misaligned" : "aligned");
        EXPECT_TRUE(torch::equal(sums, internal::bias_col_sums(g)));
      }
    }
  }
}

// The per-batch products' sum behind the weight gradients (kernels/bias.h) against a float64 sum, bit-repeatable:
// sizes a multiple of 16 bytes (vector loads) and not, a misaligned start, batch 0 (zeros) and 1.
TEST(ProjectionCuda, BatchSumsMatchFloat64AndRepeat) {
  EXPECT_FALSE(internal::batch_sums(torch::randn({2, 5, 7})).defined());
  EXPECT_THROW(internal::batch_sums(torch::randn({5, 7})), c10::Error);
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(12);
  for (auto dtype : {torch::kFloat, torch::kBFloat16, torch::kHalf}) {
    for (const auto& s : {std::vector<int64_t>{4, 768, 768}, {1, 1, 1}, {3, 5, 7}, {2, 8, 16}, {0, 4, 8}, {7, 40, 24}}) {
      SCOPED_TRACE(::testing::Message() << dtype << " " << s[0] << "x" << s[1] << "x" << s[2]);
      for (const bool misaligned : {false, true}) {
        const auto t = random_view(s, dtype, misaligned);
        const auto sums = internal::batch_sums(t);
        ASSERT_TRUE(sums.defined());
        ASSERT_EQ(sums.sizes(), torch::IntArrayRef({s[1], s[2]}));
        EXPECT_EQ(sums.scalar_type(), torch::kFloat);
        const auto t64 = t.to(torch::kDouble);
        const auto err = (sums.to(torch::kDouble) - t64.sum(0)).abs();
        EXPECT_TRUE((err <= 1e-6 * t64.abs().sum(0) + 1e-30).all().item<bool>())
            << (misaligned ? "misaligned" : "aligned") << ": max error " << err.max().item<double>();
        EXPECT_TRUE(torch::equal(sums, internal::batch_sums(t)));
      }
    }
  }
}

}  // namespace
}  // namespace hippo
