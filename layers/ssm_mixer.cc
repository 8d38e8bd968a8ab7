// Mixers "shift_ssm" and "diag_ssm".
#include "layers/ssm_mixer.h"

#include "kernels/transpose.h"
#include "layers/projection.h"

namespace hippo {

ShiftSSMMixerImpl::ShiftSSMMixerImpl(const MixerArgs& a) : RecurrentMixerImpl(a.options) {
  ssm_ = register_module("ssm", ShiftSSM(a.d_model, a.options.get_int("d_state")));
  out_proj_ = register_module("out_proj", torch::nn::Linear(a.d_model, a.d_model));
}
torch::Tensor ShiftSSMMixerImpl::forward(const torch::Tensor& x) {
  return linear_from_rows(out_proj_, ssm_->forward(transpose_contiguous(x)));
}
MixerState ShiftSSMMixerImpl::initial_state(int64_t batch) const { return {ssm_->initial_state(batch)}; }
torch::Tensor ShiftSSMMixerImpl::step(const torch::Tensor& x_t, MixerState& state) {
  return linear(out_proj_, ssm_->step(x_t, state.at(0)));
}
MixerState ShiftSSMMixerImpl::state_after(const torch::Tensor& x) { return {ssm_->state_after(x.transpose(1, 2))}; }

DiagSSMMixerImpl::DiagSSMMixerImpl(const MixerArgs& a) : RecurrentMixerImpl(a.options) {
  ssm_ = register_module("ssm", DiagSSM(a.d_model, a.options));
  out_proj_ = register_module("out_proj", torch::nn::Linear(a.d_model, a.d_model));
}
torch::Tensor DiagSSMMixerImpl::forward(const torch::Tensor& x) {
  return linear_from_rows(out_proj_, ssm_->forward(transpose_contiguous(x)));
}
MixerState DiagSSMMixerImpl::initial_state(int64_t batch) const { return {ssm_->initial_state(batch)}; }
torch::Tensor DiagSSMMixerImpl::step(const torch::Tensor& x_t, MixerState& state) {
  return linear(out_proj_, ssm_->step(x_t, state.at(0)));
}
MixerState DiagSSMMixerImpl::state_after(const torch::Tensor& x) { return {ssm_->state_after(x.transpose(1, 2))}; }

namespace {
LayerEntry shift_entry() {
  LayerEntry e;
  e.name = "shift_ssm";
  e.doc = "shift SSM per channel (H3.md 2.2: a learned causal filter of d_state taps) + D skip, then Linear(D, D)";
  e.schema.add_int("d_state", 64, "filter taps N (the state holds the last N inputs)", 1, 4096)
      .add_float("ssm_lr", 1e-3, "learning-rate cap for B: min(ssm_lr, lr), no weight decay", 0, 1);
  e.recurrent = true;
  e.state_formula = "d_model * d_state";
  e.state_size = [](const Options& o, int64_t d, int64_t) { return d * o.get_int("d_state"); };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<ShiftSSMMixerImpl>(a); };
  return e;
}
LayerEntry diag_entry() {
  LayerEntry e;
  e.name = "diag_ssm";
  e.doc = "diagonal SSM per channel (H3.md 2.1, S4D-Lin init) + D skip, then Linear(D, D)";
  add_diag_ssm_options(e.schema, "bilinear");
  e.recurrent = true;
  e.state_formula = "d_model * d_state  (d_state/2 complex modes per channel)";
  e.state_size = [](const Options& o, int64_t d, int64_t) { return d * o.get_int("d_state"); };
  e.validate = [](const Options& o, int64_t) { return validate_diag_ssm_options(o, "diag_ssm"); };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<DiagSSMMixerImpl>(a); };
  return e;
}
const Registrar<LayerEntry> kShift(shift_entry());
const Registrar<LayerEntry> kDiag(diag_entry());
}  // namespace

}  // namespace hippo
