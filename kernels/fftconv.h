// Causal FFT convolution, the operator under every SSM layer (H3.md 2.3, 8): y = conv(u, k) + D*u with
// optional fused gates. This header is the host API for every path; it compiles without CUDA.
#pragma once

#include <torch/types.h>

#include <optional>
#include <string>

namespace hippo {

// Options of fftconv. Every tensor given here has u's shape (B, H, L) unless stated.
struct FftConvOptions {
  std::optional<torch::Tensor> v;             // gate multiplied into u before the convolution (H3's k*v)
  std::optional<torch::Tensor> q;             // gate multiplied into the output, after D, GELU and dropout
  bool gelu = false;                          // exact (erf) GELU on conv(u, k) + D*u
  std::optional<torch::Tensor> dropout_mask;  // (B, H), already scaled by 1/(1-p); multiplied after GELU
};

// Next power of two >= max(16, L + L_k - 1): the FFT size of a causal (non-wrapping) convolution.
int64_t fftconv_size(int64_t seq_len, int64_t kernel_len);

// Causal convolution by FFT, the reference path (torch::fft, any device, differentiable by autograd):
//   w = u * v (if v), y[b,h,t] = sum_{j<=t, j<L_k} k[h,j] w[b,h,t-j] + D[h] w[b,h,t],
//   y = GELU(y) (if gelu), y = y * mask[b,h] (if dropout_mask), y = y * q (if q).
// u: (B, H, L), float32, float64, float16 or bfloat16, any layout. k: (H, L_k) with 1 <= L_k <= L, float32
// or float64. D: (H), float32 or float64. Arithmetic is done in float32 (float64 if u is float64); half
// inputs are upcast and the result cast back. Returns (B, H, L) in u's dtype.
// Raises c10::Error (TORCH_CHECK) naming the argument on a wrong rank, shape, dtype or device mismatch.
torch::Tensor fftconv_ref(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                          const FftConvOptions& options = {});

// Causal convolution by direct summation, for a short filter (the shift SSM's N taps, H3.md 2.2): the contract
// and the result of fftconv_ref (up to rounding: no FFT, so float32 sums of L_k products), computed as a grouped
// conv1d (one group per channel) over w = u * v padded by L_k - 1 zeros on the left, with k's taps reversed.
// Cost B H L L_k multiply-adds against the FFT's O(B H n log n), n = fftconv_size(L, L_k). Any device,
// differentiable by autograd (ATen's conv1d backward). Raises c10::Error as fftconv_ref does.
torch::Tensor fftconv_direct(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                             const FftConvOptions& options = {});

// The longest filter fftconv() sends to direct summation (fftconv_direct, fftconv_short; see fftconv_takes_direct).
constexpr int64_t kFftConvDirectMaxTaps = 64;

// Where fftconv() sums a filter of at most kFftConvDirectMaxTaps taps directly instead of by FFT.
// kAuto (the default): the CUDA kernel fftconv_short on a GPU where fftconv_short_supported (no gates), the FFT
// paths elsewhere. kCpu: as kAuto, and fftconv_direct (ATen's grouped conv1d) on the CPU. kOn: fftconv_direct on
// every device (on a GPU ATen's depthwise kernels, measured 2x slower than the FFT for H3 at 2K: a comparison, not
// a speed-up). kOff: the FFT paths only. fftconv_direct is not the CPU default because the main job's S4D run was
// not faster end to end with it (docs/FLASHCONV.md, "Short filters by direct summation"). Set by
// HIPPO_FFTCONV_DIRECT=off|auto|cpu|on (read once) or set_direct_dispatch.
enum class FftConvDirectDispatch { kOff, kAuto, kCpu, kOn };
FftConvDirectDispatch direct_dispatch();
void set_direct_dispatch(FftConvDirectDispatch mode);
// Parses "off", "auto", "cpu" or "on"; raises c10::Error naming HIPPO_FFTCONV_DIRECT and the accepted values otherwise.
FftConvDirectDispatch parse_direct_dispatch(const std::string& text);

// Whether fftconv_fused's backward recomputes the pre-activation z of a call with a gate q or GELU (true) instead of
// reading the float32 copy (B, H, L) its forward kept for it (false, the default: 4 bytes per element held from
// forward to backward, for one spectrum product and inverse FFT per row less in the backward; measured in
// docs/FLASHCONV.md). Set by HIPPO_FFTCONV_RECOMPUTE=off|on (read once; internal::parse_fftconv_recompute_env) or
// set_fftconv_recompute_z; a call's forward decides for its backward.
bool fftconv_recompute_z();
void set_fftconv_recompute_z(bool on);
// The fused backward's row groups per channel (FftConvBwdParams::chunks): 0, the default, lets
// cuda::fftconv_bwd_chunks choose per call (whole waves of blocks, few groups: kernels/fftconv_kernel.h); N >= 1
// takes min(N, B). Each group writes one float32 spectrum of n/2 + 1 complex values per channel for the filter's
// gradient, so N also sets that workspace. Set by HIPPO_FFTCONV_BWD_CHUNKS=auto|N (read once;
// internal::parse_fftconv_bwd_chunks_env; a bad value raises c10::Error from the first call that reads it, and
// `hippo` refuses one at start-up) or set_fftconv_bwd_chunks (N in [0, 65536], else c10::Error).
int fftconv_bwd_chunks_setting();
void set_fftconv_bwd_chunks(int n);
// Whether fftconv() takes fftconv_direct (ATen's conv1d): u (B, H, L) and k (H, L_k) with L_k <= min(L,
// kFftConvDirectMaxTaps), on a device the dispatch mode gives to it (kCpu: the CPU; kOn: any). Malformed arguments
// are left to the path taken; raises c10::Error only for a bad HIPPO_FFTCONV_DIRECT (read on the first call; `hippo`
// itself refuses one at start-up).
bool fftconv_takes_direct(const torch::Tensor& u, const torch::Tensor& k);

// The longest L fftconv_short takes (65535 tiles of 1024 steps, the CUDA grid's second dimension).
constexpr int64_t kFftConvShortMaxLen = int64_t{65535} * 1024;

// Whether fftconv_short runs this call: the CUDA kernels were built; no options (v, q, gelu, dropout_mask unset);
// u (B, H, L) float32, float16 or bfloat16 and k (H, L_k), D (H) floating point, all on one CUDA device;
// 1 <= L_k <= min(L, kFftConvDirectMaxTaps); B * H < 2^31; L <= kFftConvShortMaxLen. False (never a throw) otherwise.
bool fftconv_short_supported(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                             const FftConvOptions& options = {});

// The CUDA short-filter path (kernels/fftconv_short_kernel.h): y = conv(u, k) + D u by direct summation, L_k
// multiply-adds per output in float32 with D as the lag-0 tap, one read of u and one write of y; the backward (an
// autograd Function) gives du by the transposed sum and dk, dD (= dk's lag 0) as sums over B and L of dy u
// products, reduced in a fixed order (deterministic). The shift SSM's filter (H3.md 3.1, 64 taps) is the case
// served: for L = 2048 it replaces FFTs of 4096 points. Same contract and result as fftconv_ref without options,
// up to float32 rounding (no FFT error). Raises c10::Error naming the kernel and the shape when
// !fftconv_short_supported(...) (always so in a build without CUDA) or a launch fails; never returns an unwritten
// result.
torch::Tensor fftconv_short(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                            const FftConvOptions& options = {});

// The dispatching entry point: fftconv_blockfft when fftconv_takes_blockfft says so (off by default;
// HIPPO_FFTCONV_BLOCKFFT=on|auto, kernels/fftconv_blockfft.h); else fftconv_direct when fftconv_takes_direct says so
// (never under the default kAuto; HIPPO_FFTCONV_DIRECT=cpu|on); else fftconv_short when fftconv_short_supported and
// the direct dispatch is not kOff (the default: an ungated filter of <= 64 taps on a GPU); else fftconv_fused when fftconv_fused_supported
// says yes; else the chunked fused
// path (fftconv_chunked with FftConvInner::kFused) when fftconv_chunked_supported says yes (CUDA, L too long
// for the fused kernel but L_k <= kFftConvChunkedMaxKernelLen); else fftconv_ref. fftconv_ref only while an
// FftConvReferenceScope lives. Same contract as fftconv_ref; differentiable on every path.
torch::Tensor fftconv(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                      const FftConvOptions& options = {});

// While an instance lives, fftconv() takes the reference path on this thread (to compare the two paths
// through whole layers, and for benchmarks). Nests. Layers whose filter comes from a diagonal SSM also run
// the whole sequence in one pass (no state passing, layers/ssm.h) and build their kernel by its ATen expression
// (not the fused kernels of kernels/ssm_fused.h) while it lives: the single-pass reference.
class FftConvReferenceScope {
 public:
  FftConvReferenceScope();
  ~FftConvReferenceScope();
  // True while an instance lives on this thread.
  static bool active();
  FftConvReferenceScope(const FftConvReferenceScope&) = delete;
  FftConvReferenceScope& operator=(const FftConvReferenceScope&) = delete;

 private:
  bool previous_;
};

// True when this binary was built with the CUDA kernels (HIPPO_WITH_CUDA: a LibTorch with CUDA was found).
bool fftconv_cuda_built();

// The largest FFT size of the fused kernels (the forward holds it on chip in one 136 KiB buffer; the backward
// keeps two of its three buffers in global memory there), and so the longest L they take.
constexpr int64_t kFftConvFusedMaxSize = 32768;
constexpr int64_t kFftConvFusedMaxLen = kFftConvFusedMaxSize / 2;

// Whether fftconv_fused runs this call: the kernels were built; u, k, D (and v, q, dropout_mask) are on one CUDA
// device; u is float32, float16 or bfloat16; v and q have u's dtype; the FFT size fftconv_size(L, L_k) is at
// most kFftConvFusedMaxSize (so any L <= 16384); B, H >= 1; dropout_mask does not require grad. False (never a throw) otherwise,
// including for malformed arguments, which fftconv_ref then rejects.
bool fftconv_fused_supported(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                             const FftConvOptions& options = {});

// The fused CUDA path (H3.md 8, FlashConv's fused kernel): one kernel reads u (v, q) once, does the FFT of size
// fftconv_size(L, L_k), the product with the filter spectrum (rfft(k) + D, computed once per call in float32 by a
// CUDA kernel, fftconv_filter_launch), the inverse FFT, GELU, mask and q on chip in float32, and writes y once; a
// fused backward gives the gradients of u, k, D, v and q (autograd Function). Same contract and result as
// fftconv_ref up to float32 rounding. Raises c10::Error naming the kernel and the shape when
// !fftconv_fused_supported(...) (always so in a build without CUDA) or a kernel launch fails; never returns an
// unwritten result.
torch::Tensor fftconv_fused(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                            const FftConvOptions& options = {});

// ---- Chunked (overlap-save) convolution for long sequences with a short filter (H3.md 8)
// ---------------------- The fused kernel takes FFT sizes up to 32768 (L <= 16384). For L too long for that but a
// filter that fits (L_k <= kFftConvChunkedMaxKernelLen), the sequence is cut into overlapping windows of
// length W: window i covers positions [i S - P, i S - P + W) of u (zeros before 0 and past L), with P = L_k -
// 1 positions of history and S = W - P new ones; all windows go through the inner convolution as the rows of
// one call of B * n_windows rows (n_windows = ceil(L / S)), and the last S outputs of each window, which saw
// their whole history, are kept. Everything after the convolution is pointwise, so v, q, GELU and the dropout
// mask are fused into the inner call (windows of v and q, the mask repeated per window) and the result is
// rounded once, as fftconv_ref rounds it.

// Which convolution fftconv_chunked runs on the windows: fftconv_ref (any device; the CPU tests of the
// chunking) or fftconv_fused (CUDA).
enum class FftConvInner { kReference, kFused };

// Longest filter for which fftconv() takes the chunked path: windows of W = 12289 for an FFT size of 16384
// keep S = 8194 new outputs each (half the work is overlap at this length).
constexpr int64_t kFftConvChunkedMaxKernelLen = 4096;

// Default window length W for a filter of kernel_len taps (1 <= kernel_len <= kFftConvChunkedMaxKernelLen):
// the window fills an FFT size n in {8192, 16384} exactly (W = n - L_k + 1, so fftconv_size(W, L_k) = n), the
// n chosen for the least work per kept output, n / (n - 2 (L_k - 1)), with n = 16384 charged 1.19x per point
// (the fused kernel's measured cost per point at n = 16384 against n = 8192, docs/FLASHCONV.md; ties go to
// 8192): W = 8193 - L_k up to L_k = 1128, 16385 - L_k above. Raises c10::Error outside that range of
// kernel_len.
int64_t fftconv_chunk_window(int64_t kernel_len);

// Causal convolution of long sequences by overlapping windows (overlap-save; H3.md 2.3 per window, H3.md 8
// for sequences past what fits on chip), same contract and result as fftconv_ref up to float32 rounding
// (arithmetic in float32, float64 for float64 u; one rounding to u's dtype at the end). u: (B, H, L) any
// layout, any dtype fftconv_ref accepts; k: (H, L_k), 1 <= L_k <= L; D: (H); options as in fftconv_ref.
// inner: the convolution run on the windows (kFused needs everything fftconv_fused_supported asks for a call
// of length `window`). window: W, with L_k <= W; 0 picks fftconv_chunk_window(L_k) (L_k must then be <=
// kFftConvChunkedMaxKernelLen). Returns (B, H, L) contiguous in u's dtype. Differentiable by autograd (u, k,
// D, v, q) through the windowing (padding, unfold) and the inner call. Memory: about W / S times u's size for
// each of u, v, q and the output, plus the output itself. Ignores FftConvReferenceScope (as fftconv_fused).
// Raises c10::Error (TORCH_CHECK) naming the argument on what fftconv_ref rejects or window < L_k; with
// kFused, fftconv_fused's error (naming the kernel and the window's shape) when the windowed call is
// unsupported.
torch::Tensor fftconv_chunked(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                              const FftConvOptions& options = {},
                              FftConvInner inner = FftConvInner::kReference, int64_t window = 0);

// Whether fftconv() takes the chunked fused path: not fftconv_fused_supported(...) but L_k <=
// kFftConvChunkedMaxKernelLen, L > fftconv_chunk_window(L_k), and fftconv_fused_supported says yes for the
// same call cut to one window of fftconv_chunk_window(L_k) positions. False (never a throw) otherwise, and
// always in a build without CUDA.
bool fftconv_chunked_supported(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                               const FftConvOptions& options = {});

namespace internal {
// value with control characters written as \xNN, so that an error message quoting it stays one line.
std::string printable(const std::string& value);
// Parses HIPPO_FFTCONV_FILTER: "kernel" or "" (the default) -> false, "aten" -> true (the torch::fft path for the
// filter spectrum and its gradient); raises c10::Error naming the variable and the accepted values otherwise.
bool parse_fftconv_filter_env(const std::string& value);
// Parses HIPPO_FFTCONV_RECOMPUTE (fftconv_recompute_z): "off" or "" (the default) -> false, "on" -> true; raises
// c10::Error naming the variable and the accepted values otherwise.
bool parse_fftconv_recompute_env(const std::string& value);
// Parses HIPPO_FFTCONV_BWD_CHUNKS (the fused backward's row groups per channel, FftConvBwdParams::chunks): "auto"
// or "" (the default) -> 0 (cuda::fftconv_bwd_chunks decides), a decimal integer in [1, 65536] -> that many
// (capped at B per call); raises c10::Error naming the variable and the accepted values otherwise.
int parse_fftconv_bwd_chunks_env(const std::string& value);
// The filter spectrum the fused kernels read (H3.md 2.3, the skip D folded in as the tap at lag 0): k (H, L_k)
// and D (H) of any floating dtype and device, 1 <= L_k <= fft_size, fft_size a power of two >= 16; returns
// rfft(k + D delta_0, fft_size) * 2/fft_size as (H, fft_size/2 + 1, 2) float32 on k's device (2/fft_size: the
// kernels' inverse normalisation). fftconv_filter_spectrum_ref computes it with torch::fft;
// fftconv_filter_spectrum with one CUDA kernel launch (fftconv_filter_kernel) when the kernels were built, k is
// on a CUDA device and fft_size <= kFftConvFusedMaxSize, else as the reference. HIPPO_FFTCONV_FILTER=aten in the environment
// makes fftconv_filter_spectrum take the reference (an A/B switch for benchmarks). Raises c10::Error on other
// shapes (H < 1, L_k out of range, fft_size not a power of two >= 16, k and D on different devices), or
// naming the kernel and shape when its launch fails.
// The shape and device checks of both (c10::Error naming fftconv_filter_spectrum and the accepted shapes).
void check_filter_spectrum_args(const torch::Tensor& k, const torch::Tensor& D, int64_t fft_size);
torch::Tensor fftconv_filter_spectrum_ref(const torch::Tensor& k, const torch::Tensor& D, int64_t fft_size);

// The path fftconv() takes when the block FFT does not (FftConvReferenceScope aside), in its order: fftconv_direct,
// fftconv_short, fftconv_fused, fftconv_chunked (kFused inside), fftconv_ref. The block FFT's autotune times this
// path against itself (kernels/fftconv_blockfft.h). fftconv_past_blockfft runs it (same contract and errors as
// that path); fftconv_path_name gives "direct", "short", "fused", "chunked" or "reference". Raises c10::Error
// only for a bad HIPPO_FFTCONV_DIRECT.
enum class FftConvPath { kDirect, kShort, kFused, kChunked, kReference };
FftConvPath fftconv_path_past_blockfft(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                                       const FftConvOptions& options);
const char* fftconv_path_name(FftConvPath path);
torch::Tensor fftconv_past_blockfft(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                                    const FftConvOptions& options);
torch::Tensor fftconv_filter_spectrum(const torch::Tensor& k, const torch::Tensor& D, int64_t fft_size);

// torch::gelu (the exact erf form, the operator's optional activation) whose backward receives a contiguous
// gradient: LibTorch 1.13's CPU gelu_backward returns wrong values (inf, NaN) in float32 when the incoming
// gradient's strides differ from its input's, as when a caller permutes the result; a hook on the output makes the
// gradient contiguous first (free when it already is). x: any shape, floating dtype; returns gelu(x) in x's dtype.
torch::Tensor gelu_exact(const torch::Tensor& x);

// The argument checks of fftconv_ref (shared by every path that must reject what it rejects).
void check_fftconv_args(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                        const FftConvOptions& options);

// The row groups per channel (FftConvBwdParams::chunks) of the fused backward that ran last in this process, on any
// thread (autograd runs a CUDA backward on its own device thread), or 0 before the first: so that a test can tell
// that set_fftconv_bwd_chunks reached the kernel. note_fftconv_bwd_chunks records it (the fused backward's glue).
int last_fftconv_bwd_chunks();
void note_fftconv_bwd_chunks(int chunks);
}  // namespace internal

// Direct O(L * L_k) causal convolution with the same contract as fftconv_ref (no gates): a slow second
// reference for tests.
torch::Tensor causal_conv_direct(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D);

}  // namespace hippo
