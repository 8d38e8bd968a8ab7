// Fused kernel generation of the SSMs (kernels/ssm_kernel.h). The shift SSM's taps are a correlation of B and C per
// channel, one block each (the ATen expression: an unfold view, a product, a sum; its backward an unfold_backward).
// The diagonal SSM (H3.md 2.1 and 3; layers/ssm.h): the discretisation of every mode and the Vandermonde product
// K[h, l] = 2 Re(sum_n C'_n exp(l w_n)) (w = log dA, C' = C dB) in one launch, and the backward in two. Before,
// the ATen expressions of both SSMs and the small elementwise ops around them took 63 launches of one H3 forward
// (58 of them the diagonal SSM's kernel) and 232 of its forward+backward (ncu, B4 D768 L2K, H200). Positions are
// split as l = 32 m + r: a block owns 1024 positions (32 values of m) of one channel and, per group of 32 modes,
// tabulates z^r and z^(32 m) in shared memory (the forward: one exp and one sincos each; the backward: by repeated
// squaring, small_power), so that each (l, n) term is one complex multiply-add. Backward: per block and mode the sums S0 = sum_l dK_l z^l and S1 = sum_l dK_l l z^l over its
// positions; a second kernel adds the blocks' sums in a fixed order (deterministic) and applies the chain rule of
// kernels/ssm_math.h. The forward: w and C' in float64, each table entry's phase formed and reduced in float64
// (ssm_math::power_reduced), the tables and the sums in float32. The backward in float64 (w, tables, sums and chain
// rule), its gradients rounded to float32 once. The backward is the exact gradient, so the forward must be
// accurate too: with the phases in float32 (as the ATen expression forms them) K was about 2e-5 off, and with
// a loss of y = K * u (y^2, white u) the float32 expression's own gradient errors cancel that K error in part
// while the exact gradient does not, so the fused gradients of log_dt and A_imag were 4x the expression's error
// (CPU emulation, H 64, N2 32, L 3000: 2.7e-4 / 2.0e-4 against 6.0e-5 / 4.4e-5; with the reduced phases K is
// 1.3e-7 off and those gradients 2.4e-7 / 2.6e-7). CUDA runtime only.
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

// exp(e w) in float32 for w in float64 (ssm_math::power_reduced: the phase reduced in float64).
__device__ __forceinline__ float2 power(double2 w, int64_t e) {
  const Cx<float> z = ssm_math::power_reduced(Cx<double>{w.x, w.y}, e);
  return make_float2(z.re, z.im);
}

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

// Block (h, tile): K[h, l] for l in [1024 tile, 1024 (tile + 1)) and l < L. Thread t owns r = t % 32 and
// m = t / 32 + 8 i, i < 4.
__global__ void __launch_bounds__(kThreads) diag_ssm_fwd_kernel(DiagSsmParams p, float* __restrict__ K) {
  __shared__ float2 lo[kModes][kR];  // z_j^r, r fastest (the lanes)
  __shared__ float2 ch[kM][kModes];  // C'_j z_j^(32 m), read as a broadcast
  __shared__ double2 w_s[kModes];
  __shared__ float2 cp_s[kModes];
  const int64_t h = blockIdx.x, m0 = static_cast<int64_t>(blockIdx.y) * kM;
  const int t = threadIdx.x, r = t % kR, mq = t / kR;
  float acc[kM / kWarps] = {};
  for (int64_t n0 = 0; n0 < p.N2; n0 += kModes) {
    if (t < kModes) {
      double2 w = make_double2(0.0, 0.0);  // past N2: a mode with C' = 0
      float2 cp = make_float2(0.f, 0.f);
      if (n0 + t < p.N2) {
        Cx<double> W, CP;
        ssm_math::discretize(load_mode<double>(p, h, n0 + t), p.bilinear, W, CP);
        w = make_double2(W.re, W.im);
        cp = make_float2(static_cast<float>(CP.re), static_cast<float>(CP.im));
      }
      w_s[t] = w;
      cp_s[t] = cp;
    }
    __syncthreads();
    for (int i = t; i < kModes * kR; i += kThreads) {
      lo[i / kR][i % kR] = power(w_s[i / kR], i % kR);
      ch[i / kModes][i % kModes] = cmul(cp_s[i % kModes], power(w_s[i % kModes], (m0 + i / kModes) * kR));
    }
    __syncthreads();
#pragma unroll 4
    for (int j = 0; j < kModes; ++j) {
      const float2 z = lo[j][r];
#pragma unroll
      for (int i = 0; i < kM / kWarps; ++i) {
        const float2 c = ch[mq + kWarps * i][j];
        acc[i] += c.x * z.x - c.y * z.y;
      }
    }
    __syncthreads();  // the next group rewrites the tables
  }
#pragma unroll
  for (int i = 0; i < kM / kWarps; ++i) {
    const int64_t l = (m0 + mq + kWarps * i) * kR + r;
    if (l < p.L) K[h * p.L + l] = 2.f * acc[i];
  }
}

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

// z^a for 0 <= a < 32 by repeated squaring: at most 10 complex products in float64 (relative error about 1e-15)
// instead of a float64 sine, cosine and exponential per table entry. Measured on the H200 (session 10, H 768,
// N2 32): the backward 2% faster (0.0616 -> 0.0604 ms at L 2048), gradients bit-identical; the tables were
// not the bottleneck. ncu: the kernel is FP64-bound in the sums below (12.6M FP64 warp instructions at L 2048,
// 42% of the FP64 peak, 52 us).
__device__ __forceinline__ double2 small_power(double2 z, int a) {
  double2 r = make_double2(1.0, 0.0);
  for (; a > 0; a >>= 1) {
    if (a & 1) r = cmul(r, z);
    z = cmul(z, z);
  }
  return r;
}

// Block (h, tile): for every mode n, S0 = sum dK_l z_n^l and S1 = sum dK_l l z_n^l over the block's positions,
// written to partial[h, tile, n, :] = (Re S0, Im S0, Re S1, Im S1). Thread t owns mode n0 + t % 32 and
// m = t / 32 + 8 i; sum_l = sum_m z^(32 m) sum_r dK z^r, and l z^l = z^(32 m) (32 m z^r + r z^r). In float64
// (w, the power tables, the sums): the float32 form lost up to 48 times the float32 ATen expression's accuracy
// in the gradients of log_dt, log_A_real and A_imag (measured on the H200 against float64, H = 1, N2 = 70).
__global__ void __launch_bounds__(kThreads)
    diag_ssm_bwd_partial_kernel(DiagSsmParams p, const float* __restrict__ dK, double* __restrict__ partial) {
  __shared__ float dk_s[kM][kR];
  __shared__ double2 lo[kR][kModes];  // z_j^r, mode fastest (the lanes)
  __shared__ double2 hi[kM][kModes];  // z_j^(32 m)
  __shared__ double2 base_s[3][kModes];  // per mode: z, z^32 and z^(32 m0)
  __shared__ double red[4][kWarps][kModes];
  const int64_t h = blockIdx.x, tile = blockIdx.y, tiles = gridDim.y, m0 = tile * kM;
  const int t = threadIdx.x, j = t % kModes, ms = t / kModes;
  for (int i = t; i < kM * kR; i += kThreads) {
    const int64_t l = m0 * kR + i;
    dk_s[i / kR][i % kR] = l < p.L ? dK[h * p.L + l] : 0.f;
  }
  for (int64_t n0 = 0; n0 < p.N2; n0 += kModes) {
    if (t < kModes) {
      double2 w = make_double2(0.0, 0.0);
      if (n0 + t < p.N2) {
        Cx<double> W, CP;
        ssm_math::discretize(load_mode<double>(p, h, n0 + t), p.bilinear, W, CP);
        w = make_double2(W.re, W.im);
      }
      base_s[0][t] = power_f64(w, 1);
      base_s[1][t] = power_f64(w, kR);
      base_s[2][t] = power_f64(w, m0 * kR);
    }
    __syncthreads();
    for (int i = t; i < kR * kModes; i += kThreads) {
      const int a = i / kModes, jj = i % kModes;  // a: r for lo, m - m0 for hi
      lo[a][jj] = small_power(base_s[0][jj], a);
      hi[a][jj] = cmul(base_s[2][jj], small_power(base_s[1][jj], a));
    }
    __syncthreads();
    double s0x = 0, s0y = 0, s1x = 0, s1y = 0;
    for (int mi = ms; mi < kM; mi += kWarps) {
      double px = 0, py = 0, qx = 0, qy = 0;
#pragma unroll 8
      for (int r = 0; r < kR; ++r) {
        const double d = dk_s[mi][r], dr = d * r;
        const double2 z = lo[r][j];
        px += d * z.x;
        py += d * z.y;
        qx += dr * z.x;
        qy += dr * z.y;
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
  diag_ssm_fwd_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p, K);
  check_launch("diag_ssm_fwd_kernel", p);
}

void diag_ssm_kernel_backward_launch(const DiagSsmParams& p, const float* dK, const DiagSsmGrads& g, void* stream) {
  check_sizes(p, "diag_ssm_bwd_partial_kernel");
  const int64_t tiles = diag_ssm_tiles(p.L);
  auto s = static_cast<cudaStream_t>(stream);
  diag_ssm_bwd_partial_kernel<<<dim3(static_cast<unsigned>(p.H), static_cast<unsigned>(tiles)), kThreads, 0, s>>>(
      p, dK, g.partial);
  check_launch("diag_ssm_bwd_partial_kernel", p);
  diag_ssm_bwd_params_kernel<<<static_cast<unsigned>(p.H), 128, 0, s>>>(p, g.partial, tiles, g);
  check_launch("diag_ssm_bwd_params_kernel", p);
}

}  // namespace hippo::cuda
