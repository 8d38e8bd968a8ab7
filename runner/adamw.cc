// DeviceAdamW and clip_grad_norm_device: optimiser arithmetic with every per-step scalar kept on the device.
#include "runner/adamw.h"

#include <cmath>
#include <optional>

namespace hippo {

namespace {
// Format version of the saved state; a reader refuses any other.
constexpr int64_t kStateVersion = 1;
const char* const kVersionKey = "device_adamw_version";
}  // namespace

DeviceAdamW::DeviceAdamW(std::vector<AdamWGroup> groups, double beta1, double beta2, double eps)
    : beta1_(beta1), beta2_(beta2), eps_(eps) {
  TORCH_CHECK(!groups.empty(), "DeviceAdamW: no parameter groups given");
  TORCH_CHECK(beta1 >= 0 && beta1 < 1, "DeviceAdamW: beta1 must be in [0, 1), got ", beta1);
  TORCH_CHECK(beta2 >= 0 && beta2 < 1, "DeviceAdamW: beta2 must be in [0, 1), got ", beta2);
  TORCH_CHECK(eps > 0, "DeviceAdamW: eps must be > 0, got ", eps);
  torch::NoGradGuard no_grad;
  std::optional<torch::Device> device;
  for (size_t g = 0; g < groups.size(); ++g) {
    auto& in = groups[g];
    TORCH_CHECK(!in.params.empty(), "DeviceAdamW: parameter group ", g, " is empty");
    TORCH_CHECK(in.lr >= 0 && std::isfinite(in.lr), "DeviceAdamW: group ", g,
                ": lr must be finite and >= 0, got ", in.lr);
    TORCH_CHECK(in.weight_decay >= 0 && std::isfinite(in.weight_decay), "DeviceAdamW: group ", g,
                ": weight_decay must be finite and >= 0, got ", in.weight_decay);
    Group out;
    for (const auto& p : in.params) {
      TORCH_CHECK(p.defined() && p.is_floating_point(), "DeviceAdamW: group ", g,
                  " holds a parameter that is not a floating-point tensor");
      if (!device) device = p.device();
      TORCH_CHECK(p.device() == *device, "DeviceAdamW: parameters on ", *device, " and ", p.device(),
                  "; all must be on one device");
      out.params.push_back(p);
      out.exp_avg.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      out.exp_avg_sq.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    }
    out.lr = torch::full({}, in.lr, torch::TensorOptions().dtype(torch::kFloat64).device(*device));
    out.weight_decay = in.weight_decay;
    groups_.push_back(std::move(out));
  }
  step_ = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(*device));
}

const std::vector<torch::Tensor>& DeviceAdamW::params(size_t group) const {
  TORCH_CHECK(group < groups_.size(), "DeviceAdamW: group ", group, " of ", groups_.size());
  return groups_[group].params;
}

void DeviceAdamW::set_lr(size_t group, double lr) {
  TORCH_CHECK(group < groups_.size(), "DeviceAdamW::set_lr: group ", group, " does not exist (",
              groups_.size(), " groups)");
  TORCH_CHECK(lr >= 0 && std::isfinite(lr), "DeviceAdamW::set_lr: lr must be finite and >= 0, got ", lr);
  groups_[group].lr.fill_(lr);
}

int64_t DeviceAdamW::steps() const { return static_cast<int64_t>(step_.item<double>()); }

void DeviceAdamW::zero_grad() {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_)
    for (auto& p : g.params)
      if (p.grad().defined()) p.mutable_grad().zero_();
}

void DeviceAdamW::step() {
  torch::NoGradGuard no_grad;
  step_.add_(1);
  // Scalars of this step, float64 on the device; each enters the float32 arithmetic below rounded to float32,
  // as torch::optim::AdamW's host doubles do.
  const auto bc1 = 1 - torch::pow(beta1_, step_);
  const auto sqrt_bc2 = torch::sqrt(1 - torch::pow(beta2_, step_));
  for (auto& g : groups_) {
    std::vector<torch::Tensor> ps, grads, m, v;
    for (size_t i = 0; i < g.params.size(); ++i)
      if (g.params[i].grad().defined()) {
        ps.push_back(g.params[i]);
        grads.push_back(g.params[i].grad());
        m.push_back(g.exp_avg[i]);
        v.push_back(g.exp_avg_sq[i]);
      }
    if (ps.empty()) continue;
    if (g.weight_decay != 0) {
      const auto decay = 1 - g.lr * g.weight_decay;
      for (auto& p : ps) p.mul_(decay);
    }
    at::_foreach_mul_(m, beta1_);
    at::_foreach_add_(m, grads, 1 - beta1_);
    at::_foreach_mul_(v, beta2_);
    at::_foreach_addcmul_(v, grads, grads, 1 - beta2_);
    const auto step_size = g.lr / bc1;
    auto denom = at::_foreach_sqrt(v);
    for (size_t i = 0; i < ps.size(); ++i) {
      denom[i].div_(sqrt_bc2).add_(eps_);
      ps[i].sub_(m[i].mul(step_size).div_(denom[i]));
    }
  }
}

void DeviceAdamW::save(torch::serialize::OutputArchive& archive) const {
  archive.write(kVersionKey, torch::tensor(kStateVersion));
  archive.write("step", step_.cpu());
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      archive.write("exp_avg." + std::to_string(g) + "." + std::to_string(i), groups_[g].exp_avg[i]);
      archive.write("exp_avg_sq." + std::to_string(g) + "." + std::to_string(i), groups_[g].exp_avg_sq[i]);
    }
}

void DeviceAdamW::load(torch::serialize::InputArchive& archive) {
  torch::Tensor version;
  TORCH_CHECK(
      archive.try_read(kVersionKey, version) && version.numel() == 1 &&
          version.item<int64_t>() == kStateVersion,
      "the optimiser state is not a DeviceAdamW state of version ", kStateVersion,
      " (checkpoints written with torch::optim::AdamW by an older hippo cannot be resumed; delete the file "
      "to restart the run)");
  torch::NoGradGuard no_grad;
  auto read_into = [&](const std::string& key, torch::Tensor& dst) {
    torch::Tensor t;
    TORCH_CHECK(archive.try_read(key, t), "DeviceAdamW state: missing '", key,
                "' (another model's checkpoint?)");
    TORCH_CHECK(t.sizes() == dst.sizes(), "DeviceAdamW state: '", key, "' has shape ", t.sizes(),
                ", the parameter ", dst.sizes(), " (another model's checkpoint?)");
    dst.copy_(t);
  };
  read_into("step", step_);
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      read_into("exp_avg." + std::to_string(g) + "." + std::to_string(i), groups_[g].exp_avg[i]);
      read_into("exp_avg_sq." + std::to_string(g) + "." + std::to_string(i), groups_[g].exp_avg_sq[i]);
    }
}

torch::Tensor clip_grad_norm_device(const std::vector<torch::Tensor>& params, double max_norm) {
  TORCH_CHECK(max_norm > 0 && std::isfinite(max_norm),
              "clip_grad_norm_device: max_norm must be finite and > 0, got ", max_norm);
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params)
    if (p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return torch::zeros({});
  std::vector<torch::Tensor> norms;
  norms.reserve(grads.size());
  for (const auto& g : grads) norms.push_back(g.norm(2));
  auto total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2);
  auto coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (auto& g : grads) g.mul_(coef);
  return total;
}

}  // namespace hippo
