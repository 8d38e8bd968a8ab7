// Plain parameter structs and launchers of the CUDA short-filter convolution: fftconv without gates for a filter
// of at most kShortMaxTaps taps (the shift SSM's, H3.md 3.1: 64 taps), by direct summation in float32 instead of an
// FFT of twice the sequence. No LibTorch and no CUDA headers (the kernels are in fftconv_short_kernel.cu, the
// LibTorch glue in fftconv_cuda.cc). Layouts are row-major and contiguous.
#pragma once

#include <cstdint>

#include "kernels/fftconv_kernel.h"

namespace hippo::cuda {

// The longest filter the kernels take (they are compiled for 16, 32 and 64 taps; a shorter filter is zero-padded
// to the next of these).
constexpr int kShortMaxTaps = 64;

// y[b, h, t] = D[h] x[b, h, t] + sum_{j < L_k} k[h, j] x[b, h, t - j] (`reverse` false: the causal convolution,
// fftconv's forward), or x[b, h, t + j] (`reverse` true: its transpose, the gradient of u from the gradient of y
// as x). Zero outside [0, L).
struct ShortConvParams {
  const void* x = nullptr;   // (B, H, L), elem
  const float* k = nullptr;  // (H, L_k) float32
  const float* D = nullptr;  // (H) float32, or null (no skip)
  void* y = nullptr;         // (B, H, L), elem, written
  int64_t B = 0, H = 0, L = 0, Lk = 0;
  ElemType elem = ElemType::kFloat32;
  bool reverse = false;
};

// The filter's gradient: dk[h, j] = sum_{b, t} dy[b, h, t] u[b, h, t - j] for j < L_k, and dD[h] = dk[h, 0] (D acts
// at lag 0 like k's first tap). Blocks of (row, tile of kShortGradTile steps) write their partial sums to `partial`;
// a second kernel adds them per channel in a fixed order (deterministic: no atomics).
constexpr int64_t kShortGradTile = 1024;
struct ShortConvGradParams {
  const void* u = nullptr;   // (B, H, L), elem
  const void* dy = nullptr;  // (B, H, L), elem
  float* partial = nullptr;  // (H, B * ceil(L / kShortGradTile), taps) float32 scratch, taps = 16, 32 or 64 (the
                             // compiled width, short_conv_taps(L_k)); uninitialised
  float* dk = nullptr;       // (H, L_k) float32, written, or null (not needed)
  float* dD = nullptr;       // (H) float32, written, or null (not needed)
  int64_t B = 0, H = 0, L = 0, Lk = 0;
  ElemType elem = ElemType::kFloat32;
};

// The compiled filter width that serves L_k taps: 16, 32 or 64 (0 when L_k is outside [1, kShortMaxTaps]).
int short_conv_taps(int64_t Lk);

// Launch on `stream` (a cudaStream_t; null: the default stream). Throw std::runtime_error naming the kernel and
// B, H, L, L_k, dtype when L_k is outside [1, min(L, kShortMaxTaps)], a size is out of the grid's range
// (B * H > 2^31 - 1, or more than 65535 tiles of 1024 steps, L > 67M), or the launch fails.
void short_conv_launch(const ShortConvParams& p, void* stream);
void short_conv_grad_launch(const ShortConvGradParams& p, void* stream);

}  // namespace hippo::cuda
