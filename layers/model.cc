// The residual stack of H3.md 5 and its initialisation.
#include "layers/model.h"

#include <cmath>
#include <limits>
#include <set>

#include <absl/strings/match.h>

namespace hippo {

BlockImpl::BlockImpl(const ModelConfig& c, int64_t layer_idx) {
  const auto& name = c.schedule.at(layer_idx);
  const LayerEntry* entry = value_or_throw(LayerRegistry::global().find(name, "layer"));
  MixerArgs args;
  args.d_model = c.d_model;
  args.layer_idx = layer_idx;
  args.n_layer = static_cast<int64_t>(c.schedule.size());
  args.max_seq_len = c.max_seq_len;
  auto it = c.layer_options.find(name);
  args.options = it != c.layer_options.end() ? it->second
                                             : value_or_throw(resolve_options(entry->schema, {}, "layer " + name));
  mixer_ = register_module("mixer", entry->factory(args));
  ln1_ = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(1e-5)));
  TORCH_CHECK(c.mlp_ratio >= 0, "model: mlp_ratio must be >= 0, got ", c.mlp_ratio);
  if (c.mlp_ratio > 0) {  // 0: no MLP half (the block is x += mixer(LN(x)) only)
    ln2_ = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(1e-5)));
    fc1_ = register_module("fc1", torch::nn::Linear(c.d_model, c.mlp_ratio * c.d_model));
    fc2_ = register_module("fc2", torch::nn::Linear(c.mlp_ratio * c.d_model, c.d_model));
  }
  drop_ = register_module("drop", torch::nn::Dropout(c.resid_dropout));
}

torch::Tensor BlockImpl::mlp(const torch::Tensor& x) {
  return linear(fc2_, torch::gelu(linear(fc1_, x), "tanh"));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  auto h = x + drop_->forward(mixer_->forward(ln1_->forward(x)));
  if (!fc1_) return h;
  return h + drop_->forward(mlp(ln2_->forward(h)));
}

torch::Tensor BlockImpl::step(const torch::Tensor& x_t, MixerState& state) {
  auto h = x_t + mixer_->step(ln1_->forward(x_t), state);
  if (!fc1_) return h;
  return h + mlp(ln2_->forward(h));
}

torch::Tensor BlockImpl::forward_with_state(const torch::Tensor& x, MixerState& state) {
  auto h = x + mixer_->forward_with_state(ln1_->forward(x), state);
  if (!fc1_) return h;
  return h + mlp(ln2_->forward(h));
}

LanguageModelImpl::LanguageModelImpl(const ModelConfig& c) : config_(c) {
  TORCH_CHECK(c.vocab_size > 0 && c.d_model > 0 && !c.schedule.empty(),
              "model: need vocab_size > 0, d_model > 0 and at least one layer");
  embed_ = register_module("embed", torch::nn::Embedding(c.vocab_size, c.d_model));
  bool positions = false;
  for (size_t i = 0; i < c.schedule.size(); ++i) {
    blocks_.push_back(register_module("block" + std::to_string(i), Block(c, static_cast<int64_t>(i))));
    positions |= blocks_.back()->mixer_->needs_position_embedding();
  }
  if (positions) {
    TORCH_CHECK(c.max_seq_len > 0, "model: a mixer needs position embeddings but max_seq_len is 0");
    pos_embed_ = register_module("pos_embed", torch::nn::Embedding(c.max_seq_len, c.d_model));
  }
  ln_f_ = register_module("ln_f", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(1e-5)));
  drop_ = register_module("drop", torch::nn::Dropout(c.embed_dropout));

  // Initialisation of H3.md 5. SSM modules are skipped: their parameters are not Linear/Embedding weights.
  torch::NoGradGuard no_grad;
  const double out_std = 0.02 / std::sqrt(2.0 * static_cast<double>(c.schedule.size()));
  for (auto& item : named_modules("", /*include_self=*/false)) {
    auto* m = item.value().get();
    if (auto* lin = dynamic_cast<torch::nn::LinearImpl*>(m)) {
      const bool rescale = absl::EndsWith(item.key(), "out_proj") || absl::EndsWith(item.key(), "fc2");
      lin->weight.normal_(0.0, rescale ? out_std : 0.02);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = dynamic_cast<torch::nn::EmbeddingImpl*>(m)) {
      emb->weight.normal_(0.0, 0.02);
    }
  }
}

torch::Tensor LanguageModelImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "model: tokens must be (B, L), got ", tokens.sizes());
  auto x = embed_->forward(tokens);
  if (pos_embed_) {
    const int64_t L = tokens.size(1);
    TORCH_CHECK(L <= config_.max_seq_len, "model: sequence of ", L, " exceeds max_seq_len ", config_.max_seq_len);
    x = x + pos_embed_->forward(torch::arange(L, tokens.options()));
  }
  x = drop_->forward(x);
  for (auto& b : blocks_) x = b->forward(x);
  x = ln_f_->forward(x);
  return torch::matmul(x, embed_->weight.t());  // tied output projection
}

bool LanguageModelImpl::can_decode() const {
  for (const auto& b : blocks_)
    if (!b->mixer_->can_step()) return false;
  return true;
}

torch::Tensor LanguageModelImpl::prefill(const torch::Tensor& prompt, DecodeState& state) {
  TORCH_CHECK(prompt.dim() == 2 && prompt.size(1) >= 1, "prefill: prompt must be (B, P) with P >= 1, got ",
              prompt.sizes());
  TORCH_CHECK(can_decode(), "prefill: a mixer of this model cannot decode step by step");
  const int64_t P = prompt.size(1);
  auto x = embed_->forward(prompt);
  if (pos_embed_) {
    TORCH_CHECK(P <= config_.max_seq_len, "prefill: prompt of ", P, " tokens exceeds max_seq_len ",
                config_.max_seq_len, " of this model's position embeddings");
    x = x + pos_embed_->forward(torch::arange(P, prompt.options()));
  }
  x = drop_->forward(x);
  state.layers.assign(blocks_.size(), MixerState{});
  for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i]->forward_with_state(x, state.layers[i]);
  state.pos = P;
  x = ln_f_->forward(x.select(1, P - 1));
  return torch::matmul(x, embed_->weight.t());
}

torch::Tensor LanguageModelImpl::decode_step(const torch::Tensor& token, DecodeState& state) {
  TORCH_CHECK(token.dim() == 1, "decode_step: token must be (B), got ", token.sizes());
  TORCH_CHECK(state.layers.size() == blocks_.size(), "decode_step: state has ", state.layers.size(),
              " layers, the model ", blocks_.size(), " (call prefill first)");
  auto x = embed_->forward(token);
  if (pos_embed_) {
    TORCH_CHECK(state.pos < config_.max_seq_len, "decode_step: position ", state.pos,
                " is past max_seq_len ", config_.max_seq_len, " of this model's position embeddings");
    x = x + pos_embed_->weight[state.pos];
  }
  for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i]->step(x, state.layers[i]);
  ++state.pos;
  return torch::matmul(ln_f_->forward(x), embed_->weight.t());
}

torch::Tensor LanguageModelImpl::generate(const torch::Tensor& prompt, int64_t max_new_tokens,
                                          const SamplingOptions& s) {
  TORCH_CHECK(max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  TORCH_CHECK(s.temperature >= 0, "generate: temperature must be >= 0");
  TORCH_CHECK(s.top_k >= 0, "generate: top_k must be >= 0");
  torch::NoGradGuard no_grad;
  eval();
  auto gen = at::detail::createCPUGenerator(s.seed);
  auto pick = [&](const torch::Tensor& logits) {
    if (s.temperature == 0) return logits.argmax(-1);
    auto l = logits.to(torch::kCPU, torch::kFloat64) / s.temperature;
    if (s.top_k > 0 && s.top_k < l.size(-1)) {
      auto kth = std::get<0>(l.topk(s.top_k, -1)).select(-1, s.top_k - 1).unsqueeze(-1);
      l = l.masked_fill(l < kth, -std::numeric_limits<double>::infinity());
    }
    return torch::multinomial(torch::softmax(l, -1), 1, false, gen).squeeze(-1).to(logits.device());
  };
  DecodeState state;
  std::vector<torch::Tensor> out = {prompt};
  if (max_new_tokens == 0) return prompt;
  auto next = pick(prefill(prompt, state));
  out.push_back(next.unsqueeze(1));
  for (int64_t t = 1; t < max_new_tokens; ++t) {
    next = pick(decode_step(next, state));
    out.push_back(next.unsqueeze(1));
  }
  return torch::cat(out, 1);
}

LanguageModelImpl::ParamGroups LanguageModelImpl::param_groups() {
  ParamGroups g;
  std::set<const void*> ssm;
  bool first = true;
  for (auto& b : blocks_) {
    auto ps = b->mixer_->ssm_parameters();
    if (ps.empty()) continue;
    g.ssm_lr = first ? b->mixer_->ssm_lr() : std::min(g.ssm_lr, b->mixer_->ssm_lr());
    first = false;
    for (auto& p : ps) {
      ssm.insert(p.unsafeGetTensorImpl());
      g.ssm.push_back(p);
    }
  }
  for (auto& p : parameters()) {
    if (ssm.count(p.unsafeGetTensorImpl())) continue;
    (p.dim() >= 2 ? g.decay : g.no_decay).push_back(p);
  }
  return g;
}

int64_t LanguageModelImpl::param_count() {
  int64_t n = 0;
  for (auto& p : parameters()) n += p.numel();
  return n;
}

int64_t LanguageModelImpl::state_size(int64_t seq_len) const {
  int64_t total = 0;
  for (const auto& name : config_.schedule) {
    const LayerEntry* e = value_or_throw(LayerRegistry::global().find(name, "layer"));
    total += e->state_size(config_.layer_options.at(name), config_.d_model, seq_len);
  }
  return total;
}

}  // namespace hippo
