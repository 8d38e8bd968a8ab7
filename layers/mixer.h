// The one interface of every sequence-mixing layer (attention, S4D, H3, ...) and the registry they join.
// A mixer maps (B, L, D) to (B, L, D) causally; recurrent mixers also decode one position at a time.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "core/options.h"
#include "core/registry.h"

namespace hippo {

// y = x W^T + b of a Linear for x (..., in_features) of any rank, through ATen's linear (torch::linear), which
// flattens a contiguous input to one matrix product with the bias fused (cuBLASLt's epilogue on the GPU).
// torch::nn::Linear's forward in LibTorch's C++ API computes a rank-3 input as a matmul and then a separate
// broadcast add: on the H200 a bf16 (4, 2048, 768) projection took a 17.7 us GEMM plus a 19 us add (ncu), where
// PyTorch 2.11's linear launched one 17.2 us GEMM with the bias. Same dtype rules as Linear (autocast included);
// under bf16 autocast a rank-3 result may differ from Linear::forward's by one bf16 unit (the bias is rounded to
// bf16 before it is added).
inline torch::Tensor linear(const torch::nn::Linear& l, const torch::Tensor& x) {
  return torch::linear(x, l->weight, l->bias);
}

// What a mixer is built from: the model width, its place in the stack and its validated options.
struct MixerArgs {
  int64_t d_model = 0;
  int64_t layer_idx = 0;    // 0-based index in the stack
  int64_t n_layer = 1;      // layers in the stack (for output-projection rescaling)
  int64_t max_seq_len = 0;  // longest sequence the model will see (position tables)
  Options options;
};

// Opaque per-mixer decoding state: a list of tensors whose meaning each mixer documents.
using MixerState = std::vector<torch::Tensor>;

class MixerImpl : public torch::nn::Module {
 public:
  ~MixerImpl() override = default;

  // x: (B, L, D) in the model's dtype -> (B, L, D). Causal: output t depends on inputs 0..t only.
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;

  // True when the mixer has a fixed-size recurrent state (an SSM); attention decodes with a growing
  // key-value cache and answers false while still supporting step().
  virtual bool recurrent() const { return false; }
  // True when initial_state/step/state_after are implemented.
  virtual bool can_step() const { return false; }

  // The decoding state before any input, for a batch of B sequences. Throws c10::Error if !can_step().
  virtual MixerState initial_state(int64_t batch) const;
  // x_t: (B, D) -> (B, D), advancing `state` by one position. Equals forward() on the whole sequence at
  // that position. Throws c10::Error if !can_step().
  virtual torch::Tensor step(const torch::Tensor& x_t, MixerState& state);
  // The state after the prompt x: (B, L, D) has been consumed, computed in parallel where the mixer allows
  // (the default runs step() over the prompt). Throws c10::Error if !can_step().
  virtual MixerState state_after(const torch::Tensor& x);
  // forward(x) and state_after(x) together (the prefill of generation); mixers override it to share the work
  // (projections, the shift SSM) between the two. Same contract as the two calls.
  virtual torch::Tensor forward_with_state(const torch::Tensor& x, MixerState& state);

  // Parameters that take the SSM optimiser rule (learning rate min(ssm_lr, lr), no weight decay;
  // H3.md 2.1): log_dt, A and B of every SSM inside.
  virtual std::vector<torch::Tensor> ssm_parameters() { return {}; }
  // The SSM learning-rate cap from this mixer's options (ignored when ssm_parameters() is empty).
  virtual double ssm_lr() const { return 1e-3; }
  // True when the model must add learned absolute position embeddings to its input.
  virtual bool needs_position_embedding() const { return false; }
};
using Mixer = std::shared_ptr<MixerImpl>;

// Base of the mixers with a fixed-size recurrent state and SSM parameters (s4d, h3, gss, shift_ssm,
// diag_ssm): they decode with step() and take the SSM learning-rate cap from their `ssm_lr` option.
class RecurrentMixerImpl : public MixerImpl {
 public:
  explicit RecurrentMixerImpl(const Options& options) : ssm_lr_(options.get_float("ssm_lr")) {}
  bool recurrent() const override { return true; }
  bool can_step() const override { return true; }
  double ssm_lr() const override { return ssm_lr_; }

 private:
  double ssm_lr_;
};

// A registered mixer: its options, traits and factory. `hippo layers` prints these.
struct LayerEntry {
  std::string name;
  std::string doc;  // one paragraph: what it is, paper section, widths chosen
  OptionSchema schema;
  bool recurrent = false;       // fixed-size recurrent state
  std::string state_formula;    // e.g. "d_model * d_state"
  // Recurrent state per sequence in real scalars (a complex number counts 2) for these options and width;
  // for attention, the key-value cache at seq_len positions.
  std::function<int64_t(const Options&, int64_t d_model, int64_t seq_len)> state_size;
  std::function<Mixer(const MixerArgs&)> factory;
  // Checks options against the model width before anything is built (e.g. d_model % n_heads); may be empty.
  std::function<absl::Status(const Options&, int64_t d_model)> validate;
  // True when, with these options, the model needs learned position embeddings for this layer (so it cannot run
  // on sequences longer than it was built for); empty means never. Must agree with the built mixer's
  // needs_position_embedding().
  std::function<bool(const Options&)> needs_position_embedding;
};
using LayerRegistry = Registry<LayerEntry>;

}  // namespace hippo
