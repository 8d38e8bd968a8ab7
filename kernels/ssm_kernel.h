// Plain parameter structs and launchers of the fused SSM kernel generation (kernels/ssm_kernel.cu): the diagonal
// SSM's discretisation and Vandermonde product K[h, l] = 2 Re(sum_n C'_n dA_n^l) (DiagSSMImpl::kernel) in one
// launch and its backward in two; the shift SSM's taps k[h, j] = sum_i B[h, i] C[h, i + j] (ShiftSSMImpl::kernel)
// in one launch and its backward in one. No LibTorch and no CUDA headers; every tensor is contiguous, row-major and
// float32, but the diagonal backward's float64 scratch.
#pragma once

#include <cstdint>

namespace hippo::cuda {

// The parameters of DiagSSMImpl (layers/ssm.h), H channels of N2 complex modes.
struct DiagSsmParams {
  const float* log_dt = nullptr;      // (H)
  const float* log_A_real = nullptr;  // (H, N2)
  const float* A_imag = nullptr;      // (H, N2)
  const float* B = nullptr;           // (H, N2, 2), (re, im)
  const float* C = nullptr;           // (H, N2, 2)
  int64_t H = 0, N2 = 0, L = 0;
  bool bilinear = true;  // false: zero-order hold
};

// Positions per block of the kernels (32 x 32: l = 32 m + r) and the partial sums' tile count for L.
constexpr int64_t kDiagSsmTile = 1024;
inline int64_t diag_ssm_tiles(int64_t L) { return (L + kDiagSsmTile - 1) / kDiagSsmTile; }

// K (H, L) float32, written. Throws std::runtime_error naming the kernel and H, N2, L when a size is out of range
// (H, N2, L >= 1; H <= 2^31 - 1; at most 65535 tiles of 1024 positions) or the launch fails.
void diag_ssm_kernel_launch(const DiagSsmParams& p, float* K, void* stream);

// Gradients from dK (H, L), written as float32: z^(32 m), the sums over m and over tiles and the chain rule in
// float64, the 32-term inner sums over r in float32 (kernels/ssm_kernel.cu); partial (H, tiles, N2, 4) float64 is
// scratch (tiles = diag_ssm_tiles(L)); the outputs, each written (none may be null): g_log_dt (H), g_log_A_real
// (H, N2), g_A_imag (H, N2), g_B (H, N2, 2), g_C (H, N2, 2). Same errors as the forward.
struct DiagSsmGrads {
  double* partial = nullptr;
  float* log_dt = nullptr;
  float* log_A_real = nullptr;
  float* A_imag = nullptr;
  float* B = nullptr;
  float* C = nullptr;
};
void diag_ssm_kernel_backward_launch(const DiagSsmParams& p, const float* dK, const DiagSsmGrads& g, void* stream);

// The shift SSM (H3.md 2.2: A the shift matrix, so that K[j] = C A^j B): B, C (H, N) -> k (H, N), k[h, j] =
// sum_{i + j < N} B[h, i] C[h, i + j]; one block per channel. Backward from dk (H, N): gB[h, i] =
// sum_j dk[h, j] C[h, i + j], gC[h, m] = sum_{j <= m} dk[h, j] B[h, m - j]. Throws std::runtime_error naming the
// kernel and H, N when H < 1, H > 2^31 - 1, N < 1 or N > 4096, or when a launch fails.
void shift_ssm_kernel_launch(const float* B, const float* C, int64_t H, int64_t N, float* k, void* stream);
void shift_ssm_kernel_backward_launch(const float* B, const float* C, const float* dk, int64_t H, int64_t N,
                                      float* gB, float* gC, void* stream);

}  // namespace hippo::cuda
