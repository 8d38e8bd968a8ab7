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
};

// Launch on `stream` (a cudaStream_t; null: the default stream): 32 x 32 tiles through shared memory, so that both
// the reads and the writes are coalesced; 2-byte elements with R and C even and 4-byte aligned pointers as pairs
// in 64 x 64 tiles. Throws std::runtime_error naming the kernel and B, R, C when elem_bytes
// is not 2, 4 or 8, a size is negative, C needs more than 2^31 - 1 tiles, or the launch fails. Nothing is launched
// when B, R or C is 0.
void transpose_launch(const TransposeParams& p, void* stream);

}  // namespace hippo::cuda
