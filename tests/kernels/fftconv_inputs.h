// The inputs of one fftconv call in the GPU tests of the fused, block-FFT and chunked paths (shared so that each
// test file only says how its cases draw them).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "kernels/fftconv.h"

namespace hippo::testing {

// u, v, q: (B, H, L); k: (H, L_k); D: (H); mask: (B, H) already scaled (a constant, never a leaf); gelu.
// Undefined v, q, mask mean the option is off.
struct FftConvInputs {
  torch::Tensor u, k, D, v, q, mask;
  bool gelu = false;

  // The same inputs with u, v, q in `elem` and k, D in `param` (float64 for an oracle), as fresh leaves that
  // require grad when asked. The mask is converted to `param` and stays a constant.
  FftConvInputs as(torch::ScalarType elem, torch::ScalarType param, bool grad = false) const {
    auto conv = [&](const torch::Tensor& x, torch::ScalarType t) {
      if (!x.defined()) return x;
      auto y = x.to(t).detach().clone();
      return grad ? y.requires_grad_(true) : y;
    };
    FftConvInputs o;
    o.u = conv(u, elem), o.v = conv(v, elem), o.q = conv(q, elem);
    o.k = conv(k, param), o.D = conv(D, param);
    o.mask = mask.defined() ? mask.to(param) : mask;
    o.gelu = gelu;
    return o;
  }
  FftConvOptions options() const {
    FftConvOptions o;
    if (v.defined()) o.v = v;
    if (q.defined()) o.q = q;
    if (mask.defined()) o.dropout_mask = mask;
    o.gelu = gelu;
    return o;
  }
  // The tensors gradients are taken of: u, k, D, then v and q when present.
  std::vector<torch::Tensor> leaves() const {
    std::vector<torch::Tensor> x = {u, k, D};
    if (v.defined()) x.push_back(v);
    if (q.defined()) x.push_back(q);
    return x;
  }
  // Names of leaves()' gradients.
  std::vector<std::string> leaf_names() const {
    std::vector<std::string> x = {"du", "dk", "dD"};
    if (v.defined()) x.push_back("dv");
    if (q.defined()) x.push_back("dq");
    return x;
  }
};

inline bool all_finite(const torch::Tensor& t) { return torch::isfinite(t).all().item<bool>(); }

// Gradients of (y * w).sum() (in float64) for in.u, k, D, v, q, in that order (all five must be defined leaves).
inline std::vector<torch::Tensor> grads_of(const torch::Tensor& y, const torch::Tensor& w, const FftConvInputs& in) {
  auto loss = (y.to(torch::kDouble) * w).sum();
  return torch::autograd::grad({loss}, {in.u, in.k, in.D, in.v, in.q});
}

// Restores the direct dispatch mode (HIPPO_FFTCONV_DIRECT, set_direct_dispatch) a test changed, on scope exit.
struct DirectModeGuard {
  FftConvDirectDispatch saved = direct_dispatch();
  ~DirectModeGuard() { set_direct_dispatch(saved); }
};

// Restores the saved-z mode (HIPPO_FFTCONV_RECOMPUTE, set_fftconv_recompute_z) a test changed, on scope exit.
struct RecomputeModeGuard {
  bool saved = fftconv_recompute_z();
  ~RecomputeModeGuard() { set_fftconv_recompute_z(saved); }
};

// Restores the backward's row-group setting (HIPPO_FFTCONV_BWD_CHUNKS, set_fftconv_bwd_chunks) on scope exit.
struct BwdChunksGuard {
  int saved = fftconv_bwd_chunks_setting();
  ~BwdChunksGuard() { set_fftconv_bwd_chunks(saved); }
};

}  // namespace hippo::testing
