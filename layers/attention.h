// Causal multi-head softmax attention (H3.md 4), with an optional learned absolute position embedding added
// by the model or an optional rotary position embedding on queries and keys, and key-value-cache decoding.
#pragma once

#include "layers/mixer.h"

namespace hippo {

// Rotary position embedding (RoPE, Su et al. 2021): x (..., L, d), d even; the channel pair (i, i + d/2) at
// position offset + t is rotated by the angle (offset + t) * 10000^(-2i/d). Dot products of rotated queries and
// keys then depend on their positions only through the difference.
torch::Tensor rotary(const torch::Tensor& x, int64_t offset);

class AttentionImpl : public MixerImpl {
 public:
  explicit AttentionImpl(const MixerArgs& args);
  // x: (B, L, D) -> (B, L, D); heads of width D / n_heads; scores scaled by 1/sqrt(head_dim).
  torch::Tensor forward(const torch::Tensor& x) override;
  bool can_step() const override { return true; }
  // State: {keys (B, n_heads, t, head_dim), values (B, n_heads, t, head_dim)}: the cache grows by one
  // position per step.
  MixerState initial_state(int64_t batch) const override;
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state) override;
  MixerState state_after(const torch::Tensor& x) override;
  torch::Tensor forward_with_state(const torch::Tensor& x, MixerState& state) override;
  bool needs_position_embedding() const override { return pos_emb_; }

  torch::nn::Linear qkv_{nullptr}, out_proj_{nullptr};

 private:
  // (B, L, D) -> q, k, v each (B, n_heads, L, head_dim); with rotary, q and k rotated for positions offset..
  std::array<torch::Tensor, 3> project(const torch::Tensor& x, int64_t offset = 0);
  int64_t d_model_, n_heads_, head_dim_;
  bool pos_emb_, rotary_;
  double dropout_;
};

}  // namespace hippo
