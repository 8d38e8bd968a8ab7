// The model around the mixers (H3.md 5): token embedding (+ learned positions when a mixer asks), n_layer
// pre-norm residual blocks x += mixer(LN(x)); x += MLP(LN(x)) (left out when mlp_ratio is 0), final LayerNorm,
// output tied to the embedding.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "layers/mixer.h"

namespace hippo {

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 64;
  int64_t max_seq_len = 0;                       // for learned position embeddings
  std::vector<std::string> schedule;             // one registered mixer name per layer; n_layer = size
  std::map<std::string, Options> layer_options;  // validated options per mixer name in the schedule
  double embed_dropout = 0.1;                    // dropout on the embedding output
  double resid_dropout = 0.0;                    // dropout on each residual branch
  int64_t mlp_ratio = 4;                         // MLP width = mlp_ratio * d_model; 0: no MLP (mixer-only blocks)
};

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& c, int64_t layer_idx);
  torch::Tensor forward(const torch::Tensor& x);  // (B, L, D) -> (B, L, D)
  // One decoding step: x_t (B, D) -> (B, D).
  torch::Tensor step(const torch::Tensor& x_t, MixerState& state);
  // Runs the prompt x: (B, L, D) through forward and returns the output and the mixer state after it.
  torch::Tensor forward_with_state(const torch::Tensor& x, MixerState& state);
  torch::Tensor mlp(const torch::Tensor& x);  // only when the block has an MLP (fc1_ defined)

  Mixer mixer_;
  torch::nn::LayerNorm ln1_{nullptr}, ln2_{nullptr};
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};  // ln2_, fc1_, fc2_ null when mlp_ratio is 0
  torch::nn::Dropout drop_{nullptr};
};
TORCH_MODULE(Block);

// Decoding state of the whole stack: one MixerState per layer and the position of the next token.
struct DecodeState {
  std::vector<MixerState> layers;
  int64_t pos = 0;
};

// How generate() picks each new token.
struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax); > 0: sample from softmax(logits / temperature)
  int64_t top_k = 0;         // sample among the k most likely tokens only (0: all)
  uint64_t seed = 0;         // seed of the sampling generator (the model's weights are not touched)
};

class LanguageModelImpl : public torch::nn::Module {
 public:
  // Builds the stack; weights initialised as H3.md 5 (N(0, 0.02), biases 0, out_proj and fc2 rescaled by
  // 1/sqrt(2 n_layer)); SSM parameters keep their own initialisation. Throws c10::Error or StatusError on an
  // unknown mixer or invalid options (callers validate first through the registry).
  explicit LanguageModelImpl(const ModelConfig& config);

  // tokens: (B, L) int64 in [0, vocab_size), L <= max_seq_len when position embeddings are used.
  // Returns logits (B, L, vocab_size) in float32 (bfloat16 under bf16 autocast, layers/autocast.h).
  torch::Tensor forward(const torch::Tensor& tokens);

  // True when every mixer in the stack can decode step by step (can_step()).
  bool can_decode() const;

  // Recurrent decoding (H3.md 3, 8): the prompt (B, P) int64, P >= 1, runs through the parallel
  // (convolutional) form; `state` is filled with every layer's state after it. Returns the logits of the last
  // prompt position, (B, vocab_size) float. Throws c10::Error if a mixer cannot step, or if P exceeds
  // max_seq_len while position embeddings are used. Call in eval mode (no dropout) under NoGradGuard.
  torch::Tensor prefill(const torch::Tensor& prompt, DecodeState& state);
  // One decoding step: token (B) int64 at position state.pos -> logits (B, vocab_size), advancing `state`
  // (SSM layers through step(), attention through its key-value cache). Equals forward() on the whole
  // sequence at that position. Throws c10::Error past max_seq_len when position embeddings are used.
  torch::Tensor decode_step(const torch::Tensor& token, DecodeState& state);
  // prompt (B, P) int64 -> (B, P + max_new_tokens) int64: prefill, then max_new_tokens decoding steps, each
  // token chosen by `sampling`. Puts the model in eval mode and leaves it there. Throws as prefill/decode_step.
  torch::Tensor generate(const torch::Tensor& prompt, int64_t max_new_tokens, const SamplingOptions& sampling);

  // Parameters split for the optimiser: SSM (log_dt, A, B), decayed (matrices) and not decayed (biases,
  // norms, vectors). Disjoint; together every parameter.
  struct ParamGroups {
    std::vector<torch::Tensor> ssm, decay, no_decay;
    double ssm_lr = 1e-3;  // smallest ssm_lr cap among the mixers
  };
  ParamGroups param_groups();

  int64_t param_count();
  // Recurrent state in real scalars per sequence, summed over layers, for sequences of seq_len.
  int64_t state_size(int64_t seq_len) const;
  const ModelConfig& config() const { return config_; }
  std::vector<Block>& blocks() { return blocks_; }

  torch::nn::Embedding embed_{nullptr}, pos_embed_{nullptr};
  torch::nn::LayerNorm ln_f_{nullptr};
  torch::nn::Dropout drop_{nullptr};

 private:
  ModelConfig config_;
  std::vector<Block> blocks_;
};
TORCH_MODULE(LanguageModel);

}  // namespace hippo
