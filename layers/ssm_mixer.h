// The two SSM kernels as mixers of their own (H3.md 2.1, 2.2): "shift_ssm" and "diag_ssm". Each channel of
// x (B, L, D) goes through its own SSM with D skip; a Linear(D, D) output map then mixes channels (the SSM alone
// is depthwise). Both are recurrent.
#pragma once

#include "layers/mixer.h"
#include "layers/ssm.h"

namespace hippo {

class ShiftSSMMixerImpl : public RecurrentMixerImpl {
 public:
  explicit ShiftSSMMixerImpl(const MixerArgs& args);
  torch::Tensor forward(const torch::Tensor& x) override;
  // State: {shift state (B, D, d_state)}.
  MixerState initial_state(int64_t batch) const override;
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state) override;
  MixerState state_after(const torch::Tensor& x) override;
  std::vector<torch::Tensor> ssm_parameters() override { return ssm_->ssm_parameters(); }

  ShiftSSM ssm_{nullptr};
  torch::nn::Linear out_proj_{nullptr};
};

class DiagSSMMixerImpl : public RecurrentMixerImpl {
 public:
  explicit DiagSSMMixerImpl(const MixerArgs& args);
  torch::Tensor forward(const torch::Tensor& x) override;
  // State: {diagonal SSM state (B, D, d_state/2, 2)}.
  MixerState initial_state(int64_t batch) const override;
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state) override;
  MixerState state_after(const torch::Tensor& x) override;
  std::vector<torch::Tensor> ssm_parameters() override { return ssm_->ssm_parameters(); }

  DiagSSM ssm_{nullptr};
  torch::nn::Linear out_proj_{nullptr};
};

}  // namespace hippo
