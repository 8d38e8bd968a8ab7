// The residual stack of H3.md 5 and its initialisation.
#include "layers/model.h"

#include <cmath>
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
  ln2_ = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.d_model}).eps(1e-5)));
  fc1_ = register_module("fc1", torch::nn::Linear(c.d_model, c.mlp_ratio * c.d_model));
  fc2_ = register_module("fc2", torch::nn::Linear(c.mlp_ratio * c.d_model, c.d_model));
  drop_ = register_module("drop", torch::nn::Dropout(c.resid_dropout));
}

torch::Tensor BlockImpl::mlp(const torch::Tensor& x) {
  return fc2_->forward(torch::gelu(fc1_->forward(x), "tanh"));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x) {
  auto h = x + drop_->forward(mixer_->forward(ln1_->forward(x)));
  return h + drop_->forward(mlp(ln2_->forward(h)));
}

torch::Tensor BlockImpl::step(const torch::Tensor& x_t, MixerState& state) {
  auto h = x_t + mixer_->step(ln1_->forward(x_t), state);
  return h + mlp(ln2_->forward(h));
}

torch::Tensor BlockImpl::forward_with_state(const torch::Tensor& x, MixerState& state) {
  auto n = ln1_->forward(x);
  state = mixer_->state_after(n);
  auto h = x + mixer_->forward(n);
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
