// The whole H3 layer (head_dim 1 and 2) against an independent float64 oracle written with Eigen and
// std::complex from H3.md 2.1, 2.2 and 3: projections, shift filter, outer product in the documented channel
// order, diagonal-SSM recurrence, q contraction and output map. Both the convolutional form and step() are
// compared with it.
#include "layers/h3.h"

#include <Eigen/Dense>
#include <gtest/gtest.h>

#include <complex>

#include "core/op_count.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using cd = std::complex<double>;
using Mat = Eigen::MatrixXd;

Mat to_eigen(const torch::Tensor& t) {
  auto c = t.to(torch::kDouble).contiguous();
  Mat m(c.size(0), c.dim() > 1 ? c.size(1) : 1);
  for (int64_t i = 0; i < m.rows(); ++i)
    for (int64_t j = 0; j < m.cols(); ++j) m(i, j) = c.dim() > 1 ? c[i][j].item<double>() : c[i].item<double>();
  return m;
}

// x: (L, D) for one sequence -> (L, D).
Mat oracle(H3Impl& h3, const Mat& x, const std::string& disc) {
  const int64_t L = x.rows(), D = x.cols(), d = h3.head_dim(), H = D / d;
  auto lin = [&](torch::nn::Linear& l) {
    Mat W = to_eigen(l->weight), b = to_eigen(l->bias);
    Mat y = x * W.transpose();
    y.rowwise() += b.col(0).transpose();
    return y;
  };
  Mat q = lin(h3.q_proj_), k = lin(h3.k_proj_), v = lin(h3.v_proj_);
  // Shift SSM on k: taps k[c, j] = sum_i B[c, i] C[c, i + j]; then D skip.
  const Mat Bs = to_eigen(h3.shift_->B_), Cs = to_eigen(h3.shift_->C_), Ds = to_eigen(h3.shift_->D_);
  const int64_t N = Bs.cols();
  Mat ks = Mat::Zero(L, D);
  for (int64_t c = 0; c < D; ++c)
    for (int64_t t = 0; t < L; ++t) {
      double s = Ds(c, 0) * k(t, c);
      for (int64_t j = 0; j < N && j <= t; ++j) {
        double tap = 0;
        for (int64_t i = 0; i + j < N; ++i) tap += Bs(c, i) * Cs(c, i + j);
        s += tap * k(t - j, c);
      }
      ks(t, c) = s;
    }
  // Outer product in the documented order: channel h*d*d + i*d + j = k[h*d + i] * v[h*d + j].
  const int64_t C = D * d;
  Mat kv(L, C);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < d; ++i)
        for (int64_t j = 0; j < d; ++j) kv(t, h * d * d + i * d + j) = ks(t, h * d + i) * v(t, h * d + j);
  // Diagonal SSM recurrence per channel.
  auto& dg = *h3.diag_;
  auto Cp = dg.C_.to(torch::kDouble), Bp = dg.B_.to(torch::kDouble);
  auto lar = dg.log_A_real_.to(torch::kDouble), ai = dg.A_imag_.to(torch::kDouble), ldt = dg.log_dt_.to(torch::kDouble);
  const Mat Dd = to_eigen(dg.D_);
  const int64_t M = dg.d_state() / 2;
  Mat y(L, C);
  for (int64_t c = 0; c < C; ++c) {
    const double dt = std::exp(ldt[c].item<double>());
    std::vector<cd> dA(M), dB(M), Cc(M), x(M, 0.0);
    for (int64_t n = 0; n < M; ++n) {
      const cd A(-std::max(std::exp(lar[c][n].item<double>()), 1e-4), ai[c][n].item<double>());
      const cd B(Bp[c][n][0].item<double>(), Bp[c][n][1].item<double>());
      Cc[n] = cd(Cp[c][n][0].item<double>(), Cp[c][n][1].item<double>());
      if (disc == "bilinear") {
        dA[n] = (1.0 + dt * A / 2.0) / (1.0 - dt * A / 2.0);
        dB[n] = B * dt / (1.0 - dt * A / 2.0);
      } else {
        dA[n] = std::exp(dt * A);
        dB[n] = B * (std::exp(dt * A) - 1.0) / A;
      }
    }
    for (int64_t t = 0; t < L; ++t) {
      cd s = 0;
      for (int64_t n = 0; n < M; ++n) {
        x[n] = dA[n] * x[n] + dB[n] * kv(t, c);
        s += Cc[n] * x[n];
      }
      y(t, c) = 2 * s.real() + Dd(c, 0) * kv(t, c);
    }
  }
  // out[h*d + j] = sum_i q[h*d + i] * y[h*d*d + i*d + j]; then W_o.
  Mat out = Mat::Zero(L, D);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < d; ++j)
        for (int64_t i = 0; i < d; ++i) out(t, h * d + j) += q(t, h * d + i) * y(t, h * d * d + i * d + j);
  Mat Wo = to_eigen(h3.out_proj_->weight), bo = to_eigen(h3.out_proj_->bias);
  Mat res = out * Wo.transpose();
  res.rowwise() += bo.col(0).transpose();
  return res;
}

class H3Oracle : public ::testing::TestWithParam<std::tuple<int64_t, std::string>> {};

TEST_P(H3Oracle, ConvolutionAndRecurrenceMatchOracle) {
  const auto [head_dim, disc] = GetParam();
  torch::manual_seed(31);
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("h3", "layer"));
  MixerArgs a;
  a.d_model = 8;
  a.options = value_or_throw(resolve_options(
      e->schema, Json{{"head_dim", head_dim}, {"discretization", disc}, {"d_state", 8}, {"shift_d_state", 4}}, "h3"));
  H3Impl h3(a);
  h3.to(torch::kDouble);
  torch::NoGradGuard ng;
  for (auto& p : h3.parameters()) p.add_(0.1 * torch::randn_like(p));  // move B off e_1, biases off zero
  const int64_t L = 40;
  auto x = torch::randn({1, L, 8}, torch::kDouble);
  Mat expected = oracle(h3, to_eigen(x[0]), disc);
  auto ref = torch::from_blob(expected.data(), {8, L}, torch::kDouble).t().contiguous();  // Eigen is column-major
  EXPECT_TRUE(testing::all_close(h3.forward(x)[0], ref, 1e-9, 1e-10));
  auto state = h3.initial_state(1);
  std::vector<torch::Tensor> ys;
  for (int64_t t = 0; t < L; ++t) ys.push_back(h3.step(x.select(1, t), state));
  EXPECT_TRUE(testing::all_close(torch::stack(ys, 1)[0], ref, 1e-9, 1e-10));
}

INSTANTIATE_TEST_SUITE_P(HeadDims, H3Oracle,
                         ::testing::Combine(::testing::Values(1, 2), ::testing::Values("bilinear", "zoh")));

// Per-operation overhead (issue 6): the operators one forward and one forward+backward call do not grow with the
// shift filter's taps or the diagonal SSM's modes (no host loop over taps, modes or heads; those were 2 ops per
// tap forward and about ten backward).
TEST(H3, OperatorCountDoesNotGrowWithStateSizes) {
  auto count = [](int64_t shift_d_state, int64_t d_state, bool backward) {
    torch::manual_seed(3);
    const LayerEntry* e = value_or_throw(LayerRegistry::global().find("h3", "layer"));
    MixerArgs a;
    a.d_model = 8;
    a.options = value_or_throw(resolve_options(
        e->schema, Json{{"d_state", d_state}, {"shift_d_state", shift_d_state}}, "h3"));
    H3Impl h3(a);
    auto x = torch::randn({2, 64, 8}, torch::requires_grad());
    OpCounter c;
    if (backward) {
      h3.forward(x).sum().backward();
    } else {
      torch::NoGradGuard ng;
      h3.forward(x);
    }
    return c.top_level_total();
  };
  for (const bool backward : {false, true}) {
    const int64_t small = count(2, 4, backward);
    EXPECT_GT(small, 0);
    EXPECT_EQ(count(64, 4, backward), small) << "shift_d_state 2 -> 64, backward " << backward;
    EXPECT_EQ(count(2, 64, backward), small) << "d_state 4 -> 64, backward " << backward;
  }
}

TEST(H3, RejectsIndivisibleHeadDim) {
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find("h3", "layer"));
  auto o = value_or_throw(resolve_options(e->schema, Json{{"head_dim", 3}}, "h3"));
  EXPECT_EQ(e->validate(o, 32).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace hippo
