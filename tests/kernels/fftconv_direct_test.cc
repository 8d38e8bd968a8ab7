// fftconv_direct (a short filter by direct summation, kernels/fftconv.h) against the loop-level direct convolution
// and the FFT reference: values (every option: FftConv.GatesGeluAndDropoutCompose), half-precision inputs,
// gradients (against the reference's and by finite differences), a non-contiguous u, and fftconv()'s dispatch to it
// (HIPPO_FFTCONV_DIRECT).
#include <gtest/gtest.h>

#include <torch/cuda.h>

#include <cstdlib>
#include <string>

#include "kernels/fftconv.h"
#include "kernels/fftconv_blockfft.h"
#include "tests/kernels/fftconv_inputs.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::all_close;

using testing::DirectModeGuard;

TEST(FftConvDirect, MatchesTheLoopConvolutionAndTheReferenceInFloat64) {
  struct S {
    int64_t B, H, L, Lk;
  };
  for (const S s : {S{1, 3, 1, 1}, S{2, 5, 2, 2}, S{1, 111, 31, 31}, S{3, 4, 33, 7}, S{2, 3, 100, 64},
                    S{1, 2, 1025, 1}, S{2, 3, 257, 257}}) {
    SCOPED_TRACE("B" + std::to_string(s.B) + " H" + std::to_string(s.H) + " L" + std::to_string(s.L) + " Lk" +
                 std::to_string(s.Lk));
    torch::manual_seed(s.L + s.Lk);
    auto u = torch::randn({s.B, s.H, s.L}, torch::kDouble), k = torch::randn({s.H, s.Lk}, torch::kDouble);
    auto D = torch::randn({s.H}, torch::kDouble);
    const auto y = fftconv_direct(u, k, D);
    EXPECT_EQ(y.sizes(), u.sizes());
    EXPECT_TRUE(all_close(y, causal_conv_direct(u, k, D), 1e-12, 1e-12));
    EXPECT_TRUE(all_close(y, fftconv_ref(u, k, D), 1e-10, 1e-10));
  }
}

TEST(FftConvDirect, GradientsMatchTheReferenceAndFiniteDifferences) {
  torch::manual_seed(5);
  const int64_t B = 2, H = 3, L = 19, Lk = 11;
  auto opts = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  std::vector<torch::Tensor> in = {torch::randn({B, H, L}, opts), torch::randn({H, Lk}, opts), torch::randn({H}, opts),
                                   torch::randn({B, H, L}, opts), torch::randn({B, H, L}, opts)};
  auto w = torch::randn({B, H, L}, torch::kDouble);
  auto loss = [&](bool direct) {
    return [&, direct](const std::vector<torch::Tensor>& x) {
      FftConvOptions o;
      o.v = x[3];
      o.q = x[4];
      o.gelu = true;
      return ((direct ? fftconv_direct(x[0], x[1], x[2], o) : fftconv_ref(x[0], x[1], x[2], o)) * w).sum();
    };
  };
  const auto g_direct = torch::autograd::grad({loss(true)(in)}, in), g_ref = torch::autograd::grad({loss(false)(in)}, in);
  testing::expect_gradients_close(g_direct, g_ref, 1e-10, "fftconv_direct against fftconv_ref");
  EXPECT_TRUE(testing::grad_check(loss(true), in));
}

TEST(FftConvDirect, HalfInputsUpcastAndNonContiguousU) {
  torch::manual_seed(4);
  for (auto dt : {torch::kHalf, torch::kBFloat16, torch::kFloat}) {
    auto u = torch::randn({2, 64, 6}).to(dt).transpose(1, 2);  // (2, 6, 64), not contiguous
    auto k = torch::randn({6, 32}) / 6, D = torch::randn({6});
    auto y = fftconv_direct(u, k, D);
    EXPECT_EQ(y.scalar_type(), dt);
    auto ref = causal_conv_direct(u.to(torch::kDouble), k.to(torch::kDouble), D.to(torch::kDouble));
    // float32 inside; the final rounding to u's dtype dominates: at most twice the reference path's error.
    EXPECT_LE(testing::rel_error(y, ref), 2 * testing::rel_error(fftconv_ref(u, k, D), ref) + 1e-7);
  }
}

TEST(FftConvDirect, DispatchModesAndTheirErrors) {
  DirectModeGuard guard;
  if (!std::getenv("HIPPO_FFTCONV_DIRECT")) EXPECT_EQ(direct_dispatch(), FftConvDirectDispatch::kAuto) << "the default";
  EXPECT_EQ(parse_direct_dispatch("off"), FftConvDirectDispatch::kOff);
  EXPECT_EQ(parse_direct_dispatch("auto"), FftConvDirectDispatch::kAuto);
  EXPECT_EQ(parse_direct_dispatch("cpu"), FftConvDirectDispatch::kCpu);
  EXPECT_EQ(parse_direct_dispatch("on"), FftConvDirectDispatch::kOn);
  try {
    parse_direct_dispatch("auto\n");
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("HIPPO_FFTCONV_DIRECT: unknown value 'auto\\x0a'; accepted: off, auto, cpu, on"), std::string::npos)
        << msg;
  }
  torch::manual_seed(6);
  auto u = torch::randn({2, 3, 100}), D = torch::randn({3});
  auto k_short = torch::randn({3, kFftConvDirectMaxTaps}), k_long = torch::randn({3, kFftConvDirectMaxTaps + 1});
  set_direct_dispatch(FftConvDirectDispatch::kCpu);
  EXPECT_TRUE(fftconv_takes_direct(u, k_short));
  EXPECT_FALSE(fftconv_takes_direct(u, k_long));
  EXPECT_FALSE(fftconv_takes_direct(u.narrow(2, 0, 10), k_short)) << "L_k > L is left to the path that rejects it";
  if (torch::cuda::is_available())  // kCpu leaves a GPU's tensors to fftconv_short (checked where a GPU is)
    EXPECT_FALSE(fftconv_takes_direct(u.to(torch::kCUDA), k_short.to(torch::kCUDA)));
  EXPECT_TRUE(torch::equal(fftconv(u, k_short, D), fftconv_direct(u, k_short, D)));
  EXPECT_TRUE(torch::equal(fftconv(u, k_long, D), fftconv_ref(u, k_long, D)));
  {
    FftConvReferenceScope reference;  // the specification wins over every dispatch
    EXPECT_TRUE(torch::equal(fftconv(u, k_short, D), fftconv_ref(u, k_short, D)));
  }
  for (const auto mode : {FftConvDirectDispatch::kOff, FftConvDirectDispatch::kAuto}) {  // the CPU's FFT
    set_direct_dispatch(mode);
    EXPECT_FALSE(fftconv_takes_direct(u, k_short));
    EXPECT_TRUE(torch::equal(fftconv(u, k_short, D), fftconv_ref(u, k_short, D)));
  }
  set_direct_dispatch(FftConvDirectDispatch::kOn);
  EXPECT_TRUE(fftconv_takes_direct(u, k_short));
}

// The path past the block FFT follows the direct mode, and the block FFT's autotune times that path (not a fixed
// fused-or-reference guess).
TEST(FftConvDirect, BlockFftAutotuneTimesThePathFftconvWouldTake) {
  DirectModeGuard guard;
  const BlockFftDispatch saved_block = blockfft_dispatch();
  torch::manual_seed(7);
  auto u = torch::randn({2, 3, 100}), D = torch::randn({3}), k = torch::randn({3, 16});
  set_direct_dispatch(FftConvDirectDispatch::kAuto);
  EXPECT_EQ(internal::fftconv_path_past_blockfft(u, k, D, {}), internal::FftConvPath::kReference) << "CPU: the FFT";
  set_direct_dispatch(FftConvDirectDispatch::kCpu);
  EXPECT_EQ(internal::fftconv_path_past_blockfft(u, k, D, {}), internal::FftConvPath::kDirect);
  EXPECT_STREQ(internal::fftconv_path_name(internal::FftConvPath::kDirect), "direct");
  EXPECT_TRUE(torch::equal(internal::fftconv_past_blockfft(u, k, D, {}), fftconv_direct(u, k, D)));
  set_blockfft_dispatch(BlockFftDispatch::kAuto);
  clear_blockfft_autotune();
  const bool block = fftconv_takes_blockfft(u, k, D, {});
  const auto rec = blockfft_autotune_record();
  set_blockfft_dispatch(saved_block);
  clear_blockfft_autotune();
  ASSERT_EQ(rec.size(), 1u);
  EXPECT_EQ(rec[0].other_path, "direct");
  EXPECT_EQ(rec[0].blockfft, block);
}

}  // namespace
}  // namespace hippo
