// Chunked (overlap-save) causal convolution for sequences longer than the fused kernel holds, with a filter
// that fits on chip (H3.md 8): overlapping windows of the sequence as the rows of one inner convolution call
// (fftconv_fused on CUDA, fftconv_ref anywhere), the valid tail of each window kept.
#include <torch/torch.h>

#include <limits>

#include "kernels/fftconv.h"

namespace hippo {

int64_t fftconv_chunk_window(int64_t kernel_len) {
  TORCH_CHECK(kernel_len >= 1 && kernel_len <= kFftConvChunkedMaxKernelLen,
              "fftconv_chunk_window: kernel_len must be in [1, ", kFftConvChunkedMaxKernelLen, "], got ",
              kernel_len);
  // Cost per point of the fused kernel relative to n = 8192: 1.156 ms at n = 16384 against 2 x 0.487 ms at
  // n = 8192 for the same number of points (docs/FLASHCONV.md, H200, bf16). Smaller n were slower per point
  // still (1.35x at n = 2048), and a window of 8192 already keeps >= 75% of its outputs up to L_k = 1025.
  constexpr struct {
    int64_t n;
    double cost;
  } kSizes[] = {{8192, 1.0}, {16384, 1.19}};
  int64_t best_n = 0;
  double best = std::numeric_limits<double>::infinity();
  for (const auto& s : kSizes) {
    const int64_t kept = s.n - 2 * (kernel_len - 1);  // S for W = n - L_k + 1
    if (kept < 1) continue;
    const double cost = s.cost * static_cast<double>(s.n) / static_cast<double>(kept);
    if (cost < best) best = cost, best_n = s.n;
  }
  return best_n - kernel_len + 1;
}

torch::Tensor fftconv_chunked(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                              const FftConvOptions& o, FftConvInner inner, int64_t window) {
  internal::check_fftconv_args(u, k, D, o);
  const int64_t B = u.size(0), H = u.size(1), L = u.size(2), Lk = k.size(1);
  TORCH_CHECK(window >= 0, "fftconv_chunked: window must be >= L_k=", Lk, " (or 0 for the default), got ",
              window);
  TORCH_CHECK(window != 0 || Lk <= kFftConvChunkedMaxKernelLen, "fftconv_chunked: L_k=", Lk,
              " is longer than the default window allows (", kFftConvChunkedMaxKernelLen,
              "); pass a window >= L_k");
  const int64_t W = window == 0 ? fftconv_chunk_window(Lk) : window;
  TORCH_CHECK(W >= Lk, "fftconv_chunked: window must be >= L_k=", Lk, ", got ", W);
  // P positions of history per window, S new ones; the sequence gets P zeros in front (the history of the
  // first window, which a causal convolution sees as zeros) and is zero-filled past L up to whole windows.
  const int64_t P = Lk - 1, S = W - P, nw = (L + S - 1) / S;
  auto windows = [&](const torch::Tensor& t) {
    // (B, H, P + nw S) -> unfold: (B, H, nw, W) overlapping views -> rows (b, window) of (B * nw, H, W).
    return torch::constant_pad_nd(t, {P, nw * S - L})
        .unfold(2, W, S)
        .permute({0, 2, 1, 3})
        .reshape({B * nw, H, W});
  };
  // Every step after the convolution is pointwise, so the gates, GELU and the mask run inside the inner call
  // on whole windows (their outputs in the history part are discarded below, and so get zero gradient): the
  // inner call does the arithmetic in float32 and rounds once, as fftconv_ref does, and the fused kernel
  // reads v and q itself. v is cut into the same windows as u, so the history positions of a window hold the
  // gated input too.
  FftConvOptions wo;
  wo.gelu = o.gelu;
  if (o.v) wo.v = windows(*o.v);
  if (o.q) wo.q = windows(*o.q);
  if (o.dropout_mask) wo.dropout_mask = o.dropout_mask->repeat_interleave(nw, 0);
  const auto uw = windows(u);
  const auto yw = inner == FftConvInner::kFused ? fftconv_fused(uw, k, D, wo) : fftconv_ref(uw, k, D, wo);
  // Keep outputs P..W-1 of each window (their whole history was inside the window), back to (B, H, nw S).
  auto y = yw.narrow(2, P, S).reshape({B, nw, H, S}).permute({0, 2, 1, 3}).reshape({B, H, nw * S});
  // A view when S = 1 (reshape need not copy), a slice when nw S > L: contiguous as fftconv_ref's result.
  return y.narrow(2, 0, L).contiguous();
}

bool fftconv_chunked_supported(const torch::Tensor& u, const torch::Tensor& k, const torch::Tensor& D,
                               const FftConvOptions& o) {
  if (!fftconv_cuda_built()) return false;
  if (!u.defined() || !k.defined() || !D.defined() || u.dim() != 3 || k.dim() != 2) return false;
  const int64_t L = u.size(2), Lk = k.size(1);
  if (Lk < 1 || Lk > kFftConvChunkedMaxKernelLen || Lk > L) return false;
  const int64_t W = fftconv_chunk_window(Lk);
  if (L <= W || fftconv_fused_supported(u, k, D, o)) return false;
  // The question is whether the fused kernel takes one window: the same call cut to W positions (views).
  FftConvOptions cut = o;
  for (auto* g : {&cut.v, &cut.q}) {
    if (!g->has_value()) continue;
    if ((*g)->sizes() != u.sizes()) return false;
    *g = (*g)->narrow(2, 0, W);
  }
  return fftconv_fused_supported(u.narrow(2, 0, W), k, D, cut);
}

}  // namespace hippo
