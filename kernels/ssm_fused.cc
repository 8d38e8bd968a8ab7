// Glue of the fused SSM kernel generation (kernels/ssm_fused.h): argument checks, the env switch and, with the CUDA
// kernels, the autograd Functions around the launchers of kernels/ssm_kernel.cu.
#include "kernels/ssm_fused.h"

#include <torch/torch.h>

#include <cstdlib>

#include "kernels/fftconv.h"

#ifdef HIPPO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/launch_checked.h"
#include "kernels/ssm_kernel.h"
#endif

namespace hippo {

namespace internal {
bool parse_ssm_kernel_env(const std::string& value) {
  if (value.empty() || value == "fused") return false;
  if (value == "aten") return true;
  TORCH_CHECK(false, "HIPPO_SSM_KERNEL: unknown value '", printable(value), "'; accepted: fused, aten");
}
}  // namespace internal

namespace {

bool ssm_kernel_on_aten() {
  static const bool aten = [] {
    const char* e = std::getenv("HIPPO_SSM_KERNEL");
    return e != nullptr && internal::parse_ssm_kernel_env(e);
  }();
  return aten;
}

#ifdef HIPPO_WITH_CUDA
using torch::Tensor;

cuda::DiagSsmParams params_of(const Tensor& log_dt, const Tensor& lar, const Tensor& aim, const Tensor& B,
                              const Tensor& C, int64_t L, bool bilinear) {
  cuda::DiagSsmParams p;
  p.log_dt = log_dt.data_ptr<float>();
  p.log_A_real = lar.data_ptr<float>();
  p.A_imag = aim.data_ptr<float>();
  p.B = B.data_ptr<float>();
  p.C = C.data_ptr<float>();
  p.H = lar.size(0);
  p.N2 = lar.size(1);
  p.L = L;
  p.bilinear = bilinear;
  return p;
}

using internal::launch_checked;

struct DiagSsmKernelFunction : public torch::autograd::Function<DiagSsmKernelFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& log_dt, const Tensor& lar,
                        const Tensor& aim, const Tensor& B, const Tensor& C, int64_t L, bool bilinear) {
    const auto dt_c = log_dt.contiguous(), lar_c = lar.contiguous(), aim_c = aim.contiguous(),
               B_c = B.contiguous(), C_c = C.contiguous();
    ctx->save_for_backward({dt_c, lar_c, aim_c, B_c, C_c});
    ctx->saved_data["L"] = L;
    ctx->saved_data["bilinear"] = bilinear;
    const c10::cuda::CUDAGuard guard(lar.device());
    auto K = torch::empty({lar.size(0), L}, lar.options());
    const auto p = params_of(dt_c, lar_c, aim_c, B_c, C_c, L, bilinear);
    launch_checked([&] { cuda::diag_ssm_kernel_launch(p, K.data_ptr<float>(), at::cuda::getCurrentCUDAStream()); });
    return K;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "diag_ssm_kernel_fused: no second derivative (create_graph) through the fused kernels; set "
                "HIPPO_SSM_KERNEL=aten for the differentiable ATen expression");
    const auto s = ctx->get_saved_variables();
    const int64_t L = ctx->saved_data["L"].toInt();
    const bool bilinear = ctx->saved_data["bilinear"].toBool();
    const c10::cuda::CUDAGuard guard(s[1].device());
    const auto dK = grads[0].to(torch::kFloat).contiguous();
    const auto p = params_of(s[0], s[1], s[2], s[3], s[4], L, bilinear);
    auto partial = torch::empty({p.H, cuda::diag_ssm_tiles(L), p.N2, 4}, s[1].options().dtype(torch::kDouble));
    auto g_dt = torch::empty_like(s[0]), g_lar = torch::empty_like(s[1]), g_aim = torch::empty_like(s[2]),
         g_B = torch::empty_like(s[3]), g_C = torch::empty_like(s[4]);
    cuda::DiagSsmGrads g;
    g.partial = partial.data_ptr<double>();
    g.log_dt = g_dt.data_ptr<float>();
    g.log_A_real = g_lar.data_ptr<float>();
    g.A_imag = g_aim.data_ptr<float>();
    g.B = g_B.data_ptr<float>();
    g.C = g_C.data_ptr<float>();
    launch_checked([&] {
      cuda::diag_ssm_kernel_backward_launch(p, dK.data_ptr<float>(), g, at::cuda::getCurrentCUDAStream());
    });
    return {g_dt, g_lar, g_aim, g_B, g_C, Tensor(), Tensor()};
  }
};

struct ShiftSsmKernelFunction : public torch::autograd::Function<ShiftSsmKernelFunction> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& B, const Tensor& C) {
    const auto Bc = B.contiguous(), Cc = C.contiguous();
    ctx->save_for_backward({Bc, Cc});
    const c10::cuda::CUDAGuard guard(B.device());
    auto k = torch::empty_like(Bc);
    launch_checked([&] {
      cuda::shift_ssm_kernel_launch(Bc.data_ptr<float>(), Cc.data_ptr<float>(), Bc.size(0), Bc.size(1),
                                    k.data_ptr<float>(), at::cuda::getCurrentCUDAStream());
    });
    return k;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "shift_ssm_kernel_fused: no second derivative (create_graph) through the fused kernel; set "
                "HIPPO_SSM_KERNEL=aten for the differentiable ATen expression");
    const auto s = ctx->get_saved_variables();
    const c10::cuda::CUDAGuard guard(s[0].device());
    const auto dk = grads[0].to(torch::kFloat).contiguous();
    auto gB = torch::empty_like(s[0]), gC = torch::empty_like(s[1]);
    launch_checked([&] {
      cuda::shift_ssm_kernel_backward_launch(s[0].data_ptr<float>(), s[1].data_ptr<float>(), dk.data_ptr<float>(),
                                             s[0].size(0), s[0].size(1), gB.data_ptr<float>(), gC.data_ptr<float>(),
                                             at::cuda::getCurrentCUDAStream());
    });
    return {gB, gC};
  }
};
#endif

}  // namespace

bool shift_ssm_kernel_fused_supported(const torch::Tensor& B, const torch::Tensor& C) {
#ifdef HIPPO_WITH_CUDA
  if (ssm_kernel_on_aten()) return false;
  return B.defined() && C.defined() && B.device().is_cuda() && C.device() == B.device() &&
         B.scalar_type() == torch::kFloat && C.scalar_type() == torch::kFloat && B.dim() == 2 &&
         B.sizes() == C.sizes() && B.size(0) >= 1 && B.size(1) >= 1 && B.size(1) <= 4096;
#else
  (void)B, (void)C;
  return false;
#endif
}

torch::Tensor shift_ssm_kernel_fused(const torch::Tensor& B, const torch::Tensor& C) {
  TORCH_CHECK(shift_ssm_kernel_fused_supported(B, C),
              "shift_ssm_kernel_fused: needs the CUDA kernels, float32 B and C of one shape (H, N), 1 <= N <= 4096, "
              "on one CUDA device, and HIPPO_SSM_KERNEL unset or 'fused'");
#ifdef HIPPO_WITH_CUDA
  return ShiftSsmKernelFunction::apply(B, C);
#else
  TORCH_CHECK(false, "shift_ssm_kernel_fused: this build has no CUDA kernels");
#endif
}

bool diag_ssm_kernel_fused_supported(const torch::Tensor& log_dt, const torch::Tensor& log_A_real,
                                     const torch::Tensor& A_imag, const torch::Tensor& B, const torch::Tensor& C) {
#ifdef HIPPO_WITH_CUDA
  if (ssm_kernel_on_aten()) return false;
  const auto dev = log_A_real.device();
  if (!dev.is_cuda() || log_A_real.dim() != 2) return false;
  const int64_t H = log_A_real.size(0), N2 = log_A_real.size(1);
  for (const auto* t : {&log_dt, &log_A_real, &A_imag, &B, &C})
    if (!t->defined() || t->device() != dev || t->scalar_type() != torch::kFloat) return false;
  return H >= 1 && N2 >= 1 && log_dt.sizes() == torch::IntArrayRef{H} && A_imag.sizes() == log_A_real.sizes() &&
         B.sizes() == torch::IntArrayRef{H, N2, 2} && C.sizes() == torch::IntArrayRef{H, N2, 2};
#else
  (void)log_dt, (void)log_A_real, (void)A_imag, (void)B, (void)C;
  return false;
#endif
}

torch::Tensor diag_ssm_kernel_fused(const torch::Tensor& log_dt, const torch::Tensor& log_A_real,
                                    const torch::Tensor& A_imag, const torch::Tensor& B, const torch::Tensor& C,
                                    int64_t L, bool bilinear) {
  TORCH_CHECK(diag_ssm_kernel_fused_supported(log_dt, log_A_real, A_imag, B, C),
              "diag_ssm_kernel_fused: needs the CUDA kernels, float32 parameters on one CUDA device shaped log_dt (H), "
              "log_A_real and A_imag (H, N2), B and C (H, N2, 2), and HIPPO_SSM_KERNEL unset or 'fused'");
  TORCH_CHECK(L >= 1 && L <= int64_t{65535} * 1024, "diag_ssm_kernel_fused: L must be in [1, 65535 * 1024], got ", L);
#ifdef HIPPO_WITH_CUDA
  return DiagSsmKernelFunction::apply(log_dt, log_A_real, A_imag, B, C, L, bilinear);
#else
  TORCH_CHECK(false, "diag_ssm_kernel_fused: this build has no CUDA kernels");
#endif
}

}  // namespace hippo
