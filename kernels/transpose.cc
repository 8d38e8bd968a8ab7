// transpose_contiguous (kernels/transpose.h): ATen on the CPU; on CUDA the tiled kernel inside an autograd
// Function whose backward is the same transpose.
#include "kernels/transpose.h"

#include <torch/torch.h>

#ifdef HIPPO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/launch_checked.h"
#include "kernels/transpose_kernel.h"
#endif

namespace hippo {
namespace {

#ifdef HIPPO_WITH_CUDA
torch::Tensor transpose_on_gpu(const torch::Tensor& x) {
  const auto xc = x.contiguous();
  const c10::cuda::CUDAGuard guard(xc.device());
  auto out = torch::empty({xc.size(0), xc.size(2), xc.size(1)}, xc.options());
  cuda::TransposeParams p;
  p.in = xc.data_ptr();
  p.out = out.data_ptr();
  p.B = xc.size(0);
  p.R = xc.size(1);
  p.C = xc.size(2);
  p.elem_bytes = static_cast<int>(xc.element_size());
  internal::launch_checked([&] { cuda::transpose_launch(p, at::cuda::getCurrentCUDAStream()); });
  return out;
}

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

}  // namespace hippo
