// The H3 layer (H3.md 3): q, k, v projections; a shift SSM on k; a diagonal SSM on k*v; output q*y, then W_o.
// head_dim > 1 is the multi-head form: per head of width d_h, the outer product kv[i, j] = k[i] v[j] runs
// through d_h*d_h diagonal-SSM channels and out[j] = sum_i q[i] y[i, j].
//
// Channel order (one definition for every path): the diagonal SSM's channel of head h and pair (i, j) is
// h*d_h*d_h + i*d_h + j; the output channel of head h and j is h*d_h + j (heads concatenated).
#pragma once

#include "layers/mixer.h"
#include "layers/ssm.h"

namespace hippo {

class H3Impl : public RecurrentMixerImpl {
 public:
  explicit H3Impl(const MixerArgs& args);
  // x: (B, L, D) -> (B, L, D).
  torch::Tensor forward(const torch::Tensor& x) override;
  // State: {shift state (B, D, shift_d_state), diagonal state (B, D*head_dim, d_state/2, 2)}.
  MixerState initial_state(int64_t batch) const override;
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state) override;
  MixerState state_after(const torch::Tensor& x) override;
  torch::Tensor forward_with_state(const torch::Tensor& x, MixerState& state) override;
  std::vector<torch::Tensor> ssm_parameters() override;

  int64_t head_dim() const { return head_dim_; }

  torch::nn::Linear q_proj_{nullptr}, k_proj_{nullptr}, v_proj_{nullptr}, out_proj_{nullptr};
  ShiftSSM shift_{nullptr};
  DiagSSM diag_{nullptr};

 private:
  // k, v: (B, D, ...) with D = H*d_h -> kv (B, D*d_h, ...) in the documented channel order.
  torch::Tensor outer(const torch::Tensor& k, const torch::Tensor& v) const;
  // q: (B, D, ...), y: (B, D*d_h, ...) -> (B, D, ...): out[h, j] = sum_i q[h, i] y[h, i, j].
  torch::Tensor contract(const torch::Tensor& q, const torch::Tensor& y) const;
  // The diagonal SSM, gate and output projection on the projected q, shifted k and v, each (B, D, L).
  torch::Tensor mix(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
  int64_t d_model_, head_dim_;
};

}  // namespace hippo
