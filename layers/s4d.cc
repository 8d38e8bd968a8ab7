// S4D block and its registration as mixer "s4d".
#include "layers/s4d.h"

#include "kernels/transpose.h"

namespace hippo {

S4DImpl::S4DImpl(const MixerArgs& a) : RecurrentMixerImpl(a.options) {
  ssm_ = register_module("ssm", DiagSSM(a.d_model, a.options));
  out_proj_ = register_module("out_proj", torch::nn::Linear(a.d_model, 2 * a.d_model));
  dropout_ = register_module("dropout", torch::nn::Dropout(a.options.get_float("dropout")));
}

torch::Tensor S4DImpl::forward(const torch::Tensor& x) {
  auto y = transpose_contiguous(ssm_->forward(transpose_contiguous(x)));
  y = dropout_->forward(torch::gelu(y));
  return torch::glu(linear(out_proj_, y), -1);
}

MixerState S4DImpl::initial_state(int64_t batch) const { return {ssm_->initial_state(batch)}; }

torch::Tensor S4DImpl::step(const torch::Tensor& x_t, MixerState& state) {
  auto y = torch::gelu(ssm_->step(x_t, state.at(0)));
  return torch::glu(linear(out_proj_, y), -1);
}

MixerState S4DImpl::state_after(const torch::Tensor& x) { return {ssm_->state_after(x.transpose(1, 2))}; }

namespace {
LayerEntry make_entry() {
  LayerEntry e;
  e.name = "s4d";
  e.doc = "S4D block (H3.md 2.1, 4): diagonal SSM per channel (S4D-Lin init) + D skip, GELU, dropout, "
          "Linear(D, 2D), GLU";
  add_diag_ssm_options(e.schema, "zoh");
  e.schema.add_float("dropout", 0.0, "dropout after the GELU", 0, 1);
  e.recurrent = true;
  e.state_formula = "d_model * d_state  (d_state/2 complex modes per channel)";
  e.state_size = [](const Options& o, int64_t d_model, int64_t) { return d_model * o.get_int("d_state"); };
  e.validate = [](const Options& o, int64_t) { return validate_diag_ssm_options(o, "s4d"); };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<S4DImpl>(a); };
  return e;
}
const Registrar<LayerEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
