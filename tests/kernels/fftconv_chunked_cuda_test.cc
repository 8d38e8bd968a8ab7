// The chunked (overlap-save) convolution with the fused CUDA kernel inside, as fftconv() dispatches it for
// long sequences with a short filter: forward at L = 40000, 64K and 1M with L_k = 256 and 4096 (float32 and
// bfloat16, every option) against a float64 single-pass reference, gradients at 64K, and the dispatcher's
// choices. Every test skips, with the reason, when the build has no CUDA kernels or no CUDA device is
// present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "kernels/fftconv.h"
#include "tests/kernels/cuda_required.h"
#include "tests/kernels/fftconv_inputs.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::rel_error;
using torch::Tensor;

enum OptionBits { kV = 1, kQ = 2, kGelu = 4, kMask = 8 };

struct Case {
  int64_t B, H, L, Lk;
  torch::ScalarType dtype;
  int options;
};

std::string case_name(const Case& c) {
  std::ostringstream os;
  os << "B=" << c.B << " H=" << c.H << " L=" << c.L << " Lk=" << c.Lk << " " << c.dtype
     << " options=" << c.options;
  return os.str();
}

struct Inputs : testing::FftConvInputs {
  // Drawn on the GPU from a fixed seed in float32, u, v, q rounded to the case's dtype (never zeros).
  static Inputs draw(const Case& c, uint64_t seed) {
    torch::manual_seed(seed);
    const auto f = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kFloat);
    Inputs in;
    in.u = torch::randn({c.B, c.H, c.L}, f).to(c.dtype);
    in.k = torch::randn({c.H, c.Lk}, f) / std::sqrt(static_cast<double>(c.Lk));
    in.D = torch::randn({c.H}, f);
    if (c.options & kV) in.v = torch::randn({c.B, c.H, c.L}, f).to(c.dtype);
    if (c.options & kQ) in.q = torch::randn({c.B, c.H, c.L}, f).to(c.dtype);
    if (c.options & kMask) in.mask = (torch::rand({c.B, c.H}, f) > 0.25).to(torch::kFloat) / 0.75;
    in.gelu = c.options & kGelu;
    return in;
  }
};

using testing::all_finite;

// ---- forward
// (L, L_k): every length with both filter lengths; B and H kept small enough for a float64 reference at 1M.
class FftConvChunkedCudaForward : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(FftConvChunkedCudaForward, MatchesFloat64Reference) {
  HIPPO_REQUIRE_CUDA();
  const auto [L, Lk] = GetParam();
  const Case cases[] = {{1, 8, L, Lk, torch::kFloat, 0},
                        {2, 3, L, Lk, torch::kFloat, kV | kQ | kGelu | kMask},
                        {1, 8, L, Lk, torch::kBFloat16, kQ | kGelu},
                        {2, 3, L, Lk, torch::kBFloat16, kV | kMask}};
  int index = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(case_name(c));
    const auto in = Inputs::draw(c, 2000 + L + Lk + index++);
    ASSERT_FALSE(fftconv_fused_supported(in.u, in.k, in.D, in.options())) << "too long for one fused call";
    ASSERT_TRUE(fftconv_chunked_supported(in.u, in.k, in.D, in.options()));
    const auto y = fftconv(in.u, in.k, in.D, in.options());  // the dispatcher's path: chunked, fused inside
    ASSERT_EQ(y.scalar_type(), c.dtype);
    ASSERT_EQ(y.sizes(), in.u.sizes());
    ASSERT_TRUE(all_finite(y)) << "NaN/Inf in the chunked output";
    EXPECT_TRUE(torch::equal(y, fftconv_chunked(in.u, in.k, in.D, in.options(), FftConvInner::kFused)));
    const auto o64 = in.as(torch::kDouble, torch::kDouble);
    const auto y64 = fftconv_ref(o64.u, o64.k, o64.D, o64.options());
    const auto y_ref = fftconv_ref(in.u, in.k, in.D, in.options());  // the single pass in the same dtype
    const double err = rel_error(y, y64), ref_err = rel_error(y_ref, y64);
    std::printf("[chunked fwd] %-62s windows of %ld  err %.3e  single-pass err %.3e\n", case_name(c).c_str(),
                static_cast<long>(fftconv_chunk_window(Lk)), err, ref_err);
    if (c.dtype == torch::kFloat) {
      // float32 FFTs of 16384 points at most (the single pass needs up to 2M): a few 1e-7 relative.
      EXPECT_LT(err, 1e-5);
    } else {
      // bfloat16: one rounding of the same float32 result, as the single pass: at most twice its error.
      EXPECT_LE(err, 2 * ref_err);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Lengths, FftConvChunkedCudaForward,
                         ::testing::Combine(::testing::Values(40000, 65536, 1048576),
                                            ::testing::Values(256, 4096)));

// ---- backward
class FftConvChunkedCudaBackward : public ::testing::TestWithParam<int64_t> {};

TEST_P(FftConvChunkedCudaBackward, GradientsMatchAutogradThroughReference) {
  HIPPO_REQUIRE_CUDA();
  const int64_t Lk = GetParam(), L = 65536;
  const Case cases[] = {{2, 8, L, Lk, torch::kFloat, kV | kQ | kGelu | kMask},
                        {1, 8, L, Lk, torch::kFloat, 0},
                        {2, 8, L, Lk, torch::kBFloat16, kV | kQ | kGelu | kMask}};
  int index = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(case_name(c));
    const auto in = Inputs::draw(c, 6000 + Lk + index++);
    const auto w =
        torch::randn({c.B, c.H, c.L}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kDouble));
    auto grads = [&](const testing::FftConvInputs& x, bool chunked) {
      auto y = chunked ? fftconv(x.u, x.k, x.D, x.options()) : fftconv_ref(x.u, x.k, x.D, x.options());
      return torch::autograd::grad({(y.to(torch::kDouble) * w).sum()}, x.leaves());
    };
    const auto a = in.as(c.dtype, torch::kFloat, true);
    ASSERT_TRUE(fftconv_chunked_supported(a.u, a.k, a.D, a.options()));
    const auto g = grads(a, true);
    const auto g64 = grads(in.as(torch::kDouble, torch::kDouble, true), false);
    const auto gref = grads(in.as(c.dtype, torch::kFloat, true), false);
    const auto names = a.leaf_names();
    for (size_t i = 0; i < g.size(); ++i) {
      ASSERT_TRUE(g[i].defined()) << names[i];
      ASSERT_TRUE(all_finite(g[i])) << names[i];
      const double err = rel_error(g[i], g64[i]), ref_err = rel_error(gref[i], g64[i]);
      std::printf("[chunked bwd] %-62s %s err %.3e  single-pass err %.3e\n", case_name(c).c_str(),
                  names[i].c_str(), err, ref_err);
      if (c.dtype == torch::kFloat) {
        // float32 FFTs; dk and dD sum B * L products: still far under 1e-5 relative.
        EXPECT_LT(err, 1e-5) << names[i];
      } else {
        EXPECT_LE(err, 2 * ref_err) << names[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(KernelLengths, FftConvChunkedCudaBackward, ::testing::Values(256, 4096));

// ---- dispatch
TEST(FftConvChunkedCuda, DispatcherTakesTheChunkedPathOnlyWhenLIsTheReason) {
  HIPPO_REQUIRE_CUDA();
  const auto in = Inputs::draw({1, 4, 40000, 300, torch::kFloat, kV | kQ}, 9);
  EXPECT_TRUE(fftconv_chunked_supported(in.u, in.k, in.D, in.options()));
  {
    FftConvReferenceScope ref;  // the reference while the scope lives
    EXPECT_TRUE(
        torch::equal(fftconv(in.u, in.k, in.D, in.options()), fftconv_ref(in.u, in.k, in.D, in.options())));
  }
  // Fits the fused kernel in one call: fused, not chunked.
  const auto small = Inputs::draw({1, 4, 8192, 300, torch::kFloat, 0}, 10);
  EXPECT_TRUE(fftconv_fused_supported(small.u, small.k, small.D));
  EXPECT_FALSE(fftconv_chunked_supported(small.u, small.k, small.D));
  // A filter longer than the limit, float64 u, a gate in another dtype, CPU tensors: the reference.
  const auto longk = Inputs::draw({1, 2, 40000, kFftConvChunkedMaxKernelLen + 1, torch::kFloat, 0}, 11);
  EXPECT_FALSE(fftconv_chunked_supported(longk.u, longk.k, longk.D));
  EXPECT_TRUE(torch::equal(fftconv(longk.u, longk.k, longk.D), fftconv_ref(longk.u, longk.k, longk.D)));
  EXPECT_FALSE(fftconv_chunked_supported(in.u.to(torch::kDouble), in.k, in.D));
  FftConvOptions mixed;
  mixed.v = in.v.to(torch::kHalf);
  EXPECT_FALSE(fftconv_chunked_supported(in.u, in.k, in.D, mixed));
  EXPECT_FALSE(fftconv_chunked_supported(in.u.cpu(), in.k.cpu(), in.D.cpu()));
}

TEST(FftConvChunkedCuda, NonContiguousInputAndExplicitWindow) {
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(12);
  const auto f = torch::TensorOptions().device(torch::kCUDA);
  auto u =
      torch::randn({2, 30000, 16}, f).to(torch::kBFloat16).transpose(1, 2);  // (2, 16, 30000), as layers pass
  auto k = torch::randn({16, 100}, f) / 10, D = torch::randn({16}, f);
  const auto y64 = fftconv_ref(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble));
  const double ref_err = rel_error(fftconv_ref(u, k, D), y64);
  for (const int64_t window : {int64_t{0}, int64_t{1000}, int64_t{16384 - 99}, int64_t{32768 - 99}}) {
    SCOPED_TRACE("window " + std::to_string(window));
    EXPECT_LE(rel_error(fftconv_chunked(u, k, D, {}, FftConvInner::kFused, window), y64), 2 * ref_err);
  }
  // A window whose FFT is past the fused kernel's 32768: fftconv_fused's error, naming the kernel.
  EXPECT_THROW(fftconv_chunked(u, k, D, {}, FftConvInner::kFused, 32768 - 98), c10::Error);
}

}  // namespace
}  // namespace hippo
