// The fused CUDA FFT convolution (fftconv_fused) against the reference: forward for lengths that break
// power-of-two assumptions, every dtype and option; gradients of u, k, D, v, q against autograd through the
// reference; NaN/Inf and unwritten outputs; the dispatcher's choice and its errors; whole SSM layers through
// both paths. Every test skips, with the reason, when the build has no CUDA kernels or no CUDA device is
// present.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "kernels/fftconv.h"
#include "layers/mixer.h"
#include "tests/kernels/cuda_required.h"
#include "tests/kernels/fftconv_inputs.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::rel_error;
using torch::Tensor;

enum OptionBits { kV = 1, kQ = 2, kGelu = 4, kMask = 8 };
// Option sets cycled over the cases so that every option meets every length: none, each alone, all together.
constexpr int kOptionSets[] = {0, kV, kQ | kGelu, kMask, kV | kQ | kGelu | kMask};

std::string options_name(int bits) {
  if (!bits) return "none";
  std::string s;
  if (bits & kV) s += "v,";
  if (bits & kQ) s += "q,";
  if (bits & kGelu) s += "gelu,";
  if (bits & kMask) s += "mask,";
  s.pop_back();
  return s;
}

struct Case {
  int64_t B, H, L, Lk;
  torch::ScalarType dtype;
  int options;
};

std::string case_name(const Case& c) {
  std::ostringstream os;
  os << "B=" << c.B << " H=" << c.H << " L=" << c.L << " Lk=" << c.Lk << " " << c.dtype
     << " options=" << options_name(c.options);
  return os.str();
}

// Random inputs drawn on the GPU from a fixed seed, already rounded to the kernel's dtype (never zeros).
struct Inputs : testing::FftConvInputs {
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

// Frees a NaN-filled block of y's size so that the caching allocator is likely to hand it to the kernel's
// output: an element the kernel forgets to write then shows up as NaN.
void poison(const Case& c) {
  auto p = torch::full({c.B, c.H, c.L}, std::numeric_limits<float>::quiet_NaN(),
                       torch::TensorOptions().device(torch::kCUDA).dtype(c.dtype));
  torch::cuda::synchronize();
}

// ---- forward
// ------------------------------------------------------------------------------------------------
class FftConvCudaForward : public ::testing::TestWithParam<int64_t> {};

TEST_P(FftConvCudaForward, MatchesFloat64Reference) {
  HIPPO_REQUIRE_CUDA();
  const int64_t L = GetParam();
  const torch::ScalarType dtypes[] = {torch::kFloat, torch::kHalf, torch::kBFloat16};
  const int64_t shapes[][2] = {{1, 111}, {3, 768}, {3, 111}, {1, 768}};  // (B, H)
  int index = 0;
  for (int d = 0; d < 3; ++d) {
    for (int s = 0; s < 4; ++s, ++index) {
      const int64_t Lk = s == 2 ? L / 3 + 1 : L;  // one shape with a kernel shorter than the sequence
      const Case c{shapes[s][0], shapes[s][1], L, Lk, dtypes[d], kOptionSets[index % 5]};
      SCOPED_TRACE(case_name(c));
      const auto in = Inputs::draw(c, 1000 + L * 16 + index);
      poison(c);
      const auto y = fftconv_fused(in.u, in.k, in.D, in.options());
      ASSERT_EQ(y.scalar_type(), c.dtype);
      ASSERT_EQ(y.sizes(), in.u.sizes());
      ASSERT_TRUE(all_finite(y)) << "NaN/Inf or unwritten elements in the fused output";
      const auto o64 = in.as(torch::kDouble, torch::kDouble);
      const auto y64 = fftconv_ref(o64.u, o64.k, o64.D, o64.options());
      const auto y_ref = fftconv_ref(in.u, in.k, in.D, in.options());  // the plain path in the same dtype
      const double err = rel_error(y, y64), ref_err = rel_error(y_ref, y64);
      std::printf("[fused fwd] %-58s err %.3e  plain-path err %.3e\n", case_name(c).c_str(), err, ref_err);
      if (c.dtype == torch::kFloat) {
        // float32 FFTs of size <= 16384 with fast twiddles: a few 1e-7 relative; 1e-5 leaves room for GELU.
        EXPECT_LT(err, 1e-5);
        EXPECT_TRUE(testing::all_close(y, y64, 1e-4, 1e-4));
      } else {
        // Half precision: at most twice the error of the plain path, which rounds the same float32 result.
        EXPECT_LE(err, 2 * ref_err);
      }
    }
  }
}

// 12289 and 16384: FFT size 32768, where the backward keeps the spectrum of w and the dk sums in global memory.
INSTANTIATE_TEST_SUITE_P(Lengths, FftConvCudaForward,
                         ::testing::Values(1, 2, 31, 1000, 1023, 1024, 1025, 4096, 8192, 12289, 16384));

// ---- backward
// -----------------------------------------------------------------------------------------------
class FftConvCudaBackward : public ::testing::TestWithParam<int64_t> {};

using testing::grads_of;

TEST_P(FftConvCudaBackward, GradientsMatchAutogradThroughReference) {
  HIPPO_REQUIRE_CUDA();
  const int64_t L = GetParam();
  const Case cases[] = {{3, 111, L, L, torch::kFloat, kV | kQ | kGelu | kMask},
                        {1, 768, L, std::max<int64_t>(1, L / 2), torch::kFloat, kV | kQ},
                        {3, 111, L, L, torch::kBFloat16, kV | kQ | kGelu | kMask},
                        {1, 768, L, L, torch::kHalf, kV | kQ}};
  const char* names[] = {"du", "dk", "dD", "dv", "dq"};
  int index = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(case_name(c));
    const auto in = Inputs::draw(c, 5000 + L + index++);
    const auto w =
        torch::randn({c.B, c.H, c.L}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kDouble));
    const auto fused = in.as(c.dtype, torch::kFloat, true);
    const auto g = grads_of(fftconv_fused(fused.u, fused.k, fused.D, fused.options()), w, fused);
    const auto o64 = in.as(torch::kDouble, torch::kDouble, true);
    const auto g64 = grads_of(fftconv_ref(o64.u, o64.k, o64.D, o64.options()), w, o64);
    const auto plain = in.as(c.dtype, torch::kFloat, true);
    const auto gref = grads_of(fftconv_ref(plain.u, plain.k, plain.D, plain.options()), w, plain);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(g[i].defined()) << names[i] << " missing";
      ASSERT_TRUE(all_finite(g[i])) << names[i] << " has NaN/Inf";
      ASSERT_EQ(g[i].sizes(), g64[i].sizes()) << names[i];
      const double err = rel_error(g[i], g64[i]), ref_err = rel_error(gref[i], g64[i]);
      std::printf("[fused bwd] %-58s %s err %.3e  plain-path err %.3e\n", case_name(c).c_str(), names[i], err,
                  ref_err);
      if (c.dtype == torch::kFloat) {
        // float32 FFTs, and for dk and dD sums over B*L products: far under 1e-5 relative.
        EXPECT_LT(err, 1e-5) << names[i];
      } else {
        EXPECT_LE(err, 2 * ref_err) << names[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Lengths, FftConvCudaBackward,
                         ::testing::Values(1, 2, 31, 1000, 1023, 1024, 1025, 4096, 8192, 12289, 16384));

// Without the filter's gradient the backward skips the spectrum of w unless z is recomputed (a gate q or GELU):
// du and dv still match, on chip (L 1000) and past it (L 16384, where W shares the one shared buffer with z).
TEST(FftConvCuda, BackwardWithoutFilterGradient) {
  HIPPO_REQUIRE_CUDA();
  for (const int64_t L : {int64_t{1000}, int64_t{16384}}) {
    for (const int opts : {0, int{kV}, kV | kQ, int{kGelu}}) {
      const Case c{3, 40, L, L, torch::kFloat, opts};
      SCOPED_TRACE(case_name(c));
      const auto in = Inputs::draw(c, 6000 + L + opts);
      auto run = [&](bool fused) {
        auto u = in.u.clone().requires_grad_(true);
        std::optional<Tensor> v;
        FftConvOptions o = in.options();
        if (o.v) {
          v = o.v->clone().requires_grad_(true);
          o.v = *v;
        }
        auto y = fused ? fftconv_fused(u, in.k, in.D, o) : fftconv_ref(u, in.k, in.D, o);
        torch::manual_seed(99);
        const auto dy = torch::randn(y.sizes(), y.options());
        std::vector<Tensor> wrt = {u};
        if (v) wrt.push_back(*v);
        return torch::autograd::grad({y}, wrt, {dy});
      };
      const auto got = run(true), want = run(false);
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_TRUE(all_finite(got[i]));
        EXPECT_LT(rel_error(got[i], want[i]), 1e-5) << (i == 0 ? "du" : "dv");
      }
    }
  }
}

// Without a gate, GELU or mask the backward runs its plain kernel (cuda::bwd_is_plain), compiled with those parts
// left out; a mask of ones sends the same call to the general kernel. Both do the same float32 arithmetic (the mask
// multiplies by exactly 1), so u, k and D get the same gradients, at sizes on chip, at the plain kernel's register
// limit (fft sizes 2048-8192) and past the on-chip limit (L 16384). That the call without a mask is the one that
// takes the plain kernel is the predicate's test on the CPU (FftConv.PlainBackwardKernelOnlyWithoutGatesGeluMaskOrZ).
TEST(FftConvCuda, PlainAndGeneralBackwardKernelsAgree) {
  HIPPO_REQUIRE_CUDA();
  const char* names[] = {"du", "dk", "dD"};
  for (const int64_t L : {int64_t{1}, int64_t{31}, int64_t{1000}, int64_t{2048}, int64_t{4096}, int64_t{8192},
                          int64_t{16384}}) {
    for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
      const Case c{3, 20, L, L, dtype, 0};
      SCOPED_TRACE(case_name(c));
      const auto in = Inputs::draw(c, 7300 + L);
      const auto cuda = torch::TensorOptions().device(torch::kCUDA);
      const auto w = torch::randn({c.B, c.H, c.L}, cuda.dtype(torch::kDouble));
      auto run = [&](bool ones_mask) {
        auto x = in.as(c.dtype, torch::kFloat, true);
        FftConvOptions o;
        if (ones_mask) o.dropout_mask = torch::ones({c.B, c.H}, cuda.dtype(torch::kFloat));
        auto loss = (fftconv_fused(x.u, x.k, x.D, o).to(torch::kDouble) * w).sum();
        return torch::autograd::grad({loss}, {x.u, x.k, x.D});
      };
      const auto plain = run(false), general = run(true);
      for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(all_finite(plain[i]) && all_finite(general[i])) << names[i];
        // A bf16 du may differ by one rounding where the two kernels' code contracts differently.
        EXPECT_LT(rel_error(plain[i], general[i]), dtype == torch::kFloat ? 1e-6 : 4e-3) << names[i];
      }
    }
  }
}

// The backward's row groups (chunks) change only which block sums which rows into dk: every count gives the
// gradients of the automatic choice. B 5 with 2 (3 + 2 rows), 4 (2 + 2 + 1 + 0: a group with no rows) and 5 groups,
// on chip (L 1000, 4096) and past it (L 16384). internal::last_fftconv_bwd_chunks shows that each setting reached the
// kernel: glue that ignored it would compare the automatic grouping with itself.
TEST(FftConvCuda, EveryBackwardChunkCountGivesTheSameGradients) {
  HIPPO_REQUIRE_CUDA();
  const testing::BwdChunksGuard restore;
  const char* names[] = {"du", "dk", "dD", "dv", "dq"};
  for (const int64_t L : {int64_t{1000}, int64_t{4096}, int64_t{16384}}) {
    const Case c{5, 24, L, L, torch::kFloat, kV | kQ | kGelu};
    SCOPED_TRACE(case_name(c));
    const auto in = Inputs::draw(c, 7100 + L);
    const auto w = torch::randn({c.B, c.H, c.L}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kDouble));
    auto run = [&](int chunks) {
      set_fftconv_bwd_chunks(chunks);
      auto x = in.as(c.dtype, torch::kFloat, true);
      auto g = testing::grads_of(fftconv_fused(x.u, x.k, x.D, x.options()), w, x);
      set_fftconv_bwd_chunks(0);
      return g;
    };
    const auto automatic = run(0);
    const int auto_chunks = internal::last_fftconv_bwd_chunks();
    EXPECT_GE(auto_chunks, 1);
    EXPECT_LE(auto_chunks, c.B);
    for (const int chunks : {1, 2, 4, 5, 9}) {
      const auto got = run(chunks);
      // The setting reached the kernel (capped at B), so the comparison below is between different groupings.
      ASSERT_EQ(internal::last_fftconv_bwd_chunks(), std::min<int>(chunks, c.B)) << "chunks " << chunks;
      for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(all_finite(got[i])) << names[i] << " chunks " << chunks;
        // The same float32 arithmetic; only dk and dD sum their rows in another grouping and order.
        EXPECT_LT(rel_error(got[i], automatic[i]), 1e-6) << names[i] << " chunks " << chunks;
      }
    }
  }
}

// The backward reads the forward's saved z (the default) or recomputes it (HIPPO_FFTCONV_RECOMPUTE=on): the same
// gradients either way, on chip (L 12 to 1004) and past it (L 16384), with and without the filter's gradient (without
// it the saved-z backward skips the spectrum of w altogether).
TEST(FftConvCuda, SavedAndRecomputedZGiveTheSameGradients) {
  HIPPO_REQUIRE_CUDA();
  const testing::RecomputeModeGuard restore;
  const char* names[] = {"du", "dk", "dD", "dv", "dq"};
  // L 12 and 1004: rows of z a multiple of 4 floats whose last bf16 chunk (8 elements) is partial.
  for (const int64_t L : {int64_t{12}, int64_t{1000}, int64_t{1004}, int64_t{16384}}) {
    for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
      for (const bool filter_grad : {true, false}) {
        const Case c{3, 40, L, L, dtype, kV | kQ | kGelu | kMask};
        SCOPED_TRACE(case_name(c) + (filter_grad ? " with dk" : " without dk"));
        const auto in = Inputs::draw(c, 6500 + L);
        const auto w = torch::randn({c.B, c.H, c.L}, torch::TensorOptions().device(torch::kCUDA).dtype(torch::kDouble));
        // Gradients of u, v, q, and of k and D when filter_grad (then k and D are leaves that require grad).
        auto run = [&](bool recompute) {
          set_fftconv_recompute_z(recompute);
          auto x = in.as(c.dtype, torch::kFloat, true);
          if (!filter_grad) {
            x.k = x.k.detach();
            x.D = x.D.detach();
          }
          auto loss = (fftconv_fused(x.u, x.k, x.D, x.options()).to(torch::kDouble) * w).sum();
          std::vector<Tensor> wrt = {x.u, x.v, x.q};
          if (filter_grad) wrt.insert(wrt.end(), {x.k, x.D});
          auto g = torch::autograd::grad({loss}, wrt);
          if (!filter_grad) g.insert(g.end(), {Tensor(), Tensor()});
          return std::vector<Tensor>{g[0], g[3], g[4], g[1], g[2]};  // du, dk, dD, dv, dq
        };
        const auto saved = run(false), recomputed = run(true);
        for (int i = 0; i < 5; ++i) {
          if (!filter_grad && (i == 1 || i == 2)) continue;
          ASSERT_TRUE(saved[i].defined() && recomputed[i].defined()) << names[i];
          ASSERT_TRUE(all_finite(saved[i])) << names[i];
          // The same float32 arithmetic computes z in both (the forward's FFTs or the backward's copy of them); a
          // bf16 gradient may still differ by one rounding where the compiled code contracts differently.
          EXPECT_LT(rel_error(saved[i], recomputed[i]), dtype == torch::kFloat ? 1e-6 : 4e-3) << names[i];
        }
      }
    }
  }
}

// ---- dispatch and errors
// ------------------------------------------------------------------------------------
TEST(FftConvCuda, DispatcherTakesTheFusedPathWhenSupportedElseTheReference) {
  HIPPO_REQUIRE_CUDA();
  const Case c{2, 16, 1000, 1000, torch::kFloat, kV | kQ};
  const auto in = Inputs::draw(c, 7);
  ASSERT_TRUE(fftconv_fused_supported(in.u, in.k, in.D, in.options()));
  EXPECT_TRUE(
      torch::equal(fftconv(in.u, in.k, in.D, in.options()), fftconv_fused(in.u, in.k, in.D, in.options())));
  {
    FftConvReferenceScope ref;
    EXPECT_TRUE(
        torch::equal(fftconv(in.u, in.k, in.D, in.options()), fftconv_ref(in.u, in.k, in.D, in.options())));
  }
  // Past the fused limit (fft size 65536), float64, or on the CPU: the reference, silently and correctly.
  const Case big{1, 4, 17000, 17000, torch::kFloat, 0};
  const auto b = Inputs::draw(big, 8);
  EXPECT_FALSE(fftconv_fused_supported(b.u, b.k, b.D));
  EXPECT_TRUE(torch::equal(fftconv(b.u, b.k, b.D), fftconv_ref(b.u, b.k, b.D)));
  EXPECT_FALSE(fftconv_fused_supported(in.u.to(torch::kDouble), in.k, in.D));
  EXPECT_FALSE(fftconv_fused_supported(in.u.cpu(), in.k.cpu(), in.D.cpu()));
  FftConvOptions mixed;
  mixed.v = in.v.to(torch::kHalf);  // gate in another dtype than u
  EXPECT_FALSE(fftconv_fused_supported(in.u, in.k, in.D, mixed));
}

// The filter spectrum kernel (one launch instead of scale, tap and cuFFT) against torch::fft, over every compiled
// FFT size, odd and one-tap filters and a filter filling the whole transform (no zero half).
TEST(FftConvCuda, FilterSpectrumKernelMatchesTorchFft) {
  HIPPO_REQUIRE_CUDA();
  torch::manual_seed(7);
  const auto dev = torch::TensorOptions().device(torch::kCUDA);
  struct Case {
    int64_t H, Lk, n;
  };
  for (const Case c : {Case{1, 1, 16}, Case{3, 16, 16}, Case{111, 31, 64}, Case{111, 1000, 2048},
                       Case{768, 1024, 2048}, Case{5, 4095, 8192}, Case{111, 8192, 16384},
                       Case{2, 16384, 16384}, Case{7, 12289, 32768}, Case{3, 32768, 32768}}) {
    const auto k = torch::randn({c.H, c.Lk}, dev) / std::sqrt(static_cast<double>(c.Lk));
    const auto D = torch::randn({c.H}, dev);
    const auto got = internal::fftconv_filter_spectrum(k, D, c.n);
    const auto want = internal::fftconv_filter_spectrum_ref(k.to(torch::kDouble), D.to(torch::kDouble), c.n);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{c.H, c.n / 2 + 1, 2}));
    ASSERT_EQ(got.scalar_type(), torch::kFloat);
    ASSERT_TRUE(torch::isfinite(got).all().item<bool>());
    EXPECT_LT(rel_error(got.to(torch::kDouble), want.to(torch::kDouble)), 2e-6)
        << "H " << c.H << " L_k " << c.Lk << " fft_size " << c.n;
  }
  // A double filter is read as float32, like every caller's.
  const auto k = torch::randn({4, 100}, dev.dtype(torch::kDouble)), D = torch::randn({4}, dev.dtype(torch::kDouble));
  EXPECT_LT(rel_error(internal::fftconv_filter_spectrum(k, D, 256).to(torch::kDouble),
                      internal::fftconv_filter_spectrum_ref(k, D, 256).to(torch::kDouble)),
            2e-6);
  // Bad shapes are refused, naming the function.
  EXPECT_THROW(internal::fftconv_filter_spectrum(torch::randn({4, 100}, dev), torch::randn({3}, dev), 256),
               c10::Error);
  EXPECT_THROW(internal::fftconv_filter_spectrum(torch::randn({4, 300}, dev), torch::randn({4}, dev), 256),
               c10::Error);
}

TEST(FftConvCuda, UnsupportedCaseThrowsNamingTheKernelAndShape) {
  HIPPO_REQUIRE_CUDA();
  const Case big{1, 4, 17000, 17000, torch::kFloat, 0};
  const auto b = Inputs::draw(big, 9);
  try {
    fftconv_fused(b.u, b.k, b.D);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fftconv_fused"), std::string::npos) << msg;
    EXPECT_NE(msg.find("17000"), std::string::npos) << msg;
  }
}

TEST(FftConvCuda, DoubleBackwardIsRefusedNotSilentlyWrong) {
  HIPPO_REQUIRE_CUDA();
  const Case c{1, 4, 64, 64, torch::kFloat, 0};
  const auto in = Inputs::draw(c, 12).as(torch::kFloat, torch::kFloat, true);
  auto y = fftconv_fused(in.u, in.k, in.D);
  EXPECT_THROW(torch::autograd::grad({y.pow(2).sum()}, {in.u}, {}, true, /*create_graph=*/true),
               std::exception);
}

TEST(FftConvCuda, NonContiguousInputsAndOddAlignment) {
  HIPPO_REQUIRE_CUDA();
  // u as a transposed view (what the layers pass) and as a view at an odd element offset.
  torch::manual_seed(10);
  const auto f = torch::TensorOptions().device(torch::kCUDA);
  auto base = torch::randn({2, 1001, 64}, f).to(torch::kBFloat16);
  auto u = base.narrow(1, 1, 1000).transpose(1, 2);  // (2, 64, 1000), non-contiguous
  auto k = torch::randn({64, 1000}, f) / 30, D = torch::randn({64}, f);
  auto y = fftconv_fused(u, k, D);
  EXPECT_LE(rel_error(y, fftconv_ref(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble))),
            2 * rel_error(fftconv_ref(u, k, D),
                          fftconv_ref(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble))));
  auto flat = torch::randn({1 + 3 * 8 * 100}, f);
  auto odd = flat.narrow(0, 1, 3 * 8 * 100).view({3, 8, 100});  // contiguous, data pointer 4 bytes off
  auto k2 = torch::randn({8, 100}, f) / 10, D2 = torch::randn({8}, f);
  EXPECT_TRUE(testing::all_close(fftconv_fused(odd, k2, D2), fftconv_ref(odd, k2, D2), 1e-4, 1e-5));
}

// ---- whole layers
// ------------------------------------------------------------------------------------------- Users once saw
// the fused and plain paths disagree through a layer while the kernel tests passed: run whole SSM mixers
// (float32, on the GPU) through both, and the same mixer in float64 through the reference path; the output and
// every parameter gradient of the fused path must be within twice the float32 reference path's error against
// float64 (plus 1e-6 for tensors both compute to about float32's resolution). The fused path is not compared with
// the float32 reference path directly: the fused diagonal-SSM kernel is more accurate than the float32
// expression (about 1e-7 against 1e-5 in K at L = 2048), so their difference is the reference's own error.
class FftConvCudaLayers : public ::testing::TestWithParam<std::string> {};

TEST_P(FftConvCudaLayers, FusedAndReferencePathsAgree) {
  HIPPO_REQUIRE_CUDA();
  const auto name = GetParam();
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find(name, "layer"));
  for (const int64_t L : {1, 31, 1000, 2048}) {
    SCOPED_TRACE(name + " L=" + std::to_string(L));
    MixerArgs a;
    a.d_model = 64;
    a.max_seq_len = L;
    a.options = value_or_throw(resolve_options(e->schema, Json::object(), name));
    auto make = [&](torch::Dtype dtype) {
      torch::manual_seed(11 + L);
      auto m = e->factory(a);
      m->to(torch::kCUDA, dtype);
      return m;
    };
    auto mixer = make(torch::kFloat), mixer64 = make(torch::kDouble);
    const auto x = torch::randn({3, L, 64}, torch::TensorOptions().device(torch::kCUDA));
    const auto w = torch::randn({3, L, 64}, torch::TensorOptions().device(torch::kCUDA));
    auto run = [&](Mixer& m, const Tensor& xx, const Tensor& ww, bool reference) {
      std::optional<FftConvReferenceScope> scope;
      if (reference) scope.emplace();
      m->zero_grad();
      auto y = m->forward(xx);
      (y * ww).sum().backward();
      std::vector<Tensor> out = {y.detach().clone()};
      for (const auto& p : m->parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : Tensor());
      return out;
    };
    const auto fused = run(mixer, x, w, false), ref = run(mixer, x, w, true),
               ref64 = run(mixer64, x.to(torch::kDouble), w.to(torch::kDouble), true);
    ASSERT_TRUE(all_finite(fused[0]));
    for (size_t i = 0; i < fused.size(); ++i) {
      const std::string what = i == 0 ? "output" : "gradient of parameter " + std::to_string(i - 1);
      ASSERT_EQ(fused[i].defined(), ref64[i].defined()) << what;
      if (!fused[i].defined()) continue;
      ASSERT_TRUE(all_finite(fused[i])) << what;
      const double e_fused = rel_error(fused[i], ref64[i]), e_ref = rel_error(ref[i], ref64[i]);
      if (i == 0)
        std::printf("[fused layer] %s L=%ld output err vs float64: fused %.3e, float32 reference path %.3e\n",
                    name.c_str(), static_cast<long>(L), e_fused, e_ref);
      EXPECT_LE(e_fused, 2 * e_ref + 1e-6) << what << ": fused " << e_fused << ", float32 reference " << e_ref;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Mixers, FftConvCudaLayers,
                         ::testing::Values("h3", "s4d", "gss", "shift_ssm", "diag_ssm"));

}  // namespace
}  // namespace hippo
