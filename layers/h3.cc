// Mixer "h3". With head_dim 1 the shift output, gate and D skip run fused through fftconv's v and q gates
// (also chunk by chunk when the diagonal SSM passes state, layers/ssm.h).
#include "layers/h3.h"

#include "kernels/fftconv.h"
#include "layers/autocast.h"
#include "layers/projection.h"

namespace hippo {

H3Impl::H3Impl(const MixerArgs& a)
    : RecurrentMixerImpl(a.options), d_model_(a.d_model), head_dim_(a.options.get_int("head_dim")) {
  TORCH_CHECK(d_model_ % head_dim_ == 0, "h3: d_model ", d_model_, " not divisible by head_dim ", head_dim_);
  q_proj_ = register_module("q_proj", torch::nn::Linear(d_model_, d_model_));
  k_proj_ = register_module("k_proj", torch::nn::Linear(d_model_, d_model_));
  v_proj_ = register_module("v_proj", torch::nn::Linear(d_model_, d_model_));
  shift_ = register_module("shift", ShiftSSM(d_model_, a.options.get_int("shift_d_state")));
  diag_ = register_module("diag", DiagSSM(d_model_ * head_dim_, a.options));
  out_proj_ = register_module("out_proj", torch::nn::Linear(d_model_, d_model_));
}

std::vector<torch::Tensor> H3Impl::ssm_parameters() {
  auto p = shift_->ssm_parameters();
  for (auto& t : diag_->ssm_parameters()) p.push_back(t);
  return p;
}

torch::Tensor H3Impl::outer(const torch::Tensor& k, const torch::Tensor& v) const {
  const int64_t B = k.size(0), H = d_model_ / head_dim_, d = head_dim_;
  std::vector<int64_t> rest(k.sizes().begin() + 2, k.sizes().end());
  std::vector<int64_t> ks = {B, H, d, 1}, vs = {B, H, 1, d}, out = {B, H * d * d};
  ks.insert(ks.end(), rest.begin(), rest.end());
  vs.insert(vs.end(), rest.begin(), rest.end());
  out.insert(out.end(), rest.begin(), rest.end());
  return (k.reshape(ks) * v.reshape(vs)).reshape(out);
}

torch::Tensor H3Impl::contract(const torch::Tensor& q, const torch::Tensor& y) const {
  const int64_t B = q.size(0), H = d_model_ / head_dim_, d = head_dim_;
  std::vector<int64_t> rest(q.sizes().begin() + 2, q.sizes().end());
  std::vector<int64_t> qs = {B, H, d, 1}, ys = {B, H, d, d}, out = {B, d_model_};
  qs.insert(qs.end(), rest.begin(), rest.end());
  ys.insert(ys.end(), rest.begin(), rest.end());
  out.insert(out.end(), rest.begin(), rest.end());
  return (q.reshape(qs) * y.reshape(ys)).sum(2).reshape(out);
}

torch::Tensor H3Impl::forward(const torch::Tensor& x) {
  // (B, L, D) -> (B, D, L), the FFT convolution's rows, by batched GEMMs on the GPU (layers/projection.h).
  // q, k and v as one node: the backward adds their gradients of x inside the GEMMs.
  const auto qkv = linear_to_rows_many({q_proj_, k_proj_, v_proj_}, x);
  return mix(x, qkv[0], shift_->forward(qkv[1]), qkv[2]);
}

torch::Tensor H3Impl::forward_with_state(const torch::Tensor& x, MixerState& state) {
  const auto qkv = linear_to_rows_many({q_proj_, k_proj_, v_proj_}, x);
  const auto &q = qkv[0], &k_in = qkv[1], &v = qkv[2];
  auto k = shift_->forward(k_in);
  state = {shift_->state_after(k_in), diag_->state_after(head_dim_ == 1 ? k * v : outer(k, v))};
  return mix(x, q, k, v);
}

torch::Tensor H3Impl::mix(const torch::Tensor& x, const torch::Tensor& q, const torch::Tensor& k,
                          const torch::Tensor& v) {
  torch::Tensor y;
  if (head_dim_ == 1) {
    NoAutocastScope fp32;  // the convolution in float32 (fftconv's contract), whatever k, v and q carry
    FftConvOptions o;
    o.v = v;
    o.q = q;
    y = diag_->forward(k, o);  // q * (conv(k*v) + D*(k*v)), by state passing past single_pass_len()
  } else {
    y = contract(q, diag_->forward(outer(k, v)));
  }
  return linear_from_rows(out_proj_, y);
}

MixerState H3Impl::initial_state(int64_t batch) const { return {shift_->initial_state(batch), diag_->initial_state(batch)}; }

torch::Tensor H3Impl::step(const torch::Tensor& x_t, MixerState& state) {
  auto q = linear(q_proj_, x_t);
  auto k = shift_->step(linear(k_proj_, x_t), state.at(0));
  auto v = linear(v_proj_, x_t);
  auto y = diag_->step(head_dim_ == 1 ? k * v : outer(k, v), state.at(1));
  return linear(out_proj_, head_dim_ == 1 ? q * y : contract(q, y));
}

MixerState H3Impl::state_after(const torch::Tensor& x) {
  auto k_in = linear(k_proj_, x).transpose(1, 2);
  auto k = shift_->forward(k_in);
  auto v = linear(v_proj_, x).transpose(1, 2);
  return {shift_->state_after(k_in), diag_->state_after(head_dim_ == 1 ? k * v : outer(k, v))};
}

namespace {
LayerEntry make_entry() {
  LayerEntry e;
  e.name = "h3";
  e.doc = "H3 (H3.md 3): q, k, v projections, shift SSM on k, diagonal SSM on k*v (outer product per head when "
          "head_dim > 1), output q*y through W_o";
  add_diag_ssm_options(e.schema, "bilinear");
  e.schema.add_int("shift_d_state", 64, "taps of the shift SSM on k", 1, 4096)
      .add_int("head_dim", 1, "head width d_h; d_model must be divisible by it (1 = every released H3)", 1, 256);
  e.recurrent = true;
  e.state_formula = "d_model * shift_d_state + d_model * head_dim * d_state";
  e.state_size = [](const Options& o, int64_t d, int64_t) {
    return d * o.get_int("shift_d_state") + d * o.get_int("head_dim") * o.get_int("d_state");
  };
  e.validate = [](const Options& o, int64_t d) -> absl::Status {
    HIPPO_RETURN_IF_ERROR(validate_diag_ssm_options(o, "h3"));
    if (d % o.get_int("head_dim") != 0)
      return absl::InvalidArgumentError(absl::StrCat("layer 'h3': d_model ", d, " is not divisible by head_dim ",
                                                     o.get_int("head_dim")));
    return absl::OkStatus();
  };
  e.factory = [](const MixerArgs& a) -> Mixer { return std::make_shared<H3Impl>(a); };
  return e;
}
const Registrar<LayerEntry> kRegistered(make_entry());
}  // namespace

}  // namespace hippo
