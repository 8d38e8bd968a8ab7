// DeviceAdamW against torch::optim::AdamW (two groups, an lr change midway, float32 and float64), its state
// saved and loaded mid-run, clip_grad_norm_device against torch::nn::utils::clip_grad_norm_, LossWindow, and
// GraphTrainStep's refusals on a CPU build.
#include "runner/adamw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "runner/graph_step.h"
#include "tests/testing.h"

namespace hippo {
namespace {
using testing::all_close;

// Two groups of parameters (shapes that are not powers of two), drawn from a fixed seed.
std::vector<torch::Tensor> make_params(torch::ScalarType dtype) {
  torch::manual_seed(11);
  std::vector<torch::Tensor> ps = {torch::randn({5, 7}), torch::randn({7}), torch::randn({3, 4}), torch::randn({13})};
  for (auto& p : ps) p = p.to(dtype).set_requires_grad(true);
  return ps;
}

std::vector<torch::Tensor> clones(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().set_requires_grad(true));
  return out;
}

// Gradients of step `step`, the same for both optimisers: random, of varying scale, never all zero.
void set_grads(std::vector<torch::Tensor>& ps, int step, std::vector<torch::Tensor>* also = nullptr) {
  auto gen = at::detail::createCPUGenerator(1000 + step);
  for (size_t i = 0; i < ps.size(); ++i) {
    auto g = torch::randn(ps[i].sizes(), gen, torch::TensorOptions().dtype(ps[i].scalar_type())) *
             std::pow(10.0, static_cast<double>(step % 4) - 2);
    ps[i].mutable_grad() = g.clone();
    if (also) (*also)[i].mutable_grad() = g.clone();
  }
}

DeviceAdamW make_device_adamw(const std::vector<torch::Tensor>& ps) {
  return DeviceAdamW({{{ps[0], ps[1]}, 1e-2, 0.1}, {{ps[2], ps[3]}, 3e-3, 0.0}}, 0.9, 0.999, 1e-8);
}

// Steps both optimisers 20 times, the first group's lr changed at step 10, and compares after each step.
void compare_with_torch(torch::ScalarType dtype, double rtol, double atol) {
  auto ref = make_params(dtype);
  auto mine = clones(ref);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{ref[0], ref[1]},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-2).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.1)));
  groups.emplace_back(std::vector<torch::Tensor>{ref[2], ref[3]},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(3e-3).betas({0.9, 0.999}).eps(1e-8).weight_decay(0.0)));
  torch::optim::AdamW torch_opt(std::move(groups), torch::optim::AdamWOptions(1e-2));
  DeviceAdamW opt = make_device_adamw(mine);
  for (int step = 0; step < 20; ++step) {
    if (step == 10) {
      static_cast<torch::optim::AdamWOptions&>(torch_opt.param_groups()[0].options()).lr(4e-3);
      opt.set_lr(0, 4e-3);
    }
    set_grads(ref, step, &mine);
    torch_opt.step();
    opt.step();
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_TRUE(all_close(mine[i].detach(), ref[i].detach(), rtol, atol)) << "step " << step << " parameter " << i;
  }
  EXPECT_EQ(opt.steps(), 20);
  // The parameters moved: the comparison above is not between two untouched copies.
  EXPECT_GT((mine[0] - make_params(dtype)[0]).abs().max().item<double>(), 1e-3);
}

// float32: the device scalars are float64, rounded to float32 where they enter, as the host doubles of
// torch::optim::AdamW are; the final multiply/divide may round differently (fused or not): ~1 ulp per step, so
// 1e-6 relative, and an absolute floor of one float32 ulp at 1 for elements near zero.
TEST(DeviceAdamW, MatchesTorchAdamWFloat32) { compare_with_torch(torch::kFloat32, 1e-6, 1e-7); }
// float64: the same arithmetic, rounding differences of a few ulp at most.
TEST(DeviceAdamW, MatchesTorchAdamWFloat64) { compare_with_torch(torch::kFloat64, 1e-13, 1e-15); }

TEST(DeviceAdamW, SavedStateContinuesIdentically) {
  auto a = make_params(torch::kFloat32);
  DeviceAdamW opt_a = make_device_adamw(a);
  for (int step = 0; step < 7; ++step) {
    set_grads(a, step);
    opt_a.step();
  }
  std::stringstream buf;
  {
    torch::serialize::OutputArchive out;
    opt_a.save(out);
    out.save_to(buf);
  }
  auto b = clones(a);
  DeviceAdamW opt_b = make_device_adamw(b);
  opt_b.set_lr(0, 1e-2);
  torch::serialize::InputArchive in;
  in.load_from(buf);
  opt_b.load(in);
  EXPECT_EQ(opt_b.steps(), 7);
  for (int step = 7; step < 15; ++step) {
    set_grads(a, step, &b);
    opt_a.step();
    opt_b.step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  // A fresh optimiser (no state loaded) takes a different path: the state matters.
  auto c = clones(make_params(torch::kFloat32));
  EXPECT_FALSE(torch::equal(c[0], a[0]));
}

TEST(DeviceAdamW, RefusesTorchAdamWStateAndOtherShapes) {
  auto ps = make_params(torch::kFloat32);
  torch::optim::AdamW torch_opt(ps, torch::optim::AdamWOptions(1e-3));
  set_grads(ps, 0);
  torch_opt.step();
  std::stringstream buf;
  {
    torch::serialize::OutputArchive out;
    torch_opt.save(out);
    out.save_to(buf);
  }
  DeviceAdamW opt = make_device_adamw(clones(ps));
  torch::serialize::InputArchive in;
  in.load_from(buf);
  try {
    opt.load(in);
    FAIL() << "a torch::optim::AdamW state was accepted";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("torch::optim::AdamW"), std::string::npos) << e.what();
  }
  // A DeviceAdamW state of other shapes.
  std::vector<torch::Tensor> other = {torch::zeros({2}, torch::requires_grad())};
  DeviceAdamW small({{other, 1e-3, 0.0}});
  std::stringstream buf2;
  {
    torch::serialize::OutputArchive out;
    small.save(out);
    out.save_to(buf2);
  }
  torch::serialize::InputArchive in2;
  in2.load_from(buf2);
  EXPECT_THROW(opt.load(in2), c10::Error);
}

TEST(DeviceAdamW, RejectsBadArguments) {
  auto ps = make_params(torch::kFloat32);
  EXPECT_THROW(DeviceAdamW({}), c10::Error);
  EXPECT_THROW(DeviceAdamW({{{}, 1e-3, 0.0}}), c10::Error);
  EXPECT_THROW(DeviceAdamW({{{ps[0]}, -1.0, 0.0}}), c10::Error);
  EXPECT_THROW(DeviceAdamW({{{ps[0]}, 1e-3, 0.0}}, 1.0), c10::Error);
  DeviceAdamW opt({{{ps[0]}, 1e-3, 0.0}});
  EXPECT_THROW(opt.set_lr(1, 1e-3), c10::Error);
  EXPECT_THROW(opt.set_lr(0, std::nan("")), c10::Error);
}

TEST(DeviceAdamW, ZeroGradKeepsTheAllocation) {
  auto ps = make_params(torch::kFloat32);
  set_grads(ps, 1);
  DeviceAdamW opt = make_device_adamw(ps);
  const void* before = ps[0].grad().data_ptr();
  opt.zero_grad();
  ASSERT_TRUE(ps[0].grad().defined());
  EXPECT_EQ(ps[0].grad().data_ptr(), before);
  EXPECT_EQ(ps[0].grad().abs().sum().item<double>(), 0.0);
}

TEST(ClipGradNormDevice, EqualsTorchClipGradNorm) {
  for (double max_norm : {0.5, 1e3}) {  // clipping active, and not
    auto ref = make_params(torch::kFloat32);
    auto mine = clones(ref);
    set_grads(ref, 3, &mine);  // scale 10: total norm ~ 70
    const double torch_norm = torch::nn::utils::clip_grad_norm_(ref, max_norm);
    const auto norm = clip_grad_norm_device(mine, max_norm);
    EXPECT_NEAR(norm.item<double>(), torch_norm, 1e-6 * torch_norm) << "max_norm " << max_norm;
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(torch::equal(mine[i].grad(), ref[i].grad())) << i;
  }
  auto ps = make_params(torch::kFloat32);
  set_grads(ps, 3);
  clip_grad_norm_device(ps, 0.5);
  double total = 0;
  for (auto& p : ps) total += p.grad().pow(2).sum().item<double>();
  EXPECT_NEAR(std::sqrt(total), 0.5, 1e-5);
  EXPECT_THROW(clip_grad_norm_device(ps, 0.0), c10::Error);
}

TEST(LossWindow, ReportsEachStepAndStopsAtTheFirstNonFiniteLoss) {
  LossWindow w(4, torch::kCPU);
  std::vector<std::pair<int64_t, double>> seen;
  auto on_loss = [&](int64_t s, double v) { seen.emplace_back(s, v); };
  w.add(10, torch::tensor(1.5f));
  w.add(11, torch::tensor(2.5f));
  EXPECT_FALSE(w.full());
  EXPECT_FALSE(w.flush(on_loss).has_value());
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], std::make_pair(int64_t{11}, 2.5));
  EXPECT_EQ(w.size(), 0);
  seen.clear();
  w.add(12, torch::tensor(0.5f));
  w.add(13, torch::tensor(std::numeric_limits<float>::infinity()));
  w.add(14, torch::tensor(std::nanf("")));
  w.add(15, torch::tensor(0.25f));
  EXPECT_TRUE(w.full());
  EXPECT_THROW(w.add(16, torch::tensor(1.0f)), c10::Error);  // full
  auto bad = w.flush(on_loss);
  ASSERT_TRUE(bad.has_value());
  EXPECT_EQ(*bad, 13);
  ASSERT_EQ(seen.size(), 1u);
  w.add(20, torch::tensor(1.0f));
  EXPECT_THROW(w.add(22, torch::tensor(1.0f)), c10::Error);  // not consecutive
}

TEST(GraphTrainStep, RefusesCpuParametersOrABuildWithoutGraphs) {
  auto ps = make_params(torch::kFloat32);
  DeviceAdamW opt = make_device_adamw(ps);
  BatchLoss f = [&](const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) { return ps[0].sum(); };
  try {
    GraphTrainStep g(f, opt, ps, 1.0, 32);
    FAIL() << "a graph step over CPU parameters was built";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("--cuda-graph"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace hippo
