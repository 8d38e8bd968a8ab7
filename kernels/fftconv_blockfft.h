// The block-FFT path of fftconv (H3.md 8, the paper's FlashConv idea): the FFT of size n = n1 * n2 written as
// small dense DFT matrix products with the twiddles folded into them, run as (batched) GEMMs, which cuBLAS puts
// on tensor cores for bf16/fp16 operands. Plus the opt-in dispatch that lets fftconv() take it when measured faster.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "kernels/fftconv.h"

namespace hippo {

// How the products of the half-precision path are formed (u float16 or bfloat16; float32 and float64 inputs
// always run exact float32 / float64 GEMMs).
enum class BlockFftPrecision {
  // Every operand x (float32) is split as x_hi + x_lo, both in u's half dtype, and every DFT matrix likewise;
  // a product is hi*hi + hi*lo + lo*hi as one GEMM with a three-times longer contraction (the "3xTF32" idea of
  // CUTLASS, with half types), float32 accumulation and a float32 result. About 16 significant bits for
  // bfloat16 (21 for float16): the output's error is its final rounding to u's dtype, like the plain path.
  kSplit,
  // One GEMM per product with the operands rounded once to u's dtype: a third of the arithmetic, but every
  // stage adds a half-precision rounding (about 2-3x the plain path's error for bfloat16).
  kSingle,
};

// The largest FFT size the block path takes (the fused kernel's limit; the stage matrices of n = 16384 hold
// 128 x 256 x 256 values).
constexpr int64_t kBlockFftMaxSize = 16384;

// The factors n = n1 * n2 (n1 = n2 or n1 = 2 * n2, powers of two) that fftconv_blockfft uses for FFT size n.
// n: a power of two in [16, kBlockFftMaxSize]; raises c10::Error otherwise.
std::pair<int64_t, int64_t> blockfft_factors(int64_t n);

// Whether fftconv_blockfft takes these arguments: valid per fftconv_ref's contract, u float32, float64, float16
// or bfloat16, fftconv_size(L, L_k) <= kBlockFftMaxSize, every tensor on u's device (CPU or CUDA). False (never a
// throw) otherwise.
bool fftconv_blockfft_supported(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                                const FftConvOptions& options = {});

// Causal FFT convolution by block FFT (H3.md 8), fftconv_ref's contract and result (up to rounding).
// u: (B, H, L), any layout, float32, float64, float16 or bfloat16; k: (H, L_k), 1 <= L_k <= L; D: (H); gates
// and mask as in FftConvOptions. Returns (B, H, L) in u's dtype.
// With n = fftconv_size(L, L_k) = n1 * n2 and t = t1 + n1 t2, f = n2 f1 + f2, the gated input w = u*v, zero
// padded, is viewed as (B*H, ceil(L/n1), n1) [t2, t1]; stage 1 multiplies by the n2-point DFT matrix from the
// left (contracting t2; only the nonzero rows), stage 2 by one (n1 x n1) complex matrix per f2 with the
// twiddles exp(-2 pi i t1 f2 / n) folded in (contracting t1); the spectrum, in that permuted order (never
// reordered), is multiplied in float32 (float64 for float64 u) by fft(k + D delta_0, n) (torch::fft, D as the tap at lag 0); the inverse
// runs the two stages backwards with 1/n folded in and keeps the first L outputs; GELU, mask and q follow in
// float32. Complex products are real GEMMs on [re, im] blocks. Operands are in u's dtype when u is half
// (`precision` says how), else in float32/float64. DFT matrices are built in float64 once per (size, dtype,
// precision, device) and cached. Differentiable (u, k, D, v, q): each stage's product has a backward that is
// the transposed stage in the same precision; the rest is LibTorch autograd.
// Raises c10::Error naming fftconv_blockfft and the shape when !fftconv_blockfft_supported(...).
torch::Tensor fftconv_blockfft(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                               const FftConvOptions& options = {},
                               BlockFftPrecision precision = BlockFftPrecision::kSplit);

// When fftconv() takes the block path. Default kOff: fftconv() behaves exactly as without this file. Set by
// the environment variable HIPPO_FFTCONV_BLOCKFFT=off|on|auto (read once) or by set_blockfft_dispatch.
enum class BlockFftDispatch {
  kOff,   // never
  kOn,    // whenever fftconv_blockfft_supported (CPU included), instead of the fused kernel or the reference
  kAuto,  // autotune: the first call per key (device, u dtype, FFT size, B*H, L) times the path fftconv() takes
          // otherwise (internal::fftconv_path_past_blockfft: direct, short, fused, chunked or reference, by the
          // dispatch order of fftconv.h) and the block path on its own inputs (no grad,
          // one warm-up and three timed calls each) and keeps the faster; the decision is logged to stderr and
          // listed by blockfft_autotune_record()
};
BlockFftDispatch blockfft_dispatch();
void set_blockfft_dispatch(BlockFftDispatch mode);
// Parses "off", "on" or "auto"; raises c10::Error naming HIPPO_FFTCONV_BLOCKFFT and the accepted values.
BlockFftDispatch parse_blockfft_dispatch(const std::string& text);

// Whether fftconv() takes fftconv_blockfft for these arguments under the current dispatch mode (kAuto may time
// both paths here, once per key).
bool fftconv_takes_blockfft(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                            const FftConvOptions& options = {});

// One autotune decision of BlockFftDispatch::kAuto.
struct BlockFftChoice {
  std::string device, dtype, other_path;  // other_path: fftconv_path_name of the path it was timed against
  int64_t fft_size = 0, rows = 0, seq_len = 0;
  double other_ms = 0, blockfft_ms = 0;
  bool blockfft = false;  // the block path was faster and is taken
};
// The decisions made so far in this process, in order.
std::vector<BlockFftChoice> blockfft_autotune_record();
// Forgets every decision (tests).
void clear_blockfft_autotune();

}  // namespace hippo
