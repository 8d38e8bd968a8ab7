// Gated State Spaces (Mehta et al. 2022; H3.md 4): u = GELU(W_u x) (D -> expand*D), v = GELU(W_v x)
// (D -> d_ssm), v = DiagSSM(LayerNorm(v)), g = W_g v (d_ssm -> expand*D), out = W_o(g * u) (expand*D -> D).
// The H3 paper's GSS code was not released; the widths are options (defaults: expand 4, d_ssm 256 as in H3.md).
#pragma once

#include "layers/mixer.h"
#include "layers/ssm.h"

namespace hippo {

class GSSImpl : public RecurrentMixerImpl {
 public:
  explicit GSSImpl(const MixerArgs& args);
  torch::Tensor forward(const torch::Tensor& x) override;
  // State: {diagonal SSM state (B, d_ssm, d_state/2, 2)}.
  MixerState initial_state(int64_t batch) const override;
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state) override;
  MixerState state_after(const torch::Tensor& x) override;
  std::vector<torch::Tensor> ssm_parameters() override { return ssm_->ssm_parameters(); }

  torch::nn::Linear u_proj_{nullptr}, v_proj_{nullptr}, g_proj_{nullptr}, out_proj_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  DiagSSM ssm_{nullptr};
};

}  // namespace hippo
