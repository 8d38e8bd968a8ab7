// The tiled transpose of the last two dimensions (kernels/transpose_kernel.h). A (B, L, D) activation becomes the
// (B, D, L) rows the FFT convolution reads, and back; ATen's strided copy does this with scattered writes (about
// 0.6 TB/s on an H200 for a bf16 (4, 2048, 768) tensor, measured with ncu). CUDA runtime only.
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_elem.cuh"
#include "kernels/transpose_kernel.h"

namespace hippo::cuda {
namespace {

constexpr int kTile = 32, kRowsPerPass = 8;

// The fusions (TransposeParams::bias, row_sums) of the kernels below.
struct Fusion {
  const float* bias;  // (C) or null
  float* row_sums;    // (B * gridDim.x, R) or null
};

// Sum over the 32 lanes of a warp (all lanes take part; the kernels call it where threadIdx.y is warp-uniform).
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// Row r's partial sum over this block's column tile, written once by lane 0.
__device__ __forceinline__ void put_row_sum(const Fusion& f, int64_t b, int64_t R, int64_t r, float sum) {
  if (threadIdx.x == 0 && r < R) f.row_sums[(b * gridDim.x + blockIdx.x) * R + r] = sum;
}

// One 32 x 32 tile per block and step (grid-stride over row tiles and batches): the block reads rows of the tile
// (consecutive c: coalesced), writes columns (consecutive r: coalesced). Shared slots are at least 4 bytes wide and
// the row padded by one, so that the column reads of 4-byte slots hit 32 different banks (8-byte slots: two ways).
// kFused (W = float): the bias is added on the way in and each warp's row of the tile summed for row_sums.
template <typename W, bool kFused = false>
__global__ void __launch_bounds__(kTile * kRowsPerPass) transpose_kernel(const W* __restrict__ in, W* __restrict__ out,
                                                                         int64_t B, int64_t R, int64_t C, Fusion f) {
  using Slot = std::conditional_t<(sizeof(W) < 4), uint32_t, W>;
  __shared__ Slot tile[kTile][kTile + 1];
  const int64_t tiles_r = (R + kTile - 1) / kTile, c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    const W* src = in + b * R * C;
    W* dst = out + b * R * C;
    for (int64_t tr = blockIdx.y; tr < tiles_r; tr += gridDim.y) {
      const int64_t r0 = tr * kTile;
      for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
        const int64_t r = r0 + j, c = c0 + threadIdx.x;
        if constexpr (kFused) {
          const float x = r < R && c < C ? src[r * C + c] : 0.f;
          if (f.row_sums) put_row_sum(f, b, R, r, warp_sum(x));
          if (r < R && c < C) tile[j][threadIdx.x] = f.bias ? x + __ldg(f.bias + c) : x;
        } else {
          if (r < R && c < C) tile[j][threadIdx.x] = static_cast<Slot>(src[r * C + c]);
        }
      }
      __syncthreads();
      for (int j = threadIdx.y; j < kTile; j += kRowsPerPass) {
        const int64_t c = c0 + j, r = r0 + threadIdx.x;
        if (r < R && c < C) dst[c * R + r] = static_cast<W>(tile[threadIdx.x][j]);
      }
      __syncthreads();  // the next step overwrites the tile
    }
  }
}

// 2-byte elements with R and C even: 64 x 64 tiles moved as pairs (4-byte loads and stores, so that a warp reads
// and writes 128 contiguous bytes), 8 rows or columns of pairs per thread. Rows of the tile hold 65 elements: the
// pair reads of the write phase (rows 2 lane and 2 lane + 1 of one column) then fall on 32 different banks.
// E (the element type, __half or __nv_bfloat16) only with kFused: the pair converted to float32, the bias added
// and the pair rounded back on the way in, and each warp's row of the tile summed for row_sums.
constexpr int kTile2 = 64, kRow2 = kTile2 + 1;
template <typename E = void, bool kFused = false>
__global__ void __launch_bounds__(kTile * kRowsPerPass)
    transpose_pairs_kernel(const uint32_t* __restrict__ in, uint32_t* __restrict__ out, int64_t B, int64_t R,
                           int64_t C, Fusion f) {
  __shared__ uint16_t tile[kTile2 * kRow2];
  const int64_t tiles_r = (R + kTile2 - 1) / kTile2, c0 = static_cast<int64_t>(blockIdx.x) * kTile2;
  const int64_t Cp = C / 2, Rp = R / 2;  // pairs per input row and per output row
  for (int64_t b = blockIdx.z; b < B; b += gridDim.z) {
    const uint32_t* src = in + b * R * Cp;
    uint32_t* dst = out + b * C * Rp;
    for (int64_t tr = blockIdx.y; tr < tiles_r; tr += gridDim.y) {
      const int64_t r0 = tr * kTile2;
      for (int j = threadIdx.y; j < kTile2; j += kRowsPerPass) {
        const int64_t r = r0 + j, c = c0 + 2 * threadIdx.x;
        if constexpr (kFused) {
          using Pair = typename Elem<E>::Pair;
          uint32_t raw = r < R && c < C ? src[r * Cp + c / 2] : 0u;  // zero bits: 0.0 in both types
          Pair pair;
          memcpy(&pair, &raw, sizeof raw);
          float2 x = Elem<E>::to_float2(pair);
          if (f.row_sums) put_row_sum(f, b, R, r, warp_sum(x.x + x.y));
          if (f.bias && r < R && c < C) {
            pair = Elem<E>::from_float2(make_float2(x.x + __ldg(f.bias + c), x.y + __ldg(f.bias + c + 1)));
            memcpy(&raw, &pair, sizeof raw);
          }
          if (r < R && c < C) {
            tile[j * kRow2 + 2 * threadIdx.x] = static_cast<uint16_t>(raw & 0xffffu);
            tile[j * kRow2 + 2 * threadIdx.x + 1] = static_cast<uint16_t>(raw >> 16);
          }
          continue;
        }
        if (r < R && c < C) {
          const uint32_t v = src[r * Cp + c / 2];
          tile[j * kRow2 + 2 * threadIdx.x] = static_cast<uint16_t>(v & 0xffffu);
          tile[j * kRow2 + 2 * threadIdx.x + 1] = static_cast<uint16_t>(v >> 16);
        }
      }
      __syncthreads();
      for (int j = threadIdx.y; j < kTile2; j += kRowsPerPass) {
        const int64_t c = c0 + j, r = r0 + 2 * threadIdx.x;
        if (r < R && c < C) {
          const uint32_t lo = tile[2 * threadIdx.x * kRow2 + j], hi = tile[(2 * threadIdx.x + 1) * kRow2 + j];
          dst[c * Rp + r / 2] = lo | (hi << 16);
        }
      }
      __syncthreads();  // the next step overwrites the tile
    }
  }
}

void check_launch(const std::string& shape) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("transpose_kernel: launch failed (") + cudaGetErrorString(err) + ") for " +
                             shape);
}

// Pairs need even rows in both layouts and 4-byte aligned pointers.
bool pairs_ok(const TransposeParams& p) {
  return p.elem_bytes == 2 && p.R % 2 == 0 && p.C % 2 == 0 && reinterpret_cast<uintptr_t>(p.in) % 4 == 0 &&
         reinterpret_cast<uintptr_t>(p.out) % 4 == 0;
}

int tile_for(const TransposeParams& p) { return pairs_ok(p) ? kTile2 : kTile; }

dim3 grid_for(const TransposeParams& p, const std::string& shape) {
  const int tile = tile_for(p);
  const int64_t tiles_c = (p.C + tile - 1) / tile, tiles_r = (p.R + tile - 1) / tile;
  if (tiles_c > INT_MAX) throw std::runtime_error("transpose_kernel: too many column tiles for one grid: " + shape);
  return dim3(static_cast<unsigned>(tiles_c), static_cast<unsigned>(tiles_r < 65535 ? tiles_r : 65535),
              static_cast<unsigned>(p.B < 65535 ? p.B : 65535));
}

template <typename E, bool kFused>
void launch_pairs(const TransposeParams& p, cudaStream_t stream, const std::string& shape) {
  transpose_pairs_kernel<E, kFused><<<grid_for(p, shape), dim3(kTile, kRowsPerPass), 0, stream>>>(
      static_cast<const uint32_t*>(p.in), static_cast<uint32_t*>(p.out), p.B, p.R, p.C, Fusion{p.bias, p.row_sums});
  check_launch(shape);
}

template <typename W, bool kFused = false>
void launch(const TransposeParams& p, cudaStream_t stream, const std::string& shape) {
  transpose_kernel<W, kFused><<<grid_for(p, shape), dim3(kTile, kRowsPerPass), 0, stream>>>(
      static_cast<const W*>(p.in), static_cast<W*>(p.out), p.B, p.R, p.C, Fusion{p.bias, p.row_sums});
  check_launch(shape);
}

}  // namespace

bool transpose_fusion_supported(const TransposeParams& p) { return p.elem_bytes == 4 || pairs_ok(p); }

int64_t transpose_col_tiles(const TransposeParams& p) { return (p.C + tile_for(p) - 1) / tile_for(p); }

void transpose_launch(const TransposeParams& p, void* stream) {
  const std::string shape = "B=" + std::to_string(p.B) + " R=" + std::to_string(p.R) + " C=" + std::to_string(p.C) +
                            " elem_bytes=" + std::to_string(p.elem_bytes);
  if (p.B < 0 || p.R < 0 || p.C < 0) throw std::runtime_error("transpose_kernel: negative size: " + shape);
  if (p.B == 0 || p.R == 0 || p.C == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (p.bias || p.row_sums) {
    if (!transpose_fusion_supported(p))
      throw std::runtime_error(
          "transpose_kernel: bias and row sums need float32 elements, or 2-byte elements with R and C even and "
          "4-byte aligned pointers: " + shape);
    if (p.elem_bytes == 4) return launch<float, true>(p, s, shape);
    return p.bf16 ? launch_pairs<__nv_bfloat16, true>(p, s, shape) : launch_pairs<__half, true>(p, s, shape);
  }
  switch (p.elem_bytes) {
    case 2:
      if (pairs_ok(p)) return launch_pairs<void, false>(p, s, shape);
      return launch<uint16_t>(p, s, shape);
    case 4:
      return launch<uint32_t>(p, s, shape);
    case 8:
      return launch<uint64_t>(p, s, shape);
    default:
      throw std::runtime_error("transpose_kernel: elem_bytes must be 2, 4 or 8: " + shape);
  }
}

}  // namespace hippo::cuda
