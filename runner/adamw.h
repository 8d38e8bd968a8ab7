// A device-side AdamW (decoupled weight decay, H3.md 6.4's optimiser) whose learning rates, step count and
// bias corrections live in device tensors, so that a step issues no host synchronisation and can be captured
// in a CUDA graph (runner/graph_step.h); and gradient clipping by total L2 norm with the same property.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace hippo {

// One parameter group: its tensors, initial learning rate (changed per step with set_lr) and weight decay.
struct AdamWGroup {
  std::vector<torch::Tensor> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

// AdamW with the math of torch::optim::AdamW (LibTorch 1.13 and 2.x, amsgrad off): for each parameter p with
// gradient g, at step t (counted from 1, one count for the whole optimiser),
//   p *= 1 - lr * weight_decay
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
// The step count, each group's lr and every derived scalar are float64 0-dim tensors on the parameters'
// device; moments have each parameter's dtype and device. A parameter whose gradient is undefined is skipped
// (as torch::optim does); zero_grad zeroes gradients in place and never frees them, so that a captured graph
// keeps reading the same memory.
class DeviceAdamW {
 public:
  // groups: at least one, each with at least one parameter, all parameters on one device; lr >= 0,
  // weight_decay >= 0, betas in [0, 1), eps > 0. Throws c10::Error naming the bad value otherwise.
  DeviceAdamW(std::vector<AdamWGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);

  // One optimiser step on the current stream: no host synchronisation, so it may run inside a CUDA graph
  // capture. Under NoGradGuard internally.
  void step();
  // Zeroes every defined gradient in place (no host synchronisation; keeps the allocation).
  void zero_grad();
  // Writes `lr` (>= 0, finite) into group `group`'s device tensor with fill_: no host synchronisation; the
  // value is read by the next step() or graph replay on the same stream. Throws c10::Error for a bad group or
  // value.
  void set_lr(size_t group, double lr);

  size_t num_groups() const { return groups_.size(); }
  const std::vector<torch::Tensor>& params(size_t group) const;
  // Steps taken (reads the device tensor: synchronises; for tests and checkpoints).
  int64_t steps() const;

  // Writes the state (format version, step count, first and second moments per parameter) into `archive`.
  void save(torch::serialize::OutputArchive& archive) const;
  // Reads what save() wrote into this optimiser's existing state tensors (in place, so graphs stay valid).
  // Throws c10::Error when the archive is not a DeviceAdamW state (e.g. a checkpoint of torch::optim::AdamW
  // written by an older hippo) or its shapes do not match these parameters.
  void load(torch::serialize::InputArchive& archive);

 private:
  struct Group {
    std::vector<torch::Tensor> params, exp_avg, exp_avg_sq;
    torch::Tensor lr;  // float64, 0-dim, on the parameters' device
    double weight_decay = 0;
  };
  std::vector<Group> groups_;
  double beta1_, beta2_, eps_;
  torch::Tensor step_;  // float64, 0-dim: steps taken
};

// Clips the gradients of `params` (those with a defined gradient) to a total L2 norm of at most `max_norm` (>
// 0), scaling each by min(1, max_norm / (norm + 1e-6)) exactly as torch::nn::utils::clip_grad_norm_ does, but
// on the device: no host synchronisation. Returns the total norm before clipping as a 0-dim tensor of the
// gradients' dtype on their device (a CPU zero when no parameter has a gradient). Throws c10::Error unless
// max_norm is finite and > 0.
torch::Tensor clip_grad_norm_device(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace hippo
