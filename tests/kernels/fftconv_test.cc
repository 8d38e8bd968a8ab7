// The reference FFT convolution against direct convolution, every option, half-precision inputs, gradients
// by finite differences, and argument errors.
#include "kernels/fftconv.h"
#include "kernels/fftconv_kernel.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/kernels/fftconv_inputs.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::all_close;

struct Shape {
  int64_t B, H, L, Lk;
};

void PrintTo(const Shape& s, std::ostream* os) { *os << "B" << s.B << " H" << s.H << " L" << s.L << " Lk" << s.Lk; }

class FftConvShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(FftConvShapes, MatchesDirectConvolutionFloat64) {
  const auto s = GetParam();
  torch::manual_seed(s.L);
  auto u = torch::randn({s.B, s.H, s.L}, torch::kDouble);
  auto k = torch::randn({s.H, s.Lk}, torch::kDouble);
  auto D = torch::randn({s.H}, torch::kDouble);
  // float64 end to end: only FFT rounding, far below 1e-10 relative.
  EXPECT_TRUE(all_close(fftconv_ref(u, k, D), causal_conv_direct(u, k, D), 1e-10, 1e-10));
}

TEST_P(FftConvShapes, MatchesDirectConvolutionFloat32) {
  const auto s = GetParam();
  torch::manual_seed(s.L + 1);
  auto u = torch::randn({s.B, s.H, s.L});
  auto k = torch::randn({s.H, s.Lk}) / std::sqrt(static_cast<double>(s.Lk));
  auto D = torch::randn({s.H});
  auto ref = causal_conv_direct(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble));
  // float32 FFT: error grows like log(n) * eps32; 1e-4 relative to the output scale with atol for cancellation.
  EXPECT_TRUE(all_close(fftconv_ref(u, k, D), ref, 1e-4, 1e-4));
}

// Lengths that break power-of-two and L == FFT-size assumptions; H = 111 channels; B = 1.
INSTANTIATE_TEST_SUITE_P(Shapes, FftConvShapes,
                         ::testing::Values(Shape{1, 3, 1, 1}, Shape{2, 5, 2, 2}, Shape{1, 111, 31, 31},
                                           Shape{3, 4, 32, 32}, Shape{1, 4, 33, 33}, Shape{1, 8, 1000, 1000},
                                           Shape{1, 2, 1023, 1023}, Shape{2, 3, 1024, 1024}, Shape{1, 2, 1025, 1025},
                                           Shape{2, 3, 100, 7}));

// The spectrum the fused kernels read, against its definition: sum_t (k[t] + D [t == 0]) exp(-2 pi i f t / n)
// times 2/n, in float64.
TEST(FftConv, FilterSpectrumIsTheScaledRfftOfTheFilterWithItsSkipTap) {
  torch::manual_seed(3);
  const int64_t H = 3, Lk = 7, n = 16;
  const auto k = torch::randn({H, Lk}, torch::kDouble), D = torch::randn({H}, torch::kDouble);
  const auto got = internal::fftconv_filter_spectrum(k, D, n).to(torch::kDouble);
  ASSERT_EQ(got.sizes(), (std::vector<int64_t>{H, n / 2 + 1, 2}));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t f = 0; f <= n / 2; ++f) {
      double re = 0, im = 0;
      for (int64_t t = 0; t < Lk; ++t) {
        const double x = k[h][t].item<double>() + (t == 0 ? D[h].item<double>() : 0.0);
        const double a = -2 * M_PI * static_cast<double>(f * t) / static_cast<double>(n);
        re += x * std::cos(a);
        im += x * std::sin(a);
      }
      EXPECT_NEAR(got[h][f][0].item<double>(), re * 2 / n, 1e-6) << h << " " << f;
      EXPECT_NEAR(got[h][f][1].item<double>(), im * 2 / n, 1e-6) << h << " " << f;
    }
  EXPECT_THROW(internal::fftconv_filter_spectrum(k, D, 12), c10::Error);  // not a power of two
  EXPECT_THROW(internal::fftconv_filter_spectrum(k, D, 4), c10::Error);   // L_k > fft_size
  EXPECT_THROW(internal::fftconv_filter_spectrum(torch::randn({0, 7}), torch::randn({0}), 16), c10::Error);  // H 0
}

TEST(FftConv, RecomputeEnvironmentSwitchAcceptsOffAndOnOnly) {
  EXPECT_FALSE(internal::parse_fftconv_recompute_env(""));
  EXPECT_FALSE(internal::parse_fftconv_recompute_env("off"));
  EXPECT_TRUE(internal::parse_fftconv_recompute_env("on"));
  for (const char* bad : {"ON", "1", "true", " on"}) {
    const auto m = testing::c10_error_of([&] { internal::parse_fftconv_recompute_env(bad); });
    EXPECT_NE(m.find("HIPPO_FFTCONV_RECOMPUTE: unknown value"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find("accepted: off, on"), std::string::npos) << bad << ": " << m;
  }
}

// Which backward kernel runs (cuda::bwd_is_plain, asked by both the launcher and the glue's occupancy query): the
// plain one only when no gate, GELU, mask or saved z is set; any one of them, outputs or not, selects the general
// kernel. The pointers are never read here.
TEST(FftConv, PlainBackwardKernelOnlyWithoutGatesGeluMaskOrZ) {
  static float dummy[1];
  cuda::FftConvBwdParams p;
  p.u = p.dy = p.kf = dummy;
  p.du = dummy;
  p.dk_spec = dummy;
  EXPECT_TRUE(cuda::bwd_is_plain(p));
  auto with = [&](auto set) {
    cuda::FftConvBwdParams q = p;
    set(q);
    return cuda::bwd_is_plain(q);
  };
  EXPECT_FALSE(with([](cuda::FftConvBwdParams& q) { q.v = dummy; }));
  EXPECT_FALSE(with([](cuda::FftConvBwdParams& q) { q.q = dummy; }));
  EXPECT_FALSE(with([](cuda::FftConvBwdParams& q) { q.mask = dummy; }));
  EXPECT_FALSE(with([](cuda::FftConvBwdParams& q) { q.z = dummy; }));
  EXPECT_FALSE(with([](cuda::FftConvBwdParams& q) { q.gelu = true; }));
  // Which gradients are asked for does not choose the kernel.
  EXPECT_TRUE(with([](cuda::FftConvBwdParams& q) { q.dk_spec = nullptr; }));
  EXPECT_TRUE(with([](cuda::FftConvBwdParams& q) { q.du = nullptr; }));
}

// The backward's row groups by whole waves (cuda::bwd_chunks_by_waves): the H200 examples of its header (132 SMs,
// B 16, H 768; 8, 4, 2 and 1 blocks a multiprocessor at fft_size 2048 to 16384), and the same answer as costing
// every group count, which it skips.
TEST(FftConv, BackwardRowGroupsByWavesMatchEveryCountCosted) {
  EXPECT_EQ(cuda::bwd_chunks_by_waves(16, 768, 132 * 8), 4);
  EXPECT_EQ(cuda::bwd_chunks_by_waves(16, 768, 132 * 4), 2);
  EXPECT_EQ(cuda::bwd_chunks_by_waves(16, 768, 132 * 2), 1);
  EXPECT_EQ(cuda::bwd_chunks_by_waves(16, 768, 132), 1);
  EXPECT_EQ(cuda::bwd_chunks_by_waves(1, 768, 132), 1);
  auto every_count = [](int64_t B, int64_t H, int64_t slots) {
    int64_t best = 1;
    double best_cost = 0;
    for (int64_t c = 1; c <= B; ++c) {
      const double waves = static_cast<double>((c * H + slots - 1) / slots);
      const double cost = waves * (static_cast<double>((B + c - 1) / c) + 0.125);
      if (c == 1 || cost < best_cost) best = c, best_cost = cost;
    }
    return static_cast<int>(best);
  };
  for (int64_t B = 1; B <= 70; ++B)
    for (const int64_t H : {1, 7, 24, 111, 768, 4096})
      for (const int64_t slots : {1, 132, 264, 1056, 4224})
        ASSERT_EQ(cuda::bwd_chunks_by_waves(B, H, slots), every_count(B, H, slots))
            << "B " << B << " H " << H << " slots " << slots;
  // Large B stays cheap (about 2 sqrt(B) candidates) and in range.
  const int big = cuda::bwd_chunks_by_waves(int64_t{1} << 30, 1, 132);
  EXPECT_GE(big, 1);
  EXPECT_LE(big, int64_t{1} << 30);
}

TEST(FftConv, SetBwdChunksRefusesOutOfRange) {
  const testing::BwdChunksGuard restore;
  for (const int bad : {-1, 65537}) EXPECT_THROW(set_fftconv_bwd_chunks(bad), c10::Error) << bad;
  set_fftconv_bwd_chunks(3);
  EXPECT_EQ(fftconv_bwd_chunks_setting(), 3);
}

TEST(FftConv, BwdChunksEnvironmentSwitchAcceptsAutoAndACount) {
  EXPECT_EQ(internal::parse_fftconv_bwd_chunks_env(""), 0);
  EXPECT_EQ(internal::parse_fftconv_bwd_chunks_env("auto"), 0);
  EXPECT_EQ(internal::parse_fftconv_bwd_chunks_env("1"), 1);
  EXPECT_EQ(internal::parse_fftconv_bwd_chunks_env("65536"), 65536);
  for (const char* bad : {"0", "65537", "-2", "2x", " 2", "AUTO", "999999999999"}) {
    const auto m = testing::c10_error_of([&] { internal::parse_fftconv_bwd_chunks_env(bad); });
    EXPECT_NE(m.find("HIPPO_FFTCONV_BWD_CHUNKS: unknown value"), std::string::npos) << bad << ": " << m;
    EXPECT_NE(m.find("accepted: auto, or an integer from 1 to 65536"), std::string::npos) << bad << ": " << m;
  }
}

TEST(FftConv, FilterEnvironmentSwitchAcceptsKernelAndAtenOnly) {
  EXPECT_FALSE(internal::parse_fftconv_filter_env(""));
  EXPECT_FALSE(internal::parse_fftconv_filter_env("kernel"));
  EXPECT_TRUE(internal::parse_fftconv_filter_env("aten"));
  EXPECT_THROW(internal::parse_fftconv_filter_env("ATEN"), c10::Error);
  // A control character is shown escaped: the error stays one line.
  const auto m = testing::c10_error_of([] { internal::parse_fftconv_filter_env("aten\n"); });
  EXPECT_NE(m.find("unknown value 'aten\\x0a'"), std::string::npos) << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << m;
}

// float32 GELU gradients when the caller permutes the output (as the mixers do, (B, H, L) -> (B, L, H)): LibTorch
// 1.13's CPU gelu_backward gave inf/NaN there; internal::gelu_exact hands it a contiguous gradient.
TEST(FftConv, GeluGradientsInFloat32WithAPermutedOutput) {
  torch::manual_seed(11);
  const int64_t B = 2, H = 6, L = 100;
  auto u64 = torch::randn({B, H, L}, torch::kDouble), k64 = torch::randn({H, L}, torch::kDouble) / 10;
  auto D64 = torch::randn({H}, torch::kDouble), w = torch::randn({B, L, H}, torch::kDouble);
  auto grads = [&](torch::ScalarType t) {
    auto u = u64.to(t).requires_grad_(true), k = k64.to(t).requires_grad_(true), D = D64.to(t).requires_grad_(true);
    FftConvOptions o;
    o.gelu = true;
    auto y = fftconv_ref(u, k, D, o).transpose(1, 2);
    return torch::autograd::grad({(y.to(torch::kDouble) * w).sum()}, {u, k, D});
  };
  testing::expect_gradients_close(grads(torch::kFloat), grads(torch::kDouble), 1e-4, "fftconv_ref with GELU");
}

// The reference with a full-length filter, and fftconv_direct (kernels/fftconv.h) with a short one.
TEST(FftConv, GatesGeluAndDropoutCompose) {
  for (const bool direct : {false, true}) {
    torch::manual_seed(3);
    const int64_t B = 2, H = 5, L = 37, Lk = direct ? 9 : L;
    auto u = torch::randn({B, H, L}, torch::kDouble), k = torch::randn({H, Lk}, torch::kDouble);
    auto D = torch::randn({H}, torch::kDouble), v = torch::randn({B, H, L}, torch::kDouble);
    auto q = torch::randn({B, H, L}, torch::kDouble);
    auto mask = (torch::rand({B, H}, torch::kDouble) > 0.3).to(torch::kDouble) / 0.7;
    FftConvOptions o;
    o.v = v;
    o.q = q;
    o.gelu = true;
    o.dropout_mask = mask;
    auto expected = torch::gelu(causal_conv_direct(u * v, k, D)) * mask.unsqueeze(-1) * q;
    EXPECT_TRUE(
        all_close(direct ? fftconv_direct(u, k, D, o) : fftconv_ref(u, k, D, o), expected, 1e-10, 1e-10))
        << (direct ? "fftconv_direct" : "fftconv_ref");
  }
}

TEST(FftConv, HalfInputsUpcastAndReturnTheirDtype) {
  torch::manual_seed(4);
  for (auto dt : {torch::kHalf, torch::kBFloat16}) {
    auto u = torch::randn({2, 6, 64}).to(dt);
    auto k = torch::randn({6, 64}) / 8, D = torch::randn({6});
    auto y = fftconv_ref(u, k, D);
    EXPECT_EQ(y.scalar_type(), dt);
    auto ref = causal_conv_direct(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble));
    // Inside arithmetic is float32; only the final rounding to the half type remains: a few ulps of it.
    const double ulp = dt == torch::kHalf ? 1e-3 : 8e-3;
    EXPECT_LT(testing::rel_error(y, ref), 2 * ulp);
  }
}

TEST(FftConv, GradientsMatchFiniteDifferences) {
  torch::manual_seed(5);
  const int64_t B = 2, H = 3, L = 19;
  auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  std::vector<torch::Tensor> in = {torch::randn({B, H, L}, opts), torch::randn({H, 11}, opts), torch::randn({H}, opts),
                                   torch::randn({B, H, L}, opts), torch::randn({B, H, L}, opts)};
  auto w = torch::randn({B, H, L}, torch::kDouble);
  auto f = [&](const std::vector<torch::Tensor>& x) {
    FftConvOptions o;
    o.v = x[3];
    o.q = x[4];
    o.gelu = true;
    return (fftconv_ref(x[0], x[1], x[2], o) * w).sum();
  };
  EXPECT_TRUE(testing::grad_check(f, in));
}

TEST(FftConv, RejectsBadArguments) {
  auto u = torch::randn({2, 3, 8});
  EXPECT_THROW(fftconv_ref(torch::randn({3, 8}), torch::randn({3, 8}), torch::randn({3})), c10::Error);
  EXPECT_THROW(fftconv_ref(u, torch::randn({4, 8}), torch::randn({3})), c10::Error);  // H mismatch
  EXPECT_THROW(fftconv_ref(u, torch::randn({3, 9}), torch::randn({3})), c10::Error);  // L_k > L
  EXPECT_THROW(fftconv_ref(u.to(torch::kInt), torch::randn({3, 8}), torch::randn({3})), c10::Error);
  FftConvOptions o;
  o.q = torch::randn({2, 3, 7});
  EXPECT_THROW(fftconv_ref(u, torch::randn({3, 8}), torch::randn({3}), o), c10::Error);
}

TEST(FftConv, SizeIsNextPowerOfTwoAtLeast16) {
  EXPECT_EQ(fftconv_size(1, 1), 16);
  EXPECT_EQ(fftconv_size(8, 8), 16);
  EXPECT_EQ(fftconv_size(9, 9), 32);
  EXPECT_EQ(fftconv_size(1024, 1024), 2048);
  EXPECT_EQ(fftconv_size(1025, 7), 2048);
}

}  // namespace
}  // namespace hippo
