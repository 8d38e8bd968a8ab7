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
      // Left out of stored configs when false (runner/run_config.cc), so absent means off.
      rotary_(a.options.json().contains("rotary") && a.options.get_bool("rotary")),
      dropout_(a.options.get_float("dropout")) {
  TORCH_CHECK(d_model_ % n_heads_ == 0, "attention: d_model ", d_model_, " not divisible by n_heads ", n_heads_);
  TORCH_CHECK(!rotary_ || head_dim_ % 2 == 0, "attention: rotary needs an even head width, got ", head_dim_);
  qkv_ = register_module("qkv", torch::nn::Linear(d_model_, 3 * d_model_));
  out_proj_ = register_module("out_proj", torch::nn::Linear(d_model_, d_model_));
}

torch::Tensor rotary(const torch::Tensor& x, int64_t offset) {
  const int64_t L = x.size(-2), d = x.size(-1), half = d / 2;
  TORCH_CHECK(d % 2 == 0, "rotary: the last dimension must be even, got ", d);
  auto opts = x.options().dtype(torch::kFloat64);
  auto inv_freq = torch::pow(10000.0, torch::arange(half, opts) * (-2.0 / static_cast<double>(d)));
  auto angle = torch::outer(torch::arange(offset, offset + L, opts), inv_freq);  // (L, d/2)
  auto cos = angle.cos().to(x.dtype()), sin = angle.sin().to(x.dtype());
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return torch::cat({x1 * cos - x2 * sin, x1 * sin + x2 * cos}, -1);
}

std::array<torch::Tensor, 3> AttentionImpl::project(const torch::Tensor& x, int64_t offset) {
  const int64_t B = x.size(0), L = x.size(1);
  auto qkv = linear(qkv_, x).view({B, L, 3, n_heads_, head_dim_}).permute({2, 0, 3, 1, 4});
  if (!rotary_) return {qkv[0], qkv[1], qkv[2]};
  return {rotary(qkv[0], offset), rotary(qkv[1], offset), qkv[2]};
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
  return linear(out_proj_, y.transpose(1, 2).reshape({B, L, d_model_}));
}

// Decoding state: {keys, values, length}. Keys and values are (B, n_heads, capacity, head_dim) buffers whose first
// `length` positions are filled (length: a CPU int64 scalar); step() writes in place and doubles the capacity
// when it is full, so a decoding step copies one position, not the whole cache.
namespace {
constexpr int64_t kCacheHeadroom = 128;

MixerState make_cache(const torch::Tensor& k, const torch::Tensor& v, int64_t capacity) {
  const int64_t L = k.size(2);
  auto kb = torch::empty({k.size(0), k.size(1), capacity, k.size(3)}, k.options());
  auto vb = torch::empty_like(kb);
  kb.narrow(2, 0, L).copy_(k);
  vb.narrow(2, 0, L).copy_(v);
  return {kb, vb, torch::tensor(L, torch::kInt64)};
}
}  // namespace

MixerState AttentionImpl::initial_state(int64_t batch) const {
  auto opts = qkv_->weight.options();
  auto empty = torch::zeros({batch, n_heads_, 0, head_dim_}, opts);
  return make_cache(empty, empty, kCacheHeadroom);
}

torch::Tensor AttentionImpl::step(const torch::Tensor& x_t, MixerState& state) {
  const int64_t B = x_t.size(0);
  TORCH_CHECK(state.size() == 3, "attention step: state must be {keys, values, length}");
  const int64_t len = state[2].item<int64_t>();
  auto [q, k, v] = project(x_t.unsqueeze(1), len);
  if (len == state[0].size(2)) {  // full: double the capacity
    state = make_cache(state[0], state[1], std::max<int64_t>(2 * len, kCacheHeadroom));
  }
  state[0].narrow(2, len, 1).copy_(k);
  state[1].narrow(2, len, 1).copy_(v);
  state[2].fill_(len + 1);
  auto y = attend(q, state[0].narrow(2, 0, len + 1), state[1].narrow(2, 0, len + 1), 0.0, false);
  return linear(out_proj_, y.transpose(1, 2).reshape({B, d_model_}));
}

MixerState AttentionImpl::state_after(const torch::Tensor& x) {
  auto [q, k, v] = project(x);
  return make_cache(k, v, x.size(1) + kCacheHeadroom);
}

torch::Tensor AttentionImpl::forward_with_state(const torch::Tensor& x, MixerState& state) {
  const int64_t B = x.size(0), L = x.size(1);
  auto [q, k, v] = project(x);
  state = make_cache(k, v, L + kCacheHeadroom);
  auto y = attend(q, k, v, dropout_, is_training());
  return linear(out_proj_, y.transpose(1, 2).reshape({B, L, d_model_}));
}

namespace {
LayerEntry make_entry() {
  LayerEntry e;
  e.name = "attention";
  e.doc = "causal multi-head softmax attention (H3.md 4); decodes with a key-value cache";
  e.schema.add_int("n_heads", 1, "attention heads; d_model must be divisible by it", 1, 1024)
      .add_bool("pos_emb", false, "add learned absolute position embeddings at the model input")
      .add_bool("rotary", false,
                "rotary position embedding (RoPE) on queries and keys: scores depend on relative position; needs "
                "an even head width")
      .add_float("dropout", 0.0, "dropout on the attention probabilities", 0, 1);
  e.recurrent = false;
  e.state_formula = "2 * d_model * seq_len  (key-value cache, grows with the sequence)";
  e.state_size = [](const Options&, int64_t d_model, int64_t seq_len) { return 2 * d_model * seq_len; };
  e.validate = [](const Options& o, int64_t d_model) -> absl::Status {
    if (d_model % o.get_int("n_heads") != 0)
      return absl::InvalidArgumentError(absl::StrCat("layer 'attention': d_model ", d_model,
                                                     " is not divisible by n_heads ", o.get_int("n_heads")));
    if (o.json().contains("rotary") && o.get_bool("rotary") && (d_model / o.get_int("n_heads")) % 2 != 0)
      return absl::InvalidArgumentError(absl::StrCat("layer 'attention': rotary needs an even head width, got ",
                                                     d_model / o.get_int("n_heads")));
    return absl::OkStatus();
  };
  e.needs_position_embedding = [](const Options& o) { return o.get_bool("pos_emb"); };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<AttentionImpl>(a); };
  return e;
}
const Registrar<LayerEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
