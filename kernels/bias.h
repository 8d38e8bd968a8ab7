// The bias kernels (kernels/bias_kernel.h) for LibTorch tensors: a projection's bias broadcast into a fresh output, its
// gradient summed over the (B, C, L) rows layout or the (B, L, C) layout, and the weight gradient's per-batch products
// summed (layers/projection.h). Each answers an undefined tensor where the kernels do not apply (a build without CUDA
// kernels, a CPU tensor, float64), and the caller then takes ATen's way.
#pragma once

#include <torch/types.h>

namespace hippo::internal {

// A new contiguous tensor of `sizes` (3-D), `dtype` (float32, float16 or bfloat16) on bias's CUDA device with
// out[b, c, l] = bias[c] (per_row: sizes (B, C, L)) or out[b, l, c] = bias[c] (sizes (B, L, C)), bias (C) floating,
// rounded once to dtype. Undefined where unsupported. Raises c10::Error when bias is not (C) for sizes' C, or naming
// the kernel and shape when the launch fails.
torch::Tensor bias_broadcast(const torch::Tensor& bias, at::IntArrayRef sizes, bool per_row, c10::ScalarType dtype);

// (C) float32 = sum over b and l of g[b, c, l] for g (B, C, L) float32, float16 or bfloat16 on a CUDA device (any
// strides; made contiguous), float32 accumulation in a fixed order. Undefined where unsupported. Raises c10::Error when
// g is not 3-D, or naming the kernel and shape when the launch fails.
torch::Tensor bias_row_sums(const torch::Tensor& g);

// (C) float32 = sum over b and l of g[b, l, c] for g (B, L, C) float32, float16 or bfloat16 on a CUDA device (any
// strides; made contiguous): torch::linear's bias gradient, float32 accumulation in a fixed order (two passes over
// row slabs). Undefined where unsupported. Raises c10::Error when g is not 3-D, or naming the kernel and shape when
// a launch fails.
torch::Tensor bias_col_sums(const torch::Tensor& g);

// (M, N) float32 = sum over b of t[b] for t (B, M, N) float32, float16 or bfloat16 on a CUDA device (any strides;
// made contiguous), added in b order: a weight gradient from per-batch GEMM products. Undefined where unsupported.
// Raises c10::Error when t is not 3-D, or naming the kernel and shape when the launch fails.
torch::Tensor batch_sums(const torch::Tensor& t);

}  // namespace hippo::internal
