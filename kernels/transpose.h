// transpose_contiguous: x.transpose(1, 2).contiguous() for 3-D tensors, with a tiled CUDA kernel on the GPU.
// The SSM layers move activations between the projections' (B, L, D) layout and the (B, D, L) rows of the FFT
// convolution; ATen's strided copy of a bf16 (4, 2048, 768) tensor took 41 us on an H200 (ncu), eight of them
// per H3 layer forward and backward.
#pragma once

#include <torch/types.h>

#include <string>

namespace hippo {

// x (B, R, C), any dtype, device and strides -> (B, C, R), contiguous, out[b, c, r] = x[b, r, c], same dtype and
// device. Differentiable (the gradient is the same transpose of the incoming gradient, also on the GPU). On a CUDA
// tensor of 2-, 4- or 8-byte elements the kernel of kernels/transpose_kernel.cu runs (when the binary was built
// with the CUDA kernels); otherwise ATen's copy. A tensor whose transposed view is already contiguous is returned
// as that view (no copy). Raises c10::Error when x is not 3-D, and c10::Error naming the kernel and shape when
// its launch fails.
torch::Tensor transpose_contiguous(const torch::Tensor& x);

// x (B, R, C) floating, any strides, plus bias (C) of any floating dtype on x's device -> (B, C, R), contiguous, x's
// dtype: out[b, c, r] = x[b, r, c] + bias[c], the projections' bias added on the way into the (B, D, L) layout of
// the FFT convolution (transpose_contiguous(x + bias), one pass instead of two). Differentiable in x and bias: the
// bias gradient sum over (b, r) of the incoming gradient's [b, c, r] is summed inside the transpose of the backward
// (float32 partial sums per tile, then ATen's sum of the (B * tiles, C) partials: repeatable bit for bit), which
// replaces the column reduction a linear layer's bias gradient takes on the GPU (about 19 us for a bf16
// (4, 2048, 768) gradient on an H200, ncu). The fused kernel runs on CUDA tensors of float32, or float16/bfloat16
// with R and C even; the sum x + bias is then taken in float32 and rounded once. Elsewhere (the CPU included) it is
// transpose_contiguous(x + bias.to(x's dtype)) through ATen. Raises c10::Error when x is not 3-D or not floating,
// or bias is not (C) floating on x's device; c10::Error naming the kernel and shape when a launch fails.
torch::Tensor transpose_add_bias(const torch::Tensor& x, const torch::Tensor& bias);

// Whether layers add a projection's bias by transpose_add_bias (true, the default) or in the GEMM followed by
// transpose_contiguous (false; layers/mixer.h, linear_transposed): HIPPO_TRANSPOSE_BIAS=fused|aten, read once, an
// A/B switch for benchmarks. Raises c10::Error for another value (`hippo` refuses one at start).
bool transpose_bias_fused();

namespace internal {
// Parses HIPPO_TRANSPOSE_BIAS: "fused" or "" -> true, "aten" -> false; raises c10::Error naming the variable and the
// accepted values otherwise.
bool parse_transpose_bias_env(const std::string& value);
}  // namespace internal

}  // namespace hippo
