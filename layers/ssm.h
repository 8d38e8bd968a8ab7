// The diagonal state space model (S4D, H3.md 2.1): parameters with the S4D-Lin initialisation, bilinear or
// zero-order-hold discretisation, its convolution kernel (a Vandermonde product), its recurrence, and the
// state after a prompt. Shared by s4d and, later, h3 and gss. Complex numbers are kept as (real, imaginary)
// pairs of real tensors, so every path runs in float32 or float64 on any LibTorch version. Under autocast
// (layers/autocast.h) every function here still computes in the parameters' dtype: kernels, discretisation and
// states stay float32 while u and y may be bfloat16 (H3.md 5 trains so).
#pragma once

#include <torch/torch.h>

#include <string>

#include "core/options.h"
#include "kernels/fftconv.h"

namespace hippo {

// Adds the diagonal-SSM options to a layer schema: d_state, discretization, dt_min, dt_max, ssm_lr.
void add_diag_ssm_options(OptionSchema& schema, const std::string& default_discretization);
// Cross-option checks of those options (d_state even, dt_min <= dt_max); `layer` names the owner in errors.
absl::Status validate_diag_ssm_options(const Options& options, const std::string& layer);

class DiagSSMImpl : public torch::nn::Module {
 public:
  // channels: H, one independent SSM per channel. d_state: N (even); N/2 complex modes per channel.
  // discretization: "bilinear" or "zoh". dt is initialised log-uniform in [dt_min, dt_max].
  // Parameters (float32): C (H, N/2, 2) re/im standard complex normal; log_dt (H); B (H, N/2, 2) = 1;
  // log_A_real (H, N/2) = log 0.5; A_imag (H, N/2) = pi*n; D (H) standard normal.
  DiagSSMImpl(int64_t channels, int64_t d_state, std::string discretization, double dt_min, double dt_max);
  // Builds from the options that add_diag_ssm_options declared.
  DiagSSMImpl(int64_t channels, const Options& options);

  // The convolution kernel K[h, l] = 2 Re(sum_n C_n dB_n dA_n^l), l = 0..L-1: (H, L) in the parameters'
  // dtype (float32 unless the module was converted). H3.md 2.1. With float32 parameters on a GPU through the
  // fused kernels of kernels/ssm_fused.h (unless HIPPO_SSM_KERNEL=aten or an FftConvReferenceScope lives), else
  // the ATen expression (discretize(), then a two-level Vandermonde product).
  torch::Tensor kernel(int64_t L) const;

  // u: (B, H, L) -> y = causal_conv(u, K) + D*u, (B, H, L) in u's dtype, through kernels/fftconv; with gates
  // (H3's q * conv(u * v)): y = q * mask * act(conv(w, K) + D w), w = u * v (fftconv's contract for u, the
  // gates and dtypes). Differentiable in u, the gates and every SSM parameter.
  // When L > single_pass_len() and fftconv is not forced to the reference (FftConvReferenceScope), the
  // sequence runs by state passing (H3.md 8, forward_state_passing) in chunks of chunk_len_for(L); otherwise as one
  // fftconv with the length-L kernel. Raises c10::Error when u is not (B, H=channels(), L) or fftconv rejects the arguments.
  torch::Tensor forward(const torch::Tensor& u, const FftConvOptions& gates = {}) const;

  // State passing (H3.md 8), exact in exact arithmetic for any L: chunks of chunk_len positions (the last one
  // zero-padded) convolve with the chunk-length kernel, all chunks in one fftconv call (so on the GPU each
  // chunk runs through the fused kernel with the gates, for chunk_len <= 16384); the state after every chunk
  // (s_c = sum_l w_l dA^(chunk_len-1-l) dB) is carried across chunks by a log-depth scan
  // (x_c = dA^chunk_len x_{c-1} + s_c), and the incoming state adds 2 Re(sum_n C_n dA_n^(t+1) x_in[n]) at
  // each chunk position t. Both Vandermonde products run, with many chunk rows, as one batched matrix product each
  // with every power dA^l of a chunk formed once (memory: two (H, chunk_len, N) float matrices besides the
  // chunks), else as the two-level products of kernel() and state_after (docs/FLASHCONV.md). Same contract as
  // forward(u, gates); raises c10::Error unless chunk_len >= 1 and the gates have u's shape (dropout_mask (B, H)).
  torch::Tensor forward_state_passing(const torch::Tensor& u, const FftConvOptions& gates,
                                      int64_t chunk_len) const;
  // Chunk length of forward()'s state passing at length L: the one given to set_chunk_len, else
  // default_chunk_len(L).
  int64_t chunk_len_for(int64_t L) const { return chunk_len_ > 0 ? chunk_len_ : default_chunk_len(L); }
  // The default chunk: kLongSequenceChunkLen (16384, the fused kernel's longest L) up to L = kLongSequenceChunkMaxLen
  // (262144), kDefaultChunkLen (8192) past it; measured at 64K, 128K, 256K and 1M only. Measured on the H200 (bf16, B 1, H 768,
  // an s4d filter, `hippo bench fftconv --chunk-len 8192|16384`, docs/FLASHCONV.md), forward / forward+backward ms
  // with chunks of 8192 -> 16384: 64K 4.571 -> 3.874 / 12.052 -> 11.699; 128K 8.111 -> 6.927 / 20.972 -> 19.835;
  // 256K 14.721 -> 12.483 / 38.187 -> 35.444; but 1M 28.2 -> 30.0 / 77.8 -> 97.3 (session 9).
  static constexpr int64_t kDefaultChunkLen = 8192;
  static constexpr int64_t kLongSequenceChunkLen = 16384;
  static constexpr int64_t kLongSequenceChunkMaxLen = 262144;
  static_assert(kLongSequenceChunkLen <= kFftConvFusedMaxLen, "state passing's chunks run through the fused kernel");
  static int64_t default_chunk_len(int64_t L) {
    return L <= kLongSequenceChunkMaxLen ? kLongSequenceChunkLen : kDefaultChunkLen;
  }
  // Fixes the chunk length for every L (>= 1; raises c10::Error otherwise); 0 restores default_chunk_len.
  void set_chunk_len(int64_t chunk_len);
  // Longest L that forward() runs as one fftconv; past it, state passing. Default kDefaultSinglePassLen, 16384,
  // the longest L of the fused kernel (kFftConvFusedMaxLen, fft size 32768): at 16K the single pass made the H3
  // layer's forward+backward 9.25 ms against 17.14 ms by state passing (docs/FLASHCONV.md). Raises c10::Error
  // unless >= 1.
  static constexpr int64_t kDefaultSinglePassLen = kFftConvFusedMaxLen;
  int64_t single_pass_len() const { return single_pass_len_; }
  void set_single_pass_len(int64_t single_pass_len);

  // Recurrent state: (B, H, N/2, 2), (real, imaginary) in the parameters' dtype, zero initially.
  torch::Tensor initial_state(int64_t batch) const;
  // One step of x_t = dA x_{t-1} + dB u_t, y_t = 2 Re(sum_n C_n x_t[n]) + D u_t.
  // u_t: (B, H) -> y_t: (B, H) in u_t's dtype; `state` is updated in place (reassigned).
  torch::Tensor step(const torch::Tensor& u_t, torch::Tensor& state) const;
  // The state after the prompt u: (B, H, L), in parallel: sum_l dA^(L-1-l) dB u_l + dA^L * state0
  // (state0 optional, (B, H, N/2, 2)). Returns (B, H, N/2, 2).
  torch::Tensor state_after(const torch::Tensor& u, const torch::Tensor& state0 = {}) const;

  // log_dt, log_A_real, A_imag and B: the parameters of the SSM optimiser rule.
  std::vector<torch::Tensor> ssm_parameters() const { return {log_dt_, log_A_real_, A_imag_, B_}; }

  int64_t channels() const { return channels_; }
  int64_t d_state() const { return d_state_; }
  const std::string& discretization() const { return discretization_; }

  // Discretised parameters, each (H, N/2): log dA (so dA^l = exp(l * log dA)) and dB, real and imaginary.
  struct Discrete {
    torch::Tensor log_dA_re, log_dA_im, dB_re, dB_im;
  };
  Discrete discretize() const;

  torch::Tensor C_, log_dt_, B_, log_A_real_, A_imag_, D_;

 private:
  int64_t channels_, d_state_;
  std::string discretization_;
  int64_t chunk_len_ = 0;  // 0: default_chunk_len(L)
  int64_t single_pass_len_ = kDefaultSinglePassLen;
  // kernel(L) and state_after(u, state0) from an existing discretisation (forward_state_passing computes it once
  // for both).
  torch::Tensor kernel_of(const Discrete& d, int64_t L) const;
  torch::Tensor state_after_of(const Discrete& d, const torch::Tensor& u, const torch::Tensor& state0) const;
  // step()'s coefficients while gradients are off (decoding), each (H, N2, 2): dA as (dA_re, dA_re) and
  // (-dA_im, dA_im), dB (re, im), 2 (C_re, -C_im); valid while the parameters keep the versions recorded in
  // `versions` (any in-place update, e.g. an optimiser step, bumps them).
  struct StepCache {
    std::vector<uint32_t> versions;
    torch::Tensor dA_a, dA_b, dB, C2;
  };
  mutable StepCache step_cache_;
};
TORCH_MODULE(DiagSSM);

// The shift SSM (H3.md 2.2): A is the shift matrix, so the state holds the last N inputs; B (H, N) starts at
// e_1 and takes the SSM optimiser rule; C (H, N) uniform in [-1/sqrt(N), 1/sqrt(N)]; D (H) standard normal.
// Its kernel k[h, j] = sum_i B[h, i] C[h, i + j] is a learned causal filter of N taps (tap 0: the current input).
class ShiftSSMImpl : public torch::nn::Module {
 public:
  ShiftSSMImpl(int64_t channels, int64_t d_state);

  // The taps k[h, j] = sum_{i + j < N} B[h, i] C[h, i + j] (K[j] = C A^j B, A the shift matrix; H3.md 2.2): (H, N)
  // in the parameters' dtype. With float32 parameters on a GPU through the fused kernel of kernels/ssm_fused.h
  // (unless HIPPO_SSM_KERNEL=aten or an FftConvReferenceScope lives), else an ATen expression.
  torch::Tensor kernel() const;
  // u: (B, H, L) -> causal_conv(u, k) + D*u, (B, H, L) in u's dtype (taps beyond L are irrelevant and dropped).
  torch::Tensor forward(const torch::Tensor& u) const;
  // State: (B, H, N) in the parameters' dtype: x[n] = sum_s B[n - s] u_{t-s}; zero initially.
  torch::Tensor initial_state(int64_t batch) const;
  // x_t = shift(x_{t-1}) + B u_t; y_t = sum_n C[n] x_t[n] + D u_t. u_t: (B, H) -> (B, H).
  torch::Tensor step(const torch::Tensor& u_t, torch::Tensor& state) const;
  // The state after the prompt u: (B, H, L), given the state before it (optional).
  torch::Tensor state_after(const torch::Tensor& u, const torch::Tensor& state0 = {}) const;
  std::vector<torch::Tensor> ssm_parameters() const { return {B_}; }
  int64_t channels() const { return channels_; }
  int64_t d_state() const { return d_state_; }

  torch::Tensor B_, C_, D_;

 private:
  int64_t channels_, d_state_;
};
TORCH_MODULE(ShiftSSM);

}  // namespace hippo
