// The tiled transpose behind transpose_contiguous (kernels/transpose.h). No LibTorch and no CUDA headers: the
// kernel in transpose_kernel.cu takes raw device pointers.
#pragma once

#include <cstdint>

namespace hippo::cuda {

// out[b, c, r] = in[b, r, c]: in (B, R, C) and out (B, C, R), both contiguous row-major, elements of elem_bytes
// (2, 4 or 8) bytes copied bit for bit.
struct TransposeParams {
  const void* in = nullptr;
  void* out = nullptr;
  int64_t B = 0, R = 0, C = 0;
  int elem_bytes = 4;
  // Optional fusions, only where transpose_fusion_supported says yes (elements then float32, float16 or bfloat16;
  // arithmetic in float32):
  // bias (C) float32: out[b, c, r] = in[b, r, c] + bias[c], rounded once to the element type.
  const float* bias = nullptr;
  // row_sums (B * transpose_col_tiles(*this), R) float32, written: row_sums[b * tiles + t, r] = the sum of in[b, r, c]
  // over the t-th tile of columns c. Summed over its first dimension it is sum over (b, c) of in[b, r, c] (the
  // gradient of a bias added by the transpose the other way). Every entry is written exactly once.
  float* row_sums = nullptr;
  bool bf16 = false;  // 2-byte elements are bfloat16 (else float16); read only with bias or row_sums
};

// Whether the bias and row-sum fusions run for p's shape, element size and pointers: float32 elements (4 bytes), or
// 2-byte elements with R and C even and 4-byte aligned pointers.
bool transpose_fusion_supported(const TransposeParams& p);
// Tiles along C of the launch for p (the first dimension of row_sums is B times this).
int64_t transpose_col_tiles(const TransposeParams& p);

// Launch on `stream` (a cudaStream_t; null: the default stream): 32 x 32 tiles through shared memory, so that both
// the reads and the writes are coalesced; 2-byte elements with R and C even and 4-byte aligned pointers as pairs
// in 64 x 64 tiles. Throws std::runtime_error naming the kernel and B, R, C when elem_bytes
// is not 2, 4 or 8, a size is negative, C needs more than 2^31 - 1 tiles, bias or row_sums is set where
// transpose_fusion_supported says no, or the launch fails. Nothing is launched when B, R or C is 0.
void transpose_launch(const TransposeParams& p, void* stream);

}  // namespace hippo::cuda
