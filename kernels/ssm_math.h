// Per-mode arithmetic of the diagonal SSM's discretisation (H3.md 2.1 and 3: bilinear for H3, zero-order hold for
// S4D), forward and backward, shared by the fused CUDA kernels (kernels/ssm_kernel.cu) and the CPU tests that
// check the hand-written gradient against autograd (tests/kernels/ssm_fused_test.cc). Plain C++ that nvcc
// also compiles for the device: no LibTorch, no std:: calls on the device.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define HIPPO_HD __host__ __device__ __forceinline__
#else
#include <cmath>
#define HIPPO_HD inline
#endif

namespace hippo::ssm_math {

HIPPO_HD float m_exp(float x) { return expf(x); }
HIPPO_HD double m_exp(double x) { return exp(x); }
HIPPO_HD float m_log(float x) { return logf(x); }
HIPPO_HD double m_log(double x) { return log(x); }
HIPPO_HD float m_atan2(float y, float x) { return atan2f(y, x); }
HIPPO_HD double m_atan2(double y, double x) { return atan2(y, x); }
HIPPO_HD float m_cos(float x) { return cosf(x); }
HIPPO_HD double m_cos(double x) { return cos(x); }
HIPPO_HD float m_sin(float x) { return sinf(x); }
HIPPO_HD double m_sin(double x) { return sin(x); }

// A complex number as (re, im); the gradient of a real loss with respect to a complex value z is carried as
// dl/dre + i dl/dim (PyTorch's convention), so that for a holomorphic y = f(x): G_x = conj(f'(x)) G_y.
template <typename T>
struct Cx {
  T re, im;
};
template <typename T>
HIPPO_HD Cx<T> operator+(Cx<T> a, Cx<T> b) { return {a.re + b.re, a.im + b.im}; }
template <typename T>
HIPPO_HD Cx<T> operator-(Cx<T> a, Cx<T> b) { return {a.re - b.re, a.im - b.im}; }
template <typename T>
HIPPO_HD Cx<T> operator*(Cx<T> a, Cx<T> b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
template <typename T>
HIPPO_HD Cx<T> operator*(Cx<T> a, T s) { return {a.re * s, a.im * s}; }
template <typename T>
HIPPO_HD Cx<T> conj(Cx<T> a) { return {a.re, -a.im}; }
template <typename T>
HIPPO_HD Cx<T> inverse(Cx<T> a) {
  const T d = a.re * a.re + a.im * a.im;
  return {a.re / d, -a.im / d};
}
template <typename T>
HIPPO_HD Cx<T> cexp(Cx<T> a) {
  const T m = m_exp(a.re);
  return {m * m_cos(a.im), m * m_sin(a.im)};
}
// Re(conj(g) * d): dl/dt for a real t from the gradient g of y and dy/dt = d.
template <typename T>
HIPPO_HD T real_dot(Cx<T> g, Cx<T> d) { return g.re * d.re + g.im * d.im; }

// The smallest |Re A| (DiagSSMImpl::discretize: Re A = -max(exp(log_A_real), kMinNegReal)).
constexpr double kMinNegReal = 1e-4;

// One mode's parameters: dt = exp(log_dt) of its channel, log_A_real, A_imag, B, C.
template <typename T>
struct Mode {
  T dt, log_A_real, A_imag;
  Cx<T> B, C;
};

// Forward: w = log dA (dA^l = exp(l w)) and C' = C dB, the Vandermonde coefficient of the kernel
// K[l] = 2 Re(sum_n C'_n exp(l w_n)). bilinear: dA = (1 + dt A/2) / (1 - dt A/2), dB = B dt / (1 - dt A/2); zoh:
// dA = exp(dt A), dB = B (exp(dt A) - 1) / A. Same expressions as DiagSSMImpl::discretize.
template <typename T>
HIPPO_HD void discretize(const Mode<T>& p, bool bilinear, Cx<T>& w, Cx<T>& Cp) {
  const T e = m_exp(p.log_A_real), lo = static_cast<T>(kMinNegReal);
  const Cx<T> A{-(e > lo ? e : lo), p.A_imag};
  Cx<T> dB;
  if (bilinear) {
    const T ar = p.dt * T(0.5) * A.re, ai = p.dt * T(0.5) * A.im;
    const T pr = 1 + ar, mr = 1 - ar, ai2 = ai * ai;
    w = {T(0.5) * (m_log(pr * pr + ai2) - m_log(mr * mr + ai2)), m_atan2(ai, pr) + m_atan2(ai, mr)};
    dB = p.B * p.dt * inverse(Cx<T>{mr, -ai});
  } else {
    w = A * p.dt;
    const Cx<T> ew = cexp(w);
    dB = p.B * ((ew - Cx<T>{1, 0}) * inverse(A));
  }
  Cp = p.C * dB;
}

// Gradients of one mode's parameters from G_w and G_Cp (the loss's gradients with respect to w and C'):
// g.dt (dl/d dt of this mode; the channel's dl/d log_dt is dt times the sum over its modes), g.log_A_real,
// g.A_imag, g.B, g.C. log_A_real's gradient is zero where exp(log_A_real) < kMinNegReal (clamp_min's rule).
template <typename T>
HIPPO_HD void discretize_backward(const Mode<T>& p, bool bilinear, Cx<T> G_w, Cx<T> G_Cp, Mode<T>& g) {
  const T e = m_exp(p.log_A_real), lo = static_cast<T>(kMinNegReal);
  const Cx<T> A{-(e > lo ? e : lo), p.A_imag};
  const Cx<T> one{1, 0};
  Cx<T> dB, G_A;
  if (bilinear) {
    const Cx<T> a = A * (p.dt * T(0.5));
    const Cx<T> inv = inverse(one - a);  // 1 / (1 - a)
    dB = p.B * p.dt * inv;
    const Cx<T> G_dB = conj(p.C) * G_Cp;
    g.B = conj(inv * p.dt) * G_dB;
    // w = log(1 + a) - log(1 - a): dw/da = 2 / (1 - a^2); dB = B dt / (1 - a): ddB/da = B dt / (1 - a)^2.
    const Cx<T> dw_da = inverse(one - a * a) * T(2);
    const Cx<T> G_a = conj(dw_da) * G_w + conj(p.B * p.dt * inv * inv) * G_dB;
    G_A = G_a * (p.dt * T(0.5));
    // dt enters a = dt A / 2 and dB directly (dB / dt at fixed a = B / (1 - a)).
    g.dt = real_dot(G_a, A * T(0.5)) + real_dot(G_dB, p.B * inv);
  } else {
    const Cx<T> w = A * p.dt, ew = cexp(w), inv_A = inverse(A);
    const Cx<T> q = (ew - one) * inv_A;
    dB = p.B * q;
    const Cx<T> G_dB = conj(p.C) * G_Cp;
    g.B = conj(q) * G_dB;
    // dB = B (exp(w) - 1) / A: ddB/dw = B exp(w) / A, ddB/dA at fixed w = -B (exp(w) - 1) / A^2.
    const Cx<T> G_wt = G_w + conj(p.B * ew * inv_A) * G_dB;
    G_A = G_wt * p.dt + conj(p.B * q * inv_A * T(-1)) * G_dB;
    g.dt = real_dot(G_wt, A);
  }
  g.C = conj(dB) * G_Cp;
  g.A_imag = G_A.im;
  g.log_A_real = e >= lo ? -G_A.re * e : T(0);
}

}  // namespace hippo::ssm_math
