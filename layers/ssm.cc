// Diagonal SSM arithmetic. Complex products are written out on (re, im) pairs; dA^l is taken as
// exp(l * log dA) so that the kernel for every l is one vectorised expression. Every public function opens a
// NoAutocastScope: under bf16 autocast the parameters, kernels (powers of dA up to L) and states stay float32,
// as in the paper's training; only u and y carry the caller's dtype.
#include "layers/ssm.h"

#include <cmath>
#include <tuple>
#include <utility>

#include "kernels/ssm_fused.h"
#include "kernels/fftconv.h"
#include "layers/autocast.h"

namespace hippo {

void add_diag_ssm_options(OptionSchema& s, const std::string& default_discretization) {
  s.add_int("d_state", 64, "SSM state size N per channel (N/2 complex modes)", 2, 1024)
      .add_string("discretization", default_discretization, "bilinear (H3) or zoh (zero-order hold, S4D)",
                  {"bilinear", "zoh"})
      .add_float("dt_min", 1e-3, "smallest initial step size dt (log-uniform init)", 1e-6, 10)
      .add_float("dt_max", 1e-1, "largest initial step size dt", 1e-6, 10)
      .add_float("ssm_lr", 1e-3, "learning-rate cap for log_dt, A and B: min(ssm_lr, lr), no weight decay",
                 0, 1);
}

absl::Status validate_diag_ssm_options(const Options& o, const std::string& layer) {
  if (o.get_int("d_state") % 2 != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("option 'd_state' of layer '", layer, "' must be even, got ", o.get_int("d_state")));
  if (o.get_float("dt_min") > o.get_float("dt_max"))
    return absl::InvalidArgumentError(absl::StrCat("options of layer '", layer, "': dt_min must be <= dt_max"));
  return absl::OkStatus();
}

DiagSSMImpl::DiagSSMImpl(int64_t channels, const Options& o)
    : DiagSSMImpl(channels, o.get_int("d_state"), o.get_string("discretization"), o.get_float("dt_min"),
                  o.get_float("dt_max")) {}

DiagSSMImpl::DiagSSMImpl(int64_t channels, int64_t d_state, std::string discretization, double dt_min,
                         double dt_max)
    : channels_(channels), d_state_(d_state), discretization_(std::move(discretization)) {
  TORCH_CHECK(d_state % 2 == 0 && d_state >= 2, "diag SSM: d_state must be even and >= 2, got ", d_state);
  TORCH_CHECK(discretization_ == "bilinear" || discretization_ == "zoh",
              "diag SSM: discretization must be bilinear or zoh, got ", discretization_);
  TORCH_CHECK(dt_min > 0 && dt_max >= dt_min, "diag SSM: need 0 < dt_min <= dt_max");
  const int64_t H = channels, N2 = d_state / 2;
  torch::NoGradGuard no_grad;
  // C: complex standard normal, each part of variance 1/2.
  C_ = register_parameter("C", torch::randn({H, N2, 2}) * std::sqrt(0.5));
  log_dt_ = register_parameter(
      "log_dt", torch::rand({H}) * (std::log(dt_max) - std::log(dt_min)) + std::log(dt_min));
  auto B = torch::zeros({H, N2, 2});
  B.select(2, 0).fill_(1.0);
  B_ = register_parameter("B", B);
  log_A_real_ = register_parameter("log_A_real", torch::full({H, N2}, std::log(0.5)));
  A_imag_ = register_parameter("A_imag", (M_PI * torch::arange(N2, torch::kFloat)).repeat({H, 1}));
  D_ = register_parameter("D", torch::randn({H}));
}

DiagSSMImpl::Discrete DiagSSMImpl::discretize() const {
  NoAutocastScope fp32;
  auto dt = torch::exp(log_dt_).unsqueeze(-1);                   // (H, 1)
  auto A_re = -torch::clamp_min(torch::exp(log_A_real_), 1e-4);  // Re A <= -1e-4
  auto A_im = A_imag_;
  auto B_re = B_.select(2, 0), B_im = B_.select(2, 1);
  Discrete d;
  if (discretization_ == "bilinear") {
    // dA = (1 + dt A/2) / (1 - dt A/2); dB = B dt / (1 - dt A/2). Each shared term is computed once (every op
    // is a kernel launch on the GPU, and again in the backward).
    auto half_dt = dt * 0.5;
    auto ar = half_dt * A_re, ai = half_dt * A_im;
    auto p = 1 + ar, m = 1 - ar, ai2 = ai.square();
    auto num_abs2 = p.square() + ai2;
    auto den_abs2 = m.square() + ai2;
    d.log_dA_re = 0.5 * (torch::log(num_abs2) - torch::log(den_abs2));
    // arg(1 + a) - arg(1 - a); atan2 is odd in its first argument, so -atan2(-ai, m) = atan2(ai, m).
    d.log_dA_im = torch::atan2(ai, p) + torch::atan2(ai, m);
    // 1 / (1 - a) = (1 - ar + i ai) / |1 - a|^2
    auto inv_re = m / den_abs2, inv_im = ai / den_abs2;
    auto s_re = B_re * dt, s_im = B_im * dt;
    d.dB_re = s_re * inv_re - s_im * inv_im;
    d.dB_im = s_re * inv_im + s_im * inv_re;
  } else {
    // dA = exp(dt A); dB = B (exp(dt A) - 1) / A
    d.log_dA_re = dt * A_re;
    d.log_dA_im = dt * A_im;
    auto e = torch::exp(d.log_dA_re);
    auto em1_re = e * torch::cos(d.log_dA_im) - 1, em1_im = e * torch::sin(d.log_dA_im);
    auto A_abs2 = A_re.square() + A_im.square();
    // (em1 / A) = em1 * conj(A) / |A|^2
    auto q_re = (em1_re * A_re + em1_im * A_im) / A_abs2;
    auto q_im = (em1_im * A_re - em1_re * A_im) / A_abs2;
    d.dB_re = B_re * q_re - B_im * q_im;
    d.dB_im = B_re * q_im + B_im * q_re;
  }
  return d;
}

namespace {
// Powers of each mode z = exp(lr + i li) at the exponents z^r, r = 0..R-1, then z^(mR), m = 0..M-1, as real and
// imaginary parts, (H, N2, R + M): both levels of the Vandermonde product from one exp, cos and sin.
std::pair<torch::Tensor, torch::Tensor> powers(const torch::Tensor& lr, const torch::Tensor& li, int64_t R,
                                               int64_t M) {
  auto j = torch::cat({torch::arange(R, lr.options()), torch::arange(0, M * R, R, lr.options())});
  auto mag = torch::exp(lr.unsqueeze(-1) * j);
  auto ph = li.unsqueeze(-1) * j;
  return {mag * torch::cos(ph), mag * torch::sin(ph)};
}

// Block size R of the two-level Vandermonde product: l = m * R + r, z^l = z^(mR) z^r, so that only
// (L/R + R) powers per mode need exp/cos/sin and the rest is batched matrix products (BLAS).
int64_t block_size(int64_t L) { return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(L))))); }

// 2 Re(sum_n a[h, p, n] z_n^l) for l = 0..L-1, z_n = exp(lr + i li): a (re, im) each (H, P, N2), lr and li
// (H, N2) -> (H, P, L). Two levels, l = m R + r: b[h, p, m, n] = a z^(mR) elementwise, then one batched
// product with z^r over n.
torch::Tensor vandermonde(const torch::Tensor& a_re, const torch::Tensor& a_im, const torch::Tensor& lr,
                          const torch::Tensor& li, int64_t L) {
  const int64_t H = a_re.size(0), P = a_re.size(1), N2 = a_re.size(2);
  const int64_t R = block_size(L), M = (L + R - 1) / R;
  auto [pw_re, pw_im] = powers(lr, li, R, M);
  auto lo_re = pw_re.narrow(2, 0, R), lo_im = pw_im.narrow(2, 0, R);  // z^r, (H, N2, R)
  auto hr = pw_re.narrow(2, R, M).transpose(1, 2).unsqueeze(1);         // z^(mR), (H, 1, M, N2)
  auto hm = pw_im.narrow(2, R, M).transpose(1, 2).unsqueeze(1);
  auto ar = a_re.unsqueeze(2), ai = a_im.unsqueeze(2);  // (H, P, 1, N2)
  auto b_re = (ar * hr - ai * hm).reshape({H, P * M, N2});
  auto b_im = (ar * hm + ai * hr).reshape({H, P * M, N2});
  auto K = 2 * (torch::bmm(b_re, lo_re) - torch::bmm(b_im, lo_im));  // (H, P * M, R)
  return K.reshape({H, P, M * R}).narrow(2, 0, L);
}

// Whether P rows of Vandermonde products of length L (state passing's chunks) go through every power z^l, formed
// once (all_powers), rather than the two-level form per row: with many rows the two-level form's (H, P, M, N2)
// products and its (H, P, L) outputs move more memory. Floats written, roughly: two-level 6 H P M N2 + 4 H P L;
// all powers at most 8 H N2 L + H P L (the rule was set when the powers were built by four real products).
bool all_powers_pay(int64_t P, int64_t N2, int64_t L) {
  const int64_t R = block_size(L), M = (L + R - 1) / R;
  return 6 * P * M * N2 + 3 * P * L > 8 * N2 * L;
}

// The block size R of all_powers: the smallest divisor of L at least ceil(sqrt(L)), so that M R = L exactly and
// the reversed powers come from the two levels reversed; L itself when there is none (then M = 1).
int64_t exact_block_size(int64_t L) {
  for (int64_t R = block_size(L); R < L; ++R)
    if (L % R == 0) return R;
  return L;
}

// Every power z_n^l, l = 0..L-1, z_n = exp(lr + i li), lr and li (H, N2): {forward, reversed}, each (H, L, 2 N2)
// in lr's dtype with (Re, Im) interleaved per mode; forward[h, l] holds z^l, reversed[h, l] holds z^(L-1-l).
// Each is one complex product of the two levels, z^(mR + r) = z^(mR) z^r (reversed: both levels' factors in
// reverse order), written once.
std::pair<torch::Tensor, torch::Tensor> all_powers(const torch::Tensor& lr, const torch::Tensor& li, int64_t L) {
  const int64_t H = lr.size(0), N2 = lr.size(1), R = exact_block_size(L), M = L / R;
  auto [pw_re, pw_im] = powers(lr, li, R, M);                // (H, N2, R + M)
  auto pw = torch::complex(pw_re, pw_im).transpose(1, 2).contiguous();  // (H, R + M, N2)
  auto lo = pw.narrow(1, 0, R).unsqueeze(1);                 // z^r, (H, 1, R, N2)
  auto hi = pw.narrow(1, R, M).unsqueeze(2);                 // z^(mR), (H, M, 1, N2)
  auto interleaved = [&](const torch::Tensor& z) {
    return torch::view_as_real(z.reshape({H, L, N2})).reshape({H, L, 2 * N2});
  };
  return {interleaved(hi * lo), interleaved(hi.flip(1) * lo.flip(2))};
}

// 2 Re(sum_n a[h, p, n] z_n^l) by one batched product with the powers (all_powers' forward, (H, L, 2 N2)): a (re,
// im) each (H, P, N2) -> (H, P, L); 2 Re(a z) = 2 a_re Re z - 2 a_im Im z.
torch::Tensor vandermonde_all_powers(const torch::Tensor& a_re, const torch::Tensor& a_im, const torch::Tensor& V) {
  const int64_t H = a_re.size(0), P = a_re.size(1), N2 = a_re.size(2);
  auto A = torch::stack({a_re, -a_im}, 3).reshape({H, P, 2 * N2}) * 2;
  return torch::bmm(A, V.transpose(1, 2));
}
}  // namespace

torch::Tensor DiagSSMImpl::kernel(int64_t L) const {
  NoAutocastScope fp32;
  TORCH_CHECK(L >= 1, "diag SSM kernel: L must be >= 1, got ", L);
  // On a GPU the fused kernels (one launch forward, two backward, for the ~60 and ~130 of the expression below);
  // the expression is the reference, and the path of FftConvReferenceScope.
  if (!FftConvReferenceScope::active() && L <= int64_t{65535} * 1024 &&
      diag_ssm_kernel_fused_supported(log_dt_, log_A_real_, A_imag_, B_, C_))
    return diag_ssm_kernel_fused(log_dt_, log_A_real_, A_imag_, B_, C_, L, discretization_ == "bilinear");
  return kernel_of(discretize(), L);
}

torch::Tensor DiagSSMImpl::kernel_of(const Discrete& d, int64_t L) const {
  auto C_re = C_.select(2, 0), C_im = C_.select(2, 1);
  // C' = C * dB, (H, N2)
  auto Cp_re = C_re * d.dB_re - C_im * d.dB_im;
  auto Cp_im = C_re * d.dB_im + C_im * d.dB_re;
  return vandermonde(Cp_re.unsqueeze(1), Cp_im.unsqueeze(1), d.log_dA_re, d.log_dA_im, L).squeeze(1);
}

torch::Tensor DiagSSMImpl::forward(const torch::Tensor& u, const FftConvOptions& gates) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u.dim() == 3 && u.size(1) == channels_, "diag SSM: u must be (B, H=", channels_, ", L), got ",
              u.sizes());
  if (u.size(2) > single_pass_len_ && !FftConvReferenceScope::active())
    return forward_state_passing(u, gates, chunk_len_for(u.size(2)));
  return fftconv(u, kernel(u.size(2)), D_, gates);
}

void DiagSSMImpl::set_chunk_len(int64_t chunk_len) {
  TORCH_CHECK(chunk_len >= 0, "diag SSM: chunk_len must be >= 1 (or 0: the default for each L), got ", chunk_len);
  chunk_len_ = chunk_len;
}

void DiagSSMImpl::set_single_pass_len(int64_t single_pass_len) {
  TORCH_CHECK(single_pass_len >= 1, "diag SSM: single_pass_len must be >= 1, got ", single_pass_len);
  single_pass_len_ = single_pass_len;
}

namespace {
// (B, H, L) -> (B * nc, H, C), row b * nc + c holding positions [c C, (c + 1) C) of row b, zero past L.
torch::Tensor to_chunks(const torch::Tensor& t, int64_t nc, int64_t C) {
  const int64_t B = t.size(0), H = t.size(1), L = t.size(2);
  auto p = nc * C > L ? torch::constant_pad_nd(t, {0, nc * C - L}) : t;
  return p.reshape({B, H, nc, C}).permute({0, 2, 1, 3}).reshape({B * nc, H, C});
}
}  // namespace

torch::Tensor DiagSSMImpl::forward_state_passing(const torch::Tensor& u, const FftConvOptions& gates,
                                                 int64_t C) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u.dim() == 3 && u.size(1) == channels_, "diag SSM: u must be (B, H=", channels_, ", L), got ",
              u.sizes());
  TORCH_CHECK(C >= 1, "diag SSM state passing: chunk_len must be >= 1, got ", C);
  const int64_t B = u.size(0), H = channels_, L = u.size(2);
  if (L <= C) return fftconv(u, kernel(L), D_, gates);
  for (const auto* g : {&gates.v, &gates.q})
    TORCH_CHECK(!g->has_value() || (*g)->sizes() == u.sizes(),
                "diag SSM state passing: gates v and q must have u's shape ", u.sizes(), ", got ",
                (*g)->sizes());
  TORCH_CHECK(!gates.dropout_mask || gates.dropout_mask->sizes() == torch::IntArrayRef({B, H}),
              "diag SSM state passing: dropout_mask must be (B=", B, ", H=", H, "), got ",
              gates.dropout_mask->sizes());
  const int64_t nc = (L + C - 1) / C, N2 = d_state_ / 2;
  const auto pt = C_.scalar_type();
  // GELU is not linear: with it the incoming state's part joins the pre-activation outside fftconv, and the
  // activation, mask and q follow it here. Without it q and mask distribute over the sum and stay fused.
  const bool fuse_output = !gates.gelu;
  const auto uc = to_chunks(u, nc, C);
  FftConvOptions inner;
  torch::Tensor vc, qc, mask;
  if (gates.v) inner.v = vc = to_chunks(*gates.v, nc, C);
  if (gates.q) qc = to_chunks(*gates.q, nc, C);
  if (gates.dropout_mask) mask = *gates.dropout_mask;
  if (fuse_output) {
    if (qc.defined()) inner.q = qc;
    // Row b * nc + c gets mask[b]; expand + reshape rather than repeat_interleave, which on LibTorch 1.13 copies
    // its repeat count host to device and reads the output size back (a host synchronisation per call).
    if (mask.defined()) inner.dropout_mask = mask.unsqueeze(1).expand({B, nc, H}).reshape({B * nc, H});
  }
  // Every chunk from a zero state, in one call: (B * nc, H, C) in u's dtype.
  // The discretisation once for the whole call (kernel, chunk states and the incoming-state terms share it).
  const auto d = discretize();
  auto y = fftconv(uc, kernel_of(d, C), D_, inner).reshape({B, nc, H, C});

  // The state after each chunk from a zero state, (B, nc, H, N2) re/im, in the parameters' dtype.
  auto w = vc.defined() ? uc.to(pt) * vc.to(pt) : uc;
  // With many chunk rows (all_powers_pay on B (nc - 1) rows) every power z^l and z^(C-1-l), l < C, is formed once
  // and serves a product over all chunks: the chunks' final states (below) and the incoming-state terms (further
  // down). Otherwise the two-level forms.
  const bool use_all_powers = all_powers_pay(B * (nc - 1), N2, C);
  torch::Tensor V, V_rev;  // (H, C, 2 N2): z^l and z^(C-1-l), (Re, Im) interleaved
  torch::Tensor x_re, x_im;
  if (use_all_powers) {
    std::tie(V, V_rev) = all_powers(d.log_dA_re, d.log_dA_im, C);
    // s[h, row, n] = sum_l w[row, h, l] z_n^(C-1-l): one batched product of the chunks (rows of w, read in place
    // through a transposed view) with the reversed powers; x = dB s.
    auto s = torch::bmm(w.to(pt).transpose(0, 1), V_rev).reshape({H, B * nc, N2, 2});  // (H, B * nc, N2, 2)
    auto s_re = s.select(3, 0), s_im = s.select(3, 1);
    auto dB_re = d.dB_re.unsqueeze(1), dB_im = d.dB_im.unsqueeze(1);
    auto to_bnc = [&](const torch::Tensor& t) { return t.reshape({H, B, nc, N2}).permute({1, 2, 0, 3}); };
    x_re = to_bnc(s_re * dB_re - s_im * dB_im);
    x_im = to_bnc(s_re * dB_im + s_im * dB_re);
  } else {
    auto st = state_after_of(d, w, {}).reshape({B, nc, H, N2, 2});
    x_re = st.select(4, 0), x_im = st.select(4, 1);
  }
  // Inclusive scan of x_c = P x_{c-1} + s_c with P = dA^C (elementwise), Hillis-Steele: after the step of
  // offset d, x_c sums the 2d newest terms, each P^(c - c') s_c'.
  for (int64_t off = 1; off < nc; off *= 2) {
    const double e = static_cast<double>(C * off);
    auto mag = torch::exp(d.log_dA_re * e), ph = d.log_dA_im * e;
    auto p_re = mag * torch::cos(ph), p_im = mag * torch::sin(ph);
    auto prev_re = x_re.narrow(1, 0, nc - off), prev_im = x_im.narrow(1, 0, nc - off);
    x_re = torch::cat(
        {x_re.narrow(1, 0, off), x_re.narrow(1, off, nc - off) + p_re * prev_re - p_im * prev_im}, 1);
    x_im = torch::cat(
        {x_im.narrow(1, 0, off), x_im.narrow(1, off, nc - off) + p_re * prev_im + p_im * prev_re}, 1);
  }
  // Chunk c >= 1 starts from x_in = x_{c-1}: position t of the chunk gets 2 Re(sum_n C_n dA_n^(t+1) x_in[n]),
  // a Vandermonde product with coefficients a = C dA x_in, (H, B * (nc - 1), N2).
  auto in_re = x_re.narrow(1, 0, nc - 1), in_im = x_im.narrow(1, 0, nc - 1);  // (B, nc - 1, H, N2)
  auto mag = torch::exp(d.log_dA_re);
  auto dA_re = mag * torch::cos(d.log_dA_im), dA_im = mag * torch::sin(d.log_dA_im);
  auto C_re = C_.select(2, 0), C_im = C_.select(2, 1);
  auto g_re = C_re * dA_re - C_im * dA_im, g_im = C_re * dA_im + C_im * dA_re;  // (H, N2)
  auto a_re = g_re * in_re - g_im * in_im, a_im = g_re * in_im + g_im * in_re;
  if (fuse_output && mask.defined()) {
    // The mask is per (b, h): it scales the coefficients (small) rather than the (B, nc - 1, H, C) terms.
    const auto m = mask.to(pt).reshape({B, 1, H, 1});
    a_re = a_re * m, a_im = a_im * m;
  }
  auto arrange = [&](const torch::Tensor& t) {
    return t.permute({2, 0, 1, 3}).reshape({H, B * (nc - 1), N2});
  };
  auto add = (use_all_powers ? vandermonde_all_powers(arrange(a_re), arrange(a_im), V)
                             : vandermonde(arrange(a_re), arrange(a_im), d.log_dA_re, d.log_dA_im, C))
                 .reshape({H, B, nc - 1, C})
                 .permute({1, 2, 0, 3});  // (B, nc - 1, H, C)

  auto chunks_of = [&](const torch::Tensor& t, int64_t first, int64_t n) {
    return t.reshape({B, nc, H, C}).narrow(1, first, n);
  };
  if (fuse_output) {
    if (qc.defined()) add = add * chunks_of(qc, 1, nc - 1).to(pt);
    // In place into the chunks' outputs, in u's dtype: the sum is formed in the wider type and rounded once, as
    // (rest.to(pt) + add).to(u's dtype) would, without the float copies of every chunk and the concatenation.
    y.narrow(1, 1, nc - 1).add_(add);
  } else {
    // y holds conv + D w (with v) of every chunk; the activation, mask and q go over the whole sum.
    auto rest = y.narrow(1, 1, nc - 1).to(pt);
    auto z = torch::cat({y.narrow(1, 0, 1).to(pt), rest + add}, 1);
    z = internal::gelu_exact(z);
    if (mask.defined()) z = z * mask.to(pt).reshape({B, 1, H, 1});
    if (qc.defined()) z = z * chunks_of(qc, 0, nc).to(pt);
    y = z.to(u.scalar_type());
  }
  return y.permute({0, 2, 1, 3}).reshape({B, H, nc * C}).narrow(2, 0, L);
}

torch::Tensor DiagSSMImpl::initial_state(int64_t batch) const {
  return torch::zeros({batch, channels_, d_state_ / 2, 2}, C_.options());
}

torch::Tensor DiagSSMImpl::step(const torch::Tensor& u_t, torch::Tensor& state) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u_t.dim() == 2 && u_t.size(1) == channels_, "diag SSM step: u_t must be (B, H=", channels_,
              "), got ", u_t.sizes());
  // Complex products on the state's (re, im) pairs as whole-tensor ops (a decode step is a few kernel launches,
  // not one per real part): with x' = (x_im, x_re), dA x = dA_a x + dA_b x' where dA_a = (dA_re, dA_re) and
  // dA_b = (-dA_im, dA_im); 2 Re(C x) = sum over (re, im) of C2 x with C2 = 2 (C_re, -C_im).
  torch::Tensor dA_a, dA_b, dB, C2;
  const bool cacheable = !torch::GradMode::is_enabled();
  std::vector<uint32_t> versions;
  if (cacheable)
    for (const auto* p : {&log_dt_, &log_A_real_, &A_imag_, &B_, &C_}) versions.push_back(p->_version());
  if (cacheable && versions == step_cache_.versions && step_cache_.dA_a.device() == C_.device() &&
      step_cache_.dA_a.scalar_type() == C_.scalar_type()) {
    dA_a = step_cache_.dA_a, dA_b = step_cache_.dA_b, dB = step_cache_.dB, C2 = step_cache_.C2;
  } else {
    auto d = discretize();
    auto mag = torch::exp(d.log_dA_re);
    auto dA_re = mag * torch::cos(d.log_dA_im), dA_im = mag * torch::sin(d.log_dA_im);
    dA_a = torch::stack({dA_re, dA_re}, 2);
    dA_b = torch::stack({-dA_im, dA_im}, 2);
    dB = torch::stack({d.dB_re, d.dB_im}, 2);
    C2 = torch::stack({C_.select(2, 0), -C_.select(2, 1)}, 2) * 2;
    if (cacheable) step_cache_ = {versions, dA_a, dA_b, dB, C2};
  }
  auto u = u_t.to(C_.scalar_type());                                       // (B, H)
  state = dA_a * state + dA_b * state.flip(3) + dB * u.unsqueeze(-1).unsqueeze(-1);  // (B, H, N2, 2)
  auto y = (C2 * state).sum({2, 3}) + D_ * u;
  return y.to(u_t.scalar_type());
}

torch::Tensor DiagSSMImpl::state_after(const torch::Tensor& u, const torch::Tensor& state0) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u.dim() == 3 && u.size(1) == channels_, "diag SSM state_after: u must be (B, H=", channels_,
              ", L), got ", u.sizes());
  return state_after_of(discretize(), u, state0);
}

torch::Tensor DiagSSMImpl::state_after_of(const Discrete& d, const torch::Tensor& u,
                                          const torch::Tensor& state0) const {
  const int64_t L = u.size(2), B = u.size(0), H = channels_;
  // s[b, h, n] = sum_l u[b, h, l] dA_n^(L-1-l) = sum_j w[j] dA^j with w = u reversed; j = m * R + r (see kernel()).
  const int64_t R = block_size(L), M = (L + R - 1) / R;
  auto w = u.to(C_.scalar_type()).flip(2);
  if (M * R > L) w = torch::constant_pad_nd(w, {0, M * R - L});
  auto W = w.reshape({B, H, M, R}).permute({1, 0, 2, 3}).reshape({H, B * M, R});  // (H, B*M, R)
  auto [pw_re, pw_im] = powers(d.log_dA_re, d.log_dA_im, R, M);  // z^r then z^(mR), (H, N2, R + M)
  const int64_t N2 = pw_re.size(1);
  // inner[h, b, m, n] = sum_r W[h, b, m, r] z_n^r
  auto in_re = torch::bmm(W, pw_re.narrow(2, 0, R).transpose(1, 2)).reshape({H, B, M, N2});
  auto in_im = torch::bmm(W, pw_im.narrow(2, 0, R).transpose(1, 2)).reshape({H, B, M, N2});
  // s[b, h, n] = sum_m inner[h, b, m, n] z_n^(mR)
  auto hr = pw_re.narrow(2, R, M).transpose(1, 2).unsqueeze(1);  // (H, 1, M, N2)
  auto hm = pw_im.narrow(2, R, M).transpose(1, 2).unsqueeze(1);
  auto s_re = (in_re * hr - in_im * hm).sum(2).transpose(0, 1);  // (B, H, N2)
  auto s_im = (in_re * hm + in_im * hr).sum(2).transpose(0, 1);
  auto x_re = s_re * d.dB_re - s_im * d.dB_im;
  auto x_im = s_re * d.dB_im + s_im * d.dB_re;
  if (state0.defined()) {
    auto mL = torch::exp(d.log_dA_re * L), pL = d.log_dA_im * L;
    auto aL_re = mL * torch::cos(pL), aL_im = mL * torch::sin(pL);
    auto x0_re = state0.select(3, 0), x0_im = state0.select(3, 1);
    x_re = x_re + aL_re * x0_re - aL_im * x0_im;
    x_im = x_im + aL_re * x0_im + aL_im * x0_re;
  }
  return torch::stack({x_re, x_im}, 3);
}

ShiftSSMImpl::ShiftSSMImpl(int64_t channels, int64_t d_state) : channels_(channels), d_state_(d_state) {
  TORCH_CHECK(d_state >= 1, "shift SSM: d_state must be >= 1, got ", d_state);
  torch::NoGradGuard no_grad;
  auto B = torch::zeros({channels, d_state});
  B.select(1, 0).fill_(1.0);
  B_ = register_parameter("B", B);
  const double bound = 1.0 / std::sqrt(static_cast<double>(d_state));
  C_ = register_parameter("C", torch::rand({channels, d_state}) * (2 * bound) - bound);
  D_ = register_parameter("D", torch::randn({channels}));
}

torch::Tensor ShiftSSMImpl::kernel() const {
  NoAutocastScope fp32;
  // On a GPU one launch (one backward) for the expression's unfold, product and sum (and unfold_backward).
  if (!FftConvReferenceScope::active() && shift_ssm_kernel_fused_supported(B_, C_)) return shift_ssm_kernel_fused(B_, C_);
  // k[h, j] = sum_i B[h, i] C[h, i + j] in one expression (a per-tap host loop was 2 ops per tap forward and
  // about ten backward): windows[h, j, i] = C[h, i + j], C zero-padded past N (an unfold view, no copy).
  const int64_t N = d_state_;
  auto windows = torch::constant_pad_nd(C_, {0, N - 1}).unfold(1, N, 1);  // (H, N, N)
  return (windows * B_.unsqueeze(1)).sum(2);
}

torch::Tensor ShiftSSMImpl::forward(const torch::Tensor& u) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u.dim() == 3 && u.size(1) == channels_, "shift SSM: u must be (B, H=", channels_, ", L), got ",
              u.sizes());
  auto k = kernel();
  const int64_t L = u.size(2);
  if (k.size(1) > L) k = k.narrow(1, 0, L);
  return fftconv(u, k, D_);
}

torch::Tensor ShiftSSMImpl::initial_state(int64_t batch) const {
  return torch::zeros({batch, channels_, d_state_}, C_.options());
}

torch::Tensor ShiftSSMImpl::step(const torch::Tensor& u_t, torch::Tensor& state) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u_t.dim() == 2 && u_t.size(1) == channels_, "shift SSM step: u_t must be (B, H=", channels_,
              "), got ", u_t.sizes());
  auto u = u_t.to(C_.scalar_type());
  // Shift down by one (a zero enters at the top) and add B u_t.
  state = torch::constant_pad_nd(state.narrow(2, 0, d_state_ - 1), {1, 0}) + B_ * u.unsqueeze(-1);
  return ((C_ * state).sum(-1) + D_ * u).to(u_t.scalar_type());
}

torch::Tensor ShiftSSMImpl::state_after(const torch::Tensor& u, const torch::Tensor& state0) const {
  NoAutocastScope fp32;
  TORCH_CHECK(u.dim() == 3 && u.size(1) == channels_, "shift SSM state_after: u must be (B, H=", channels_,
              ", L), got ", u.sizes());
  const int64_t L = u.size(2), N = d_state_;
  // x[n] = sum_{s <= n} B[n - s] u_{L-1-s}: the input s steps back, pushed s places down. With the last N inputs
  // in order, last[m] = u_{L-N+m} (zero before the start), and windows[h, n, m] = B[h, n + m - (N - 1)] (B
  // zero-padded in front), x[n] = sum_m windows[n, m] last[m]: one batched product instead of a loop over s.
  auto uu = u.to(C_.scalar_type());
  auto last = L >= N ? uu.narrow(2, L - N, N) : torch::constant_pad_nd(uu, {N - L, 0});  // (B, H, N)
  auto windows = torch::constant_pad_nd(B_, {N - 1, 0}).unfold(1, N, 1);                 // (H, N, N)
  auto x = torch::matmul(windows, last.unsqueeze(-1)).squeeze(-1);                        // (B, H, N)
  if (state0.defined() && L < N) x = x + torch::constant_pad_nd(state0.narrow(2, 0, N - L), {L, 0});
  return x;
}

}  // namespace hippo
