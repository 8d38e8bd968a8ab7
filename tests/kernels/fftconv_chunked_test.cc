// The chunked (overlap-save) convolution with fftconv_ref as its inner convolution, on the CPU: against the
// single-pass reference and the direct convolution for long, odd and window-breaking lengths, L_k = 1 and at
// the limit, every option, float32/float64/bfloat16; gradients against autograd through the reference and by
// finite differences; the default window, argument errors and the dispatcher's choice without CUDA.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "kernels/fftconv.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::all_close;
using testing::rel_error;
using torch::Tensor;

enum OptionBits { kV = 1, kQ = 2, kGelu = 4, kMask = 8 };

struct ChunkCase {
  int64_t B, H, L, Lk, window;  // window 0: fftconv_chunk_window(Lk)
  int options;
};

void PrintTo(const ChunkCase& c, std::ostream* os) {
  *os << "B" << c.B << " H" << c.H << " L" << c.L << " Lk" << c.Lk << " W" << c.window << " opts"
      << c.options;
}

struct Inputs {
  Tensor u, k, D, v, q, mask;
  bool gelu = false;
  FftConvOptions options() const {
    FftConvOptions o;
    if (v.defined()) o.v = v;
    if (q.defined()) o.q = q;
    if (mask.defined()) o.dropout_mask = mask;
    o.gelu = gelu;
    return o;
  }
};

// Random inputs from a fixed seed (never zeros); k scaled so that outputs stay O(1) for any L_k.
Inputs draw(const ChunkCase& c, torch::ScalarType dtype, uint64_t seed, bool grad = false) {
  torch::manual_seed(seed);
  const auto f = torch::TensorOptions().dtype(dtype);
  Inputs in;
  in.u = torch::randn({c.B, c.H, c.L}, f);
  in.k = torch::randn({c.H, c.Lk}, f) / std::sqrt(static_cast<double>(c.Lk));
  in.D = torch::randn({c.H}, f);
  if (c.options & kV) in.v = torch::randn({c.B, c.H, c.L}, f);
  if (c.options & kQ) in.q = torch::randn({c.B, c.H, c.L}, f);
  if (c.options & kMask) in.mask = (torch::rand({c.B, c.H}, f) > 0.25).to(dtype) / 0.75;
  in.gelu = c.options & kGelu;
  if (grad)
    for (auto* t : {&in.u, &in.k, &in.D, &in.v, &in.q})
      if (t->defined()) t->requires_grad_(true);
  return in;
}

Inputs cast(const Inputs& in, torch::ScalarType t, bool grad = false) {
  auto c = [&](const Tensor& x) {
    if (!x.defined()) return x;
    auto y = x.detach().to(t).clone();
    return grad ? y.requires_grad_(true) : y;
  };
  Inputs o;
  o.u = c(in.u), o.k = c(in.k), o.D = c(in.D), o.v = c(in.v), o.q = c(in.q);
  o.mask = in.mask.defined() ? in.mask.to(t) : in.mask;
  o.gelu = in.gelu;
  return o;
}

Tensor chunked(const Inputs& in, int64_t window) {
  return fftconv_chunked(in.u, in.k, in.D, in.options(), FftConvInner::kReference, window);
}

// The number of windows a case cuts the sequence into (to print, and to check that cases do cut it).
int64_t n_windows(const ChunkCase& c) {
  const int64_t W = c.window ? c.window : fftconv_chunk_window(c.Lk);
  return (c.L + W - c.Lk) / (W - c.Lk + 1);
}

class FftConvChunkedShapes : public ::testing::TestWithParam<ChunkCase> {};

TEST_P(FftConvChunkedShapes, MatchesReferenceAndDirectFloat64) {
  const auto c = GetParam();
  ASSERT_GE(n_windows(c), 2) << "the case must cut the sequence";
  const auto in = draw(c, torch::kDouble, 100 + c.L + c.Lk);
  const auto y = chunked(in, c.window);
  ASSERT_EQ(y.sizes(), in.u.sizes());
  ASSERT_TRUE(y.is_contiguous());
  ASSERT_EQ(y.scalar_type(), torch::kDouble);
  // float64 everywhere: the two paths differ by FFT rounding only, far below 1e-10.
  EXPECT_TRUE(all_close(y, fftconv_ref(in.u, in.k, in.D, in.options()), 1e-10, 1e-10));
  if (!c.options) EXPECT_TRUE(all_close(y, causal_conv_direct(in.u, in.k, in.D), 1e-10, 1e-10));
  std::printf("[chunked cpu] B=%ld H=%ld L=%ld Lk=%ld windows=%ld\n", static_cast<long>(c.B),
              static_cast<long>(c.H), static_cast<long>(c.L), static_cast<long>(c.Lk),
              static_cast<long>(n_windows(c)));
}

TEST_P(FftConvChunkedShapes, MatchesReferenceFloat32) {
  const auto c = GetParam();
  const auto in = draw(c, torch::kFloat, 200 + c.L + c.Lk);
  const auto y = chunked(in, c.window);
  ASSERT_EQ(y.scalar_type(), torch::kFloat);
  const auto o64 = cast(in, torch::kDouble);
  const auto y64 = fftconv_ref(o64.u, o64.k, o64.D, o64.options());
  const double err = rel_error(y, y64), ref_err = rel_error(fftconv_ref(in.u, in.k, in.D, in.options()), y64);
  std::printf("[chunked cpu f32] L=%ld Lk=%ld opts=%d err %.3e  single-pass err %.3e\n",
              static_cast<long>(c.L), static_cast<long>(c.Lk), c.options, err, ref_err);
  // float32 FFTs of at most 16384 points (shorter than the single pass's): a few 1e-7 relative.
  EXPECT_LT(err, 1e-5);
  EXPECT_TRUE(all_close(y, y64, 1e-4, 1e-4));
}

// Long L (20000) with the default window (L_k = 1, 256, 2048 and at the limit 4096), odd L, L not a multiple
// of the S = W - L_k + 1 kept outputs, a window of exactly L_k (one kept output per window), every option.
INSTANTIATE_TEST_SUITE_P(
    Shapes, FftConvChunkedShapes,
    ::testing::Values(ChunkCase{2, 3, 20000, 256, 0, 0},
                      ChunkCase{1, 2, 20001, 1, 0, kV | kQ | kGelu | kMask},
                      ChunkCase{1, 2, 20000, 4096, 0, 0}, ChunkCase{1, 2, 20000, 2048, 0, kQ | kGelu},
                      ChunkCase{2, 5, 1001, 17, 64, 0}, ChunkCase{3, 4, 1001, 17, 64, kV},
                      ChunkCase{1, 3, 999, 33, 100, kQ}, ChunkCase{2, 3, 777, 1, 16, kGelu},
                      ChunkCase{2, 3, 500, 7, 24, kMask},
                      ChunkCase{1, 111, 331, 5, 5, kV | kQ | kGelu | kMask},
                      ChunkCase{2, 4, 1025, 64, 127, kV | kQ | kGelu | kMask}));

TEST(FftConvChunked, HalfInputsRoundOnceLikeTheReference) {
  const ChunkCase c{2, 4, 3000, 50, 300, kV | kQ | kGelu | kMask};
  const auto in32 = draw(c, torch::kFloat, 7);
  for (auto dt : {torch::kBFloat16, torch::kHalf}) {
    SCOPED_TRACE(c10::toString(dt));
    auto in = cast(in32, dt);
    in.k = in32.k, in.D = in32.D, in.mask = in32.mask;  // parameters stay float32, as in the layers
    const auto y = chunked(in, c.window);
    ASSERT_EQ(y.scalar_type(), dt);
    const auto o64 = cast(in, torch::kDouble);
    const auto y64 = fftconv_ref(o64.u, o64.k, o64.D, o64.options());
    const double err = rel_error(y, y64),
                 ref_err = rel_error(fftconv_ref(in.u, in.k, in.D, in.options()), y64);
    // Both paths compute in float32 and round once to the half type: errors of the same size.
    EXPECT_LE(err, 2 * ref_err) << "chunked " << err << " single pass " << ref_err;
  }
}

TEST(FftConvChunked, GradientsMatchAutogradThroughTheReference) {
  const char* names[] = {"du", "dk", "dD", "dv", "dq"};
  for (const auto& c : {ChunkCase{2, 3, 3001, 100, 256, kV | kQ | kGelu | kMask},
                        ChunkCase{1, 4, 2000, 1, 128, kQ}, ChunkCase{2, 2, 20000, 4096, 0, kV | kGelu}}) {
    SCOPED_TRACE(::testing::PrintToString(c));
    for (auto dt : {torch::kDouble, torch::kFloat}) {
      const auto a = draw(c, dt, 300 + c.L, true);
      const auto b = cast(a, dt, true);
      const auto w = torch::randn({c.B, c.H, c.L}, torch::TensorOptions().dtype(dt));
      std::vector<Tensor> xa = {a.u, a.k, a.D}, xb = {b.u, b.k, b.D};
      for (const auto* t : {&a.v, &a.q})
        if (t->defined()) xa.push_back(*t);
      for (const auto* t : {&b.v, &b.q})
        if (t->defined()) xb.push_back(*t);
      const auto ga = torch::autograd::grad({(chunked(a, c.window) * w).sum()}, xa);
      const auto gb = torch::autograd::grad({(fftconv_ref(b.u, b.k, b.D, b.options()) * w).sum()}, xb);
      for (size_t i = 0; i < ga.size(); ++i) {
        const char* name = i < 3 ? names[i] : (i == 3 && a.v.defined() ? names[3] : names[4]);
        ASSERT_TRUE(ga[i].defined()) << name;
        const double err = rel_error(ga[i], gb[i]);
        // float64: FFT rounding only; float32: sums over up to B * L products for dk and dD.
        EXPECT_LT(err, dt == torch::kDouble ? 1e-10 : 2e-5) << name << " " << c10::toString(dt);
      }
    }
  }
}

TEST(FftConvChunked, GradientsMatchFiniteDifferences) {
  torch::manual_seed(5);
  const int64_t B = 2, H = 2, L = 23, Lk = 5;
  auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  std::vector<Tensor> in = {torch::randn({B, H, L}, opts), torch::randn({H, Lk}, opts),
                            torch::randn({H}, opts), torch::randn({B, H, L}, opts),
                            torch::randn({B, H, L}, opts)};
  const auto w = torch::randn({B, H, L}, torch::kDouble);
  const auto mask = (torch::rand({B, H}, torch::kDouble) > 0.3).to(torch::kDouble) / 0.7;
  auto f = [&](const std::vector<Tensor>& x) {
    FftConvOptions o;
    o.v = x[3];
    o.q = x[4];
    o.gelu = true;
    o.dropout_mask = mask;
    // Windows of 8: S = 4 new outputs each, 6 windows, the last one partly past L.
    return (fftconv_chunked(x[0], x[1], x[2], o, FftConvInner::kReference, 8) * w).sum();
  };
  EXPECT_TRUE(testing::grad_check(f, in, 10));
}

TEST(FftConvChunked, CausalOutputsDoNotSeeTheFuture) {
  torch::manual_seed(6);
  auto u = torch::randn({1, 3, 500}, torch::kDouble), k = torch::randn({3, 40}, torch::kDouble);
  auto D = torch::randn({3}, torch::kDouble);
  const auto y = fftconv_chunked(u, k, D, {}, FftConvInner::kReference, 64);
  auto u2 = u.clone();
  u2.narrow(2, 300, 200).normal_();
  const auto y2 = fftconv_chunked(u2, k, D, {}, FftConvInner::kReference, 64);
  EXPECT_TRUE(torch::equal(y.narrow(2, 0, 300), y2.narrow(2, 0, 300)));
  EXPECT_FALSE(torch::allclose(y.narrow(2, 300, 200), y2.narrow(2, 300, 200)));
}

TEST(FftConvChunked, DefaultWindowFillsAnFftSizeTheFusedKernelTakes) {
  for (int64_t Lk : {int64_t{1}, int64_t{2}, int64_t{256}, int64_t{1024}, int64_t{1200}, int64_t{2048},
                     kFftConvChunkedMaxKernelLen}) {
    const int64_t W = fftconv_chunk_window(Lk);
    SCOPED_TRACE("Lk=" + std::to_string(Lk) + " W=" + std::to_string(W));
    EXPECT_GE(W - Lk + 1, 2);                    // at least two new outputs per window
    EXPECT_LE(fftconv_size(W, Lk), 16384);       // the fused kernel's largest FFT
    EXPECT_EQ(fftconv_size(W, Lk), W + Lk - 1);  // no padding wasted inside the FFT
  }
  EXPECT_EQ(fftconv_chunk_window(1), 8192);  // no overlap: the cheaper size per point
  EXPECT_EQ(fftconv_chunk_window(kFftConvChunkedMaxKernelLen), 12289);  // only 16384 keeps outputs
  EXPECT_THROW(fftconv_chunk_window(0), c10::Error);
  EXPECT_THROW(fftconv_chunk_window(kFftConvChunkedMaxKernelLen + 1), c10::Error);
}

TEST(FftConvChunked, RejectsBadArguments) {
  auto u = torch::randn({2, 3, 100}), k = torch::randn({3, 10}), D = torch::randn({3});
  EXPECT_THROW(fftconv_chunked(u, k, D, {}, FftConvInner::kReference, 9), c10::Error);   // window < L_k
  EXPECT_THROW(fftconv_chunked(u, k, D, {}, FftConvInner::kReference, -1), c10::Error);  // negative window
  EXPECT_THROW(fftconv_chunked(u, torch::randn({4, 10}), D), c10::Error);                // H mismatch
  EXPECT_THROW(fftconv_chunked(u, torch::randn({3, 101}), D), c10::Error);               // L_k > L
  FftConvOptions o;
  o.q = torch::randn({2, 3, 99});
  EXPECT_THROW(fftconv_chunked(u, k, D, o), c10::Error);
  // A long filter with the default window: refused, naming the limit.
  auto ul = torch::randn({1, 1, 5000}), kl = torch::randn({1, kFftConvChunkedMaxKernelLen + 1});
  EXPECT_THROW(fftconv_chunked(ul, kl, torch::randn({1})), c10::Error);
  // The fused inner convolution on CPU tensors (or in a build without CUDA): fftconv_fused's error.
  try {
    fftconv_chunked(u, k, D, {}, FftConvInner::kFused, 50);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("fftconv_fused"), std::string::npos) << e.what();
  }
}

TEST(FftConvChunked, DispatcherKeepsTheReferenceOnTheCpu) {
  torch::manual_seed(8);
  auto u = torch::randn({1, 2, 20000}), k = torch::randn({2, 256}) / 16, D = torch::randn({2});
  EXPECT_FALSE(fftconv_chunked_supported(u, k, D));
  EXPECT_TRUE(torch::equal(fftconv(u, k, D), fftconv_ref(u, k, D)));
}

}  // namespace
}  // namespace hippo
