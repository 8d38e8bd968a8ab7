// Causal FFT convolution, the operator under every SSM layer (H3.md 2.3, 8): y = conv(u, k) + D*u with
// optional fused gates. This header is the host API for every path; it compiles without CUDA.
#pragma once

#include <torch/types.h>

#include <optional>

namespace hippo {

// Options of fftconv. Every tensor given here has u's shape (B, H, L) unless stated.
struct FftConvOptions {
  std::optional<torch::Tensor> v;             // gate multiplied into u before the convolution (H3's k*v)
  std::optional<torch::Tensor> q;             // gate multiplied into the output, after D, GELU and dropout
  bool gelu = false;                          // exact (erf) GELU on conv(u, k) + D*u
  std::optional<torch::Tensor> dropout_mask;  // (B, H), already scaled by 1/(1-p); multiplied after GELU
};

// Next power of two >= max(16, L + L_k - 1): the FFT size of a causal (non-wrapping) convolution.
int64_t fftconv_size(int64_t seq_len, int64_t kernel_len);

// Causal convolution by FFT, the reference path (torch::fft, any device, differentiable by autograd):
//   w = u * v (if v), y[b,h,t] = sum_{j<=t, j<L_k} k[h,j] w[b,h,t-j] + D[h] w[b,h,t],
//   y = GELU(y) (if gelu), y = y * mask[b,h] (if dropout_mask), y = y * q (if q).
// u: (B, H, L), float32, float64, float16 or bfloat16, any layout. k: (H, L_k) with 1 <= L_k <= L, float32
// or float64. D: (H), float32 or float64. Arithmetic is done in float32 (float64 if u is float64); half
// inputs are upcast and the result cast back. Returns (B, H, L) in u's dtype.
// Raises c10::Error (TORCH_CHECK) naming the argument on a wrong rank, shape, dtype or device mismatch.
torch::Tensor fftconv_ref(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                          const FftConvOptions& options = {});

// The dispatching entry point: fftconv_fused when fftconv_fused_supported says yes, else fftconv_ref. Same
// contract as fftconv_ref; differentiable either way.
torch::Tensor fftconv(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                      const FftConvOptions& options = {});

// While an instance lives, fftconv() takes the reference path on this thread (to compare the two paths
// through whole layers, and for benchmarks). Nests. Layers whose filter comes from a diagonal SSM also run
// the whole sequence in one pass (no state passing, layers/ssm.h) while it lives: the single-pass reference.
class FftConvReferenceScope {
 public:
  FftConvReferenceScope();
  ~FftConvReferenceScope();
  // True while an instance lives on this thread.
  static bool active();
  FftConvReferenceScope(const FftConvReferenceScope&) = delete;
  FftConvReferenceScope& operator=(const FftConvReferenceScope&) = delete;

 private:
  bool previous_;
};

// True when this binary was built with the CUDA kernels (HIPPO_WITH_CUDA: a LibTorch with CUDA was found).
bool fftconv_cuda_built();

// Whether fftconv_fused runs this call: the kernels were built; u, k, D (and v, q, dropout_mask) are on one CUDA
// device; u is float32, float16 or bfloat16; v and q have u's dtype; the FFT size fftconv_size(L, L_k) is at
// most 16384 (so any L <= 8192); B, H >= 1; dropout_mask does not require grad. False (never a throw) otherwise,
// including for malformed arguments, which fftconv_ref then rejects.
bool fftconv_fused_supported(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                             const FftConvOptions& options = {});

// The fused CUDA path (H3.md 8, FlashConv's fused kernel): one kernel reads u (v, q) once, does the FFT of size
// fftconv_size(L, L_k), the product with the filter spectrum (rfft(k) + D, computed once per call in float32 by
// cuFFT), the inverse FFT, GELU, mask and q on chip in float32, and writes y once; a fused backward gives the
// gradients of u, k, D, v and q (autograd Function). Same contract and result as fftconv_ref up to float32
// rounding. Raises c10::Error naming the kernel and the shape when !fftconv_fused_supported(...) (always so in
// a build without CUDA) or a kernel launch fails; never returns an unwritten result.
torch::Tensor fftconv_fused(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                            const FftConvOptions& options = {});

// Direct O(L * L_k) causal convolution with the same contract as fftconv_ref (no gates): a slow second
// reference for tests.
torch::Tensor causal_conv_direct(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D);

}  // namespace hippo
