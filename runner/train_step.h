// The arithmetic of one training step, shared by the trainer's loop (runner/trainer.cc) and its tests: the
// forward pass in the run's precision (train.precision), the masked cross-entropy, and gradient accumulation
// over micro-batches (train.grad_accum).
#pragma once

#include <torch/torch.h>

#include <string>

#include "layers/model.h"

namespace hippo {

// Whether train.precision `precision` means bf16 autocast on `device`: "fp32" -> false (any device), "bf16" ->
// true (CUDA only). Raises StatusError naming train.precision, the device and the accepted values:
// kInvalidArgument for another value, kFailedPrecondition for bf16 on a device that is not CUDA.
bool use_bf16(const std::string& precision, const torch::Device& device);

// Logits (B, L, V) in float32 of `tokens` (B, L) int64. With `bf16`, model->forward runs under bf16 autocast on
// the tokens' device (layers/autocast.h; the SSM parameters, kernels and states stay float32) and the logits are
// upcast, so that every loss is computed in float32. Raises as model->forward.
torch::Tensor forward_logits(LanguageModel& model, const torch::Tensor& tokens, bool bf16);

// Cross-entropy in nats of each position, (B * L) float32, of logits (B, L, V) float32 against targets (B, L) int64.
torch::Tensor token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

// Forward and backward of one optimiser step on the batch (inputs, targets: (B, L) int64; loss_mask: (B, L),
// bool or float 0/1) in `grad_accum` micro-batches of ceil(B / grad_accum) examples (fewer when B is smaller),
// one after another so that only one micro-batch's activations live at a time. Gradients are added into the
// parameters' .grad (zero them first); each micro-batch's masked loss sum is divided by the masked-token count of
// the whole batch, so the accumulated gradient is that of the full batch's masked-token mean loss. Returns that
// loss: a detached 0-dim float32 tensor on the batch's device, not read back to the host (no device sync).
// Raises c10::Error if grad_accum < 1 or the shapes disagree.
torch::Tensor accumulate_gradients(LanguageModel& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                   const torch::Tensor& loss_mask, int64_t grad_accum, bool bf16);

}  // namespace hippo
