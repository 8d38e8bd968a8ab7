// One training step: precision, loss and gradient accumulation.
#include "runner/train_step.h"

#include <absl/strings/str_cat.h>

#include "core/status.h"
#include "layers/autocast.h"

namespace hippo {

bool use_bf16(const std::string& precision, const torch::Device& device) {
  if (precision == "fp32") return false;
  if (precision != "bf16")
    throw StatusError(absl::InvalidArgumentError(
        absl::StrCat("train.precision '", precision, "' is not known; accepted: fp32 (any device), bf16 (cuda)")));
  if (!device.is_cuda())
    throw StatusError(absl::FailedPreconditionError(
        absl::StrCat("train.precision 'bf16' needs a CUDA device, but this run is on ", device.str(),
                     "; accepted: fp32 (any device), bf16 (cuda)")));
  return true;
}

torch::Tensor forward_logits(LanguageModel& model, const torch::Tensor& tokens, bool bf16) {
  if (!bf16) return model->forward(tokens);
  AutocastScope autocast(tokens.device().type(), torch::kBFloat16);
  return model->forward(tokens).to(torch::kFloat);
}

torch::Tensor token_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return torch::nn::functional::cross_entropy(
      logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}),
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
}

torch::Tensor accumulate_gradients(LanguageModel& model, const torch::Tensor& inputs, const torch::Tensor& targets,
                                   const torch::Tensor& loss_mask, int64_t grad_accum, bool bf16) {
  TORCH_CHECK(grad_accum >= 1, "accumulate_gradients: grad_accum must be >= 1, got ", grad_accum);
  TORCH_CHECK(inputs.dim() == 2 && inputs.size(0) >= 1 && targets.sizes() == inputs.sizes() && loss_mask.sizes() == inputs.sizes(),
              "accumulate_gradients: inputs, targets and loss_mask must be one (B, L) shape with B >= 1, got ", inputs.sizes(),
              ", ", targets.sizes(), ", ", loss_mask.sizes());
  const int64_t B = inputs.size(0), micro = (B + grad_accum - 1) / grad_accum;
  const auto tokens = loss_mask.sum().clamp_min(1);  // of the whole batch: the mean is over all its tokens
  torch::Tensor loss;
  for (int64_t i = 0; i < B; i += micro) {
    const int64_t b = std::min(micro, B - i);
    auto m = loss_mask.narrow(0, i, b);
    auto ce = token_cross_entropy(forward_logits(model, inputs.narrow(0, i, b), bf16), targets.narrow(0, i, b));
    auto part = (ce * m.reshape({-1})).sum() / tokens;
    part.backward();
    loss = loss.defined() ? loss + part.detach() : part.detach();
  }
  return loss;
}

}  // namespace hippo
