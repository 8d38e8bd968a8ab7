// Fused kernel generation of the SSMs (kernels/ssm_kernel.h). The shift SSM's taps are a correlation of B and C per
// channel, one block each (the ATen expression: an unfold view, a product, a sum; its backward an unfold_backward).
// The diagonal SSM (H3.md 2.1 and 3; layers/ssm.h): the discretisation of every mode and the Vandermonde product
// K[h, l] = 2 Re(sum_n C'_n exp(l w_n)) (w = log dA, C' = C dB) in one launch, and the backward in two. Before,
// the ATen expressions of both SSMs and the small elementwise ops around them took 63 launches of one H3 forward
// (58 of them the diagonal SSM's kernel) and 232 of its forward+backward (ncu, B4 D768 L2K, H200). Positions are
// split as l = 32 m + r: a block owns 1024 positions (32 values of m) of one channel and, per group of 32 modes,
// tabulates z^r and z^(32 m) in shared memory, each table row by successive products in float64 from one or two
// float64 exponentials (the phase e Im w rounded once in float64: an error of about 1e-16 |e Im w|, at most 2.4e-8
// rad at e = 65535 * 1024, |Im w| = 3.2, below float32's resolution), so that each (l, n) term is one complex
// multiply-add. Forward: the tables rounded to float32, 16 outputs per thread, sums in
// float32. Backward: per block and mode the sums S0 = sum_l dK_l z^l and S1 = sum_l dK_l l z^l over its positions,
// the 32-term inner sums over r in float32 and the rest (z^(32 m), the sums over m and tiles, the chain rule of
// kernels/ssm_math.h) in float64; a second kernel adds the blocks' sums in a fixed order (deterministic), and the
// gradients are rounded to float32 once. The backward is the exact gradient, so the forward must be accurate too:
// with the phases in float32 (as the ATen expression forms them) K was about 2e-5 off, and with a loss of y = K * u
// (y^2, white u) the float32 expression's own gradient errors cancel that K error in part while the exact gradient
// does not, so the fused gradients of log_dt and A_imag were 4x the expression's error (CPU emulation, H 64, N2 32,
// L 3000: 2.7e-4 / 2.0e-4 against 6.0e-5 / 4.4e-5; with the phases reduced in float64 K is 1.3e-7 off and those
// gradients 2.4e-7 / 2.6e-7). Session 13 (H200, ncu, H 768, N2 32, L 2048): the forward's tables, one exponential,
// sine and cosine per entry, took most of its instructions (issue-bound: about 15M warp instructions where its
// multiply-adds and loads need about 4M), and the backward was FP64-bound in its float64 inner sums; with the tables
// by products, 4 x 4 outputs per thread in the forward and float32 inner sums in the backward, the forward went from
// 28.2 to 16.5 us and the backward's partial sums from 52.2 to 31.8 us.
// CUDA runtime only.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/ssm_kernel.h"
#include "kernels/ssm_math.h"

namespace hippo::cuda {
namespace {

using ssm_math::Cx;
using ssm_math::Mode;

constexpr int kR = 32;        // l = 32 m + r
constexpr int kM = 32;        // values of m per block: kR * kM = kDiagSsmTile positions
constexpr int kModes = 32;    // modes per group (one warp's lanes in the backward)
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
static_assert(kR * kM == kDiagSsmTile, "tile size");

// Mode n of channel h in T (float64 for the discretisation in both kernels; float32 is only used by tests).
template <typename T>
__device__ __forceinline__ Mode<T> load_mode(const DiagSsmParams& p, int64_t h, int64_t n) {
  const int64_t i = h * p.N2 + n;
  Mode<T> m;
  m.dt = ssm_math::m_exp(static_cast<T>(p.log_dt[h]));
  m.log_A_real = p.log_A_real[i];
  m.A_imag = p.A_imag[i];
  m.B = {p.B[2 * i], p.B[2 * i + 1]};
  m.C = {p.C[2 * i], p.C[2 * i + 1]};
  return m;
}

// exp(e w) in float64: the phase e Im w formed and reduced in float64 (sincos), e up to 65535 * 1024.
__device__ __forceinline__ double2 power_f64(double2 w, int64_t e) {
  const double x = static_cast<double>(e);
  double s, c;
  sincos(x * w.y, &s, &c);
  const double mag = exp(x * w.x);
  return make_double2(mag * c, mag * s);
}

__device__ __forceinline__ double2 cmul(double2 a, double2 b) {
  return make_double2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

__device__ __forceinline__ float2 to_float2(double2 v) {
  return make_float2(static_cast<float>(v.x), static_cast<float>(v.y));
}

// The forward's tables hold rows of kR + 2 float2 (272 bytes: 16-byte aligned rows, and lanes writing one row each fall
// 4 banks apart).
constexpr int kFwdRow = kR + 2;
constexpr int kFwdThreads = 64;

// Block (h, tile): K[h, l] for the tile's 1024 positions l = 32 m + r, l < L. Per group of 32 modes, warp 0's lane j
// tabulates z_j^r (r < 32) and warp 1's lane j C'_j z_j^(32 m) (the block's 32 values of m), each by products in
// float64 from one exponential (z^r) or two (z^32 and z^(32 m0); power_f64) and rounded once to float32. Thread t then owns a 4 x 4 block of outputs,
// r in [4 (t % 8), + 4) and m in [m0 + 4 (t / 8), + 4): per mode two 16-byte loads of powers and two of
// coefficients for 16 complex multiply-adds in float32.
__global__ void __launch_bounds__(kFwdThreads) diag_ssm_fwd_kernel(DiagSsmParams p, float* __restrict__ K) {
  static_assert(kFwdThreads == 64 && kR == 32 && kM == 32 && kModes == 32, "two warps: one table each");
  __shared__ __align__(16) float2 lo[kModes][kFwdRow];  // z_j^r, r fastest
  __shared__ __align__(16) float2 ch[kModes][kFwdRow];  // C'_j z_j^(32 m), m - m0 fastest
  const int64_t h = blockIdx.x, m0 = static_cast<int64_t>(blockIdx.y) * kM;
  const int t = threadIdx.x, r0 = 4 * (t % 8), mr0 = 4 * (t / 8);
  float acc[4][4] = {};  // [m - m0 - mr0][r - r0]
  for (int64_t n0 = 0; n0 < p.N2; n0 += kModes) {
    {
      const int j = t % 32;
      double2 w = make_double2(0.0, 0.0), cp = make_double2(0.0, 0.0);  // past N2: a mode with C' = 0
      if (n0 + j < p.N2) {
        Cx<double> W, CP;
        ssm_math::discretize(load_mode<double>(p, h, n0 + j), p.bilinear, W, CP);
        w = make_double2(W.re, W.im);
        cp = make_double2(CP.re, CP.im);
      }
      if (t < 32) {
        const double2 z = power_f64(w, 1);
        double2 v = make_double2(1.0, 0.0);
        for (int r = 0; r < kR; ++r) {
          lo[j][r] = to_float2(v);
          v = cmul(v, z);
        }
      } else {
        const double2 z32 = power_f64(w, kR);
        double2 v = cmul(cp, power_f64(w, m0 * kR));
        for (int m = 0; m < kM; ++m) {
          ch[j][m] = to_float2(v);
          v = cmul(v, z32);
        }
      }
    }
    __syncthreads();
#pragma unroll 2
    for (int j = 0; j < kModes; ++j) {
      const float4 z01 = *reinterpret_cast<const float4*>(&lo[j][r0]);
      const float4 z23 = *reinterpret_cast<const float4*>(&lo[j][r0 + 2]);
      const float4 c01 = *reinterpret_cast<const float4*>(&ch[j][mr0]);
      const float4 c23 = *reinterpret_cast<const float4*>(&ch[j][mr0 + 2]);
      const float2 z[4] = {{z01.x, z01.y}, {z01.z, z01.w}, {z23.x, z23.y}, {z23.z, z23.w}};
      const float2 c[4] = {{c01.x, c01.y}, {c01.z, c01.w}, {c23.x, c23.y}, {c23.z, c23.w}};
#pragma unroll
      for (int b = 0; b < 4; ++b) {
#pragma unroll
        for (int a = 0; a < 4; ++a) acc[b][a] += c[b].x * z[a].x - c[b].y * z[a].y;
      }
    }
    __syncthreads();  // the next group rewrites the tables
  }
#pragma unroll
  for (int b = 0; b < 4; ++b) {
#pragma unroll
    for (int a = 0; a < 4; ++a) {
      const int64_t l = (m0 + mr0 + b) * kR + r0 + a;
      if (l < p.L) K[h * p.L + l] = 2.f * acc[b][a];
    }
  }
}

// Block (h, tile): for every mode n, S0 = sum dK_l z_n^l and S1 = sum dK_l l z_n^l over the block's positions,
// written to partial[h, tile, n, :] = (Re S0, Im S0, Re S1, Im S1). Thread t owns mode n0 + t % 32 and
// m = t / 32 + 8 i; sum_l = sum_m z^(32 m) sum_r dK z^r, and l z^l = z^(32 m) (32 m z^r + r z^r). Per group of 32
// modes, warp 0's lane j tabulates z_j^r (r < 32) and warp 1's lane j z_j^(32 m), by products in float64 from one
// exponential (z^r) or two (z^32 and z^(32 m0)). w, z^(32 m) and the sums over m are float64 (in float32 throughout, the gradients of log_dt,
// log_A_real and A_imag lost up to 48 times the float32 ATen expression's accuracy: measured on the H200 against
// float64, H = 1, N2 = 70: the phases of z^(32 m) at large m). The inner sums over r (32 terms, |z^r| <= 1) are
// float32, z^r rounded once from float64 and (dK_l, r dK_l) read as one pair: about 1e-7 of their own size, and no
// phase grows with L there; in float64 the kernel was FP64-bound (ncu, H 768, N2 32, L 2048: 12.6M FP64 warp
// instructions, 42% of the FP64 peak, 52 us).
__global__ void __launch_bounds__(kThreads)
    diag_ssm_bwd_partial_kernel(DiagSsmParams p, const float* __restrict__ dK, double* __restrict__ partial) {
  __shared__ float2 dk_s[kM][kR];     // (dK_l, r dK_l) for l = 32 (m0 + row) + r
  __shared__ float2 lo[kR][kModes];   // z_j^r, mode fastest (the lanes)
  __shared__ double2 hi[kM][kModes];  // z_j^(32 m)
  __shared__ double red[4][kWarps][kModes];
  const int64_t h = blockIdx.x, tile = blockIdx.y, tiles = gridDim.y, m0 = tile * kM;
  const int t = threadIdx.x, j = t % kModes, ms = t / kModes;
  for (int i = t; i < kM * kR; i += kThreads) {
    const int64_t l = m0 * kR + i;
    const float d = l < p.L ? dK[h * p.L + l] : 0.f;
    dk_s[i / kR][i % kR] = make_float2(d, d * static_cast<float>(i % kR));
  }
  for (int64_t n0 = 0; n0 < p.N2; n0 += kModes) {
    if (t < 64) {
      double2 w = make_double2(0.0, 0.0);
      if (n0 + j < p.N2) {
        Cx<double> W, CP;
        ssm_math::discretize(load_mode<double>(p, h, n0 + j), p.bilinear, W, CP);
        w = make_double2(W.re, W.im);
      }
      if (t < 32) {
        const double2 z = power_f64(w, 1);
        double2 v = make_double2(1.0, 0.0);
        for (int r = 0; r < kR; ++r) {
          lo[r][j] = to_float2(v);
          v = cmul(v, z);
        }
      } else {
        const double2 z32 = power_f64(w, kR);
        double2 v = power_f64(w, m0 * kR);
        for (int m = 0; m < kM; ++m) {
          hi[m][j] = v;
          v = cmul(v, z32);
        }
      }
    }
    __syncthreads();
    double s0x = 0, s0y = 0, s1x = 0, s1y = 0;
    for (int mi = ms; mi < kM; mi += kWarps) {
      float px = 0, py = 0, qx = 0, qy = 0;
#pragma unroll 8
      for (int r = 0; r < kR; ++r) {
        const float2 d = dk_s[mi][r], z = lo[r][j];
        px += d.x * z.x;
        py += d.x * z.y;
        qx += d.y * z.x;
        qy += d.y * z.y;
      }
      const double2 hz = hi[mi][j];
      const double base = static_cast<double>((m0 + mi) * kR);
      const double bx = base * px + qx, by = base * py + qy;
      s0x += hz.x * px - hz.y * py;
      s0y += hz.x * py + hz.y * px;
      s1x += hz.x * bx - hz.y * by;
      s1y += hz.x * by + hz.y * bx;
    }
    red[0][ms][j] = s0x;
    red[1][ms][j] = s0y;
    red[2][ms][j] = s1x;
    red[3][ms][j] = s1y;
    __syncthreads();
    if (t < kModes && n0 + t < p.N2) {
      double* out = partial + ((h * tiles + tile) * p.N2 + n0 + t) * 4;
      for (int c = 0; c < 4; ++c) {
        double v = 0;
        for (int k = 0; k < kWarps; ++k) v += red[c][k][t];
        out[c] = v;
      }
    }
    __syncthreads();  // the next group rewrites the tables and red
  }
}

// Block h: the sums over tiles (in order), then per mode G_C' = 2 conj(S0) and G_w = 2 conj(C' S1) (the gradients
// of K[l] = 2 Re(C' exp(l w))) through discretize_backward; dl/d log_dt = dt sum_n dl/d dt, by a fixed tree. In
// float64, rounded to float32 once at the end.
__global__ void __launch_bounds__(128)
    diag_ssm_bwd_params_kernel(DiagSsmParams p, const double* __restrict__ partial, int64_t tiles, DiagSsmGrads g) {
  __shared__ double red[128];
  const int64_t h = blockIdx.x;
  double gdt = 0;
  for (int64_t n = threadIdx.x; n < p.N2; n += blockDim.x) {
    double s[4] = {0, 0, 0, 0};
    for (int64_t k = 0; k < tiles; ++k)
      for (int c = 0; c < 4; ++c) s[c] += partial[((h * tiles + k) * p.N2 + n) * 4 + c];
    const Mode<double> m = load_mode<double>(p, h, n);
    Cx<double> w, cp;
    ssm_math::discretize(m, p.bilinear, w, cp);
    const Cx<double> G_Cp{2 * s[0], -2 * s[1]};
    const Cx<double> cs1 = cp * Cx<double>{s[2], s[3]};
    const Cx<double> G_w{2 * cs1.re, -2 * cs1.im};
    Mode<double> d;
    ssm_math::discretize_backward(m, p.bilinear, G_w, G_Cp, d);
    const int64_t i = h * p.N2 + n;
    g.log_A_real[i] = static_cast<float>(d.log_A_real);
    g.A_imag[i] = static_cast<float>(d.A_imag);
    g.B[2 * i] = static_cast<float>(d.B.re);
    g.B[2 * i + 1] = static_cast<float>(d.B.im);
    g.C[2 * i] = static_cast<float>(d.C.re);
    g.C[2 * i + 1] = static_cast<float>(d.C.im);
    gdt += d.dt;
  }
  red[threadIdx.x] = gdt;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s /= 2) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) g.log_dt[h] = static_cast<float>(red[0] * exp(static_cast<double>(p.log_dt[h])));
}

// Shift SSM, block h; shared: B and C rows (and dk in the backward), N floats each.
__global__ void __launch_bounds__(kThreads) shift_ssm_fwd_kernel(const float* __restrict__ B, const float* __restrict__ C,
                                                                 int64_t N, float* __restrict__ k) {
  extern __shared__ float sh[];
  float *b = sh, *c = sh + N;
  const int64_t h = blockIdx.x;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    b[i] = B[h * N + i];
    c[i] = C[h * N + i];
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    float s = 0.f;
    for (int64_t i = 0; i + j < N; ++i) s += b[i] * c[i + j];
    k[h * N + j] = s;
  }
}

__global__ void __launch_bounds__(kThreads)
    shift_ssm_bwd_kernel(const float* __restrict__ B, const float* __restrict__ C, const float* __restrict__ dk,
                         int64_t N, float* __restrict__ gB, float* __restrict__ gC) {
  extern __shared__ float sh[];
  float *b = sh, *c = sh + N, *d = sh + 2 * N;
  const int64_t h = blockIdx.x;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    b[i] = B[h * N + i];
    c[i] = C[h * N + i];
    d[i] = dk[h * N + i];
  }
  __syncthreads();
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    float sb = 0.f, sc = 0.f;
    for (int64_t j = 0; i + j < N; ++j) sb += d[j] * c[i + j];  // gB[i]
    for (int64_t j = 0; j <= i; ++j) sc += d[j] * b[i - j];     // gC[i]
    gB[h * N + i] = sb;
    gC[h * N + i] = sc;
  }
}

std::string shape_of(const DiagSsmParams& p) {
  return "H=" + std::to_string(p.H) + " N2=" + std::to_string(p.N2) + " L=" + std::to_string(p.L);
}

void check_sizes(const DiagSsmParams& p, const char* kernel) {
  if (p.H < 1 || p.N2 < 1 || p.L < 1 || p.H > INT_MAX || diag_ssm_tiles(p.L) > 65535)
    throw std::runtime_error(std::string(kernel) +
                             ": need H, N2, L >= 1, H <= 2^31 - 1 and L <= 65535 * 1024, got " + shape_of(p));
}

void check_launch(const char* kernel, const DiagSsmParams& p) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": launch failed (" + cudaGetErrorString(err) + ") for " +
                             shape_of(p));
}

void check_shift(const char* kernel, int64_t H, int64_t N) {
  if (H < 1 || H > INT_MAX || N < 1 || N > 4096)
    throw std::runtime_error(std::string(kernel) + ": need 1 <= H <= 2^31 - 1 and 1 <= N <= 4096, got H=" +
                             std::to_string(H) + " N=" + std::to_string(N));
}

void check_shift_launch(const char* kernel, int64_t H, int64_t N) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": launch failed (" + cudaGetErrorString(err) + ") for H=" +
                             std::to_string(H) + " N=" + std::to_string(N));
}

}  // namespace

void shift_ssm_kernel_launch(const float* B, const float* C, int64_t H, int64_t N, float* k, void* stream) {
  check_shift("shift_ssm_fwd_kernel", H, N);
  const int threads = N < kThreads ? static_cast<int>((N + 31) / 32 * 32) : kThreads;
  shift_ssm_fwd_kernel<<<static_cast<unsigned>(H), threads, 2 * N * sizeof(float), static_cast<cudaStream_t>(stream)>>>(
      B, C, N, k);
  check_shift_launch("shift_ssm_fwd_kernel", H, N);
}

void shift_ssm_kernel_backward_launch(const float* B, const float* C, const float* dk, int64_t H, int64_t N,
                                      float* gB, float* gC, void* stream) {
  check_shift("shift_ssm_bwd_kernel", H, N);
  const int threads = N < kThreads ? static_cast<int>((N + 31) / 32 * 32) : kThreads;
  shift_ssm_bwd_kernel<<<static_cast<unsigned>(H), threads, 3 * N * sizeof(float), static_cast<cudaStream_t>(stream)>>>(
      B, C, dk, N, gB, gC);
  check_shift_launch("shift_ssm_bwd_kernel", H, N);
}

void diag_ssm_kernel_launch(const DiagSsmParams& p, float* K, void* stream) {
  check_sizes(p, "diag_ssm_fwd_kernel");
  const dim3 grid(static_cast<unsigned>(p.H), static_cast<unsigned>(diag_ssm_tiles(p.L)));
  diag_ssm_fwd_kernel<<<grid, kFwdThreads, 0, static_cast<cudaStream_t>(stream)>>>(p, K);
  check_launch("diag_ssm_fwd_kernel", p);
}

void diag_ssm_kernel_backward_launch(const DiagSsmParams& p, const float* dK, const DiagSsmGrads& g, void* stream) {
  check_sizes(p, "diag_ssm_bwd_partial_kernel");
  const int64_t tiles = diag_ssm_tiles(p.L);
  auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(p.H), static_cast<unsigned>(tiles));
  diag_ssm_bwd_partial_kernel<<<grid, kThreads, 0, s>>>(p, dK, g.partial);
  check_launch("diag_ssm_bwd_partial_kernel", p);
  diag_ssm_bwd_params_kernel<<<static_cast<unsigned>(p.H), 128, 0, s>>>(p, g.partial, tiles, g);
  check_launch("diag_ssm_bwd_params_kernel", p);
}

}  // namespace hippo::cuda
