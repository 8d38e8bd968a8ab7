// transpose_contiguous and transpose_add_bias (kernels/transpose.h): ATen on the CPU; on CUDA the tiled kernel inside
// autograd Functions whose backward is the same transpose (with the bias gradient's partial sums for the second).
#include "kernels/transpose.h"

#include <torch/torch.h>

#include <cstdlib>

#include "kernels/fftconv.h"  // internal::printable

#ifdef HIPPO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/launch_checked.h"
#include "kernels/transpose_kernel.h"
#endif

namespace hippo {
namespace {

#ifdef HIPPO_WITH_CUDA
// The kernel's parameters for x (B, R, C) contiguous and its output.
cuda::TransposeParams params_for(const torch::Tensor& xc, const torch::Tensor& out) {
  cuda::TransposeParams p;
  p.in = xc.data_ptr();
  p.out = out.data_ptr();
  p.B = xc.size(0);
  p.R = xc.size(1);
  p.C = xc.size(2);
  p.elem_bytes = static_cast<int>(xc.element_size());
  p.bf16 = xc.scalar_type() == torch::kBFloat16;
  return p;
}

torch::Tensor transpose_on_gpu(const torch::Tensor& x) {
  const auto xc = x.contiguous();
  const c10::cuda::CUDAGuard guard(xc.device());
  auto out = torch::empty({xc.size(0), xc.size(2), xc.size(1)}, xc.options());
  const auto p = params_for(xc, out);
  internal::launch_checked([&] { cuda::transpose_launch(p, at::cuda::getCurrentCUDAStream()); });
  return out;
}

// Whether the fused kernel takes x (B, R, C) on the GPU: float32, or a 2-byte float type with R and C even (the
// pair kernel; fresh and contiguous tensors are aligned). The backward's transpose of (B, C, R) then qualifies too.
bool fusion_fits(const torch::Tensor& x) {
  const auto t = x.scalar_type();
  if (t == torch::kFloat) return true;
  return (t == torch::kHalf || t == torch::kBFloat16) && x.size(1) % 2 == 0 && x.size(2) % 2 == 0;
}

struct TransposeBiasFunction : public torch::autograd::Function<TransposeBiasFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& bias) {
    const auto xc = x.contiguous();
    const c10::cuda::CUDAGuard guard(xc.device());
    const auto bf = bias.to(torch::kFloat).contiguous();
    auto out = torch::empty({xc.size(0), xc.size(2), xc.size(1)}, xc.options());
    auto p = params_for(xc, out);
    if (cuda::transpose_fusion_supported(p)) {
      p.bias = bf.data_ptr<float>();
      internal::launch_checked([&] { cuda::transpose_launch(p, at::cuda::getCurrentCUDAStream()); });
    } else {  // a view that starts off a 4-byte boundary: the unfused way
      out.copy_((xc + bias.to(xc.scalar_type())).transpose(1, 2));
    }
    ctx->saved_data["bias_dtype"] = bias.scalar_type();
    ctx->saved_data["need_bias"] = bias.requires_grad();
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto g = grads[0].contiguous();  // (B, C, R)
    const c10::cuda::CUDAGuard guard(g.device());
    auto dx = torch::empty({g.size(0), g.size(2), g.size(1)}, g.options());
    auto p = params_for(g, dx);
    const bool need_bias = ctx->saved_data["need_bias"].toBool(), fused = cuda::transpose_fusion_supported(p);
    torch::Tensor partial, dbias;
    if (need_bias && fused) {
      partial = torch::empty({g.size(0) * cuda::transpose_col_tiles(p), g.size(1)}, g.options().dtype(torch::kFloat));
      p.row_sums = partial.data_ptr<float>();
    }
    internal::launch_checked([&] { cuda::transpose_launch(p, at::cuda::getCurrentCUDAStream()); });
    if (partial.defined())
      dbias = partial.sum(0);
    else if (need_bias)  // a gradient view off a 4-byte boundary: ATen's reduction
      dbias = g.to(torch::kFloat).sum(std::vector<int64_t>{0, 2});
    if (dbias.defined()) dbias = dbias.to(ctx->saved_data["bias_dtype"].toScalarType());
    return {dx, dbias};
  }
};

struct TransposeFunction : public torch::autograd::Function<TransposeFunction> {
  static torch::Tensor forward(torch::autograd::AutogradContext*, const torch::Tensor& x) {
    return transpose_on_gpu(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    return {transpose_contiguous(grads[0])};
  }
};
#endif

}  // namespace

torch::Tensor transpose_contiguous(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "transpose_contiguous: x must be 3-D (B, R, C), got ", x.sizes());
  auto view = x.transpose(1, 2);
  if (view.is_contiguous()) return view;
#ifdef HIPPO_WITH_CUDA
  const auto bytes = x.element_size();
  if (x.is_cuda() && !x.is_complex() && (bytes == 2 || bytes == 4 || bytes == 8))
    return TransposeFunction::apply(x);
#endif
  return view.contiguous();
}

namespace internal {
bool parse_transpose_bias_env(const std::string& value) {
  if (value.empty() || value == "fused") return true;
  if (value == "aten") return false;
  TORCH_CHECK(false, "HIPPO_TRANSPOSE_BIAS: unknown value '", printable(value), "'; accepted: fused, aten");
}
}  // namespace internal

bool transpose_bias_fused() {
  static const bool fused = [] {
    const char* e = std::getenv("HIPPO_TRANSPOSE_BIAS");
    return e == nullptr || internal::parse_transpose_bias_env(e);
  }();
  return fused;
}

torch::Tensor transpose_add_bias(const torch::Tensor& x, const torch::Tensor& bias) {
  TORCH_CHECK(x.dim() == 3 && x.is_floating_point(), "transpose_add_bias: x must be 3-D (B, R, C) floating, got ",
              x.sizes(), " ", x.scalar_type());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == x.size(2) && bias.is_floating_point() && bias.device() == x.device(),
              "transpose_add_bias: bias must be (C) = (", x.size(2), ") floating on ", x.device(), ", got ",
              bias.sizes(), " ", bias.scalar_type(), " on ", bias.device());
#ifdef HIPPO_WITH_CUDA
  if (x.is_cuda() && x.numel() > 0 && fusion_fits(x)) return TransposeBiasFunction::apply(x, bias);
#endif
  return transpose_contiguous(x + bias.to(x.scalar_type()));
}

}  // namespace hippo
