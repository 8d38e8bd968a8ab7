// Projections between a mixer's (B, L, D) activations and the (B, D, L) rows its SSM convolves (H3.md 2.3: the
// convolution runs along L, one row per channel). On a GPU one batched GEMM reads or writes the rows' layout
// directly, so H3 needs no transposes around its convolution (eight per layer forward and backward before, about
// 12 us each for a bf16 (4, 2048, 768) activation on an H200); elsewhere, or with HIPPO_PROJECTION=transpose, the
// projection is torch::linear next to kernels/transpose.h's transpose_contiguous.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace hippo {

// (B, L, in) -> (B, out, L) contiguous: y[b, o, l] = sum_i W[o, i] x[b, l, i] + bias[o], i.e.
// transpose_contiguous(linear(l, x)), for the Linear l (weight W (out, in), bias (out) or none). Same dtype rules as
// torch::linear, autocast included (the GEMM in autocast's dtype, the result in it). On a CUDA device with
// projection_direct(): y[b] = W x[b]^T + bias by one strided batched GEMM (W at batch stride 0, x[b] read
// transposed), the bias accumulated by the GEMM (beta = 1 on the bias broadcast by kernels/bias.h); the backward
// computes dx (B, L, in) = g^T W, dW = sum_b g[b] x[b] (float32 sum of per-batch GEMMs) and dbias = sum over (b, l)
// of g (kernels/bias.h's row sums, float32). Raises c10::Error when x is not 3-D with x.size(2) == in.
torch::Tensor linear_to_rows(const torch::nn::Linear& l, const torch::Tensor& x);

// Several projections of one x (B, L, in): {linear_to_rows(l, x) for l in ls}, each (B, out_l, L), same rules. On a
// CUDA device with projection_direct() they are one autograd node whose backward adds the projections' gradients of
// x inside the GEMMs (beta = 1 onto the first) instead of autograd adding them afterwards (two (B, L, in) adds for
// H3's q, k and v). Raises c10::Error when ls is empty or x does not fit a weight.
std::vector<torch::Tensor> linear_to_rows_many(const std::vector<torch::nn::Linear>& ls,
                                               const torch::Tensor& x);

// (B, in, L) rows -> (B, L, out) contiguous: linear(l, transpose_contiguous(y)), the way back (H3's output
// projection). Same rules; on a CUDA device with projection_direct() one batched GEMM reading y[b] transposed, and a
// backward that writes the gradient of y in its (B, in, L) layout. Raises c10::Error when y is not 3-D with
// y.size(1) == in.
torch::Tensor linear_from_rows(const torch::nn::Linear& l, const torch::Tensor& y);

// Whether the two above take the batched GEMMs on a CUDA device (true, the default) or the GEMM plus transpose
// (false): HIPPO_PROJECTION=direct|transpose, read once, an A/B switch for benchmarks.
bool projection_direct();

namespace internal {
// Parses HIPPO_PROJECTION: "direct" or "" -> true, "transpose" -> false; raises c10::Error naming the variable and
// the accepted values otherwise.
bool parse_projection_env(const std::string& value);
// The batched-GEMM path on any device (the CPU tests call it): to_rows as linear_to_rows, else as
// linear_from_rows. weight (out, in), bias (out) or undefined.
torch::Tensor linear_rows_direct(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                                 bool to_rows);
// The several-weights path of linear_to_rows_many on any device: weights (out_i, in) of one dtype and device, biases
// one per weight ((out_i) or undefined). Raises c10::Error on a count mismatch or a weight that does not fit x.
std::vector<torch::Tensor> linear_to_rows_direct(const torch::Tensor& x, const std::vector<torch::Tensor>& weights,
                                                 const std::vector<torch::Tensor>& biases);
}  // namespace internal

}  // namespace hippo
