// The CUDA short-filter convolution (fftconv_short: direct summation for L_k <= 64, no gates) against the float64
// reference: forward for every dtype, lengths that break tiling assumptions (tiles of 1024 steps) and filter
// lengths on both sides of the compiled widths (16, 32, 64); gradients of u, k and D against autograd through the
// reference; bitwise-repeatable filter gradients; unwritten outputs; odd alignment; which path fftconv() takes in
// each HIPPO_FFTCONV_DIRECT mode, and the error for an unsupported case. Every test skips, with the reason, when the
// build has no CUDA kernels or no CUDA device is present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "kernels/fftconv.h"
#include "tests/kernels/cuda_required.h"
#include "tests/kernels/fftconv_inputs.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::all_finite;
using testing::rel_error;
using torch::Tensor;

struct Case {
  int64_t B, H, L, Lk;
  torch::ScalarType dtype;
};

std::string case_name(const Case& c) {
  std::ostringstream os;
  os << "B=" << c.B << " H=" << c.H << " L=" << c.L << " Lk=" << c.Lk << " " << c.dtype;
  return os.str();
}

// u rounded to the case's dtype, k (H, L_k) and D (H) float32, drawn on the GPU from `seed`.
testing::FftConvInputs draw(const Case& c, uint64_t seed) {
  torch::manual_seed(seed);
  const auto f = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat);
  testing::FftConvInputs in;
  in.u = torch::randn({c.B, c.H, c.L}, f).to(c.dtype);
  in.k = torch::randn({c.H, c.Lk}, f) / std::sqrt(static_cast<double>(c.Lk));
  in.D = torch::randn({c.H}, f);
  return in;
}

using testing::DirectModeGuard;

class FftConvShortCuda : public ::testing::TestWithParam<int64_t> {};

TEST_P(FftConvShortCuda, ForwardMatchesFloat64Reference) {
  HIPPO_REQUIRE_CUDA();
  const int64_t L = GetParam();
  const torch::ScalarType dtypes[] = {torch::kFloat, torch::kHalf, torch::kBFloat16};
  const int64_t shapes[][2] = {{1, 111}, {3, 768}};
  const int64_t taps[] = {1, 5, 16, 17, 33, 64};
  int index = 0;
  for (const auto dtype : dtypes) {
    for (const auto& s : shapes) {
      for (const int64_t t : taps) {
        const Case c{s[0], s[1], L, std::min(L, t), dtype};
        SCOPED_TRACE(case_name(c));
        const auto in = draw(c, 100 + L * 64 + index++);
        {  // a NaN-filled block of y's size, freed, so that an unwritten output element shows up as NaN
          auto poison = torch::full_like(in.u, std::numeric_limits<float>::quiet_NaN());
        }
        const auto y = fftconv_short(in.u, in.k, in.D);
        ASSERT_EQ(y.scalar_type(), dtype);
        ASSERT_EQ(y.sizes(), in.u.sizes());
        ASSERT_TRUE(all_finite(y)) << "NaN/Inf or unwritten elements";
        const auto y64 = fftconv_ref(in.u.to(torch::kDouble), in.k.to(torch::kDouble), in.D.to(torch::kDouble));
        const double err = rel_error(y, y64), ref_err = rel_error(fftconv_ref(in.u, in.k, in.D), y64);
        if (c.B == 3 && (t == 17 || t == 64))
          std::printf("[short fwd] %-40s err %.3e  plain-path err %.3e\n", case_name(c).c_str(), err, ref_err);
        if (dtype == torch::kFloat) {
          EXPECT_LT(err, 1e-6);  // at most 65 float32 products per output: a few 1e-8 relative
        } else {
          EXPECT_LE(err, 2 * ref_err) << "half precision: at most twice the plain path's error";
        }
      }
    }
  }
}

TEST_P(FftConvShortCuda, GradientsMatchAutogradThroughReference) {
  HIPPO_REQUIRE_CUDA();
  const int64_t L = GetParam();
  const Case cases[] = {{3, 111, L, std::min<int64_t>(L, 64), torch::kFloat},
                        {1, 768, L, std::min<int64_t>(L, 17), torch::kFloat},
                        {3, 111, L, std::min<int64_t>(L, 64), torch::kBFloat16},
                        {2, 768, L, std::min<int64_t>(L, 3), torch::kHalf}};
  const char* names[] = {"du", "dk", "dD"};
  int index = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(case_name(c));
    const auto in = draw(c, 7000 + L + index++);
    const auto w = torch::randn({c.B, c.H, c.L}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kDouble));
    auto grads = [&](const testing::FftConvInputs& x, bool short_path) {
      const auto y = short_path ? fftconv_short(x.u, x.k, x.D) : fftconv_ref(x.u, x.k, x.D);
      return torch::autograd::grad({(y.to(torch::kDouble) * w).sum()}, {x.u, x.k, x.D});
    };
    const auto g = grads(in.as(c.dtype, torch::kFloat, true), true);
    const auto g64 = grads(in.as(torch::kDouble, torch::kDouble, true), false);
    const auto gref = grads(in.as(c.dtype, torch::kFloat, true), false);
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(all_finite(g[i])) << names[i] << " has NaN/Inf";
      ASSERT_EQ(g[i].sizes(), g64[i].sizes()) << names[i];
      const double err = rel_error(g[i], g64[i]), ref_err = rel_error(gref[i], g64[i]);
      std::printf("[short bwd] %-40s %s err %.3e  plain-path err %.3e\n", case_name(c).c_str(), names[i], err,
                  ref_err);
      if (c.dtype == torch::kFloat) {
        // du: 65 products per element; dk, dD: sums of B * L products in a fixed tree (lanes, tiles).
        EXPECT_LT(err, 1e-5) << names[i];
      } else {
        EXPECT_LE(err, 2 * ref_err + 1e-6) << names[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Lengths, FftConvShortCuda,
                         ::testing::Values(1, 2, 31, 1000, 1023, 1024, 1025, 4096, 8192));

TEST(FftConvShortCudaOnce, FilterGradientIsBitwiseRepeatable) {
  HIPPO_REQUIRE_CUDA();
  const auto in = draw({4, 768, 2048, 64, torch::kBFloat16}, 11);
  Tensor first;
  for (int run = 0; run < 3; ++run) {
    const auto x = in.as(torch::kBFloat16, torch::kFloat, true);
    const auto w = torch::ones({4, 768, 2048}, x.u.options());
    const auto g = torch::autograd::grad({(fftconv_short(x.u, x.k, x.D) * w).sum()}, {x.k});
    if (run == 0)
      first = g[0];
    else
      EXPECT_TRUE(torch::equal(first, g[0])) << "run " << run << " differs (no atomics in the reduction)";
  }
}

// Any subset of the gradients: each equals the one computed with all three (the kernels are deterministic).
TEST(FftConvShortCudaOnce, GradientsOfAnySubset) {
  HIPPO_REQUIRE_CUDA();
  const auto in = draw({2, 64, 1500, 64, torch::kBFloat16}, 14);
  const auto w = torch::randn({2, 64, 1500}, in.u.options().dtype(torch::kFloat));
  const auto all = in.as(torch::kBFloat16, torch::kFloat, true);
  const auto g_all = torch::autograd::grad({(fftconv_short(all.u, all.k, all.D).to(torch::kFloat) * w).sum()},
                                           {all.u, all.k, all.D});
  for (int mask = 1; mask < 7; ++mask) {  // which of u, k, D require grad (not all three)
    SCOPED_TRACE("mask " + std::to_string(mask));
    auto x = in.as(torch::kBFloat16, torch::kFloat, false);
    std::vector<Tensor> wrt;
    std::vector<int> which;
    Tensor* leaves[] = {&x.u, &x.k, &x.D};
    for (int i = 0; i < 3; ++i) {
      if (mask & (1 << i)) {
        leaves[i]->requires_grad_(true);
        wrt.push_back(*leaves[i]);
        which.push_back(i);
      }
    }
    const auto g = torch::autograd::grad({(fftconv_short(x.u, x.k, x.D).to(torch::kFloat) * w).sum()}, wrt);
    for (size_t j = 0; j < which.size(); ++j)
      EXPECT_TRUE(torch::equal(g[j], g_all[which[j]])) << "gradient " << which[j];
  }
}

TEST(FftConvShortCudaOnce, OddAlignmentAndNonContiguousU) {
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(12);
  const auto f = torch::TensorOptions().device(torch::kCUDA);
  // A contiguous view one element off a pair boundary (the unpaired load and store path) and odd L.
  auto flat = torch::randn({1 + 3 * 8 * 1001}, f).to(torch::kBFloat16);
  auto odd = flat.narrow(0, 1, 3 * 8 * 1001).view({3, 8, 1001});
  auto k = torch::randn({8, 64}, f) / 8, D = torch::randn({8}, f);
  auto ref64 = [&](const Tensor& u) {
    return fftconv_ref(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble));
  };
  EXPECT_LE(rel_error(fftconv_short(odd, k, D), ref64(odd)), 2 * rel_error(fftconv_ref(odd, k, D), ref64(odd)));
  // Even L from a pointer one element off a pair boundary: the pairs would be unaligned, so the unpaired path.
  auto even = flat.narrow(0, 1, 3 * 8 * 1000).view({3, 8, 1000});
  EXPECT_LE(rel_error(fftconv_short(even, k, D), ref64(even)), 2 * rel_error(fftconv_ref(even, k, D), ref64(even)));
  // A transposed view (what a layer could pass): fftconv_short makes it contiguous.
  auto t = torch::randn({2, 1000, 8}, f).transpose(1, 2);
  EXPECT_LT(rel_error(fftconv_short(t, k, D), ref64(t)), 1e-6);
}

TEST(FftConvShortCudaOnce, DispatchAndUnsupportedCases) {
  HIPPO_REQUIRE_CUDA();
  DirectModeGuard guard;
  torch::manual_seed(13);
  const auto f = torch::TensorOptions().device(torch::kCUDA);
  auto u = torch::randn({2, 16, 3000}, f), D = torch::randn({16}, f);
  auto k = torch::randn({16, 64}, f), k_long = torch::randn({16, 65}, f);
  auto gate = torch::randn_like(u);
  FftConvOptions gated;
  gated.v = gate;
  EXPECT_TRUE(fftconv_short_supported(u, k, D));
  EXPECT_FALSE(fftconv_short_supported(u, k_long, D)) << "65 taps";
  EXPECT_FALSE(fftconv_short_supported(u, k, D, gated)) << "a gate";
  EXPECT_FALSE(fftconv_short_supported(u.cpu(), k.cpu(), D.cpu())) << "CPU tensors";
  EXPECT_FALSE(fftconv_short_supported(u.narrow(2, 0, 63), k, D)) << "L_k > L";
  EXPECT_FALSE(fftconv_short_supported(u.to(torch::kDouble), k, D)) << "float64 u";
  try {
    fftconv_short(u, k_long, D);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    EXPECT_NE(msg.find("fftconv_short: unsupported case for the CUDA kernel: u [2, 16, 3000]"), std::string::npos)
        << msg;
  }
  // Deterministic paths: equal results mean the same path ran.
  set_direct_dispatch(FftConvDirectDispatch::kAuto);
  EXPECT_TRUE(torch::equal(fftconv(u, k, D), fftconv_short(u, k, D))) << "kAuto takes the CUDA kernel";
  EXPECT_EQ(internal::fftconv_path_past_blockfft(u, k, D, {}), internal::FftConvPath::kShort);
  EXPECT_TRUE(torch::equal(fftconv(u, k, D, gated), fftconv_fused(u, k, D, gated))) << "gated: the FFT kernel";
  EXPECT_TRUE(torch::equal(fftconv(u, k_long, D), fftconv_fused(u, k_long, D)));
  {
    FftConvReferenceScope reference;
    EXPECT_TRUE(torch::equal(fftconv(u, k, D), fftconv_ref(u, k, D)));
  }
  set_direct_dispatch(FftConvDirectDispatch::kCpu);
  EXPECT_TRUE(torch::equal(fftconv(u, k, D), fftconv_short(u, k, D))) << "kCpu: the CUDA kernel on a GPU";
  set_direct_dispatch(FftConvDirectDispatch::kOff);
  EXPECT_TRUE(torch::equal(fftconv(u, k, D), fftconv_fused(u, k, D))) << "kOff: the FFT kernel";
  set_direct_dispatch(FftConvDirectDispatch::kOn);
  EXPECT_TRUE(torch::equal(fftconv(u, k, D), fftconv_direct(u, k, D))) << "kOn: ATen's conv1d";
}

}  // namespace
}  // namespace hippo
