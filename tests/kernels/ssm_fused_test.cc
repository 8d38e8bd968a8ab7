// The fused diagonal-SSM kernel generation (kernels/ssm_fused.h). On the CPU: the per-mode arithmetic the CUDA
// kernels share (kernels/ssm_math.h) against DiagSSMImpl::discretize and its autograd gradients in float64,
// both discretisations, a clamped Re A included; the env switch; the refusal off the GPU. On a GPU: the fused K and
// its five parameter gradients against the ATen expression in float64, with an error at most twice the float32
// expression's, over channel counts, mode counts past and inside a group of 32, and lengths across tile edges; the
// shift SSM's taps and their gradients the same way.
// GPU tests skip, with the reason, without a CUDA device or without the CUDA kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/ssm_fused.h"
#include "kernels/ssm_math.h"
#include "kernels/fftconv.h"
#include "layers/ssm.h"
#include "tests/kernels/cuda_required.h"
#include "tests/testing.h"

namespace hippo {
namespace {

using ssm_math::Cx;
using ssm_math::Mode;

// A DiagSSM with parameters spread away from their initial values (random B, C, A_imag, log_A_real, log_dt), and
// one mode whose exp(log_A_real) lies under the 1e-4 clamp.
DiagSSM perturbed_ssm(int64_t H, int64_t d_state, const std::string& discretization, uint64_t seed) {
  torch::manual_seed(seed);
  DiagSSM ssm(H, d_state, discretization, 1e-3, 1e-1);
  torch::NoGradGuard no_grad;
  ssm->B_.copy_(torch::randn_like(ssm->B_));
  ssm->C_.copy_(torch::randn_like(ssm->C_));
  ssm->A_imag_.add_(torch::randn_like(ssm->A_imag_));
  ssm->log_A_real_.add_(torch::randn_like(ssm->log_A_real_) * 0.5);
  ssm->log_A_real_.index_put_({0, 0}, std::log(1e-5));
  return ssm;
}

Mode<double> mode_of(DiagSSMImpl& s, int64_t h, int64_t n) {
  Mode<double> m;
  m.dt = std::exp(s.log_dt_[h].item<double>());
  m.log_A_real = s.log_A_real_[h][n].item<double>();
  m.A_imag = s.A_imag_[h][n].item<double>();
  m.B = {s.B_[h][n][0].item<double>(), s.B_[h][n][1].item<double>()};
  m.C = {s.C_[h][n][0].item<double>(), s.C_[h][n][1].item<double>()};
  return m;
}

TEST(SsmMath, DiscretizeAndItsBackwardMatchDiagSsmAndAutograd) {
  const int64_t H = 3, N2 = 5;
  for (const std::string disc : {"bilinear", "zoh"}) {
    auto ssm = perturbed_ssm(H, 2 * N2, disc, 7);
    ssm->to(torch::kDouble);
    auto d = ssm->discretize();
    auto C_re = ssm->C_.select(2, 0), C_im = ssm->C_.select(2, 1);
    auto Cp_re = C_re * d.dB_re - C_im * d.dB_im, Cp_im = C_re * d.dB_im + C_im * d.dB_re;
    // A real loss with random weights on w = log dA and C' = C dB: its gradients are G_w and G_C'.
    auto gw = torch::randn({4, H, N2}, torch::kDouble);
    auto loss = (gw[0] * d.log_dA_re + gw[1] * d.log_dA_im + gw[2] * Cp_re + gw[3] * Cp_im).sum();
    auto g = torch::autograd::grad({loss}, {ssm->log_dt_, ssm->log_A_real_, ssm->A_imag_, ssm->B_, ssm->C_});
    for (int64_t h = 0; h < H; ++h) {
      double g_log_dt = 0;
      for (int64_t n = 0; n < N2; ++n) {
        const auto m = mode_of(*ssm, h, n);
        Cx<double> w, cp;
        ssm_math::discretize(m, disc == "bilinear", w, cp);
        EXPECT_NEAR(w.re, d.log_dA_re[h][n].item<double>(), 1e-13) << disc << " h=" << h << " n=" << n;
        EXPECT_NEAR(w.im, d.log_dA_im[h][n].item<double>(), 1e-13) << disc;
        EXPECT_NEAR(cp.re, Cp_re[h][n].item<double>(), 1e-13) << disc;
        EXPECT_NEAR(cp.im, Cp_im[h][n].item<double>(), 1e-13) << disc;
        Mode<double> gm;
        const Cx<double> G_w{gw[0][h][n].item<double>(), gw[1][h][n].item<double>()};
        const Cx<double> G_cp{gw[2][h][n].item<double>(), gw[3][h][n].item<double>()};
        ssm_math::discretize_backward(m, disc == "bilinear", G_w, G_cp, gm);
        const std::string at = disc + " h=" + std::to_string(h) + " n=" + std::to_string(n);
        EXPECT_NEAR(gm.log_A_real, g[1][h][n].item<double>(), 1e-11) << at;
        EXPECT_NEAR(gm.A_imag, g[2][h][n].item<double>(), 1e-11) << at;
        EXPECT_NEAR(gm.B.re, g[3][h][n][0].item<double>(), 1e-11) << at;
        EXPECT_NEAR(gm.B.im, g[3][h][n][1].item<double>(), 1e-11) << at;
        EXPECT_NEAR(gm.C.re, g[4][h][n][0].item<double>(), 1e-11) << at;
        EXPECT_NEAR(gm.C.im, g[4][h][n][1].item<double>(), 1e-11) << at;
        g_log_dt += gm.dt * m.dt;
      }
      EXPECT_NEAR(g_log_dt, g[0][h].item<double>(), 1e-11) << disc << " h=" << h;
    }
    // The clamped mode gets no gradient in log_A_real, as clamp_min gives.
    EXPECT_EQ(g[1][0][0].item<double>(), 0.0) << disc;
  }
}

TEST(DiagSsmKernel, EnvSwitchAcceptsFusedAndAtenOnly) {
  EXPECT_FALSE(internal::parse_ssm_kernel_env(""));
  EXPECT_FALSE(internal::parse_ssm_kernel_env("fused"));
  EXPECT_TRUE(internal::parse_ssm_kernel_env("aten"));
  try {
    internal::parse_ssm_kernel_env("Fused\n");
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("HIPPO_SSM_KERNEL: unknown value 'Fused\\x0a'; accepted: fused, aten"),
              std::string::npos)
        << e.what();
  }
}

TEST(ShiftSsmKernel, NotSupportedOnTheCpuAndRefusedThere) {
  ShiftSSM ssm(3, 8);
  EXPECT_FALSE(shift_ssm_kernel_fused_supported(ssm->B_, ssm->C_));
  try {
    shift_ssm_kernel_fused(ssm->B_, ssm->C_);
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("shift_ssm_kernel_fused: needs the CUDA kernels"), std::string::npos)
        << e.what();
  }
}

TEST(DiagSsmKernel, NotSupportedOnTheCpuAndRefusedThere) {
  auto ssm = perturbed_ssm(2, 4, "bilinear", 1);
  EXPECT_FALSE(diag_ssm_kernel_fused_supported(ssm->log_dt_, ssm->log_A_real_, ssm->A_imag_, ssm->B_, ssm->C_));
  try {
    diag_ssm_kernel_fused(ssm->log_dt_, ssm->log_A_real_, ssm->A_imag_, ssm->B_, ssm->C_, 8, true);
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("diag_ssm_kernel_fused: needs the CUDA kernels"), std::string::npos)
        << e.what();
  }
}

// K and its gradients for one loss sum(K * G): {K, g_log_dt, g_log_A_real, g_A_imag, g_B, g_C}. `reference`:
// through the ATen expression (FftConvReferenceScope), else the default path (the fused kernels on a GPU).
std::vector<torch::Tensor> kernel_and_grads(DiagSSMImpl& s, int64_t L, const torch::Tensor& G, bool reference) {
  std::optional<FftConvReferenceScope> scope;
  if (reference) scope.emplace();
  auto K = s.kernel(L);
  auto g = torch::autograd::grad({(K * G.to(K.scalar_type())).sum()},
                                 {s.log_dt_, s.log_A_real_, s.A_imag_, s.B_, s.C_});
  g.insert(g.begin(), K.detach());
  return g;
}

TEST(DiagSsmKernelCuda, FusedKernelAndGradientsMatchTheExpression) {
  HIPPO_REQUIRE_CUDA();
  int cases = 0;
  for (const std::string disc : {"bilinear", "zoh"}) {
    for (const int64_t H : {1, 111}) {
      for (const int64_t N2 : {1, 32, 33, 70}) {
        for (const int64_t L : {1, 31, 1000, 1024, 1025, 4096, 8192, 70000}) {
          if (H * N2 * L > int64_t{111} * 33 * 8192) continue;  // keep the float64 references small
          auto ssm = perturbed_ssm(H, 2 * N2, disc, 100 + L + N2);
          ssm->to(torch::kCUDA);
          ASSERT_TRUE(diag_ssm_kernel_fused_supported(ssm->log_dt_, ssm->log_A_real_, ssm->A_imag_, ssm->B_,
                                                      ssm->C_));
          auto G = torch::randn({H, L}, torch::device(torch::kCUDA).dtype(torch::kDouble));
          auto fused = kernel_and_grads(*ssm, L, G, false);
          auto plain = kernel_and_grads(*ssm, L, G, true);
          auto ssm64 = perturbed_ssm(H, 2 * N2, disc, 100 + L + N2);  // the same values
          ssm64->to(torch::kCUDA, torch::kDouble);
          auto ref = kernel_and_grads(*ssm64, L, G, true);
          const std::string at = disc + " H=" + std::to_string(H) + " N2=" + std::to_string(N2) +
                                 " L=" + std::to_string(L);
          const char* names[] = {"K", "log_dt", "log_A_real", "A_imag", "B", "C"};
          for (size_t i = 0; i < fused.size(); ++i) {
            ASSERT_TRUE(fused[i].is_cuda() && fused[i].scalar_type() == torch::kFloat) << at << " " << names[i];
            ASSERT_TRUE(torch::isfinite(fused[i]).all().item<bool>()) << at << " " << names[i];
            const double e_fused = testing::rel_error(fused[i], ref[i]), e_plain = testing::rel_error(plain[i], ref[i]);
            EXPECT_LE(e_fused, 2 * e_plain + 1e-6) << at << " " << names[i] << ": fused " << e_fused
                                                   << ", float32 expression " << e_plain;
          }
          ++cases;
        }
      }
    }
  }
  EXPECT_GT(cases, 40);
}

TEST(ShiftSsmKernelCuda, FusedTapsAndGradientsMatchTheExpression) {
  HIPPO_REQUIRE_CUDA();
  for (const int64_t H : {1, 111}) {
    for (const int64_t N : {1, 4, 64, 65, 300, 4096}) {
      torch::manual_seed(N + H);
      auto make = [&] {
        torch::manual_seed(N + H);
        ShiftSSM s(H, N);
        torch::NoGradGuard no_grad;
        s->B_.copy_(torch::randn_like(s->B_));  // B away from e_1, so that every tap of B matters
        return s;
      };
      auto ssm = make(), ssm64 = make();
      ssm->to(torch::kCUDA);
      ssm64->to(torch::kCUDA, torch::kDouble);
      ASSERT_TRUE(shift_ssm_kernel_fused_supported(ssm->B_, ssm->C_));
      auto G = torch::randn({H, N}, torch::device(torch::kCUDA).dtype(torch::kDouble));
      auto run = [&](ShiftSSMImpl& s, bool reference) {
        std::optional<FftConvReferenceScope> scope;
        if (reference) scope.emplace();
        auto k = s.kernel();
        auto g = torch::autograd::grad({(k * G.to(k.scalar_type())).sum()}, {s.B_, s.C_});
        g.insert(g.begin(), k.detach());
        return g;
      };
      auto fused = run(*ssm, false), plain = run(*ssm, true), ref = run(*ssm64, true);
      const char* names[] = {"k", "B", "C"};
      for (size_t i = 0; i < fused.size(); ++i) {
        ASSERT_EQ(fused[i].scalar_type(), torch::kFloat);
        const double e_fused = testing::rel_error(fused[i], ref[i]), e_plain = testing::rel_error(plain[i], ref[i]);
        EXPECT_LE(e_fused, 2 * e_plain + 1e-6) << "H=" << H << " N=" << N << " " << names[i] << ": fused "
                                               << e_fused << ", float32 expression " << e_plain;
      }
    }
  }
}

// The whole layer path: DiagSSM::forward (no state passing) on a GPU takes the fused kernels (the kernel's grad_fn
// is the fused Function; under the reference scope it is not). Its error against float64 is compared with the same
// path given the ATen expression's kernel (made under FftConvReferenceScope, then the fused fftconv), which isolates
// the fused SSM kernel; all three paths' errors are printed.
// This test found a defect (session 9): the fused gradients of log_dt and A_imag were 3.7x / 4.6x the ATen kernel's
// error. The cause (session 10): the forward formed each power's phase in float32 (K about 2e-5 off) while the
// backward is the exact float64 gradient; under this loss the float32 expression's gradient errors partly cancel
// its own K error, the exact gradient's do not. With the phases reduced in float64 (then per table entry; since
// session 13 by float64 products from one or two float64 exponentials per table row) the fused path is about 20x
// closer to float64 than the ATen kernel for every tensor (H200, session 10: log_dt 5.5e-6 against 1.1e-4, A_imag
// 5.6e-6 against 8.8e-5; session 13's kernels, call 4: 5.3e-6 and 5.4e-6 against the same).
TEST(DiagSsmKernelCuda, DiagSsmForwardUsesItAndAgrees) {
  HIPPO_REQUIRE_CUDA();
  auto ssm = perturbed_ssm(64, 64, "bilinear", 3), ssm64 = perturbed_ssm(64, 64, "bilinear", 3);
  ssm->to(torch::kCUDA);
  ssm64->to(torch::kCUDA, torch::kDouble);
  ASSERT_TRUE(diag_ssm_kernel_fused_supported(ssm->log_dt_, ssm->log_A_real_, ssm->A_imag_, ssm->B_, ssm->C_));
  {
    auto K = ssm->kernel(3000);
    ASSERT_NE(K.grad_fn(), nullptr);
    EXPECT_NE(K.grad_fn()->name().find("DiagSsmKernelFunction"), std::string::npos) << K.grad_fn()->name();
    FftConvReferenceScope reference;
    auto K_ref = ssm->kernel(3000);
    ASSERT_NE(K_ref.grad_fn(), nullptr);
    EXPECT_EQ(K_ref.grad_fn()->name().find("DiagSsmKernelFunction"), std::string::npos) << K_ref.grad_fn()->name();
  }
  auto u = torch::randn({2, 64, 3000}, torch::device(torch::kCUDA));
  ASSERT_TRUE(fftconv_fused_supported(u, ssm->kernel(3000), ssm->D_));
  // 0: forward() (fused kernel, fused fftconv); 1: the ATen expression's kernel through the fused fftconv;
  // 2: everything on the reference path.
  auto run = [&](DiagSSMImpl& s, const torch::Tensor& x, int path) {
    torch::Tensor y;
    if (path == 0) {
      y = s.forward(x);
    } else if (path == 1) {
      torch::Tensor K;
      {
        FftConvReferenceScope reference;
        K = s.kernel(x.size(2));
      }
      y = fftconv_fused(x, K, s.D_);
    } else {
      FftConvReferenceScope reference;
      y = s.forward(x);
    }
    auto g = torch::autograd::grad({y.square().sum()}, s.parameters());
    g.insert(g.begin(), y.detach());
    return g;
  };
  std::vector<std::string> names;
  for (const auto& p : ssm->named_parameters()) names.push_back(p.key());
  ASSERT_EQ(names[1], "log_dt");
  auto fused = run(*ssm, u, 0), aten_kernel = run(*ssm, u, 1), plain = run(*ssm, u, 2),
       ref = run(*ssm64, u.to(torch::kDouble), 2);
  for (size_t i = 0; i < fused.size(); ++i) {
    const double e_fused = testing::rel_error(fused[i], ref[i]), e_aten = testing::rel_error(aten_kernel[i], ref[i]),
                 e_plain = testing::rel_error(plain[i], ref[i]);
    std::printf("[diag ssm layer] tensor %zu (0: y, then C, log_dt, B, log_A_real, A_imag, D): fused %.3e, "
                "aten kernel + fused fftconv %.3e, reference path %.3e\n",
                i, e_fused, e_aten, e_plain);
    const std::string name = i == 0 ? "y" : names[i - 1];
    EXPECT_LE(e_fused, 2 * e_aten + 1e-6) << name << ": fused " << e_fused << ", ATen kernel " << e_aten;
  }
}

}  // namespace
}  // namespace hippo
