// Mixer "gss".
#include "layers/gss.h"

#include "kernels/transpose.h"

namespace hippo {

namespace {
// LayerNorm in its parameters' dtype. Under bf16 autocast v_proj gives bfloat16, which CUDA's autocast upcasts for
// layer_norm but LibTorch 1.13's CPU autocast does not (a dtype error); the SSM's input is float32 either way.
torch::Tensor norm_in_param_dtype(torch::nn::LayerNorm& norm, const torch::Tensor& x) {
  return norm->forward(x.to(norm->weight.scalar_type()));
}
}  // namespace

GSSImpl::GSSImpl(const MixerArgs& a) : RecurrentMixerImpl(a.options) {
  const int64_t D = a.d_model, E = a.options.get_int("expand") * D, S = a.options.get_int("d_ssm");
  u_proj_ = register_module("u_proj", torch::nn::Linear(D, E));
  v_proj_ = register_module("v_proj", torch::nn::Linear(D, S));
  norm_ = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({S}).eps(1e-5)));
  ssm_ = register_module("ssm", DiagSSM(S, a.options));
  g_proj_ = register_module("g_proj", torch::nn::Linear(S, E));
  out_proj_ = register_module("out_proj", torch::nn::Linear(E, D));
}

torch::Tensor GSSImpl::forward(const torch::Tensor& x) {
  auto u = torch::gelu(linear(u_proj_, x));
  auto v = norm_in_param_dtype(norm_, torch::gelu(linear(v_proj_, x)));
  v = transpose_contiguous(ssm_->forward(transpose_contiguous(v)));
  return linear(out_proj_, linear(g_proj_, v) * u);
}

MixerState GSSImpl::initial_state(int64_t batch) const { return {ssm_->initial_state(batch)}; }

torch::Tensor GSSImpl::step(const torch::Tensor& x_t, MixerState& state) {
  auto u = torch::gelu(linear(u_proj_, x_t));
  auto v = ssm_->step(norm_in_param_dtype(norm_, torch::gelu(linear(v_proj_, x_t))), state.at(0));
  return linear(out_proj_, linear(g_proj_, v) * u);
}

MixerState GSSImpl::state_after(const torch::Tensor& x) {
  auto v = norm_in_param_dtype(norm_, torch::gelu(linear(v_proj_, x)));
  return {ssm_->state_after(v.transpose(1, 2))};
}

namespace {
LayerEntry make_entry() {
  LayerEntry e;
  e.name = "gss";
  e.doc = "Gated State Spaces (H3.md 4): GELU(W_u x) [D -> expand*D] gated by W_g DiagSSM(LN(GELU(W_v x))) "
          "[D -> d_ssm -> expand*D], then W_o [expand*D -> D]; widths: expand 4, d_ssm 256 by default";
  add_diag_ssm_options(e.schema, "zoh");
  e.schema.add_int("expand", 4, "width of the gated branch as a multiple of d_model", 1, 64)
      .add_int("d_ssm", 256, "width of the SSM branch (channels of the diagonal SSM)", 1, 65536);
  e.recurrent = true;
  e.state_formula = "d_ssm * d_state";
  e.state_size = [](const Options& o, int64_t, int64_t) { return o.get_int("d_ssm") * o.get_int("d_state"); };
  e.validate = [](const Options& o, int64_t) { return validate_diag_ssm_options(o, "gss"); };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<GSSImpl>(a); };
  return e;
}
const Registrar<LayerEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
