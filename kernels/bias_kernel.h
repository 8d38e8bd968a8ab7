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

// out (C) float32, written: out[c] = sum over r < N of in[r, c] for in (N, C) of elem (the (B, L, C) layout's bias
// gradient, N = B L). Two passes, both in a fixed order (the same bits every run): the rows are cut into
// bias_col_sum_slabs(N) slabs whose column sums go to partial (slabs, C) float32 (scratch), then each column's
// slab sums are added by 8 lanes (lane w: slabs w, w + 8, ...) whose sums are added in lane order.
struct BiasColSumParams {
  const void* in = nullptr;
  float* partial = nullptr;
  float* out = nullptr;
  int64_t N = 0, C = 0;
  ElemType elem = ElemType::kFloat32;
};
// The slab count of the column sums for N rows: min(256, ceil(N / 64)), at least 1.
inline int64_t bias_col_sum_slabs(int64_t N) {
  const int64_t s = (N + 63) / 64;
  return s < 1 ? 1 : (s > 256 ? 256 : s);
}

// out (N) float32, written: out[i] = sum over b < B of in[b, i] for in (B, N) of elem, added in b order: the weight
// gradient of a rows-layout projection from its per-batch products (layers/projection.h).
struct BatchSumParams {
  const void* in = nullptr;
  float* out = nullptr;
  int64_t B = 0, N = 0;
  ElemType elem = ElemType::kFloat32;
};

// Launch on `stream` (a cudaStream_t; null: the default stream). Throw std::runtime_error naming the kernel and the
// shape when a size is negative, the fill has C = 0 with rows and row_len nonzero or per_row false with row_len != C,
// the row sums have C > 2^31 - 1, the column sums more than 2^31 - 1 groups of 32 columns, or the launch fails.
// Nothing is launched for an empty output (the row or column sums with C = 0, the batch sum with N = 0); with B or L
// (or N) zero the row (column) sums, with B zero the batch sum, write zeros.
void bias_fill_launch(const BiasFillParams& p, void* stream);
void bias_row_sum_launch(const BiasRowSumParams& p, void* stream);
void bias_col_sum_launch(const BiasColSumParams& p, void* stream);
void batch_sum_launch(const BatchSumParams& p, void* stream);

}  // namespace hippo::cuda
