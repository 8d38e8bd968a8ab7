// Plain parameter structs and launchers of the fused CUDA FFT convolution (H3.md 8, FlashConv's fused
// kernel). No LibTorch and no CUDA headers: the kernels in fftconv_kernel.cu take raw device pointers, and
// the glue in fftconv_cuda.cc fills these structs from tensors. Layouts are row-major and contiguous.
#pragma once

#include <cstdint>

namespace hippo::cuda {

// Element type of u, v, q, y and of their gradients (one type for all of them).
enum class ElemType { kFloat32, kFloat16, kBFloat16 };

// FFT sizes the fused kernels are compiled for: n = 2^log_n with kMinLogN <= log_n <= kMaxLogN (16..32768,
// so L <= 16384).
constexpr int kMinLogN = 4;
constexpr int kMaxLogN = 15;

// Forward: y = q * (mask * act(conv(u * v, k) + D * (u * v))), every row (b, h) by one thread block.
struct FftConvFwdParams {
  const void* u = nullptr;      // (B, H, L), elem
  const void* v = nullptr;      // (B, H, L), elem, or null (no gate)
  const void* q = nullptr;      // (B, H, L), elem, or null (no gate)
  const float* mask = nullptr;  // (B, H) float32, or null
  const float* kf = nullptr;    // (H, n/2 + 1) complex64 interleaved: (rfft(k, n) + D) / (n/2)
  void* y = nullptr;            // (B, H, L), elem, written
  // (B, H, L) float32, 16-byte aligned, written, or null: the pre-activation z = conv(u * v, k) + D (u * v) before
  // GELU, mask and q, read by the backward (FftConvBwdParams::z says what recomputing it costs instead).
  float* z = nullptr;
  int64_t B = 0, H = 0, L = 0;
  int log_n = 0;
  ElemType elem = ElemType::kFloat32;
  bool gelu = false;
};

// Backward of the forward above for one upstream gradient dy. Rows of one channel h are split into `chunks`
// groups; each group's block accumulates sum_b conj(rfft(w_b)) * rfft(dz_b) (dz: gradient of the
// pre-activation) in shared memory (at n = 32768 in dk_spec itself) and writes it to dk_spec[chunk, h, :]; the
// caller sums over chunks and takes irfft(., n)[:L_k] for dk, and its lag 0 for dD (D acts as an extra tap at
// lag 0).
struct FftConvBwdParams {
  const void* u = nullptr;      // (B, H, L), elem
  const void* v = nullptr;      // or null
  const void* q = nullptr;      // or null
  const float* mask = nullptr;  // (B, H) or null
  const float* kf = nullptr;    // as in the forward
  const void* dy = nullptr;     // (B, H, L), elem
  // (B, H, L) float32, 16-byte aligned, or null: z as the forward wrote it (FftConvFwdParams::z), read whenever set
  // (the glue sets it only where a gate q or GELU needs z). Null where z is needed means recompute it: a spectrum
  // product and an inverse FFT per row more, plus the forward FFT of w when dk_spec is null.
  const float* z = nullptr;
  void* du = nullptr;           // (B, H, L), elem, or null (not needed)
  void* dv = nullptr;           // (B, H, L), elem, or null (not needed or no v)
  void* dq = nullptr;           // (B, H, L), elem, or null (not needed or no q)
  float* dk_spec = nullptr;     // (chunks, H, n/2 + 1) complex64 interleaved, or null (dk and dD not needed)
  // (chunks * H, n/2 + 1) complex64 interleaved, uninitialised: the spectrum of w per block where it does not
  // fit on chip with the other two buffers (n = 32768); fftconv_bwd_scratch_floats says how many floats, 0 when
  // none is needed (then it may be null). Needed only with dk_spec.
  float* spec_scratch = nullptr;
  int64_t B = 0, H = 0, L = 0;
  int log_n = 0;
  int chunks = 1;  // 1 <= chunks <= B
  ElemType elem = ElemType::kFloat32;
  bool gelu = false;
};

// The filter spectrum both kernels read (H3.md 2.3: the SSM kernel k with the skip D as its lag-0 tap).
struct FftConvFilterParams {
  const float* k = nullptr;  // (H, L_k) float32, contiguous
  const float* D = nullptr;  // (H) float32, or null (no skip)
  float* kf = nullptr;       // (H, n/2 + 1) complex64 interleaved, written: rfft(k + D delta_0, n) * 2/n
  int64_t H = 0, Lk = 0;
  int log_n = 0;
};

// Computes FftConvFilterParams::kf on `stream` (a cudaStream_t; null: the default stream): one block per
// channel, float32 arithmetic. Throws std::runtime_error naming the kernel and H, L_k, fft_size when log_n is
// outside [kMinLogN, kMaxLogN], L_k > n, or the launch fails.
void fftconv_filter_launch(const FftConvFilterParams& p, void* stream);

// The filter's gradient from the backward kernel's per-chunk spectra.
struct FftConvFilterGradParams {
  const float* dk_spec = nullptr;  // (chunks, H, n/2 + 1) complex64 interleaved, as FftConvBwdParams::dk_spec
  float* dk = nullptr;             // (H, L_k) float32, written, or null (not needed)
  float* dD = nullptr;             // (H) float32, written, or null (not needed)
  int64_t H = 0, Lk = 0;
  int log_n = 0;
  int chunks = 1;
};

// dk = irfft(sum over chunks of dk_spec, n)[:, :L_k] and dD = dk[:, 0] on `stream`: one block per channel, float32.
// Throws std::runtime_error naming the kernel and H, L_k, fft_size when log_n is outside [kMinLogN, kMaxLogN],
// L_k > n, chunks < 1, or the launch fails.
void fftconv_filter_grad_launch(const FftConvFilterGradParams& p, void* stream);

// Whether fftconv_bwd_launch runs the plain backward kernel for p: no gates v and q, GELU, mask or saved z (the
// s4d / shift-SSM / diag-SSM case). It is the general kernel with those parts compiled out, so it holds fewer
// registers and spills little or nothing (docs/FLASHCONV.md, sessions 17 and 18).
inline bool bwd_is_plain(const FftConvBwdParams& p) { return !p.v && !p.q && !p.gelu && !p.mask && !p.z; }

// Launch on `stream` (a cudaStream_t). Throw std::runtime_error naming the kernel and the shape when the size
// is outside [kMinLogN, kMaxLogN], L > n, or the launch fails (cudaGetLastError after the launch).
void fftconv_fwd_launch(const FftConvFwdParams& p, void* stream);
void fftconv_bwd_launch(const FftConvBwdParams& p, void* stream);

// Floats of FftConvBwdParams::spec_scratch for FFT size 2^log_n and `chunks` groups of H channels: chunks * H *
// (n/2 + 1) * 2 where the backward's three buffers do not fit in shared memory (n = 32768), else 0 (also for an
// unsupported log_n, which the launcher rejects).
int64_t fftconv_bwd_scratch_floats(int log_n, int64_t chunks, int64_t H);
// The row groups per channel (in [1, B]) with the least waves * (rows per block + 1/8) when chunks * H blocks of
// ceil(B / chunks) rows each run `slots` at a time (B, H, slots >= 1); ties go to fewer groups. The 1/8 is a
// block's own work (zeroing and writing its dk accumulator, the dk_spec row the filter kernel sums), fitted on an
// H200 at B 16, H 768, fft_size 8192, where 1 row a block (47 waves) ran 1.07x as long as 8 rows a block (6
// waves; docs/FLASHCONV.md, session 15). Only the fewest groups giving each rows-per-block value can win (waves
// grow with the groups), so about 2 sqrt(B) candidates are costed. Host code, no CUDA.
inline int bwd_chunks_by_waves(int64_t B, int64_t H, int64_t slots) {
  constexpr double kBlockCost = 0.125;
  int64_t best = 1;
  double best_cost = 0;
  for (int64_t c = 1; c <= B;) {
    const int64_t rows = (B + c - 1) / c;
    const double waves = static_cast<double>((c * H + slots - 1) / slots);
    const double cost = waves * (static_cast<double>(rows) + kBlockCost);
    if (c == 1 || cost < best_cost) best = c, best_cost = cost;
    if (rows == 1) break;
    c = (B + rows - 2) / (rows - 1);  // the fewest groups with fewer rows per block
  }
  return static_cast<int>(best);
}

// FftConvBwdParams::chunks for B rows of H channels at FFT size 2^log_n on the current device, with (dk) or
// without the dk accumulator, for the plain or the general kernel (plain: bwd_is_plain of the launch). Where the backward's buffers fit on chip (fft_size <= 16384), blocks (chunks * H of
// them, each ceil(B / chunks) rows long) run in waves of `slots` = resident blocks per multiprocessor (the
// occupancy calculator, for this kernel and its shared memory) times the multiprocessors: bwd_chunks_by_waves.
// H200 (132 SMs), B 16, H 768, bf16: 4 at fft_size 2048 (8 blocks a multiprocessor: 3 waves of 4 rows instead
// of 2 of 8, the kernel measured 1.16x faster than with 2), 2 at 4096, 1 at 8192 and 16384. At fft_size 32768
// (off chip; the W scratch row and part of the dk accumulator in global memory) about 8 blocks a multiprocessor in
// all: min(B, ceil(8 SMs / H)); 2, 4 and 8 groups measured within 0.6% there. Blocks per multiprocessor are cached
// per device (the first 64), type, size and kernel. Throws std::runtime_error on a CUDA error, B or H < 1 (naming
// them), or an unsupported log_n.
int fftconv_bwd_chunks(int64_t B, int64_t H, int log_n, ElemType e, bool dk, bool plain);

}  // namespace hippo::cuda
