// The short-filter convolution kernels (fftconv_short_kernel.h): a causal convolution with at most 64 taps (the
// shift SSM's filter, H3.md 3.1) by direct summation in float32, its transpose (the gradient of u) and the
// filter's gradient. With 64 taps this is 64 multiply-adds per output against an FFT of twice the sequence (for
// L = 2048 a 4096-point transform each way), and one read of the input and one write of the output.
//
// Layout of the work. Apply (forward and transpose): one block per (row, tile of kTile = 1024 steps); the tile
// and the KT - 1 steps it reaches back (forward) or ahead (transpose) are staged in shared memory as float32;
// each thread computes kOut = 8 consecutive outputs from a window of kOut + KT - 1 inputs held in registers, the
// taps read from shared memory (one broadcast per tap). Filter gradient: one block per (row, tile of 1024 steps),
// one warp per 16 taps; lane s sums steps [32 s, 32 s + 32) of the tile for its warp's taps, sliding a window of
// 31 inputs through registers, then the warp adds its lanes by shuffles; each block writes its 16 * warps partial
// sums, and a second kernel adds the partials of a channel in a fixed order.
//
// Shared-memory index p is stored at p + p / 32 (one pad word every 32), so that lanes reading words 8 or 32 apart
// (the two access patterns here) fall in different banks.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_elem.cuh"
#include "kernels/fftconv_short_kernel.h"

namespace hippo::cuda {
namespace {

constexpr int kThreads = 128;               // apply kernel
constexpr int kOut = 8;                     // consecutive outputs per thread
constexpr int kTile = kThreads * kOut;      // steps per block
constexpr int kGradTaps = 16;               // taps per warp in the gradient kernel
constexpr int kGradSteps = 32;              // steps per lane in the gradient kernel
static_assert(kShortGradTile == 32 * kGradSteps, "one gradient tile is 32 lanes of kGradSteps steps");
static_assert(kTile == kShortGradTile, "the launchers share the tile count");

__host__ __device__ constexpr int padded(int p) { return p + (p >> 5); }

// s[padded(p)] = x[base + p] for p in [0, n) (n even, base even), zero outside [0, L). vec2: pairs are aligned.
template <typename T>
__device__ __forceinline__ void stage(float* s, const T* x, int64_t base, int n, int64_t L, bool vec2) {
  for (int p = 2 * static_cast<int>(threadIdx.x); p < n; p += 2 * static_cast<int>(blockDim.x)) {
    const int64_t t = base + p;
    const float2 v = t < 0 ? make_float2(0.f, 0.f) : load_pair(x, t, L, vec2);
    s[padded(p)] = v.x;
    s[padded(p + 1)] = v.y;
  }
}

template <typename T, int KT, bool Reverse>
__global__ void __launch_bounds__(kThreads) short_conv_kernel(ShortConvParams p, bool vec2) {
  // Forward: s_x[p] = x[t0 - KT + p]; reverse: s_x[p] = x[t0 + p]; p in [0, kTile + KT).
  __shared__ float s_x[padded(kTile + KT)];
  __shared__ float s_k[KT];
  const int64_t row = blockIdx.x, t0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t h = row % p.H;
  const T* x = static_cast<const T*>(p.x) + row * p.L;
  for (int j = threadIdx.x; j < KT; j += kThreads) {
    float kj = j < p.Lk ? p.k[h * p.Lk + j] : 0.f;
    if (j == 0 && p.D) kj += p.D[h];  // the skip is the filter's lag-0 tap
    s_k[j] = kj;
  }
  stage(s_x, x, Reverse ? t0 : t0 - KT, kTile + KT, p.L, vec2);
  __syncthreads();

  // Outputs t = t0 + p0 + r, r < kOut. Forward: x[t - j] = s_x[p0 + r - j + KT] = w[r - j + KT - 1];
  // reverse: x[t + j] = s_x[p0 + r + j] = w[r + j]; w[m] = s_x[p0 + m + (Reverse ? 0 : 1)].
  const int p0 = threadIdx.x * kOut;
  float w[kOut + KT - 1];
#pragma unroll
  for (int m = 0; m < kOut + KT - 1; ++m) w[m] = s_x[padded(p0 + m + (Reverse ? 0 : 1))];
  float acc[kOut];
#pragma unroll
  for (int r = 0; r < kOut; ++r) acc[r] = 0.f;
#pragma unroll
  for (int j = 0; j < KT; ++j) {
    const float kj = s_k[j];
#pragma unroll
    for (int r = 0; r < kOut; ++r) acc[r] = fmaf(kj, Reverse ? w[r + j] : w[r - j + KT - 1], acc[r]);
  }
  T* y = static_cast<T*>(p.y) + row * p.L;
#pragma unroll
  for (int r = 0; r < kOut; r += 2) store_pair(y, t0 + p0 + r, p.L, vec2, make_float2(acc[r], acc[r + 1]));
}

// Partial filter gradient of one (row, tile): partial[h, b * tiles + tile, j] = sum over the tile's steps t of
// dy[t] u[t - j], j < KT. Warp g: taps [16 g, 16 g + 16); lane s: steps t0 + 32 s + q, q < 32.
template <typename T, int KT>
__global__ void __launch_bounds__(KT * 2) short_conv_grad_partial_kernel(ShortConvGradParams p, bool vec2) {
  constexpr int J = kGradTaps;
  // s_dy[p] = dy[t0 + p], p < 1024; s_u[p] = u[t0 - KT + p], p < 1024 + KT.
  __shared__ float s_dy[padded(kShortGradTile)];
  __shared__ float s_u[padded(kShortGradTile + KT)];
  const int64_t row = blockIdx.x, t0 = static_cast<int64_t>(blockIdx.y) * kShortGradTile;
  const int64_t tiles = gridDim.y, b = row / p.H, h = row % p.H;
  stage(s_dy, static_cast<const T*>(p.dy) + row * p.L, t0, kShortGradTile, p.L, vec2);
  stage(s_u, static_cast<const T*>(p.u) + row * p.L, t0 - KT, kShortGradTile + KT, p.L, vec2);
  __syncthreads();

  const int g = threadIdx.x / 32, s = threadIdx.x % 32;
  const int c = g * J, ts = s * kGradSteps;
  // For the steps t = t0 + ts + qb + qq (qq < J): u[t - c - jj] = s_u[ts + qb + qq - c - jj + KT] = a[qq - jj + J - 1]
  // with a[m] = s_u[ts + qb - c - (J - 1) + KT + m], m < 2 J - 1.
  float a[2 * J - 1];
#pragma unroll
  for (int m = 0; m < J - 1; ++m) a[m] = s_u[padded(ts - c - (J - 1) + KT + m)];
  float acc[J];
#pragma unroll
  for (int jj = 0; jj < J; ++jj) acc[jj] = 0.f;
#pragma unroll
  for (int qb = 0; qb < kGradSteps; qb += J) {
    float d[J];
#pragma unroll
    for (int m = J - 1; m < 2 * J - 1; ++m) a[m] = s_u[padded(ts + qb - c - (J - 1) + KT + m)];
#pragma unroll
    for (int qq = 0; qq < J; ++qq) d[qq] = s_dy[padded(ts + qb + qq)];
#pragma unroll
    for (int qq = 0; qq < J; ++qq) {
#pragma unroll
      for (int jj = 0; jj < J; ++jj) acc[jj] = fmaf(d[qq], a[qq - jj + J - 1], acc[jj]);
    }
#pragma unroll
    for (int m = 0; m < J - 1; ++m) a[m] = a[m + J];
  }
  // Sum over the 32 lanes (fixed butterfly order: deterministic).
#pragma unroll
  for (int jj = 0; jj < J; ++jj) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[jj] += __shfl_xor_sync(0xffffffffu, acc[jj], off);
  }
  if (s == 0) {
    float* out = p.partial + ((h * p.B + b) * tiles + blockIdx.y) * KT + c;
#pragma unroll
    for (int jj = 0; jj < J; ++jj) out[jj] = acc[jj];
  }
}

// dk[h, j] = sum of partial[h, :, j] in index order, j < L_k; dD[h] = dk[h, 0]. One block of KT threads per channel.
template <int KT>
__global__ void short_conv_grad_sum_kernel(ShortConvGradParams p, int64_t parts) {
  const int64_t h = blockIdx.x;
  const int j = threadIdx.x;
  const float* in = p.partial + h * parts * KT + j;
  float sum = 0.f;
  for (int64_t i = 0; i < parts; ++i) sum += in[i * KT];
  if (j < p.Lk && p.dk) p.dk[h * p.Lk + j] = sum;
  if (j == 0 && p.dD) p.dD[h] = sum;
}

// ---- launchers --------------------------------------------------------------------------------------------
const char* elem_name(ElemType e) {
  return e == ElemType::kFloat32 ? "float32" : e == ElemType::kFloat16 ? "float16" : "bfloat16";
}

std::string shape_str(int64_t B, int64_t H, int64_t L, int64_t Lk, ElemType e) {
  return "B=" + std::to_string(B) + " H=" + std::to_string(H) + " L=" + std::to_string(L) +
         " L_k=" + std::to_string(Lk) + " dtype=" + elem_name(e);
}

void check(cudaError_t err, const char* kernel, const std::string& shape) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": launch failed (" + cudaGetErrorString(err) + ") for " + shape);
}

// The grid (rows, tiles) of both kernels; throws naming `kernel` when the shape is out of range.
dim3 grid_of(const char* kernel, int64_t B, int64_t H, int64_t L, int64_t Lk, ElemType e) {
  const int64_t rows = B * H, tiles = (L + kTile - 1) / kTile;
  if (B < 1 || H < 1 || L < 1 || Lk < 1 || Lk > L || Lk > kShortMaxTaps || rows > INT32_MAX || tiles > 65535)
    throw std::runtime_error(std::string(kernel) + ": unsupported shape " + shape_str(B, H, L, Lk, e) +
                             " (needs 1 <= L_k <= min(L, " + std::to_string(kShortMaxTaps) +
                             "), B * H <= 2^31 - 1, L <= " + std::to_string(65535 * int64_t{kTile}) + ")");
  return dim3(static_cast<unsigned>(rows), static_cast<unsigned>(tiles));
}

bool aligned2(const void* ptr, size_t elem_bytes) {
  return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % (2 * elem_bytes) == 0;
}

template <typename T, int KT>
void launch_apply(const ShortConvParams& p, cudaStream_t stream) {
  const dim3 grid = grid_of("short_conv_kernel", p.B, p.H, p.L, p.Lk, p.elem);
  const bool vec2 = p.L % 2 == 0 && aligned2(p.x, sizeof(T)) && aligned2(p.y, sizeof(T));
  if (p.reverse)
    short_conv_kernel<T, KT, true><<<grid, kThreads, 0, stream>>>(p, vec2);
  else
    short_conv_kernel<T, KT, false><<<grid, kThreads, 0, stream>>>(p, vec2);
  check(cudaGetLastError(), "short_conv_kernel", shape_str(p.B, p.H, p.L, p.Lk, p.elem));
}

template <typename T, int KT>
void launch_grad(const ShortConvGradParams& p, cudaStream_t stream) {
  const dim3 grid = grid_of("short_conv_grad_kernel", p.B, p.H, p.L, p.Lk, p.elem);
  const auto shape = shape_str(p.B, p.H, p.L, p.Lk, p.elem);
  if (!p.partial) throw std::runtime_error("short_conv_grad_kernel: partial is required for " + shape);
  const bool vec2 = p.L % 2 == 0 && aligned2(p.u, sizeof(T)) && aligned2(p.dy, sizeof(T));
  short_conv_grad_partial_kernel<T, KT><<<grid, KT * 2, 0, stream>>>(p, vec2);
  check(cudaGetLastError(), "short_conv_grad_kernel", shape);
  short_conv_grad_sum_kernel<KT><<<static_cast<unsigned>(p.H), KT, 0, stream>>>(p, p.B * grid.y);
  check(cudaGetLastError(), "short_conv_grad_sum_kernel", shape);
}

// Calls f.template operator()<T, KT>() for the element type and compiled width.
template <typename F>
void dispatch(ElemType e, int64_t Lk, const char* kernel, const std::string& shape, F&& f) {
  const int taps = short_conv_taps(Lk);
  if (taps == 0) throw std::runtime_error(std::string(kernel) + ": unsupported shape " + shape);
  auto by_taps = [&](auto tag) {
    using T = decltype(tag);
    if (taps == 16) return f.template operator()<T, 16>();
    if (taps == 32) return f.template operator()<T, 32>();
    return f.template operator()<T, 64>();
  };
  switch (e) {
    case ElemType::kFloat32:
      return by_taps(float{});
    case ElemType::kFloat16:
      return by_taps(__half{});
    case ElemType::kBFloat16:
      return by_taps(__nv_bfloat16{});
  }
  throw std::runtime_error(std::string(kernel) + ": unknown element type for " + shape);
}

struct ApplyLauncher {
  const ShortConvParams& p;
  cudaStream_t stream;
  template <typename T, int KT>
  void operator()() const {
    launch_apply<T, KT>(p, stream);
  }
};

struct GradLauncher {
  const ShortConvGradParams& p;
  cudaStream_t stream;
  template <typename T, int KT>
  void operator()() const {
    launch_grad<T, KT>(p, stream);
  }
};

}  // namespace

int short_conv_taps(int64_t Lk) {
  if (Lk < 1 || Lk > kShortMaxTaps) return 0;
  return Lk <= 16 ? 16 : Lk <= 32 ? 32 : 64;
}

void short_conv_launch(const ShortConvParams& p, void* stream) {
  dispatch(p.elem, p.Lk, "short_conv_kernel", shape_str(p.B, p.H, p.L, p.Lk, p.elem),
           ApplyLauncher{p, static_cast<cudaStream_t>(stream)});
}

void short_conv_grad_launch(const ShortConvGradParams& p, void* stream) {
  dispatch(p.elem, p.Lk, "short_conv_grad_kernel", shape_str(p.B, p.H, p.L, p.Lk, p.elem),
           GradLauncher{p, static_cast<cudaStream_t>(stream)});
}

}  // namespace hippo::cuda
