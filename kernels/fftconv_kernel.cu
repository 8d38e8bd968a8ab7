// The fused FFT convolution kernels (H3.md 2.3 and 8, FlashConv's fused kernel), forward and backward. One
// thread block per row (b, h) (the backward: per channel and group of rows). The real signal of FFT size n is
// packed as n/2 complex values (even samples real, odd imaginary), transformed in shared memory by a Stockham
// FFT (radix-16 passes, and where log2(n/2) is not a multiple of 4 one radix-2, radix-4 or radix-8 pass after
// them), unpacked to the real spectrum, multiplied by the filter's spectrum, repacked and transformed back,
// all in float32; every input is read once and every output written once. The backward is compiled in two forms:
// plain (no gates, GELU or mask) and general. CUDA runtime only (no LibTorch), so this file compiles on machines
// without a GPU.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda_elem.cuh"
#include "kernels/fftconv_kernel.h"

namespace hippo::cuda {
namespace {

constexpr float kPi = 3.14159265358979323846f;

// How rows may be accessed: vec16, every row starts 16-byte aligned (L * sizeof(T) % 16 == 0 and aligned
// pointers), so whole 16-byte chunks are loaded and stored at once; vec2, pairs are aligned.
struct Io {
  bool vec16, vec2;
};

template <typename T>
__device__ __forceinline__ void chunk_to_float2(const uint4& raw, float2* x) {
  constexpr int kPairs = 16 / (2 * sizeof(T));
  const auto* pr = reinterpret_cast<const typename Elem<T>::Pair*>(&raw);
#pragma unroll
  for (int p = 0; p < kPairs; ++p) x[p] = Elem<T>::to_float2(pr[p]);
}

template <typename T>
__device__ __forceinline__ uint4 float2_to_chunk(const float2* x) {
  constexpr int kPairs = 16 / (2 * sizeof(T));
  uint4 raw;
  auto* pr = reinterpret_cast<typename Elem<T>::Pair*>(&raw);
#pragma unroll
  for (int p = 0; p < kPairs; ++p) pr[p] = Elem<T>::from_float2(x[p]);
  return raw;
}

// A row of M pairs as 16-byte chunks of kPairs pairs; thread threadIdx.x owns chunks threadIdx.x + i *
// THREADS.
template <typename T, int M, int THREADS>
struct Rows {
  static constexpr int kPairs = 16 / (2 * sizeof(T));
  static constexpr int kChunks = M / kPairs;
  static constexpr int kPerThread = (kChunks + THREADS - 1) / THREADS;

  // Chunk of item i of this thread, or -1.
  static __device__ __forceinline__ int chunk(int i) {
    const int c = threadIdx.x + i * THREADS;
    return (kChunks % THREADS == 0 || c < kChunks) ? c : -1;
  }
  static __device__ __forceinline__ int64_t first(int c) { return int64_t{c} * 2 * kPairs; }
  static __device__ __forceinline__ bool full(int c, int64_t L, Io io) {
    return io.vec16 && first(c) + 2 * kPairs <= L;
  }

  // Issues the 16-byte load of item i (when its chunk is whole); get() converts it later, so that several
  // items' loads are in flight together.
  static __device__ __forceinline__ void prefetch(const T* row, int i, int64_t L, Io io, uint4& raw) {
    const int c = chunk(i);
    if (row && i < kPerThread && c >= 0 && full(c, L, io))
      raw = *reinterpret_cast<const uint4*>(row + first(c));
  }
  // Pairs of item i: from the prefetched chunk when whole, else element by element (zero past L).
  static __device__ __forceinline__ void get(const T* row, int i, int64_t L, Io io, const uint4& raw,
                                             float2 (&x)[kPairs]) {
    const int c = chunk(i);
    if (full(c, L, io)) {
      chunk_to_float2<T>(raw, x);
    } else {
#pragma unroll
      for (int p = 0; p < kPairs; ++p) x[p] = load_pair(row, first(c) + 2 * p, L, io.vec2);
    }
  }
  static __device__ __forceinline__ void put(T* row, int i, int64_t L, Io io, const float2 (&x)[kPairs]) {
    const int c = chunk(i);
    if (full(c, L, io)) {
      *reinterpret_cast<uint4*>(row + first(c)) = float2_to_chunk<T>(x);
    } else {
#pragma unroll
      for (int p = 0; p < kPairs; ++p) store_pair(row, first(c) + 2 * p, L, io.vec2, x[p]);
    }
  }
};

// ---- complex arithmetic on float2
// --------------------------------------------------------------------------
__device__ __forceinline__ float2 operator+(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float2 operator-(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }
__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float2 conjg(float2 a) { return make_float2(a.x, -a.y); }
__device__ __forceinline__ float2 mul(float2 a, float2 b) { return make_float2(a.x * b.x, a.y * b.y); }
// a + s * b, one fused multiply-add per component.
__device__ __forceinline__ float2 fma_scaled(float2 a, float s, float2 b) {
  return make_float2(fmaf(s, b.x, a.x), fmaf(s, b.y, a.y));
}

// ---- activation
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ float gelu_grad(float x) {
  const float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
  const float pdf = 0.39894228040143268f * __expf(-0.5f * x * x);
  return cdf + x * pdf;
}

// ---- the shared-memory FFT of M = 2^LOG_M complex values
// --------------------------------------------------- Shared-memory index of element i: one float2 of padding
// after every 16, so that a warp writing with a stride of 16 elements (the first radix-16 pass) spreads over
// all banks instead of hitting one.
__device__ __forceinline__ int pad(int i) { return i + (i >> 4); }
// float2 slots of a padded buffer of m elements.
__host__ __device__ constexpr int padded(int m) { return m + m / 16; }

// Threads per block: one radix-16 butterfly each (M/16), at least a warp, at most 512.
__host__ __device__ constexpr int threads_for(int log_m) {
  return (1 << log_m) / 16 >= 512 ? 512 : ((1 << log_m) / 16 < 32 ? 32 : (1 << log_m) / 16);
}

// Shared memory a block may opt into on sm_90 (227 KiB).
constexpr int kMaxSmemBytes = 227 * 1024;

// Blocks per multiprocessor the forward is compiled for (__launch_bounds__): 1024 threads' worth, fewer when
// one padded buffer of M values limits it (M = 16384: 136 KiB, one block, so 128 registers a thread).
__host__ __device__ constexpr int fwd_min_blocks(int log_m) {
  const int by_threads = 1024 / threads_for(log_m);
  const int by_smem = kMaxSmemBytes / static_cast<int>(sizeof(float2) * padded(1 << log_m));
  return by_smem < by_threads ? (by_smem < 1 ? 1 : by_smem) : by_threads;
}

// Whether the backward keeps its three buffers (the spectrum of w, the work buffer, the dk accumulator) on chip:
// up to M = 8192 (204 KiB). Past it (M = 16384) the work buffer and the dk accumulator's first entries
// (bwd_acc_on_chip) are in shared memory; the unpacked spectrum of w goes to a per-block global scratch row and the
// accumulator's other entries to the block's own dk_spec row, read back only by the thread that wrote them.
__host__ __device__ constexpr bool bwd_on_chip(int log_m) {
  return 3 * sizeof(float2) * (padded(1 << log_m) + 1) <= static_cast<size_t>(kMaxSmemBytes);
}

// Past the on-chip limit: the accumulator's first entries (frequencies 0 .. this - 1) kept in the shared memory
// the work buffer leaves (a multiple of 32, at most M + 1), the rest in the block's dk_spec row.
__host__ __device__ constexpr int bwd_acc_on_chip(int log_m) {
  return ((kMaxSmemBytes / static_cast<int>(sizeof(float2)) - padded(1 << log_m)) / 32 * 32) < (1 << log_m) + 1
             ? (kMaxSmemBytes / static_cast<int>(sizeof(float2)) - padded(1 << log_m)) / 32 * 32
             : (1 << log_m) + 1;
}

// Dynamic shared memory of a backward block: work buffer, spectrum of w and (with dk) the accumulator on chip;
// past it the work buffer and (with dk) the accumulator's first bwd_acc_on_chip entries.
__host__ __device__ constexpr size_t bwd_smem_bytes(int log_m, bool dk) {
  return bwd_on_chip(log_m) ? sizeof(float2) * (2 * padded(1 << log_m) + (dk ? padded(1 << log_m) + 1 : 0))
                            : sizeof(float2) * (padded(1 << log_m) + (dk ? bwd_acc_on_chip(log_m) : 0));
}

// Blocks per multiprocessor the backward is compiled for (__launch_bounds__): 512 threads' worth (128 registers a
// thread), both kernels. With dk (three shared buffers) shared memory holds them to 512 threads a multiprocessor
// anyway at fft sizes 2048-8192. The plain kernel at 768 threads' worth (80 registers, session 17) was slower
// there (H200, bf16, B 16, H 768, kernel alone, session 18: 0.157 / 0.353 / 0.641 against 0.146 / 0.317 / 0.607
// ms at L 1K / 2K / 4K) and without dk too, where it fits 1.5x the blocks (0.100 / 0.220 / 0.375 against 0.094 /
// 0.203 / 0.391 ms: faster only at 4K).
__host__ __device__ constexpr int bwd_min_blocks(int log_m) { return 512 / threads_for(log_m); }

// The transform's direction is a template parameter (kSign = -1 forward, +1 inverse) so that every sign folds
// into the arithmetic at compile time.

// x * exp(kSign * 2 pi i * E / 16) for the twiddles inside the 16-point DFT; E = 2, 4, 6 without a full
// product.
template <int kSign, int E>
__device__ __forceinline__ float2 twiddle16(float2 x) {
  constexpr float s = kSign, h = 0.70710678118654752f;
  if constexpr (E == 2) return make_float2(h * (x.x - s * x.y), h * (x.y + s * x.x));
  if constexpr (E == 4) return make_float2(-s * x.y, s * x.x);
  if constexpr (E == 6) return make_float2(h * (-x.x - s * x.y), h * (s * x.x - x.y));
  constexpr float c1 = 0.92387953251128674f, s1 = 0.38268343236508977f;
  if constexpr (E == 1) return cmul(x, make_float2(c1, s * s1));
  if constexpr (E == 3) return cmul(x, make_float2(s1, s * c1));
  return cmul(x, make_float2(-c1, -s * s1));  // E == 9
}

// In-place 4-point DFT of (a, b, c, d); kHalfZero: c and d are known zeros (not read).
template <int kSign, bool kHalfZero = false>
__device__ __forceinline__ void dft4(float2& a, float2& b, float2& c, float2& d) {
  float2 apc = a, amc = a, bpd = b, bmd = b;
  if constexpr (!kHalfZero) {
    apc = a + c;
    amc = a - c;
    bpd = b + d;
    bmd = b - d;
  }
  // kSign * i * (b - d)
  const float2 jbmd = kSign > 0 ? make_float2(-bmd.y, bmd.x) : make_float2(bmd.y, -bmd.x);
  a = apc + bpd;
  b = amc + jbmd;
  c = apc - bpd;
  d = amc - jbmd;
}

// In-place R-point DFT; kHalfZero: x[R/2 ..] are known zeros (the zero padding, in a first pass).
template <int R, int kSign, bool kHalfZero>
__device__ __forceinline__ void dft(float2 (&x)[R]) {
  if constexpr (R == 2) {
    const float2 a = x[0], b = kHalfZero ? make_float2(0.f, 0.f) : x[1];
    x[0] = kHalfZero ? a : a + b;
    x[1] = kHalfZero ? a : a - b;
  } else if constexpr (R == 4) {
    dft4<kSign, kHalfZero>(x[0], x[1], x[2], x[3]);
  } else if constexpr (R == 8) {
    // 8 = 4 x 2: n = b + 2a, k = c + 4d. DFT over a for each b, twiddle W8^(bc) = W16^(2bc), DFT over b for each c.
    // With kHalfZero the inputs n >= 4 (a >= 2) are the zeros dft4 does not read.
    dft4<kSign, kHalfZero>(x[0], x[2], x[4], x[6]);
    dft4<kSign, kHalfZero>(x[1], x[3], x[5], x[7]);
    // x[b + 2c] now holds Y_b[c].
    x[3] = twiddle16<kSign, 2>(x[3]);
    x[5] = twiddle16<kSign, 4>(x[5]);
    x[7] = twiddle16<kSign, 6>(x[7]);
    float2 y[8];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      y[c] = x[2 * c] + x[2 * c + 1];
      y[c + 4] = x[2 * c] - x[2 * c + 1];
    }
#pragma unroll
    for (int r = 0; r < 8; ++r) x[r] = y[r];
  } else {
    // 16 = 4 x 4: n = b + 4a, k = c + 4d. DFT over a for each b, twiddle W16^(bc), DFT over b for each c.
#pragma unroll
    for (int b = 0; b < 4; ++b) dft4<kSign, kHalfZero>(x[b], x[b + 4], x[b + 8], x[b + 12]);
    // x[b + 4c] now holds Y_b[c].
    x[5] = twiddle16<kSign, 1>(x[5]);
    x[9] = twiddle16<kSign, 2>(x[9]);
    x[13] = twiddle16<kSign, 3>(x[13]);
    x[6] = twiddle16<kSign, 2>(x[6]);
    x[10] = twiddle16<kSign, 4>(x[10]);
    x[14] = twiddle16<kSign, 6>(x[14]);
    x[7] = twiddle16<kSign, 3>(x[7]);
    x[11] = twiddle16<kSign, 6>(x[11]);
    x[15] = twiddle16<kSign, 9>(x[15]);
    float2 y[16];
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      float2 a0 = x[0 + 4 * c], a1 = x[1 + 4 * c], a2 = x[2 + 4 * c], a3 = x[3 + 4 * c];
      dft4<kSign>(a0, a1, a2, a3);
      y[c] = a0;
      y[c + 4] = a1;
      y[c + 8] = a2;
      y[c + 12] = a3;
    }
#pragma unroll
    for (int r = 0; r < 16; ++r) x[r] = y[r];
  }
}

// x[r] *= exp(i angle r) for r = 1 .. R - 1: the Stockham twiddles of one butterfly. |angle| < 2 pi / R <= pi,
// where the fast sine and cosine are accurate to a few 1e-7. Powers up to r = 15 as w^(4a) w^b (at most two
// products from the two evaluated twiddles).
template <int R>
__device__ __forceinline__ void twiddle_inputs(float2 (&x)[R], float angle) {
  float s, c;
  __sincosf(angle, &s, &c);
  const float2 w1 = make_float2(c, s);
  const float2 w2 = cmul(w1, w1), w3 = cmul(w2, w1);
  if constexpr (R == 2) {
    x[1] = cmul(x[1], w1);
  } else if constexpr (R == 4) {
    x[1] = cmul(x[1], w1);
    x[2] = cmul(x[2], w2);
    x[3] = cmul(x[3], w3);
  } else {
    __sincosf(4.f * angle, &s, &c);
    const float2 w4 = make_float2(c, s), w8 = cmul(w4, w4), w12 = cmul(w8, w4);
    const float2 lo[4] = {make_float2(1.f, 0.f), w1, w2, w3}, hi[4] = {make_float2(1.f, 0.f), w4, w8, w12};
#pragma unroll
    for (int r = 1; r < R; ++r) {
      if (r & 3) x[r] = cmul(x[r], lo[r & 3]);
      if (r >> 2) x[r] = cmul(x[r], hi[r >> 2]);
    }
  }
}

// One Stockham step of radix R on sub-transforms of length ns (the product of the previous radices): butterfly
// j reads x[j + r * M/R], twiddles by exp(kSign 2 pi i r k / (ns R)) with k = j mod ns, and writes
// x[(j - k) R + k + r ns]. In place: every thread reads its inputs into registers before the barrier.
// ns is the template parameter NS when it is not 0 (a compile-time constant: the twiddle step is a constant and,
// for NS a multiple of 16 or a divisor of 16 with NS R >= 16, every store is the butterfly's base address plus an
// immediate offset), else the argument ns_runtime. kHalfZero (first pass only, ns = 1): inputs r >= R/2 lie in
// the zero padding (index >= M/2) and are not read.
template <int R, int M, int THREADS, int kSign, bool kHalfZero, int NS>
__device__ __forceinline__ void fft_stage(float2* buf, int ns_runtime = 0) {
  // NS = 0: the length comes at run time (one copy of the pass in a loop; see fft()).
  const int ns = NS > 0 ? NS : ns_runtime;
  constexpr int kButterflies = M / R;
  constexpr int kItems = (kButterflies + THREADS - 1) / THREADS;
  // The base (j - k) R is a multiple of NS R; when that is a multiple of 16 and k < NS divides 16, the padding of
  // base + k + r NS is base's plus (r NS) / 16, so the offset from the padded base is a constant per r.
  constexpr bool kImmediateStores = NS > 0 && (NS % 16 == 0 || ((NS > 0 ? 16 % NS : 1) == 0 && NS * R >= 16));
  float2 x[kItems][R];
#pragma unroll
  for (int it = 0; it < kItems; ++it) {
    const int j = threadIdx.x + it * THREADS;
    if (kButterflies % THREADS == 0 || j < kButterflies) {
#pragma unroll
      for (int r = 0; r < (kHalfZero ? R / 2 : R); ++r) x[it][r] = buf[pad(j + r * kButterflies)];
    }
  }
  __syncthreads();
  const float angle_step = NS > 0 ? kSign * 2.f * kPi / static_cast<float>(NS * R)
                                  : kSign * 2.f * kPi / static_cast<float>(ns * R);
#pragma unroll
  for (int it = 0; it < kItems; ++it) {
    const int j = threadIdx.x + it * THREADS;
    if (kButterflies % THREADS == 0 || j < kButterflies) {
      const int k = j & (ns - 1);
      if (!kHalfZero && ns > 1) twiddle_inputs<R>(x[it], angle_step * static_cast<float>(k));
      dft<R, kSign, kHalfZero>(x[it]);
      float2* out = buf + pad((j - k) * R + k);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if constexpr (kImmediateStores)
          out[r * NS + ((r * NS) >> 4)] = x[it][r];
        else
          buf[pad((j - k) * R + k + r * ns)] = x[it][r];
      }
    }
  }
  __syncthreads();
}

// The radix-16 passes from sub-transform length NS up to (not including) END.
template <int M, int THREADS, int kSign, int NS, int END>
__device__ __forceinline__ void fft_radix16_from(float2* buf) {
  if constexpr (NS < END) {
    fft_stage<16, M, THREADS, kSign, false, NS>(buf);
    fft_radix16_from<M, THREADS, kSign, NS * 16, END>(buf);
  }
}

// Whether a convolution's middle runs as one fused pass (fft_mid): where the FFT's small factor is 8 and one item
// of fft_mid takes every thread once (M = 2048, fft size 4096). Measured (H200, bf16, B 16, H 768, kernel alone,
// session 18): there it beat the separate passes in the forward, the plain backward and the general one (0.556
// against 0.71 ms); at M = 1024 (small factor 4) and 8192 (2) it gained at most 2% in the forward and the plain
// backward and lost in the general backward (0.96x and 0.73x; at 8192 ptxas counted 292 spilled bytes against
// 168). The forward and the backward's recomputed z use the same rule, so that both compute z with the same
// arithmetic.
__host__ __device__ constexpr bool mid_fused(int log_m) { return log_m == 11; }

// Which passes of an FFT fft() runs: all; all but the last small pass (the forward transform before fft_mid);
// the radix-16 passes after the small one (the inverse after fft_mid, which ran its first pass).
enum class Part { kWhole, kBeforeMid, kAfterMid };

// Unnormalised DFT of M values in shared memory (padded layout), in place: kSign -1 forward, +1 inverse. Radix-16
// passes first, the remaining factor R (2, 4 or 8) last in one pass, so that for M >= 32 every pass after the first
// has a sub-transform length that is a multiple of 16 (its stores are a base address plus immediates). R = 8 runs
// as radix 4 then 2 where M / 8 butterflies are fewer than the threads (M = 8 and 128; at M = 128 one radix-8 pass
// measured 0.89x). Part::kBeforeMid stops before the small pass; Part::kAfterMid runs the other order's tail, radix
// 16 at lengths R, 16 R, ... after fft_mid ran the radix-R pass (immediate stores too, R dividing 16). half_zero:
// the upper half of the input is known to be zero (the padding of a causal convolution), so the first pass skips it
// (not with kAfterMid). Starts and ends with a barrier, so callers may write buf just before and read it just
// after.
template <int LOG_M, int THREADS, int kSign, Part kPart = Part::kWhole>
__device__ void fft(float2* buf, bool half_zero = false) {
  constexpr int M = 1 << LOG_M;
  constexpr int kRest = 1 << (LOG_M % 4);  // 1, 2, 4 or 8
  constexpr int kNsRest = M / kRest;       // the sub-transform length when the small passes start
  static_assert(kPart == Part::kWhole || mid_fused(LOG_M), "a split FFT only where the middle is fused");
  __syncthreads();
  if constexpr (kPart == Part::kAfterMid) {
    fft_radix16_from<M, THREADS, kSign, kRest, M>(buf);
  } else if constexpr (M < 16) {  // M = 8 (fft size 16): radix 4, then 2
    if (half_zero)
      fft_stage<4, M, THREADS, kSign, true, 1>(buf);
    else
      fft_stage<4, M, THREADS, kSign, false, 1>(buf);
    fft_stage<2, M, THREADS, kSign, false, 4>(buf);
  } else {
    if (half_zero)
      fft_stage<16, M, THREADS, kSign, true, 1>(buf);
    else
      fft_stage<16, M, THREADS, kSign, false, 1>(buf);
    if constexpr (M / 16 <= THREADS) {
      fft_radix16_from<M, THREADS, kSign, 16, kNsRest>(buf);
    } else {
      // Two or more butterflies per thread (M = 16384): unrolled passes spilled in the backward (1.8 KB against
      // 0.25 KB), so one copy of the pass runs in a loop with the length at run time.
#pragma unroll 1
      for (int ns = 16; ns < kNsRest; ns *= 16) fft_stage<16, M, THREADS, kSign, false, 0>(buf, ns);
    }
    if constexpr (kPart == Part::kWhole && kRest > 1) {
      if constexpr (kRest < 8 || M / 8 >= THREADS) {
        fft_stage<kRest, M, THREADS, kSign, false, kNsRest>(buf);
      } else {  // M = 128: 16 radix-8 butterflies for 32 threads
        fft_stage<4, M, THREADS, kSign, false, kNsRest>(buf);
        fft_stage<2, M, THREADS, kSign, false, 4 * kNsRest>(buf);
      }
    }
  }
}

// Packed spectrum Z (Z = DFT_M(x_even + i x_odd)) -> real spectrum X[f] of x (length n = 2M), for the pair
// a = Z[f], b = Z[(M - f) mod M], w = exp(-2 pi i f / n): X[f] = (a + b*)/2 - i w (a - b*)/2.
__device__ __forceinline__ float2 unpack(float2 a, float2 b, float2 w) {
  const float2 e = make_float2(0.5f * (a.x + b.x), 0.5f * (a.y - b.y));
  const float2 t = cmul(w, make_float2(0.5f * (a.x - b.x), 0.5f * (a.y + b.y)));
  return make_float2(e.x + t.y, e.y - t.x);
}
// The inverse: from the real spectrum Y at f and M - f back to the packed spectrum Z'[f] whose inverse DFT_M
// (times 1/M) is y_even + i y_odd: Z'[f] = (Yf + Yg*)/2 + i w* (Yf - Yg*)/2.
__device__ __forceinline__ float2 repack(float2 yf, float2 yg, float2 w) {
  const float2 e = make_float2(0.5f * (yf.x + yg.x), 0.5f * (yf.y - yg.y));
  const float2 t = cmul(conjg(w), make_float2(0.5f * (yf.x - yg.x), 0.5f * (yf.y + yg.y)));
  return make_float2(e.x - t.y, e.y + t.x);
}

// Iterations of the per-frequency loops over f = 0..M/2 (pairs f, M - f).
template <int M, int THREADS>
__host__ __device__ constexpr int freq_iters() {
  return (M / 2 + THREADS) / THREADS;
}

// Frequency iterations whose filter loads are issued together.
constexpr int kFreqGroup = 3;

// The filter values kf[f] and kf[M - f] of iterations i0 .. i0 + kFreqGroup - 1, loaded before any is used
// (they come from L2).
template <int M, int THREADS>
__device__ __forceinline__ void load_filter(const float2* __restrict__ kf, int i0, float2 (&ka)[kFreqGroup],
                                            float2 (&kb)[kFreqGroup]) {
#pragma unroll
  for (int ii = 0; ii < kFreqGroup; ++ii) {
    const int f = threadIdx.x + (i0 + ii) * THREADS;
    if (f <= M / 2) {
      ka[ii] = __ldg(kf + f);
      kb[ii] = __ldg(kf + M - f);
    }
  }
}

// The pair (f, g = M - f) of the packed spectrum, a = Z[f], b = Z[g], w = exp(-i pi f / M), unpacked to twice the
// real spectrum: xf = 2 X[f], xg = 2 X[g] (s = a + b*, d = a - b*, p + i q = w d: 2 X[f] = s - i w d, and at g
// s, d and w turn into s*, -d* and -w*). Twelve instructions for the pair; unpack() twice takes about twice that.
__device__ __forceinline__ void unpack_pair2(float2 a, float2 b, float2 w, float2& xf, float2& xg) {
  const float sx = a.x + b.x, sy = a.y - b.y, dx = a.x - b.x, dy = a.y + b.y;
  const float p = fmaf(w.x, dx, -w.y * dy), q = fmaf(w.x, dy, w.y * dx);
  xf = make_float2(sx + q, sy - p);
  xg = make_float2(sx - q, -sy - p);
}
// The inverse: the real spectrum's pair yf = Y[f], yg = Y[g] to twice the packed values, zf = 2 Z'[f],
// zg = 2 Z'[g] (s = yf + yg*, d = yf - yg*, P + i Q = w* d: 2 Z'[f] = s + i w* d).
__device__ __forceinline__ void repack_pair2(float2 yf, float2 yg, float2 w, float2& zf, float2& zg) {
  const float sx = yf.x + yg.x, sy = yf.y - yg.y, dx = yf.x - yg.x, dy = yf.y + yg.y;
  const float P = fmaf(w.x, dx, w.y * dy), Q = fmaf(w.x, dy, -w.y * dx);
  zf = make_float2(sx - Q, sy + P);
  zg = make_float2(sx + Q, P - sy);
}

// The per-pair operations of the spectrum, op(f, w, a, b, ka, kb, zf, zg): f <= M/2, g = M - f, w = exp(-i pi f /
// M), a = Z[f] and b = Z[g mod M] of the packed spectrum, ka = kf[f], kb = kf[g]; op writes the new packed values
// zf (for f) and zg (for g mod M; not stored when that is f, at f = 0 and M/2).
//
// The forward's: repack(unpack(Z) * kf), through the doubled spectra above (the two factors of 2 taken out of the
// filter as 1/4): the product of the spectra of w and of the filter (H3.md 2.3).
struct FilterProduct {
  __device__ __forceinline__ void operator()(int, float2 w, float2 a, float2 b, float2 ka, float2 kb, float2& zf,
                                             float2& zg) const {
    float2 xf, xg;
    unpack_pair2(a, b, w, xf, xg);
    const float2 kfa = make_float2(0.25f * ka.x, 0.25f * ka.y), kfb = make_float2(0.25f * kb.x, 0.25f * kb.y);
    repack_pair2(cmul(xf, kfa), cmul(xg, kfb), w, zf, zg);
  }
};

// out[f], out[M - f] = op(in[f], in[M - f]) for every pair f <= M/2 (pairs threadIdx.x + i THREADS, their filter
// values loaded kFreqGroup iterations at a time); in and out may alias (each thread reads and writes only its
// f and M - f, the same ones in every call).
template <int LOG_M, int THREADS, typename Op>
__device__ __forceinline__ void spectrum_pairs(const float2* in, float2* out, const float2* __restrict__ kf, Op op) {
  constexpr int M = 1 << LOG_M, kIters = freq_iters<M, THREADS>();
#pragma unroll 1
  for (int i0 = 0; i0 < kIters; i0 += kFreqGroup) {
    float2 ka[kFreqGroup], kb[kFreqGroup];
    load_filter<M, THREADS>(kf, i0, ka, kb);
#pragma unroll
    for (int ii = 0; ii < kFreqGroup; ++ii) {
      const int f = threadIdx.x + (i0 + ii) * THREADS;
      if (f > M / 2) continue;
      const int gi = (M - f) & (M - 1);
      float s, c;
      __sincosf(-kPi * static_cast<float>(f) / M, &s, &c);  // |angle| <= pi/2
      float2 zf, zg;
      op(f, make_float2(c, s), in[pad(f)], in[pad(gi)], ka[ii], kb[ii], zf, zg);
      out[pad(f)] = zf;
      if (gi != f) out[pad(gi)] = zg;
    }
  }
}

// A convolution's middle in one sweep of shared memory where mid_fused(LOG_M) (R = 2, 4 or 8 the small factor of
// M, Q = M / R): the forward FFT's last pass (radix R at sub-transform length Q; skipped with kForwardDone, when in
// holds the whole spectrum already), op on every pair (f, M - f) as spectrum_pairs, and the inverse FFT's first
// pass (radix R at length 1, no twiddles), instead of three sweeps. The forward pass leaves Z[j + r Q] in output r
// of butterfly j, and the partner M - f of f = j + r Q is output R - 1 - r of butterfly Q - j; so an item takes the
// butterflies A = j and B = Q - j (j = 1 .. Q/2 - 1; item 0 takes A = 0 and B = Q/2, whose pairs lie within each),
// and after op its values are the inputs of the inverse's butterflies A and B, whose outputs go to A R + r and
// B R + r. Every f is handled by the same thread in every call (op may keep per-frequency state). The caller ends
// the previous pass with a barrier (fft() does) and follows with fft<..., Part::kAfterMid> (which starts with one);
// in and out may alias.
template <int LOG_M, int THREADS, bool kForwardDone, typename Op>
__device__ __forceinline__ void fft_mid(const float2* in, float2* out, const float2* __restrict__ kf, Op op) {
  static_assert(mid_fused(LOG_M), "fft_mid needs a small factor and one radix-16 butterfly a thread");
  constexpr int M = 1 << LOG_M, R = 1 << (LOG_M % 4), Q = M / R, kItems = Q / 2;
  constexpr int kPer = (kItems + THREADS - 1) / THREADS;
  // As fft_stage's last pass: the same step and twiddles, so that the values equal fft()'s whole transform.
  const float angle_step = -1 * 2.f * kPi / static_cast<float>(Q * R);
  float2 a[kPer][R], b[kPer][R];
#pragma unroll
  for (int it = 0; it < kPer; ++it) {
    const int item = threadIdx.x + it * THREADS;
    if (kItems % THREADS != 0 && item >= kItems) continue;
    const bool first = item == 0;
    const int A = item, B = first ? Q / 2 : Q - item;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      a[it][r] = in[pad(A + r * Q)];
      b[it][r] = in[pad(B + r * Q)];
    }
    if constexpr (!kForwardDone) {
      twiddle_inputs<R>(a[it], angle_step * static_cast<float>(A));
      twiddle_inputs<R>(b[it], angle_step * static_cast<float>(B));
      dft<R, -1, false>(a[it]);
      dft<R, -1, false>(b[it]);
    }
    // Pairs (A + r Q, its partner) and (B + r Q, its partner), r < R/2, every f <= M/2. The partner of A + r Q is
    // b[R - 1 - r], or a[(R - r) mod R] in item 0 (a[0] itself at f = 0); of B + r Q a[R - 1 - r], or b[R - 1 - r]
    // in item 0. Item 0 has one more, f = M/2 = (R/2) Q, a[R/2] itself. Partners are written before f, so that a
    // value paired with itself keeps zf.
#pragma unroll
    for (int r = 0; r < R / 2; ++r) {
      const int fa = A + r * Q, fb = B + r * Q;
      const float2 kfa = __ldg(kf + fa), kga = __ldg(kf + M - fa), kfb = __ldg(kf + fb), kgb = __ldg(kf + M - fb);
      float s, c;
      __sincosf(-kPi * static_cast<float>(fa) / M, &s, &c);  // |angle| <= pi/2
      float2 zf, zg;
      op(fa, make_float2(c, s), a[it][r], first ? a[it][(R - r) % R] : b[it][R - 1 - r], kfa, kga, zf, zg);
      if (first)
        a[it][(R - r) % R] = zg;
      else
        b[it][R - 1 - r] = zg;
      a[it][r] = zf;
      __sincosf(-kPi * static_cast<float>(fb) / M, &s, &c);
      op(fb, make_float2(c, s), b[it][r], first ? b[it][R - 1 - r] : a[it][R - 1 - r], kfb, kgb, zf, zg);
      if (first)
        b[it][R - 1 - r] = zg;
      else
        a[it][R - 1 - r] = zg;
      b[it][r] = zf;
    }
    if (first) {
      float2 zf, zg;
      const float2 k_half = __ldg(kf + M / 2);
      float s, c;
      __sincosf(-kPi * static_cast<float>(M / 2) / M, &s, &c);  // as spectrum_pairs computes it
      op(M / 2, make_float2(c, s), a[it][R / 2], a[it][R / 2], k_half, k_half, zf, zg);
      a[it][R / 2] = zf;
    }
    dft<R, 1, false>(a[it]);
    dft<R, 1, false>(b[it]);
  }
  __syncthreads();  // out may alias in: every thread has read its inputs
#pragma unroll
  for (int it = 0; it < kPer; ++it) {
    const int item = threadIdx.x + it * THREADS;
    if (kItems % THREADS != 0 && item >= kItems) continue;
    const int A = item, B = item == 0 ? Q / 2 : Q - item;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      out[pad(A * R + r)] = a[it][r];
      out[pad(B * R + r)] = b[it][r];
    }
  }
}

// One convolution's spectral part on a row in shared memory: the forward FFT of in (skipped with kForwardDone, when
// in holds the whole spectrum already; half_zero as fft()), op on every pair (f, M - f), and the inverse FFT into
// out; fft_mid where mid_fused(LOG_M), else the separate passes with spectrum_pairs. in and out may alias. Starts
// and ends with a barrier (with kForwardDone the caller ends its writes of in with one).
template <int LOG_M, int THREADS, bool kForwardDone, typename Op>
__device__ __forceinline__ void convolve_pairs(float2* in, float2* out, const float2* __restrict__ kf, Op op,
                                               bool half_zero = false) {
  if constexpr (mid_fused(LOG_M)) {
    if constexpr (!kForwardDone) fft<LOG_M, THREADS, -1, Part::kBeforeMid>(in, half_zero);
    fft_mid<LOG_M, THREADS, kForwardDone>(in, out, kf, op);
    fft<LOG_M, THREADS, 1, Part::kAfterMid>(out);
  } else {
    if constexpr (!kForwardDone) fft<LOG_M, THREADS, -1>(in, half_zero);
    spectrum_pairs<LOG_M, THREADS>(in, out, kf, op);
    fft<LOG_M, THREADS, 1>(out);
  }
}

// ---- loading w = u * v
// ---------------------------------------------------------------------------------------
// Writes w = u * v (u alone when v is null) of one row, zero past L, into buf (padded layout) in float32; the
// loads of G items per thread are issued together before any is converted. Shared by forward and backward.
template <typename T, int M, int THREADS, int G>
__device__ __forceinline__ void load_product(const T* u, const T* v, int64_t L, Io io, float2* buf) {
  using R = Rows<T, M, THREADS>;
  constexpr int P = R::kPairs, K = R::kPerThread;
#pragma unroll 1
  for (int i0 = 0; i0 < K; i0 += G) {
    uint4 ru[G], rv[G];
#pragma unroll
    for (int ii = 0; ii < G; ++ii) {
      R::prefetch(u, i0 + ii, L, io, ru[ii]);
      R::prefetch(v, i0 + ii, L, io, rv[ii]);
    }
#pragma unroll
    for (int ii = 0; ii < G; ++ii) {
      const int i = i0 + ii, c = i < K ? R::chunk(i) : -1;
      if (c < 0) continue;
      float2 w[P];
      R::get(u, i, L, io, ru[ii], w);
      if (v) {
        float2 g[P];
        R::get(v, i, L, io, rv[ii], g);
#pragma unroll
        for (int j = 0; j < P; ++j) w[j] = mul(w[j], g[j]);
      }
#pragma unroll
      for (int j = 0; j < P; ++j) buf[pad(c * P + j)] = w[j];
    }
  }
}

// ---- the saved pre-activation z
// ----------------------------------------------------------------------------------
// z (B, H, L) float32 (FftConvFwdParams::z): the P pairs of one item at t0 = Rows::first(c) .. t0 + 2P - 1, elements
// at or past L skipped (store) or zero (load); 16-byte accesses when L % 4 == 0 (every row then starts 16-byte
// aligned; the launchers check the base pointer) and the item lies inside the row. P is 2 or 4.
template <int P>
__device__ __forceinline__ void store_z(float* row, int64_t t0, int64_t L, const float2 (&z)[P]) {
  if (L % 4 == 0 && t0 + 2 * P <= L) {
#pragma unroll
    for (int j = 0; j < P; j += 2)
      *reinterpret_cast<float4*>(row + t0 + 2 * j) = make_float4(z[j].x, z[j].y, z[j + 1].x, z[j + 1].y);
  } else {
#pragma unroll
    for (int j = 0; j < P; ++j) store_pair(row, t0 + 2 * j, L, false, z[j]);
  }
}
template <int P>
__device__ __forceinline__ void load_z(const float* row, int64_t t0, int64_t L, float2 (&z)[P]) {
  if (L % 4 == 0 && t0 + 2 * P <= L) {
#pragma unroll
    for (int j = 0; j < P; j += 2) {
      const float4 x = __ldg(reinterpret_cast<const float4*>(row + t0 + 2 * j));
      z[j] = make_float2(x.x, x.y);
      z[j + 1] = make_float2(x.z, x.w);
    }
  } else {
#pragma unroll
    for (int j = 0; j < P; ++j) z[j] = load_pair(row, t0 + 2 * j, L, false);
  }
}

// ---- forward
// ------------------------------------------------------------------------------------------------
template <typename T, int LOG_M, int THREADS>
__global__ void __launch_bounds__(THREADS, fwd_min_blocks(LOG_M)) fftconv_fwd_kernel(FftConvFwdParams p, Io io) {
  constexpr int M = 1 << LOG_M;
  using R = Rows<T, M, THREADS>;
  // G: items whose loads are issued together (all of them; the forward has registers to spare).
  constexpr int P = R::kPairs, K = R::kPerThread, G = K;
  extern __shared__ float2 smem[];
  // Blocks of one channel are adjacent, so its filter spectrum is read from L2 by all but the first.
  const int64_t h = blockIdx.x / p.B, b = blockIdx.x % p.B;
  const int64_t row = b * p.H + h, off = row * p.L, L = p.L;
  const T* u = static_cast<const T*>(p.u) + off;
  const T* v = p.v ? static_cast<const T*>(p.v) + off : nullptr;
  const T* q = p.q ? static_cast<const T*>(p.q) + off : nullptr;
  T* y = static_cast<T*>(p.y) + off;
  float* zs = p.z ? p.z + off : nullptr;
  load_product<T, M, THREADS, G>(u, v, L, io, smem);
  const float2* kf = reinterpret_cast<const float2*>(p.kf) + h * (M + 1);
  convolve_pairs<LOG_M, THREADS, false>(smem, smem, kf, FilterProduct{}, L <= M);
  const float mk = p.mask ? p.mask[row] : 1.f;
#pragma unroll 1
  for (int i0 = 0; i0 < K; i0 += G) {
    uint4 rq[G];
#pragma unroll
    for (int ii = 0; ii < G; ++ii) R::prefetch(q, i0 + ii, L, io, rq[ii]);
#pragma unroll
    for (int ii = 0; ii < G; ++ii) {
      const int i = i0 + ii, c = i < K ? R::chunk(i) : -1;
      if (c < 0 || R::first(c) >= L) continue;
      float2 z[P];
#pragma unroll
      for (int j = 0; j < P; ++j) z[j] = smem[pad(c * P + j)];
      if (zs) store_z<P>(zs, R::first(c), L, z);
#pragma unroll
      for (int j = 0; j < P; ++j) {
        if (p.gelu) z[j] = make_float2(gelu(z[j].x), gelu(z[j].y));
        z[j] = make_float2(z[j].x * mk, z[j].y * mk);
      }
      if (q) {
        float2 g[P];
        R::get(q, i, L, io, rq[ii], g);
#pragma unroll
        for (int j = 0; j < P; ++j) z[j] = mul(z[j], g[j]);
      }
      R::put(y, i, L, io, z);
    }
  }
}

// ---- backward
// -----------------------------------------------------------------------------------------------
// Per row: W = FFT(w) (kept for dk), z (when a gate or GELU needs it) read from p.z or else recomputed, dz, DZ = FFT(dz), the dk
// accumulation sum_b conj(W) DZ, dW = conj(K') DZ and its inverse FFT. On chip (bwd_on_chip) W, the work buffer
// and the accumulator are three shared buffers; past it the work buffer and the accumulator's first
// bwd_acc_on_chip entries are, W goes (unpacked) to the block's scratch row p.spec_scratch and the accumulator's
// other entries are the block's dk_spec row. Every thread then reads back only the entries it wrote itself
// (frequencies f and M - f of its own iterations), so no barrier orders them.
//
// kPlain: no v, q, GELU, mask or z (launch_bwd chooses it from the parameters). Those parts are compiled out, and with
// them the registers they held: the plain kernel spills nothing up to fft size 16384 (32 bytes at 32768, ptxas,
// bf16) where the general one spilled 20-244 bytes, and ran the backward 1.09-1.40x faster (H200, bf16, B 16, H 768,
// L 1K-16K, kernel alone; docs/FLASHCONV.md, session 17).
template <typename T, int LOG_M, int THREADS, bool kPlain>
__global__ void __launch_bounds__(THREADS, bwd_min_blocks(LOG_M))
    fftconv_bwd_kernel(FftConvBwdParams params, Io io) {
  FftConvBwdParams p = params;
  if constexpr (kPlain) {
    p.v = p.q = nullptr;
    p.mask = p.z = nullptr;
    p.dv = p.dq = nullptr;
    p.gelu = false;
  }
  constexpr int M = 1 << LOG_M;
  constexpr bool kOnChip = bwd_on_chip(LOG_M);
  using R = Rows<T, M, THREADS>;
  // G: items whose loads are issued together (two: the backward holds more live values than the forward).
  constexpr int P = R::kPairs, K = R::kPerThread, G = K < 2 ? K : 2, kIters = freq_iters<M, THREADS>();
  extern __shared__ float2 smem[];
  // On chip: spec_w holds the packed spectrum of w = u * v for the whole row, work holds z, then dz and its
  // spectrum, then dw, and acc (M + 1 values, only with dk_spec) sums conj(W) * DZ over the rows.
  float2* spec_w = smem;
  float2* work = kOnChip ? smem + padded(M) : smem;
  float2* acc = smem + 2 * padded(M);
  // Past the on-chip limit: accumulator entries [0, kAccOnChip) in shared memory after the work buffer (unpadded:
  // each thread reads back only its own), the rest in dk_row.
  constexpr int kAccOnChip = kOnChip ? 0 : bwd_acc_on_chip(LOG_M);
  float2* acc_part = smem + padded(M);
  const int64_t h = blockIdx.x / p.chunks, chunk = blockIdx.x % p.chunks;
  const int64_t rows_per_chunk = (p.B + p.chunks - 1) / p.chunks;
  const int64_t b_begin = chunk * rows_per_chunk;
  const int64_t b_end = b_begin + rows_per_chunk < p.B ? b_begin + rows_per_chunk : p.B;
  const int64_t L = p.L;
  const float2* kf = reinterpret_cast<const float2*>(p.kf) + h * (M + 1);
  float2* dk_row = p.dk_spec ? reinterpret_cast<float2*>(p.dk_spec) + (chunk * p.H + h) * (M + 1) : nullptr;
  float2* w_row = kOnChip || !p.dk_spec ? nullptr : reinterpret_cast<float2*>(p.spec_scratch) + blockIdx.x * int64_t{M + 1};
  const bool need_z = p.gelu || p.q, recompute_z = need_z && !p.z;
  if (p.dk_spec && (kOnChip || b_begin >= b_end)) {
    float2* a = kOnChip ? acc : dk_row;
    for (int f = threadIdx.x; f <= M; f += THREADS) a[kOnChip ? pad(f) : f] = make_float2(0.f, 0.f);
  }

  for (int64_t b = b_begin; b < b_end; ++b) {
    const int64_t row = b * p.H + h, off = row * L;
    const T* u = static_cast<const T*>(p.u) + off;
    const T* v = p.v ? static_cast<const T*>(p.v) + off : nullptr;
    const T* q = p.q ? static_cast<const T*>(p.q) + off : nullptr;
    const T* dy = static_cast<const T*>(p.dy) + off;
    T* du = p.du ? static_cast<T*>(p.du) + off : nullptr;
    T* dv = p.dv ? static_cast<T*>(p.dv) + off : nullptr;
    T* dq = p.dq ? static_cast<T*>(p.dq) + off : nullptr;
    const float* zs = p.z ? p.z + off : nullptr;
    const float mk = p.mask ? p.mask[row] : 1.f;
    if (recompute_z || p.dk_spec) {  // W is needed for z or for dk
      float2* wbuf = kOnChip ? spec_w : work;
      load_product<T, M, THREADS, G>(u, v, L, io, wbuf);
      fft<LOG_M, THREADS, -1>(wbuf, L <= M);
      if (w_row) {
        // The unpacked spectrum at this thread's frequencies f and M - f, read back in the loop below.
#pragma unroll 1
        for (int i = 0; i < kIters; ++i) {
          const int f = threadIdx.x + i * THREADS;
          if (f > M / 2) continue;
          const int g = M - f, gi = g & (M - 1);
          float s, c;
          __sincosf(-kPi * static_cast<float>(f) / M, &s, &c);  // |angle| <= pi/2
          const float2 sf = work[pad(f)], sg = work[pad(gi)];
          w_row[f] = unpack(sf, sg, make_float2(c, s));
          if (g != f) w_row[g] = unpack(sg, sf, make_float2(-c, s));
        }
      }
      if (recompute_z) {  // recompute the pre-activation z = conv(w, k) + D w (in place past the on-chip limit)
        // The forward's arithmetic: with fft_mid, W's last pass in fft() above equals fft_mid's.
        convolve_pairs<LOG_M, THREADS, true>(wbuf, work, kf, FilterProduct{});
      } else if (!kOnChip) {
        __syncthreads();  // dz below overwrites entries of work that other threads read above
      }
    }
    // dz = dy * q * mask * act'(z) and dq = dy * mask * act(z); zero past L (dy reads as zero there).
#pragma unroll 1
    for (int i0 = 0; i0 < K; i0 += G) {
      uint4 rdy[G], rq[G];
#pragma unroll
      for (int ii = 0; ii < G; ++ii) {
        R::prefetch(dy, i0 + ii, L, io, rdy[ii]);
        R::prefetch(q, i0 + ii, L, io, rq[ii]);
      }
#pragma unroll
      for (int ii = 0; ii < G; ++ii) {
        const int i = i0 + ii, c = i < K ? R::chunk(i) : -1;
        if (c < 0) continue;
        float2 dz[P];
        if (R::first(c) < L) {
          float2 g[P], z[P];
          R::get(dy, i, L, io, rdy[ii], g);
          if (zs) load_z<P>(zs, R::first(c), L, z);
#pragma unroll
          for (int j = 0; j < P; ++j) {
            g[j] = make_float2(g[j].x * mk, g[j].y * mk);
            if (!zs) z[j] = need_z ? work[pad(c * P + j)] : make_float2(0.f, 0.f);
          }
          if (q) {
            float2 act[P], qv[P];
#pragma unroll
            for (int j = 0; j < P; ++j) {
              act[j] = p.gelu ? make_float2(gelu(z[j].x), gelu(z[j].y)) : z[j];
              act[j] = mul(g[j], act[j]);
            }
            if (dq) R::put(dq, i, L, io, act);
            R::get(q, i, L, io, rq[ii], qv);
#pragma unroll
            for (int j = 0; j < P; ++j) g[j] = mul(g[j], qv[j]);
          }
#pragma unroll
          for (int j = 0; j < P; ++j)
            dz[j] = p.gelu ? make_float2(g[j].x * gelu_grad(z[j].x), g[j].y * gelu_grad(z[j].y)) : g[j];
        } else {
#pragma unroll
          for (int j = 0; j < P; ++j) dz[j] = make_float2(0.f, 0.f);
        }
#pragma unroll
        for (int j = 0; j < P; ++j) work[pad(c * P + j)] = dz[j];
      }
    }
    // Per frequency pair: accumulate conj(W) DZ for dk and dD; dW = conj(K') DZ, repacked in place for dw.
    const bool first_row = b == b_begin;
    auto dk_and_dw = [&](int f, float2 w, float2 za, float2 zb, float2 ka, float2 kb, float2& zf, float2& zg) {
      const int g = M - f, gi = g & (M - 1);
      // dzf, dzg: twice DZ at f and g; the products with twice W (or W from the scratch row) are scaled back.
      float2 dzf, dzg;
      unpack_pair2(za, zb, w, dzf, dzg);
      if (p.dk_spec) {
        if constexpr (kOnChip) {
          float2 wwf, wwg;
          unpack_pair2(spec_w[pad(f)], spec_w[pad(gi)], w, wwf, wwg);
          acc[pad(f)] = fma_scaled(acc[pad(f)], 0.25f, cmul(conjg(wwf), dzf));
          if (g != f) acc[pad(g)] = fma_scaled(acc[pad(g)], 0.25f, cmul(conjg(wwg), dzg));
        } else {
          static_assert(kOnChip || kAccOnChip > M / 2, "every f <= M/2 must have its accumulator on chip");
          const float2 zero = make_float2(0.f, 0.f);
          acc_part[f] = fma_scaled(first_row ? zero : acc_part[f], 0.5f, cmul(conjg(w_row[f]), dzf));
          if (g != f) {
            float2* slot = g < kAccOnChip ? acc_part + g : dk_row + g;
            *slot = fma_scaled(first_row ? zero : *slot, 0.5f, cmul(conjg(w_row[g]), dzg));
          }
        }
      }
      const float2 kfa = make_float2(0.25f * ka.x, 0.25f * ka.y), kfb = make_float2(0.25f * kb.x, 0.25f * kb.y);
      repack_pair2(cmul(conjg(kfa), dzf), cmul(conjg(kfb), dzg), w, zf, zg);
    };
    convolve_pairs<LOG_M, THREADS, false>(work, work, kf, dk_and_dw, L <= M);
#pragma unroll 1
    for (int i0 = 0; i0 < K; i0 += G) {
      uint4 ru[G], rv[G];
#pragma unroll
      for (int ii = 0; ii < G; ++ii) {
        R::prefetch(v, i0 + ii, L, io, rv[ii]);
        if (dv) R::prefetch(u, i0 + ii, L, io, ru[ii]);
      }
#pragma unroll
      for (int ii = 0; ii < G; ++ii) {
        const int i = i0 + ii, c = i < K ? R::chunk(i) : -1;
        if (c < 0 || R::first(c) >= L) continue;
        float2 dw[P], g[P], out[P];
#pragma unroll
        for (int j = 0; j < P; ++j) dw[j] = work[pad(c * P + j)];
        if (!v) {
          if (du) R::put(du, i, L, io, dw);
          continue;
        }
        if (du) {
          R::get(v, i, L, io, rv[ii], g);
#pragma unroll
          for (int j = 0; j < P; ++j) out[j] = mul(dw[j], g[j]);
          R::put(du, i, L, io, out);
        }
        if (dv) {
          R::get(u, i, L, io, ru[ii], g);
#pragma unroll
          for (int j = 0; j < P; ++j) out[j] = mul(dw[j], g[j]);
          R::put(dv, i, L, io, out);
        }
      }
    }
    __syncthreads();  // the next row overwrites spec_w and work
  }
  if (kOnChip && p.dk_spec) {
    for (int f = threadIdx.x; f <= M; f += THREADS) dk_row[f] = acc[pad(f)];
  }
  if (!kOnChip && p.dk_spec && b_begin < b_end) {  // the loop's last barrier orders this after every thread's sums
    for (int f = threadIdx.x; f < kAccOnChip; f += THREADS) dk_row[f] = acc_part[f];
  }
}

// ---- the filter spectrum
// ---------------------------------------------------------------------------------------
// kf[h] = rfft(k[h] + D[h] delta_0, n) * 2/n for f = 0..M (M = n/2), one block per channel: the real filter packed
// as M complex values (even taps real, odd imaginary), transformed, unpacked. The factor 2/n = 1/M is the forward
// and backward kernels' inverse normalisation, folded in here once.
template <int LOG_M, int THREADS>
__global__ void __launch_bounds__(THREADS) fftconv_filter_kernel(FftConvFilterParams p) {
  constexpr int M = 1 << LOG_M;
  extern __shared__ float2 smem[];
  const int64_t h = blockIdx.x, Lk = p.Lk;
  const float* k = p.k + h * Lk;
  const float d = p.D ? p.D[h] : 0.f;
  for (int m = threadIdx.x; m < M; m += THREADS) {
    const int64_t t = 2 * int64_t{m};
    float2 z = make_float2(t < Lk ? k[t] : 0.f, t + 1 < Lk ? k[t + 1] : 0.f);
    if (m == 0) z.x += d;
    smem[pad(m)] = z;
  }
  fft<LOG_M, THREADS, -1>(smem, Lk <= M);
  float2* out = reinterpret_cast<float2*>(p.kf) + h * (M + 1);
  const float scale = 1.f / static_cast<float>(M);
  for (int f = threadIdx.x; f <= M; f += THREADS) {
    const float2 a = smem[pad(f & (M - 1))], b = smem[pad((M - f) & (M - 1))];
    float s, c;
    sincospif(-static_cast<float>(f) / M, &s, &c);
    const float2 x = unpack(a, b, make_float2(c, s));
    out[f] = make_float2(x.x * scale, x.y * scale);
  }
}

// ---- the filter gradient
// ---------------------------------------------------------------------------------------
// dk[h][t] = irfft(sum_c dk_spec[c][h], n)[t] for t < L_k and dD[h] = dk[h][0], one block per channel: the chunks'
// spectra summed, repacked as M = n/2 complex values, inverse-transformed and scaled by 1/M.
template <int LOG_M, int THREADS>
__global__ void __launch_bounds__(THREADS) fftconv_filter_grad_kernel(FftConvFilterGradParams p) {
  constexpr int M = 1 << LOG_M;
  extern __shared__ float2 smem[];
  const int64_t h = blockIdx.x;
  const float2* spec = reinterpret_cast<const float2*>(p.dk_spec);
  auto summed = [&](int f) {
    float2 acc = make_float2(0.f, 0.f);
    for (int c = 0; c < p.chunks; ++c) acc = acc + spec[(c * p.H + h) * (M + 1) + f];
    return acc;
  };
  for (int f = threadIdx.x; f <= M / 2; f += THREADS) {
    const int g = M - f, gi = g & (M - 1);
    const float2 yf = summed(f), yg = summed(g);
    float s, c;
    sincospif(-static_cast<float>(f) / M, &s, &c);
    const float2 wf = make_float2(c, s), wg = make_float2(-c, s);  // w^g = -conj(w^f)
    smem[pad(f)] = repack(yf, yg, wf);
    if (gi != f) smem[pad(gi)] = repack(yg, yf, wg);
  }
  fft<LOG_M, THREADS, 1>(smem);
  const float scale = 1.f / static_cast<float>(M);
  if (p.dk) {
    float* dk = p.dk + h * p.Lk;
    for (int64_t t = threadIdx.x; t < p.Lk; t += THREADS) {
      const float2 z = smem[pad(static_cast<int>(t / 2))];
      dk[t] = (t % 2 ? z.y : z.x) * scale;
    }
  }
  if (p.dD && threadIdx.x == 0) p.dD[h] = smem[pad(0)].x * scale;
}

// ---- launchers
// ----------------------------------------------------------------------------------------------
const char* elem_name(ElemType e) {
  return e == ElemType::kFloat32 ? "float32" : e == ElemType::kFloat16 ? "float16" : "bfloat16";
}

std::string shape_str(int64_t B, int64_t H, int64_t L, int log_n, ElemType e) {
  return "B=" + std::to_string(B) + " H=" + std::to_string(H) + " L=" + std::to_string(L) +
         " fft_size=" + std::to_string(int64_t{1} << log_n) + " dtype=" + elem_name(e);
}

void check(cudaError_t err, const char* kernel, const std::string& what, const std::string& shape) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": " + what + " failed (" + cudaGetErrorString(err) +
                             ") for " + shape);
}

bool aligned(const void* ptr, size_t bytes) {
  return ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

template <typename T, int LOG_M>
void launch_fwd(const FftConvFwdParams& p, cudaStream_t stream) {
  constexpr int kThreads = threads_for(LOG_M);
  const size_t smem = sizeof(float2) * padded(1 << LOG_M);
  auto all_aligned = [&](size_t bytes) {
    return aligned(p.u, bytes) && aligned(p.v, bytes) && aligned(p.q, bytes) && aligned(p.y, bytes);
  };
  const Io io{(p.L * static_cast<int64_t>(sizeof(T))) % 16 == 0 && all_aligned(16),
              p.L % 2 == 0 && all_aligned(2 * sizeof(T))};
  const auto shape = shape_str(p.B, p.H, p.L, p.log_n, p.elem);
  if (!aligned(p.z, 16)) throw std::runtime_error("fftconv_fwd_kernel: z must be 16-byte aligned for " + shape);
  auto* kernel = fftconv_fwd_kernel<T, LOG_M, kThreads>;
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
        "fftconv_fwd_kernel", "setting shared memory", shape);
  kernel<<<static_cast<unsigned>(p.B * p.H), kThreads, smem, stream>>>(p, io);
  check(cudaGetLastError(), "fftconv_fwd_kernel", "launch", shape);
}

template <typename T, int LOG_M>
void launch_bwd(const FftConvBwdParams& p, cudaStream_t stream) {
  constexpr int kThreads = threads_for(LOG_M);
  const size_t smem = bwd_smem_bytes(LOG_M, p.dk_spec != nullptr);
  auto all_aligned = [&](size_t bytes) {
    return aligned(p.u, bytes) && aligned(p.v, bytes) && aligned(p.q, bytes) && aligned(p.dy, bytes) &&
           aligned(p.du, bytes) && aligned(p.dv, bytes) && aligned(p.dq, bytes);
  };
  const Io io{(p.L * static_cast<int64_t>(sizeof(T))) % 16 == 0 && all_aligned(16),
              p.L % 2 == 0 && all_aligned(2 * sizeof(T))};
  const auto shape = shape_str(p.B, p.H, p.L, p.log_n, p.elem) + " chunks=" + std::to_string(p.chunks);
  if (!aligned(p.z, 16)) throw std::runtime_error("fftconv_bwd_kernel: z must be 16-byte aligned for " + shape);
  if (!bwd_on_chip(LOG_M) && p.dk_spec && !p.spec_scratch)
    throw std::runtime_error("fftconv_bwd_kernel: spec_scratch is required with dk_spec for " + shape);
  auto* kernel = bwd_is_plain(p) ? fftconv_bwd_kernel<T, LOG_M, kThreads, true>
                                 : fftconv_bwd_kernel<T, LOG_M, kThreads, false>;
  // The limit is the larger size (with the accumulator) whichever this launch needs, so that a launch without it
  // cannot lower the limit under another thread's launch with it.
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bwd_smem_bytes(LOG_M, true))),
        "fftconv_bwd_kernel", "setting shared memory", shape);
  kernel<<<static_cast<unsigned>(p.chunks * p.H), kThreads, smem, stream>>>(p, io);
  check(cudaGetLastError(), "fftconv_bwd_kernel", "launch", shape);
}

// "H=.. L_k=.. fft_size=.." for the filter kernels' errors.
template <typename P>
std::string filter_shape(const P& p) {
  return "H=" + std::to_string(p.H) + " L_k=" + std::to_string(p.Lk) +
         " fft_size=" + std::to_string(int64_t{1} << p.log_n);
}

// One block of threads_for(LOG_M) threads per channel with a padded M-value shared buffer: the filter kernels.
template <int LOG_M, typename P>
void launch_per_channel(void (*kernel)(P), const char* name, const P& p, cudaStream_t stream) {
  const size_t smem = sizeof(float2) * padded(1 << LOG_M);
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)), name,
        "setting shared memory", filter_shape(p));
  kernel<<<static_cast<unsigned>(p.H), threads_for(LOG_M), smem, stream>>>(p);
  check(cudaGetLastError(), name, "launch", filter_shape(p));
}

template <int LOG_M>
void launch_filter(const FftConvFilterParams& p, cudaStream_t stream) {
  launch_per_channel<LOG_M>(fftconv_filter_kernel<LOG_M, threads_for(LOG_M)>, "fftconv_filter_kernel", p, stream);
}

template <int LOG_M>
void launch_filter_grad(const FftConvFilterGradParams& p, cudaStream_t stream) {
  launch_per_channel<LOG_M>(fftconv_filter_grad_kernel<LOG_M, threads_for(LOG_M)>, "fftconv_filter_grad_kernel", p,
                            stream);
}

// Calls F<T, log_n - 1> for the compiled sizes.
template <typename T, template <typename, int> class F, typename P>
void by_size(const P& p, cudaStream_t s) {
  switch (p.log_n) {
    case 4:
      return F<T, 3>::run(p, s);
    case 5:
      return F<T, 4>::run(p, s);
    case 6:
      return F<T, 5>::run(p, s);
    case 7:
      return F<T, 6>::run(p, s);
    case 8:
      return F<T, 7>::run(p, s);
    case 9:
      return F<T, 8>::run(p, s);
    case 10:
      return F<T, 9>::run(p, s);
    case 11:
      return F<T, 10>::run(p, s);
    case 12:
      return F<T, 11>::run(p, s);
    case 13:
      return F<T, 12>::run(p, s);
    case 14:
      return F<T, 13>::run(p, s);
    case 15:
      return F<T, 14>::run(p, s);
  }
}
template <typename T, int LOG_M>
struct Fwd {
  static void run(const FftConvFwdParams& p, cudaStream_t s) { launch_fwd<T, LOG_M>(p, s); }
};
template <typename T, int LOG_M>
struct Filter {
  static void run(const FftConvFilterParams& p, cudaStream_t s) { launch_filter<LOG_M>(p, s); }
};
template <typename T, int LOG_M>
struct FilterGrad {
  static void run(const FftConvFilterGradParams& p, cudaStream_t s) { launch_filter_grad<LOG_M>(p, s); }
};
template <typename T, int LOG_M>
struct Bwd {
  static void run(const FftConvBwdParams& p, cudaStream_t s) { launch_bwd<T, LOG_M>(p, s); }
};

template <template <typename, int> class F, typename P>
void by_type(const P& p, cudaStream_t s) {
  switch (p.elem) {
    case ElemType::kFloat32:
      return by_size<float, F>(p, s);
    case ElemType::kFloat16:
      return by_size<__half, F>(p, s);
    case ElemType::kBFloat16:
      return by_size<__nv_bfloat16, F>(p, s);
  }
}

void validate(const char* kernel, int64_t B, int64_t H, int64_t L, int log_n, ElemType e, int64_t blocks) {
  const auto shape = shape_str(B, H, L, log_n, e);
  if (log_n < kMinLogN || log_n > kMaxLogN)
    throw std::runtime_error(std::string(kernel) + ": unsupported fft_size (compiled for 16..32768) for " +
                             shape);
  if (L < 1 || L > (int64_t{1} << log_n) || B < 1 || H < 1)
    throw std::runtime_error(std::string(kernel) + ": need 1 <= L <= fft_size and B, H >= 1, got " + shape);
  if (blocks > INT_MAX)
    throw std::runtime_error(std::string(kernel) + ": too many rows for one grid: " + shape);
}

}  // namespace

void fftconv_fwd_launch(const FftConvFwdParams& p, void* stream) {
  validate("fftconv_fwd_kernel", p.B, p.H, p.L, p.log_n, p.elem, p.B * p.H);
  by_type<Fwd>(p, static_cast<cudaStream_t>(stream));
}

void fftconv_bwd_launch(const FftConvBwdParams& p, void* stream) {
  validate("fftconv_bwd_kernel", p.B, p.H, p.L, p.log_n, p.elem, int64_t{p.chunks} * p.H);
  if (p.chunks < 1 || p.chunks > p.B)
    throw std::runtime_error("fftconv_bwd_kernel: chunks must be in [1, B], got " + std::to_string(p.chunks));
  by_type<Bwd>(p, static_cast<cudaStream_t>(stream));
}

void fftconv_filter_launch(const FftConvFilterParams& p, void* stream) {
  const std::string shape = filter_shape(p);
  if (p.log_n < kMinLogN || p.log_n > kMaxLogN)
    throw std::runtime_error("fftconv_filter_kernel: unsupported fft_size (compiled for 16..32768) for " + shape);
  if (p.H < 1 || p.H > INT_MAX || p.Lk < 1 || p.Lk > (int64_t{1} << p.log_n))
    throw std::runtime_error("fftconv_filter_kernel: need 1 <= L_k <= fft_size and 1 <= H <= 2^31 - 1, got " +
                             shape);
  by_size<float, Filter>(p, static_cast<cudaStream_t>(stream));
}

void fftconv_filter_grad_launch(const FftConvFilterGradParams& p, void* stream) {
  const std::string shape = filter_shape(p);
  if (p.log_n < kMinLogN || p.log_n > kMaxLogN)
    throw std::runtime_error("fftconv_filter_grad_kernel: unsupported fft_size (compiled for 16..32768) for " +
                             shape);
  if (p.H < 1 || p.H > INT_MAX || p.Lk < 1 || p.Lk > (int64_t{1} << p.log_n) || p.chunks < 1)
    throw std::runtime_error(
        "fftconv_filter_grad_kernel: need 1 <= L_k <= fft_size, 1 <= H <= 2^31 - 1, chunks >= 1, got " + shape +
        " chunks=" + std::to_string(p.chunks));
  by_size<float, FilterGrad>(p, static_cast<cudaStream_t>(stream));
}

int64_t fftconv_bwd_scratch_floats(int log_n, int64_t chunks, int64_t H) {
  if (log_n < kMinLogN || log_n > kMaxLogN || bwd_on_chip(log_n - 1)) return 0;
  return chunks * H * ((int64_t{1} << (log_n - 1)) + 1) * 2;
}

namespace {
// Resident backward blocks per multiprocessor for type T at M = 2^LOG_M, with or without the dk accumulator.
struct BwdOccupancyQuery {
  int log_n = 0;
  ElemType elem = ElemType::kFloat32;
  bool dk = false, plain = false;
  int* blocks = nullptr;
};
template <typename T, int LOG_M>
struct BwdOccupancy {
  static void run(const BwdOccupancyQuery& q, cudaStream_t) {
    auto* kernel = q.plain ? fftconv_bwd_kernel<T, LOG_M, threads_for(LOG_M), true>
                           : fftconv_bwd_kernel<T, LOG_M, threads_for(LOG_M), false>;
    const size_t smem = bwd_smem_bytes(LOG_M, q.dk);
    const std::string what = "log_n=" + std::to_string(q.log_n);
    // The limit a launch with the accumulator needs (never lowered: another thread may be launching it).
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(bwd_smem_bytes(LOG_M, true))),
          "fftconv_bwd_kernel", "setting shared memory", what);
    check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(q.blocks, kernel, threads_for(LOG_M), smem),
          "fftconv_bwd_kernel", "the occupancy query", what);
  }
};

// Multiprocessors of device dev, cached (devices 0..63).
int sms_of(int dev) {
  static std::atomic<int> cache[64];
  int sms = dev >= 0 && dev < 64 ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (sms == 0) {
    check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "fftconv_bwd_chunks",
          "reading the SM count", "");
    if (dev >= 0 && dev < 64) cache[dev].store(sms, std::memory_order_relaxed);
  }
  return sms;
}
}  // namespace

int fftconv_bwd_chunks(int64_t B, int64_t H, int log_n, ElemType e, bool dk, bool plain) {
  if (log_n < kMinLogN || log_n > kMaxLogN)
    throw std::runtime_error("fftconv_bwd_chunks: unsupported fft_size 2^" + std::to_string(log_n) +
                             " (compiled for 16..32768)");
  if (B < 1 || H < 1)
    throw std::runtime_error("fftconv_bwd_chunks: need B, H >= 1, got B=" + std::to_string(B) +
                             " H=" + std::to_string(H));
  int dev = 0;
  check(cudaGetDevice(&dev), "fftconv_bwd_chunks", "cudaGetDevice", "");
  const int64_t sms = sms_of(dev);
  // Past the on-chip limit every row after a block's first reads part of the block's dk row (the entries past
  // bwd_acc_on_chip) and its W scratch row back from global memory, so waves are not the whole cost there; the
  // earlier rule stays: about 8 blocks a multiprocessor in all. H200, B 16, H 768, bf16 (session 16): 2 (this
  // rule), 4 and 8 groups ran within 0.6% of each other (6.32 / 6.33 / 6.30 ms, kernel alone).
  if (!bwd_on_chip(log_n - 1))
    return static_cast<int>(std::min<int64_t>(B, std::max<int64_t>(1, (8 * sms + H - 1) / H)));
  // Resident blocks per (device, type, size, dk, plain): 0 until first asked; racing first calls store the same
  // value.
  static std::atomic<int> per_sm_cache[64][3][kMaxLogN + 1][2][2];
  std::atomic<int>* entry =
      dev >= 0 && dev < 64 ? &per_sm_cache[dev][static_cast<int>(e)][log_n][dk ? 1 : 0][plain ? 1 : 0] : nullptr;
  int per_sm = entry ? entry->load(std::memory_order_relaxed) : 0;
  if (per_sm == 0) {
    BwdOccupancyQuery q;
    q.log_n = log_n, q.elem = e, q.dk = dk, q.plain = plain, q.blocks = &per_sm;
    by_type<BwdOccupancy>(q, nullptr);
    per_sm = std::max(per_sm, 1);
    if (entry) entry->store(per_sm, std::memory_order_relaxed);
  }
  return bwd_chunks_by_waves(B, H, sms * per_sm);
}

}  // namespace hippo::cuda
