// A projection's bias in the two layouts of layers/projection.h: broadcast into an output before a GEMM accumulates
// onto it, and summed over the rows layout for its gradient. No LibTorch and no CUDA headers: the kernels in
// bias_kernel.cu take raw device pointers. Layouts are row-major and contiguous.
#pragma once

#include <cstdint>

#include "kernels/fftconv_kernel.h"  // ElemType

namespace hippo::cuda {

// out (rows, row_len) of elem, written: out[r, j] = bias[r % C] when per_row (the (B, C, L) rows layout: rows = B * C,
// row_len = L), else bias[j] (the (B, L, C) layout: row_len = C), rounded once to elem.
struct BiasFillParams {
  const float* bias = nullptr;  // (C) float32
  void* out = nullptr;
  int64_t rows = 0, row_len = 0, C = 0;
  bool per_row = true;
  ElemType elem = ElemType::kFloat32;
};

// out (C) float32, written: out[c] = sum over b < B and l < L of in[b, c, l] for in (B, C, L) of elem (float32
// accumulation in a fixed order: the same bits every run).
struct BiasRowSumParams {
  const void* in = nullptr;
  float* out = nullptr;
  int64_t B = 0, C = 0, L = 0;
  ElemType elem = ElemType::kFloat32;
};

// Launch on `stream` (a cudaStream_t; null: the default stream). Throw std::runtime_error naming the kernel and the
// shape when a size is negative, the fill has C = 0 with rows and row_len nonzero or per_row false with row_len != C,
// the row sums have C > 2^31 - 1, or the launch fails. Nothing is launched for an empty output (the row sums with
// C = 0); with B or L zero the row sums write zeros.
void bias_fill_launch(const BiasFillParams& p, void* stream);
void bias_row_sum_launch(const BiasRowSumParams& p, void* stream);

}  // namespace hippo::cuda
