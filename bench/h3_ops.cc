// h3_ops: one H3 layer (head_dim 1, L <= single_pass_len) forward, forward+backward and one decode step, before and
// now, in one run: ATen operator calls (core/op_count.h) and median milliseconds, and the largest difference
// of outputs and gradients. "Before" is the layer as it was before issue 6's overhead work, rebuilt here from
// copies of the old shift-SSM kernel (a host loop over taps) and diagonal-SSM kernel (discretisation and
// Vandermonde product as separate real ops), on the same module's parameters; it lives only here, for this
// comparison. usage: h3_ops [--device cpu|cuda] [--batch 2] [--d-model 64] [--seq-len 256] [--dtype
// fp32|bf16] [--iters 30]
//               [--list 1 (every operator name with its count instead of the top 8)]
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/op_count.h"
#include "core/status.h"
#include "kernels/fftconv.h"
#include "layers/autocast.h"
#include "layers/h3.h"

namespace hippo {
namespace legacy {

torch::Tensor shift_kernel(const ShiftSSMImpl& s) {
  NoAutocastScope fp32;
  const int64_t N = s.d_state();
  std::vector<torch::Tensor> taps;
  for (int64_t j = 0; j < N; ++j)
    taps.push_back((s.B_.narrow(1, 0, N - j) * s.C_.narrow(1, j, N - j)).sum(1));
  return torch::stack(taps, 1);
}

torch::Tensor shift_forward(const ShiftSSMImpl& s, const torch::Tensor& u) {
  NoAutocastScope fp32;
  auto k = shift_kernel(s);
  if (k.size(1) > u.size(2)) k = k.narrow(1, 0, u.size(2));
  return fftconv(u, k, s.D_);
}

std::pair<torch::Tensor, torch::Tensor> powers(const torch::Tensor& lr, const torch::Tensor& li, int64_t n,
                                               int64_t stride) {
  auto j = torch::arange(n, lr.options()) * static_cast<double>(stride);
  auto mag = torch::exp(lr.unsqueeze(-1) * j);
  auto ph = li.unsqueeze(-1) * j;
  return {mag * torch::cos(ph), mag * torch::sin(ph)};
}

torch::Tensor diag_kernel(const DiagSSMImpl& m, int64_t L) {
  NoAutocastScope fp32;
  TORCH_CHECK(m.discretization() == "bilinear", "h3_ops: the legacy copy is of the bilinear path only");
  auto dt = torch::exp(m.log_dt_).unsqueeze(-1);
  auto A_re = -torch::clamp_min(torch::exp(m.log_A_real_), 1e-4);
  auto A_im = m.A_imag_;
  auto B_re = m.B_.select(2, 0), B_im = m.B_.select(2, 1);
  auto ar = dt * A_re * 0.5, ai = dt * A_im * 0.5;
  auto num_abs2 = (1 + ar).square() + ai.square();
  auto den_abs2 = (1 - ar).square() + ai.square();
  auto log_dA_re = 0.5 * (torch::log(num_abs2) - torch::log(den_abs2));
  auto log_dA_im = torch::atan2(ai, 1 + ar) - torch::atan2(-ai, 1 - ar);
  auto inv_re = (1 - ar) / den_abs2, inv_im = ai / den_abs2;
  auto s_re = B_re * dt, s_im = B_im * dt;
  auto dB_re = s_re * inv_re - s_im * inv_im;
  auto dB_im = s_re * inv_im + s_im * inv_re;
  auto C_re = m.C_.select(2, 0), C_im = m.C_.select(2, 1);
  auto a_re = (C_re * dB_re - C_im * dB_im).unsqueeze(1), a_im = (C_re * dB_im + C_im * dB_re).unsqueeze(1);
  const int64_t H = a_re.size(0), P = 1, N2 = a_re.size(2);
  const int64_t R = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(L)))));
  const int64_t M = (L + R - 1) / R;
  auto [lo_re, lo_im] = powers(log_dA_re, log_dA_im, R, 1);
  auto [hi_re, hi_im] = powers(log_dA_re, log_dA_im, M, R);
  auto hr = hi_re.transpose(1, 2).unsqueeze(1), hm = hi_im.transpose(1, 2).unsqueeze(1);
  auto ar2 = a_re.unsqueeze(2), ai2 = a_im.unsqueeze(2);
  auto b_re = (ar2 * hr - ai2 * hm).reshape({H, P * M, N2});
  auto b_im = (ar2 * hm + ai2 * hr).reshape({H, P * M, N2});
  auto K = 2 * (torch::bmm(b_re, lo_re) - torch::bmm(b_im, lo_im));
  return K.reshape({H, P, M * R}).narrow(2, 0, L).squeeze(1);
}

// The old H3Impl::forward for head_dim 1 and L <= single_pass_len (one fftconv each, gates fused).
torch::Tensor h3_forward(H3Impl& h, const torch::Tensor& x) {
  auto q = h.q_proj_->forward(x).transpose(1, 2);
  auto k = shift_forward(*h.shift_, h.k_proj_->forward(x).transpose(1, 2));
  auto v = h.v_proj_->forward(x).transpose(1, 2);
  torch::Tensor y;
  {
    NoAutocastScope fp32;
    FftConvOptions o;
    o.v = v;
    o.q = q;
    y = fftconv(k, diag_kernel(*h.diag_, k.size(2)), h.diag_->D_, o);
  }
  return h.out_proj_->forward(y.transpose(1, 2));
}

// The old decode step of H3 (head_dim 1) with the old shift and diagonal steps; dA and dB come precomputed,
// as the old step cached them while gradients were off.
struct StepCoefficients {
  torch::Tensor dA_re, dA_im, dB_re, dB_im;
};
StepCoefficients step_coefficients(const DiagSSMImpl& m) {
  auto d = m.discretize();
  auto mag = torch::exp(d.log_dA_re);
  return {mag * torch::cos(d.log_dA_im), mag * torch::sin(d.log_dA_im), d.dB_re, d.dB_im};
}
torch::Tensor h3_step(H3Impl& h, const StepCoefficients& c, const torch::Tensor& x_t, MixerState& state) {
  auto q = h.q_proj_->forward(x_t);
  torch::Tensor k;
  {
    NoAutocastScope fp32;
    const auto& s = *h.shift_;
    auto& st = state.at(0);
    auto u = h.k_proj_->forward(x_t).to(s.C_.scalar_type());
    const int64_t N = s.d_state();
    auto shifted = torch::cat({torch::zeros_like(st.narrow(2, 0, 1)), st.narrow(2, 0, N - 1)}, 2);
    st = shifted + s.B_ * u.unsqueeze(-1);
    k = ((s.C_ * st).sum(-1) + s.D_ * u).to(x_t.scalar_type());
  }
  auto v = h.v_proj_->forward(x_t);
  torch::Tensor y;
  {
    NoAutocastScope fp32;
    const auto& m = *h.diag_;
    auto& st = state.at(1);
    auto kv = k * v;
    auto u = kv.to(m.C_.scalar_type()).unsqueeze(-1);
    auto x_re = st.select(3, 0), x_im = st.select(3, 1);
    auto nx_re = c.dA_re * x_re - c.dA_im * x_im + c.dB_re * u;
    auto nx_im = c.dA_re * x_im + c.dA_im * x_re + c.dB_im * u;
    st = torch::stack({nx_re, nx_im}, 3);
    auto C_re = m.C_.select(2, 0), C_im = m.C_.select(2, 1);
    y = (2 * (C_re * nx_re - C_im * nx_im).sum(-1) + m.D_ * u.squeeze(-1)).to(kv.scalar_type());
  }
  return h.out_proj_->forward(q * y);
}

}  // namespace legacy

namespace {
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto d = (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
  return d / std::max(1e-30, b.to(torch::kDouble).abs().max().item<double>());
}

int run(int argc, char** argv) {
  std::string device_s = "cpu", dtype_s = "fp32";
  int64_t B = 2, D = 64, L = 256, iters = 30;
  bool list = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--list")
      list = v == "1";
    else if (k == "--device")
      device_s = v;
    else if (k == "--dtype")
      dtype_s = v;
    else if (k == "--batch")
      B = std::stoll(v);
    else if (k == "--d-model")
      D = std::stoll(v);
    else if (k == "--seq-len")
      L = std::stoll(v);
    else if (k == "--iters")
      iters = std::stoll(v);
    else {
      std::fprintf(
          stderr,
          "h3_ops: unknown flag %s (accepted: --device --dtype --batch --d-model --seq-len --iters --list)\n",
          k.c_str());
      return 2;
    }
  }
  const c10::Device device(device_s);
  const auto dtype = dtype_s == "bf16" ? torch::kBFloat16 : torch::kFloat;
  torch::manual_seed(0);
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("h3", "layer"));
  MixerArgs a;
  a.d_model = D;
  a.max_seq_len = L;
  a.options = value_or_throw(resolve_options(e->schema, Json{{"head_dim", 1}}, "h3"));
  H3Impl h3(a);
  TORCH_CHECK(L <= h3.diag_->single_pass_len(), "h3_ops: --seq-len must be <= the single-pass length ",
              h3.diag_->single_pass_len());
  h3.to(device, dtype);
  h3.shift_->to(torch::kFloat);
  h3.diag_->to(torch::kFloat);
  {
    torch::NoGradGuard ng;  // move B off e_1 so the shift kernel's sum is not trivial
    for (auto& p : h3.parameters()) p.add_(0.05 * torch::randn_like(p));
  }
  const auto opts = torch::TensorOptions().device(device);
  const auto x = torch::randn({B, L, D}, opts).to(dtype).requires_grad_(true);
  const auto dy = torch::randn({B, L, D}, opts).to(dtype);
  std::vector<torch::Tensor> wrt = {x};
  for (const auto& p : h3.parameters()) wrt.push_back(p);
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };

  std::printf("h3_ops: H3 layer head_dim 1, B=%lld D=%lld L=%lld %s on %s; median of %lld calls\n",
              (long long)B, (long long)D, (long long)L, dtype_s.c_str(), device_s.c_str(), (long long)iters);
  std::printf(
      "| path | pass | top-level ops | all ops | ms | max rel diff to now "
      "|\n|---|---|---:|---:|---:|---:|\n");
  for (const bool backward : {false, true}) {
    std::vector<torch::Tensor> out[2];
    double ms[2];
    int64_t ops[2];
    for (int path = 0; path < 2; ++path) {
      auto call = [&] {
        if (!backward) {
          torch::NoGradGuard ng;
          return std::vector<torch::Tensor>{path == 0 ? legacy::h3_forward(h3, x) : h3.forward(x)};
        }
        auto y = path == 0 ? legacy::h3_forward(h3, x) : h3.forward(x);
        return torch::autograd::grad({y}, wrt, {dy}, false, false, /*allow_unused=*/true);
      };
      for (int i = 0; i < 3; ++i) call();
      sync();
      std::string top;
      {
        OpCounter c;
        out[path] = call();
        sync();
        ops[path] = c.top_level_total();
        std::printf("| %s | %s | %lld | %lld |", path == 0 ? "before" : "now", backward ? "fwd+bwd" : "fwd",
                    (long long)ops[path], (long long)c.all_total());
        top = c.summary(8) + "; most time: " + c.summary_ms(8);
        if (list) top = c.summary(1000);
      }
      std::vector<double> t;
      for (int64_t i = 0; i < iters; ++i) {
        sync();
        const auto t0 = std::chrono::steady_clock::now();
        call();
        sync();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      ms[path] = median(t);
      std::printf(" %.3f |", ms[path]);
      if (path == 1) {
        double worst = 0;
        for (size_t i = 0; i < out[1].size(); ++i)
          if (out[0][i].defined() && out[1][i].defined())
            worst = std::max(worst, max_rel_diff(out[0][i], out[1][i]));
        std::printf(" %.2e |", worst);
      } else {
        std::printf(" |");
      }
      std::printf("  <!-- most frequent: %s -->\n", top.c_str());
    }
    std::printf("| before/now | %s | %.2fx | | %.2fx | |\n", backward ? "fwd+bwd" : "fwd",
                (double)ops[0] / (double)ops[1], ms[0] / ms[1]);
  }
  // One decode step (gradients off), after a prefill-free start from the zero state, 16 steps compared.
  {
    torch::NoGradGuard ng;
    const auto coef = legacy::step_coefficients(*h3.diag_);
    auto xs = torch::randn({B, 16, D}, opts).to(dtype);
    double ms[2];
    int64_t ops[2];
    torch::Tensor last[2];
    for (int path = 0; path < 2; ++path) {
      auto state = h3.initial_state(B);
      auto step = [&](int64_t t) {
        return path == 0 ? legacy::h3_step(h3, coef, xs.select(1, t), state)
                         : h3.step(xs.select(1, t), state);
      };
      for (int64_t t = 0; t < 15; ++t) step(t);
      sync();
      {
        OpCounter c;
        last[path] = step(15);
        sync();
        ops[path] = c.top_level_total();
        std::printf("| %s | decode step | %lld | %lld |", path == 0 ? "before" : "now", (long long)ops[path],
                    (long long)c.all_total());
      }
      std::vector<double> t;
      for (int64_t i = 0; i < iters; ++i) {
        sync();
        const auto t0 = std::chrono::steady_clock::now();
        step(i % 16);
        sync();
        t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      ms[path] = median(t);
      if (path == 1)
        std::printf(" %.3f | %.2e |\n", ms[path], max_rel_diff(last[0], last[1]));
      else
        std::printf(" %.3f | |\n", ms[path]);
    }
    std::printf("| before/now | decode step | %.2fx | | %.2fx | |\n", (double)ops[0] / (double)ops[1],
                ms[0] / ms[1]);
  }
  return 0;
}
}  // namespace
}  // namespace hippo

int main(int argc, char** argv) {
  try {
    return hippo::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "h3_ops: %s\n", e.what());
    return 1;
  }
}
