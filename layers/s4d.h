// The S4D block (H3.md 4): a diagonal SSM per channel with D skip, then GELU, dropout, and an output map
// D -> 2D followed by a GLU back to D. The minimal S4D of the synthetics uses zero-order hold.
#pragma once

#include "layers/mixer.h"
#include "layers/ssm.h"

namespace hippo {

class S4DImpl : public RecurrentMixerImpl {
 public:
  explicit S4DImpl(const MixerArgs& args);
  // x: (B, L, D) -> (B, L, D).
  torch::Tensor forward(const torch::Tensor& x) override;
  // State: {ssm state (B, D, d_state/2, 2)}.
  MixerState initial_state(int64_t batch) const override;
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state) override;
  MixerState state_after(const torch::Tensor& x) override;
  std::vector<torch::Tensor> ssm_parameters() override { return ssm_->ssm_parameters(); }

  DiagSSM ssm_{nullptr};
  torch::nn::Linear out_proj_{nullptr};
  torch::nn::Dropout dropout_{nullptr};
};

}  // namespace hippo
