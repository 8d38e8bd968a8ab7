// The bias kernels of kernels/bias_kernel.h. On an H200 (ncu, bf16, not vectorised) ATen's broadcast copy (the C
// operand of baddbmm) and its sums over dims {0, 2} and {0, 1} took 14.7, 16.4 and 19 us for a (4, 768, 2048) /
// (4, 2048, 768) tensor, and its sum over dim 0 of a (4, 768, 768) one about 8 us; these write and read 16 bytes per
// thread and step (6.9, 6.3, 6.6 + 8.5 and 6.2 us). CUDA runtime only.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/bias_kernel.h"
#include "kernels/cuda_elem.cuh"

namespace hippo::cuda {
namespace {

constexpr int kThreads = 256;

// V consecutive elements of T as float32: one 16-byte load when V = 16 / sizeof(T) (aligned), else one element.
template <typename T, int V>
struct Chunk {
  float x[V];
  __device__ __forceinline__ void load(const T* ptr) {
    if constexpr (V > 1) {
      static_assert(V * sizeof(T) == 16, "a chunk is 16 bytes");
      union {
        uint4 raw;
        T e[V];
      } u;
      u.raw = __ldg(reinterpret_cast<const uint4*>(ptr));
#pragma unroll
      for (int j = 0; j < V; ++j) x[j] = Elem<T>::load(&u.e[j]);
    } else {
      x[0] = Elem<T>::load(ptr);
    }
  }
};

// Loads in flight per thread in the column and batch sums below: their loops' trip counts are run-time values, so
// that without this the compiler issues one load, waits for it, adds, and only then issues the next (the batch sum:
// 6.8 -> 6.2 us; the row sums above, tried the same way, went 6.3 -> 7.7 us and were left as they were).
constexpr int kUnroll = 4;

// 16-byte chunks of V = 16 / sizeof(T) elements, grid-stride; `vec`: row_len % V == 0 and out 16-byte aligned, so that
// a chunk lies in one row; otherwise element by element.
template <typename T>
__global__ void __launch_bounds__(kThreads) bias_fill_kernel(BiasFillParams p, bool vec) {
  constexpr int V = 16 / sizeof(T);
  T* out = static_cast<T*>(p.out);
  const int64_t stride = int64_t{gridDim.x} * kThreads;
  if (vec) {
    const int64_t per_row = p.row_len / V, chunks = p.rows * per_row;
    for (int64_t k = blockIdx.x * int64_t{kThreads} + threadIdx.x; k < chunks; k += stride) {
      const int64_t r = k / per_row, j0 = (k - r * per_row) * V;
      union {
        uint4 raw;
        T x[V];
      } u;
      if (p.per_row) {
        const T v = Elem<T>::from_float2(make_float2(__ldg(p.bias + r % p.C), 0.f)).x;
#pragma unroll
        for (int j = 0; j < V; ++j) u.x[j] = v;
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) Elem<T>::store(&u.x[j], __ldg(p.bias + j0 + j));
      }
      *reinterpret_cast<uint4*>(out + r * p.row_len + j0) = u.raw;
    }
    return;
  }
  const int64_t n = p.rows * p.row_len;
  for (int64_t i = blockIdx.x * int64_t{kThreads} + threadIdx.x; i < n; i += stride) {
    const int64_t r = i / p.row_len;
    Elem<T>::store(out + i, __ldg(p.bias + (p.per_row ? r % p.C : i - r * p.row_len)));
  }
}

// One block per channel c: the threads stride over (b, l) in 16-byte chunks (`vec`: L % V == 0 and in 16-byte
// aligned) or elements, then a fixed-shape reduction (warp shuffles, then the warps' sums in order).
template <typename T>
__global__ void __launch_bounds__(kThreads) bias_row_sum_kernel(BiasRowSumParams p, bool vec) {
  constexpr int V = 16 / sizeof(T);
  const int64_t c = blockIdx.x;
  const T* in = static_cast<const T*>(p.in);
  float acc = 0.f;
  for (int64_t b = 0; b < p.B; ++b) {
    const T* row = in + (b * p.C + c) * p.L;
    if (vec) {
      for (int64_t k = threadIdx.x; k < p.L / V; k += kThreads) {
        union {
          uint4 raw;
          T x[V];
        } u;
        u.raw = __ldg(reinterpret_cast<const uint4*>(row) + k);
#pragma unroll
        for (int j = 0; j < V; ++j) acc += Elem<T>::load(&u.x[j]);
      }
    } else {
      for (int64_t l = threadIdx.x; l < p.L; l += kThreads) acc += Elem<T>::load(row + l);
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  __shared__ float warp_sums[kThreads / 32];
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) s += warp_sums[w];
    p.out[c] = s;
  }
}

// Column sums, pass 1: block (g, s) sums columns [g 32 VEC, (g + 1) 32 VEC) over the rows of slab s. Thread t reads
// VEC columns from (t % 32) VEC (16 bytes when VEC > 1: a warp reads 512 contiguous bytes of one row) in rows
// t / 32, t / 32 + 8, ...; the 8 row lanes' sums are then added in lane order through shared memory.
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) bias_col_sum_kernel(BiasColSumParams p, int64_t rows_per_slab) {
  constexpr int kLanes = kThreads / 32, kCols = 32 * VEC;
  __shared__ float red[kLanes][kCols];
  const T* in = static_cast<const T*>(p.in);
  const int cv = threadIdx.x % 32, lane = threadIdx.x / 32;
  const int64_t c0 = int64_t{blockIdx.x} * kCols + int64_t{cv} * VEC;
  const int64_t r0 = int64_t{blockIdx.y} * rows_per_slab, r1 = min(r0 + rows_per_slab, p.N);
  float acc[VEC] = {};
  if (c0 < p.C) {  // with VEC > 1, C % VEC == 0: all VEC columns exist
    for (int64_t r = r0 + lane; r < r1; r += kUnroll * kLanes) {
      Chunk<T, VEC> ch[kUnroll];
#pragma unroll
      for (int i = 0; i < kUnroll; ++i)
        if (r + i * kLanes < r1) ch[i].load(in + (r + i * kLanes) * p.C + c0);
#pragma unroll
      for (int i = 0; i < kUnroll; ++i) {
        if (r + i * kLanes >= r1) continue;
#pragma unroll
        for (int j = 0; j < VEC; ++j) acc[j] += ch[i].x[j];
      }
    }
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) red[lane][cv * VEC + j] = acc[j];
  __syncthreads();
  for (int k = threadIdx.x; k < kCols; k += kThreads) {
    const int64_t c = int64_t{blockIdx.x} * kCols + k;
    if (c >= p.C) continue;
    float s = 0.f;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) s += red[l][k];
    p.partial[int64_t{blockIdx.y} * p.C + c] = s;
  }
}

// Column sums, pass 2: block g, columns [32 g, 32 g + 32): lane c % 32 of warp w adds slabs w, w + 8, ... of its
// column (kUnroll loads in flight), then the 8 warps' sums are added in order.
__global__ void __launch_bounds__(kThreads) bias_col_sum_finish_kernel(BiasColSumParams p, int64_t slabs) {
  constexpr int kLanes = kThreads / 32;
  __shared__ float red[kLanes][32];
  const int cl = threadIdx.x % 32, lane = threadIdx.x / 32;
  const int64_t c = int64_t{blockIdx.x} * 32 + cl;
  float s = 0.f;
  if (c < p.C) {
    for (int64_t k = lane; k < slabs; k += kUnroll * kLanes) {
      float v[kUnroll];
#pragma unroll
      for (int i = 0; i < kUnroll; ++i) v[i] = k + i * kLanes < slabs ? p.partial[(k + i * kLanes) * p.C + c] : 0.f;
#pragma unroll
      for (int i = 0; i < kUnroll; ++i) s += v[i];
    }
  }
  red[lane][cl] = s;
  __syncthreads();
  if (lane == 0 && c < p.C) {
    float t = 0.f;
#pragma unroll
    for (int l = 0; l < kLanes; ++l) t += red[l][cl];
    p.out[c] = t;
  }
}

// Batch sum: chunk k (V elements: 16 bytes, or one) per thread, grid-stride; its B entries loaded kUnroll at a time
// and added in b order.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads) batch_sum_kernel(BatchSumParams p) {
  const T* in = static_cast<const T*>(p.in);
  const int64_t chunks = p.N / V, stride = int64_t{gridDim.x} * kThreads;
  for (int64_t k = blockIdx.x * int64_t{kThreads} + threadIdx.x; k < chunks; k += stride) {
    float acc[V] = {};
    for (int64_t b = 0; b < p.B; b += kUnroll) {
      Chunk<T, V> ch[kUnroll];
#pragma unroll
      for (int i = 0; i < kUnroll; ++i)
        if (b + i < p.B) ch[i].load(in + (b + i) * p.N + k * V);
#pragma unroll
      for (int i = 0; i < kUnroll; ++i) {
        if (b + i >= p.B) continue;
#pragma unroll
        for (int j = 0; j < V; ++j) acc[j] += ch[i].x[j];
      }
    }
    if constexpr (V == 4) {
      *reinterpret_cast<float4*>(p.out + 4 * k) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j) p.out[k * V + j] = acc[j];
    }
  }
}

void check(cudaError_t err, const char* kernel, const std::string& shape) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(kernel) + ": launch failed (" + cudaGetErrorString(err) + ") for " + shape);
}

bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

template <typename F>
void by_elem(ElemType e, F&& f) {
  switch (e) {
    case ElemType::kFloat32:
      return f(float{});
    case ElemType::kFloat16:
      return f(__half{});
    case ElemType::kBFloat16:
      return f(__nv_bfloat16{});
  }
}

}  // namespace

void bias_fill_launch(const BiasFillParams& p, void* stream) {
  const std::string shape = "rows=" + std::to_string(p.rows) + " row_len=" + std::to_string(p.row_len) +
                            " C=" + std::to_string(p.C) + (p.per_row ? " per_row" : " per_column");
  if (p.rows < 0 || p.row_len < 0 || p.C < 0) throw std::runtime_error("bias_fill_kernel: negative size: " + shape);
  if (p.rows == 0 || p.row_len == 0) return;
  if (p.C == 0 || (!p.per_row && p.row_len != p.C))
    throw std::runtime_error("bias_fill_kernel: need C >= 1, and row_len == C per column: " + shape);
  by_elem(p.elem, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = 16 / sizeof(T);
    const bool vec = p.row_len % V == 0 && aligned16(p.out);
    const int64_t work = vec ? p.rows * (p.row_len / V) : p.rows * p.row_len;
    // Grid-stride: a few blocks per multiprocessor of the largest GPU suffice.
    const int64_t blocks = std::min<int64_t>((work + kThreads - 1) / kThreads, 4096);
    bias_fill_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p, vec);
  });
  check(cudaGetLastError(), "bias_fill_kernel", shape);
}

void bias_row_sum_launch(const BiasRowSumParams& p, void* stream) {
  const std::string shape = "B=" + std::to_string(p.B) + " C=" + std::to_string(p.C) + " L=" + std::to_string(p.L);
  if (p.B < 0 || p.C < 0 || p.L < 0) throw std::runtime_error("bias_row_sum_kernel: negative size: " + shape);
  if (p.C == 0) return;
  if (p.C > INT_MAX) throw std::runtime_error("bias_row_sum_kernel: too many channels for one grid: " + shape);
  by_elem(p.elem, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = 16 / sizeof(T);
    const bool vec = p.L % V == 0 && aligned16(p.in);
    bias_row_sum_kernel<T><<<static_cast<unsigned>(p.C), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p, vec);
  });
  check(cudaGetLastError(), "bias_row_sum_kernel", shape);
}

void bias_col_sum_launch(const BiasColSumParams& p, void* stream) {
  const std::string shape = "N=" + std::to_string(p.N) + " C=" + std::to_string(p.C);
  if (p.N < 0 || p.C < 0) throw std::runtime_error("bias_col_sum_kernel: negative size: " + shape);
  if (p.C == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  const int64_t slabs = bias_col_sum_slabs(p.N), rows_per_slab = (p.N + slabs - 1) / slabs;
  if ((p.C + 31) / 32 > INT_MAX)
    throw std::runtime_error("bias_col_sum_kernel: too many columns for one grid: " + shape);
  by_elem(p.elem, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = 16 / sizeof(T);
    if (p.C % V == 0 && aligned16(p.in)) {
      const dim3 grid(static_cast<unsigned>((p.C + 32 * V - 1) / (32 * V)), static_cast<unsigned>(slabs));
      bias_col_sum_kernel<T, V><<<grid, kThreads, 0, s>>>(p, rows_per_slab);
    } else {
      const dim3 grid(static_cast<unsigned>((p.C + 31) / 32), static_cast<unsigned>(slabs));
      bias_col_sum_kernel<T, 1><<<grid, kThreads, 0, s>>>(p, rows_per_slab);
    }
  });
  check(cudaGetLastError(), "bias_col_sum_kernel", shape);
  bias_col_sum_finish_kernel<<<static_cast<unsigned>((p.C + 31) / 32), kThreads, 0, s>>>(p, slabs);
  check(cudaGetLastError(), "bias_col_sum_finish_kernel", shape);
}

void batch_sum_launch(const BatchSumParams& p, void* stream) {
  const std::string shape = "B=" + std::to_string(p.B) + " N=" + std::to_string(p.N);
  if (p.B < 0 || p.N < 0) throw std::runtime_error("batch_sum_kernel: negative size: " + shape);
  if (p.N == 0) return;
  by_elem(p.elem, [&](auto zero) {
    using T = decltype(zero);
    constexpr int V = 16 / sizeof(T);
    const bool vec = p.N % V == 0 && aligned16(p.in) && aligned16(p.out);
    const int64_t work = vec ? p.N / V : p.N;
    const auto blocks = static_cast<unsigned>(std::min<int64_t>((work + kThreads - 1) / kThreads, 4096));
    if (vec)
      batch_sum_kernel<T, V><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
    else
      batch_sum_kernel<T, 1><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  });
  check(cudaGetLastError(), "batch_sum_kernel", shape);
}

}  // namespace hippo::cuda
