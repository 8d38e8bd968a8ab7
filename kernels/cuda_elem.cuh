// Element I/O shared by the CUDA kernels of kernels/: one float32, float16 or bfloat16 element or a pair of
// consecutive elements (t, t + 1) as float / float2, with float32 arithmetic everywhere. CUDA only (include from
// .cu files); no LibTorch.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace hippo::cuda {

template <typename T>
struct Elem;
template <>
struct Elem<float> {
  using Pair = float2;
  static __device__ __forceinline__ float load(const float* p) { return *p; }
  static __device__ __forceinline__ void store(float* p, float x) { *p = x; }
  static __device__ __forceinline__ float2 to_float2(Pair x) { return x; }
  static __device__ __forceinline__ Pair from_float2(float2 x) { return x; }
};
template <>
struct Elem<__half> {
  using Pair = __half2;
  static __device__ __forceinline__ float load(const __half* p) { return __half2float(*p); }
  static __device__ __forceinline__ void store(__half* p, float x) { *p = __float2half_rn(x); }
  static __device__ __forceinline__ float2 to_float2(Pair x) { return __half22float2(x); }
  static __device__ __forceinline__ Pair from_float2(float2 x) { return __floats2half2_rn(x.x, x.y); }
};
template <>
struct Elem<__nv_bfloat16> {
  using Pair = __nv_bfloat162;
  static __device__ __forceinline__ float load(const __nv_bfloat16* p) { return __bfloat162float(*p); }
  static __device__ __forceinline__ void store(__nv_bfloat16* p, float x) { *p = __float2bfloat16_rn(x); }
  static __device__ __forceinline__ float2 to_float2(Pair x) { return __bfloat1622float2(x); }
  static __device__ __forceinline__ Pair from_float2(float2 x) { return __floats2bfloat162_rn(x.x, x.y); }
};

// Elements t and t + 1 of a row of length L, zero past its end. `vec2`: L is even and the row pointer is
// aligned to a pair, so one aligned pair load serves both.
template <typename T>
__device__ __forceinline__ float2 load_pair(const T* row, int64_t t, int64_t L, bool vec2) {
  if (t + 1 < L) {
    if (vec2) return Elem<T>::to_float2(*reinterpret_cast<const typename Elem<T>::Pair*>(row + t));
    return make_float2(Elem<T>::load(row + t), Elem<T>::load(row + t + 1));
  }
  if (t < L) return make_float2(Elem<T>::load(row + t), 0.f);
  return make_float2(0.f, 0.f);
}

template <typename T>
__device__ __forceinline__ void store_pair(T* row, int64_t t, int64_t L, bool vec2, float2 x) {
  if (t + 1 < L) {
    if (vec2) {
      *reinterpret_cast<typename Elem<T>::Pair*>(row + t) = Elem<T>::from_float2(x);
    } else {
      Elem<T>::store(row + t, x.x);
      Elem<T>::store(row + t + 1, x.y);
    }
  } else if (t < L) {
    Elem<T>::store(row + t, x.x);
  }
}

}  // namespace hippo::cuda
