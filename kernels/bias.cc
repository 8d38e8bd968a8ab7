// kernels/bias.h: the LibTorch glue of the bias kernels (CUDA builds), undefined results elsewhere.
#include "kernels/bias.h"

#include <torch/torch.h>

#ifdef HIPPO_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "kernels/bias_kernel.h"
#include "kernels/launch_checked.h"
#endif

namespace hippo::internal {

#ifdef HIPPO_WITH_CUDA
namespace {
bool elem_of(c10::ScalarType t, cuda::ElemType* e) {
  if (t == torch::kFloat) *e = cuda::ElemType::kFloat32;
  else if (t == torch::kHalf) *e = cuda::ElemType::kFloat16;
  else if (t == torch::kBFloat16) *e = cuda::ElemType::kBFloat16;
  else return false;
  return true;
}

// The input of a sum kernel: contiguous, with its element type in *e; undefined when the kernels do not take t (a CPU
// tensor, float64), so that the caller answers undefined too.
torch::Tensor sum_input(const torch::Tensor& t, cuda::ElemType* e) {
  if (!t.is_cuda() || !elem_of(t.scalar_type(), e)) return {};
  return t.contiguous();
}
}  // namespace
#endif

torch::Tensor bias_broadcast(const torch::Tensor& bias, at::IntArrayRef sizes, bool per_row, c10::ScalarType dtype) {
  TORCH_CHECK(sizes.size() == 3 && bias.dim() == 1 && bias.is_floating_point() &&
                  bias.size(0) == sizes[per_row ? 1 : 2],
              "bias_broadcast: bias must be (C) floating for sizes ", per_row ? "(B, C, L)" : "(B, L, C)", ", got bias ",
              bias.sizes(), " for ", sizes);
#ifdef HIPPO_WITH_CUDA
  cuda::ElemType e;
  if (!bias.is_cuda() || !elem_of(dtype, &e)) return {};
  const c10::cuda::CUDAGuard guard(bias.device());
  const auto bf = bias.to(torch::kFloat).contiguous();
  auto out = torch::empty(sizes, bias.options().dtype(dtype));
  cuda::BiasFillParams p;
  p.bias = bf.data_ptr<float>();
  p.out = out.data_ptr();
  p.rows = sizes[0] * sizes[1];  // B * C rows of L, or B * L rows of C
  p.row_len = sizes[2];
  p.C = bias.size(0);
  p.per_row = per_row;
  p.elem = e;
  launch_checked([&] { cuda::bias_fill_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
  return out;
#else
  (void)dtype;
  return {};
#endif
}

torch::Tensor bias_row_sums(const torch::Tensor& g) {
  TORCH_CHECK(g.dim() == 3, "bias_row_sums: g must be (B, C, L), got ", g.sizes());
#ifdef HIPPO_WITH_CUDA
  cuda::ElemType e;
  const auto gc = sum_input(g, &e);
  if (!gc.defined()) return {};
  const c10::cuda::CUDAGuard guard(g.device());
  auto out = torch::empty({g.size(1)}, g.options().dtype(torch::kFloat));
  cuda::BiasRowSumParams p;
  p.in = gc.data_ptr();
  p.out = out.data_ptr<float>();
  p.B = g.size(0), p.C = g.size(1), p.L = g.size(2);
  p.elem = e;
  launch_checked([&] { cuda::bias_row_sum_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
  return out;
#else
  return {};
#endif
}

torch::Tensor bias_col_sums(const torch::Tensor& g) {
  TORCH_CHECK(g.dim() == 3, "bias_col_sums: g must be (B, L, C), got ", g.sizes());
#ifdef HIPPO_WITH_CUDA
  cuda::ElemType e;
  const auto gc = sum_input(g, &e);
  if (!gc.defined()) return {};
  const c10::cuda::CUDAGuard guard(g.device());
  cuda::BiasColSumParams p;
  p.N = g.size(0) * g.size(1);
  p.C = g.size(2);
  auto partial = torch::empty({cuda::bias_col_sum_slabs(p.N), p.C}, g.options().dtype(torch::kFloat));
  auto out = torch::empty({p.C}, g.options().dtype(torch::kFloat));
  p.in = gc.data_ptr();
  p.partial = partial.data_ptr<float>();
  p.out = out.data_ptr<float>();
  p.elem = e;
  launch_checked([&] { cuda::bias_col_sum_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
  return out;
#else
  return {};
#endif
}

torch::Tensor batch_sums(const torch::Tensor& t) {
  TORCH_CHECK(t.dim() == 3, "batch_sums: t must be (B, M, N), got ", t.sizes());
#ifdef HIPPO_WITH_CUDA
  cuda::ElemType e;
  const auto tc = sum_input(t, &e);
  if (!tc.defined()) return {};
  const c10::cuda::CUDAGuard guard(t.device());
  // Every entry is written (zeros for B = 0).
  auto out = torch::empty({t.size(1), t.size(2)}, t.options().dtype(torch::kFloat));
  cuda::BatchSumParams p;
  p.in = tc.data_ptr();
  p.out = out.data_ptr<float>();
  p.B = t.size(0);
  p.N = t.size(1) * t.size(2);
  p.elem = e;
  launch_checked([&] { cuda::batch_sum_launch(p, at::cuda::getCurrentCUDAStream().stream()); });
  return out;
#else
  return {};
#endif
}

}  // namespace hippo::internal
