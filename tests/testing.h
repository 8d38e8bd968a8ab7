// Helpers shared by the tests: temporary folders, running the hippo binary, file digests, a float64
// finite-difference gradient check, and the worst-element report of tensor comparisons.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <unistd.h>

namespace hippo::testing {

// A fresh folder under TMPDIR, removed (with its contents) at destruction.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/hippo_test_XXXXXX";
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `hippo ARGS` (a shell-quoted argument string) in `cwd`, capturing stdout and stderr.
inline CommandResult run_hippo(const std::string& args, const std::string& cwd) {
  const std::string out = cwd + "/.stdout", err = cwd + "/.stderr";
  const std::string cmd = "cd '" + cwd + "' && '" HIPPO_BINARY "' " + args + " > '" + out + "' 2> '" + err + "' < /dev/null";
  const int rc = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(out), slurp(err)};
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream o(path, std::ios::binary);
  o << text;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Bytes of a file, or "<missing>": compare before and after a command that must not write.
inline std::string snapshot(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "<missing>";
  return read_file(path);
}

// Largest |a - b| / (atol + rtol * |b|) with the index of the worst element, for failure messages.
inline ::testing::AssertionResult all_close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol) {
  if (a.sizes() != b.sizes())
    return ::testing::AssertionFailure() << "shapes differ: " << a.sizes() << " vs " << b.sizes();
  auto A = a.to(torch::kDouble), B = b.to(torch::kDouble);
  if (!torch::isfinite(A).all().item<bool>()) return ::testing::AssertionFailure() << "non-finite values in result";
  auto diff = (A - B).abs();
  auto ratio = torch::where(diff == 0, torch::zeros_like(diff), diff / (atol + rtol * B.abs()));
  const int64_t worst = ratio.reshape({-1}).argmax().item<int64_t>();
  const double r = ratio.reshape({-1})[worst].item<double>();
  if (r <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "worst element at flat index " << worst << ": " << A.reshape({-1})[worst].item<double>()
                                       << " vs " << B.reshape({-1})[worst].item<double>() << " (error " << r
                                       << "x the tolerance rtol=" << rtol << ", atol=" << atol << ")";
}

// The message (without backtrace) of the c10::Error that f() raises, or "no error" when it returns normally; other
// exceptions pass through. For tests of a message's text: EXPECT_NE(c10_error_of(...).find(text), npos).
inline std::string c10_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  return "no error";
}

// ||a - b|| / ||b||.
inline double rel_error(const torch::Tensor& a, const torch::Tensor& b) {
  auto A = a.to(torch::kDouble), B = b.to(torch::kDouble);
  return ((A - B).norm() / B.norm().clamp_min(1e-300)).item<double>();
}

// Gradients `low` (e.g. float32) against `ref` (float64, same parameter values): same count, same ones defined,
// each within relative error `tol` (rel_error). `what` names the case in failure messages.
inline void expect_gradients_close(const std::vector<torch::Tensor>& low, const std::vector<torch::Tensor>& ref,
                                   double tol, const std::string& what) {
  ASSERT_EQ(low.size(), ref.size()) << what;
  for (size_t i = 0; i < low.size(); ++i) {
    ASSERT_EQ(low[i].defined(), ref[i].defined()) << what << " gradient " << i;
    if (ref[i].defined()) EXPECT_LT(rel_error(low[i], ref[i]), tol) << what << " gradient " << i;
  }
}

// Central finite differences in float64 on `samples` random elements of each input, against autograd.
// f maps the inputs to a scalar. Inputs must be float64 leaf tensors with requires_grad.
inline ::testing::AssertionResult grad_check(const std::function<torch::Tensor(const std::vector<torch::Tensor>&)>& f,
                                             std::vector<torch::Tensor> inputs, int samples = 6, double eps = 1e-6,
                                             double tol = 1e-6) {
  auto out = f(inputs);
  auto grads = torch::autograd::grad({out}, inputs, {}, false, false, true);
  torch::NoGradGuard ng;
  torch::Generator gen = at::detail::createCPUGenerator(1234);
  for (size_t i = 0; i < inputs.size(); ++i) {
    auto flat = inputs[i].view({-1});
    for (int s = 0; s < samples; ++s) {
      const int64_t j = torch::randint(flat.numel(), {1}, gen, torch::kLong).item<int64_t>();
      const double orig = flat[j].item<double>();
      flat[j] = orig + eps;
      const double up = f(inputs).item<double>();
      flat[j] = orig - eps;
      const double down = f(inputs).item<double>();
      flat[j] = orig;
      const double fd = (up - down) / (2 * eps);
      const double ad = grads[i].defined() ? grads[i].reshape({-1})[j].item<double>() : 0.0;
      if (std::abs(fd - ad) > tol * (1 + std::abs(fd)))
        return ::testing::AssertionFailure() << "input " << i << " element " << j << ": finite difference " << fd
                                             << " vs autograd " << ad;
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace hippo::testing
