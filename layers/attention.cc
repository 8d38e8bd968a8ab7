// Attention mixer "attention". LibTorch 2.x runs the fused scaled_dot_product_attention; 1.13 the plain
// softmax(q k^T / sqrt(d)) v with a causal mask (same function).
#include "layers/attention.h"

#include <cmath>

namespace hippo {

AttentionImpl::AttentionImpl(const MixerArgs& a)
    : d_model_(a.d_model),
      n_heads_(a.options.get_int("n_heads")),
      head_dim_(a.d_model / a.options.get_int("n_heads")),
      pos_emb_(a.options.get_bool("pos_emb")),
      dropout_(a.options.get_float("dropout")) {
  TORCH_CHECK(d_model_ % n_heads_ == 0, "attention: d_model ", d_model_, " not divisible by n_heads ", n_heads_);
  qkv_ = register_module("qkv", torch::nn::Linear(d_model_, 3 * d_model_));
  out_proj_ = register_module("out_proj", torch::nn::Linear(d_model_, d_model_));
}

std::array<torch::Tensor, 3> AttentionImpl::project(const torch::Tensor& x) {
  const int64_t B = x.size(0), L = x.size(1);
  auto qkv = qkv_->forward(x).view({B, L, 3, n_heads_, head_dim_}).permute({2, 0, 3, 1, 4});
  return {qkv[0], qkv[1], qkv[2]};
}

namespace {
// q: (B, h, Lq, d), k/v: (B, h, Lk, d); causal with the queries aligned to the last Lq keys.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double dropout,
                     bool training) {
  const int64_t Lq = q.size(2), Lk = k.size(2);
#if TORCH_VERSION_MAJOR >= 2
  if (Lq == Lk || Lq == 1)
    return at::scaled_dot_product_attention(q, k, v, {}, training ? dropout : 0.0, /*is_causal=*/Lq == Lk);
#endif
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(-1)));
  if (Lq > 1) {
    auto mask = torch::ones({Lq, Lk}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
                    .triu(Lk - Lq + 1);
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  auto p = torch::softmax(scores, -1);
  if (training && dropout > 0) p = torch::dropout(p, dropout, true);
  return torch::matmul(p, v);
}
}  // namespace

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t B = x.size(0), L = x.size(1);
  auto [q, k, v] = project(x);
  auto y = attend(q, k, v, dropout_, is_training());
  return out_proj_->forward(y.transpose(1, 2).reshape({B, L, d_model_}));
}

MixerState AttentionImpl::initial_state(int64_t batch) const {
  auto opts = qkv_->weight.options();
  return {torch::zeros({batch, n_heads_, 0, head_dim_}, opts), torch::zeros({batch, n_heads_, 0, head_dim_}, opts)};
}

torch::Tensor AttentionImpl::step(const torch::Tensor& x_t, MixerState& state) {
  const int64_t B = x_t.size(0);
  auto [q, k, v] = project(x_t.unsqueeze(1));
  state.at(0) = torch::cat({state.at(0), k}, 2);
  state.at(1) = torch::cat({state.at(1), v}, 2);
  auto y = attend(q, state[0], state[1], 0.0, false);
  return out_proj_->forward(y.transpose(1, 2).reshape({B, d_model_}));
}

MixerState AttentionImpl::state_after(const torch::Tensor& x) {
  auto [q, k, v] = project(x);
  return {k.contiguous(), v.contiguous()};
}

namespace {
LayerEntry make_entry() {
  LayerEntry e;
  e.name = "attention";
  e.doc = "causal multi-head softmax attention (H3.md 4); decodes with a key-value cache";
  e.schema.add_int("n_heads", 1, "attention heads; d_model must be divisible by it", 1, 1024)
      .add_bool("pos_emb", false, "add learned absolute position embeddings at the model input")
      .add_float("dropout", 0.0, "dropout on the attention probabilities", 0, 1);
  e.recurrent = false;
  e.state_formula = "2 * d_model * seq_len  (key-value cache, grows with the sequence)";
  e.state_size = [](const Options&, int64_t d_model, int64_t seq_len) { return 2 * d_model * seq_len; };
  e.validate = [](const Options& o, int64_t d_model) -> absl::Status {
    if (d_model % o.get_int("n_heads") != 0)
      return absl::InvalidArgumentError(absl::StrCat("layer 'attention': d_model ", d_model,
                                                     " is not divisible by n_heads ", o.get_int("n_heads")));
    return absl::OkStatus();
  };
  e.needs_position_embedding = [](const Options& o) { return o.get_bool("pos_emb"); };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<AttentionImpl>(a); };
  return e;
}
const Registrar<LayerEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
