// The diagonal SSM against an independent float64 oracle written with Eigen and std::complex straight from
// H3.md 2.1 (kernel, recurrence, state after a prompt), for both discretisations.
#include "layers/ssm.h"

#include <Eigen/Dense>
#include <gtest/gtest.h>

#include <complex>

#include "tests/testing.h"

namespace hippo {
namespace {
using cd = std::complex<double>;
using testing::all_close;

// The SSM's parameters read back as complex float64 matrices (H x N/2).
struct Params {
  Eigen::MatrixXcd A, B, C;
  Eigen::VectorXd dt, D;
};

Params read(const DiagSSMImpl& m) {
  auto C = m.C_.to(torch::kDouble), B = m.B_.to(torch::kDouble), lar = m.log_A_real_.to(torch::kDouble);
  auto ai = m.A_imag_.to(torch::kDouble), ldt = m.log_dt_.to(torch::kDouble), D = m.D_.to(torch::kDouble);
  const int64_t H = m.channels(), N2 = m.d_state() / 2;
  Params p{Eigen::MatrixXcd(H, N2), Eigen::MatrixXcd(H, N2), Eigen::MatrixXcd(H, N2), Eigen::VectorXd(H), Eigen::VectorXd(H)};
  for (int64_t h = 0; h < H; ++h) {
    p.dt(h) = std::exp(ldt[h].item<double>());
    p.D(h) = D[h].item<double>();
    for (int64_t n = 0; n < N2; ++n) {
      p.A(h, n) = cd(-std::max(std::exp(lar[h][n].item<double>()), 1e-4), ai[h][n].item<double>());
      p.B(h, n) = cd(B[h][n][0].item<double>(), B[h][n][1].item<double>());
      p.C(h, n) = cd(C[h][n][0].item<double>(), C[h][n][1].item<double>());
    }
  }
  return p;
}

// dA and dB of H3.md 2.1.
void discretize(const Params& p, const std::string& disc, Eigen::MatrixXcd& dA, Eigen::MatrixXcd& dB) {
  dA.resize(p.A.rows(), p.A.cols());
  dB.resize(p.A.rows(), p.A.cols());
  for (int h = 0; h < p.A.rows(); ++h)
    for (int n = 0; n < p.A.cols(); ++n) {
      const cd a = p.dt(h) * p.A(h, n);
      if (disc == "bilinear") {
        dA(h, n) = (1.0 + a / 2.0) / (1.0 - a / 2.0);
        dB(h, n) = p.B(h, n) * p.dt(h) / (1.0 - a / 2.0);
      } else {
        dA(h, n) = std::exp(a);
        dB(h, n) = p.B(h, n) * (std::exp(a) - 1.0) / p.A(h, n);
      }
    }
}

class DiagSSMOracle : public ::testing::TestWithParam<std::string> {};

TEST_P(DiagSSMOracle, KernelMatchesVandermondeOracle) {
  torch::manual_seed(11);
  DiagSSM ssm(5, 8, GetParam(), 1e-3, 1e-1);
  ssm->to(torch::kDouble);
  const int64_t L = 300;
  auto K = ssm->kernel(L);
  Params p = read(*ssm);
  Eigen::MatrixXcd dA, dB;
  discretize(p, GetParam(), dA, dB);
  auto expected = torch::empty({5, L}, torch::kDouble);
  for (int h = 0; h < 5; ++h) {
    for (int64_t l = 0; l < L; ++l) {
      cd s = 0;
      for (int n = 0; n < 4; ++n) s += p.C(h, n) * dB(h, n) * std::pow(dA(h, n), static_cast<double>(l));
      expected[h][l] = 2 * s.real();
    }
  }
  EXPECT_TRUE(all_close(K, expected, 1e-10, 1e-12));
}

TEST_P(DiagSSMOracle, RecurrenceAndStateMatchOracle) {
  torch::manual_seed(12);
  DiagSSM ssm(3, 6, GetParam(), 1e-3, 1e-1);
  ssm->to(torch::kDouble);
  const int64_t B = 2, L = 520;
  auto u = torch::randn({B, 3, L}, torch::kDouble);
  Params p = read(*ssm);
  Eigen::MatrixXcd dA, dB;
  discretize(p, GetParam(), dA, dB);
  // Oracle: x_t = dA x_{t-1} + dB u_t; y_t = 2 Re(C x_t) + D u_t.
  auto y_oracle = torch::empty({B, 3, L}, torch::kDouble);
  std::vector<Eigen::MatrixXcd> x(B, Eigen::MatrixXcd::Zero(3, 3));
  for (int64_t t = 0; t < L; ++t)
    for (int64_t b = 0; b < B; ++b)
      for (int h = 0; h < 3; ++h) {
        const double ut = u[b][h][t].item<double>();
        cd s = 0;
        for (int n = 0; n < 3; ++n) {
          x[b](h, n) = dA(h, n) * x[b](h, n) + dB(h, n) * ut;
          s += p.C(h, n) * x[b](h, n);
        }
        y_oracle[b][h][t] = 2 * s.real() + p.D(h) * ut;
      }
  // Convolutional form, recurrent form, and the state after the whole prompt, all against the oracle.
  EXPECT_TRUE(all_close(ssm->forward(u), y_oracle, 1e-9, 1e-9));
  auto state = ssm->initial_state(B);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) ys.push_back(ssm->step(u.select(2, t), state));
  EXPECT_TRUE(all_close(torch::stack(ys, 2), y_oracle, 1e-9, 1e-9));
  auto st = ssm->state_after(u);
  auto expected_state = torch::empty({B, 3, 3, 2}, torch::kDouble);
  for (int64_t b = 0; b < B; ++b)
    for (int h = 0; h < 3; ++h)
      for (int n = 0; n < 3; ++n) {
        expected_state[b][h][n][0] = x[b](h, n).real();
        expected_state[b][h][n][1] = x[b](h, n).imag();
      }
  EXPECT_TRUE(all_close(st, expected_state, 1e-9, 1e-9));
  EXPECT_TRUE(all_close(state, expected_state, 1e-9, 1e-9));
}

TEST_P(DiagSSMOracle, StateAfterChainsAcrossChunks) {
  torch::manual_seed(13);
  DiagSSM ssm(4, 8, GetParam(), 1e-3, 1e-1);
  ssm->to(torch::kDouble);
  auto u = torch::randn({2, 4, 257}, torch::kDouble);
  auto whole = ssm->state_after(u);
  auto first = ssm->state_after(u.narrow(2, 0, 100));
  auto chained = ssm->state_after(u.narrow(2, 100, 157), first);
  EXPECT_TRUE(all_close(chained, whole, 1e-10, 1e-12));
}

INSTANTIATE_TEST_SUITE_P(Discretizations, DiagSSMOracle, ::testing::Values("bilinear", "zoh"));

TEST(DiagSSM, InitialisationFollowsS4DLin) {
  torch::manual_seed(14);
  DiagSSM ssm(64, 64, "bilinear", 1e-3, 1e-1);
  EXPECT_TRUE(all_close(-torch::exp(ssm->log_A_real_), torch::full({64, 32}, -0.5), 1e-6, 1e-6));
  EXPECT_TRUE(all_close(ssm->A_imag_[7], M_PI * torch::arange(32, torch::kFloat), 1e-6, 1e-6));
  auto dt = torch::exp(ssm->log_dt_);
  EXPECT_GE(dt.min().item<double>(), 1e-3 * (1 - 1e-6));
  EXPECT_LE(dt.max().item<double>(), 1e-1 * (1 + 1e-6));
  // C: complex standard normal, each part of variance 1/2 (64*32 samples per part).
  EXPECT_NEAR(ssm->C_.select(2, 0).var().item<double>(), 0.5, 0.06);
  EXPECT_NEAR(ssm->C_.select(2, 1).var().item<double>(), 0.5, 0.06);
  EXPECT_EQ(ssm->C_.scalar_type(), torch::kFloat);
}

TEST(DiagSSM, KernelGradientsMatchFiniteDifferences) {
  torch::manual_seed(15);
  DiagSSM ssm(2, 4, "bilinear", 1e-2, 1e-1);
  ssm->to(torch::kDouble);
  auto w = torch::randn({2, 40}, torch::kDouble);
  std::vector<torch::Tensor> params = {ssm->C_, ssm->log_dt_, ssm->B_, ssm->log_A_real_, ssm->A_imag_};
  auto f = [&](const std::vector<torch::Tensor>&) { return (ssm->kernel(40) * w).sum(); };
  EXPECT_TRUE(testing::grad_check(f, params, 4, 1e-6, 1e-5));
}

TEST(ShiftSSM, KernelAndRecurrenceMatchOracle) {
  torch::manual_seed(16);
  ShiftSSM ssm(3, 5);
  ssm->to(torch::kDouble);
  {
    torch::NoGradGuard ng;
    ssm->B_.add_(0.3 * torch::randn_like(ssm->B_));  // a general B, not only e_1
  }
  // Oracle: the state holds B-weighted copies of the last inputs; kernel taps from H3.md 2.2.
  auto B = ssm->B_.to(torch::kDouble), C = ssm->C_.to(torch::kDouble);
  auto K = ssm->kernel();
  for (int h = 0; h < 3; ++h)
    for (int j = 0; j < 5; ++j) {
      double tap = 0;
      for (int i = 0; i + j < 5; ++i) tap += B[h][i].item<double>() * C[h][i + j].item<double>();
      EXPECT_NEAR(K[h][j].item<double>(), tap, 1e-12);
    }
  const int64_t L = 520;
  auto u = torch::randn({2, 3, L}, torch::kDouble);
  auto y = ssm->forward(u);
  auto state = ssm->initial_state(2);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) ys.push_back(ssm->step(u.select(2, t), state));
  EXPECT_TRUE(all_close(torch::stack(ys, 2), y, 1e-10, 1e-12));
  EXPECT_TRUE(all_close(ssm->state_after(u), state, 1e-12, 1e-12));
  // Prompts shorter than the state, chained.
  auto s1 = ssm->state_after(u.narrow(2, 0, 3));
  EXPECT_TRUE(all_close(ssm->state_after(u.narrow(2, 3, 2), s1), ssm->state_after(u.narrow(2, 0, 5)), 1e-12, 1e-12));
  // Prompts shorter than the state against the recurrence, from zero and from a given state.
  for (int64_t n : {1, 3, 4}) {
    auto st = ssm->initial_state(2);
    for (int64_t t = 0; t < n; ++t) ssm->step(u.select(2, t), st);
    EXPECT_TRUE(all_close(ssm->state_after(u.narrow(2, 0, n)), st, 1e-12, 1e-12)) << "prompt " << n;
    auto from = st.clone();
    for (int64_t t = n; t < n + 2; ++t) ssm->step(u.select(2, t), st);
    EXPECT_TRUE(all_close(ssm->state_after(u.narrow(2, n, 2), from), st, 1e-12, 1e-12)) << "prompt " << n;
  }
  // Sequences shorter than the filter.
  auto short_u = u.narrow(2, 0, 3);
  auto direct = torch::zeros({2, 3, 3}, torch::kDouble);
  for (int64_t t = 0; t < 3; ++t) {
    direct.select(2, t).add_(ssm->D_ * short_u.select(2, t));
    for (int64_t j = 0; j <= t; ++j) direct.select(2, t).add_(K.select(1, j) * short_u.select(2, t - j));
  }
  EXPECT_TRUE(all_close(ssm->forward(short_u), direct, 1e-10, 1e-12));
}

}  // namespace
}  // namespace hippo
