// Device, seed and environment helpers; the only core file that needs LibTorch.
#include "core/device.h"

#include <dlfcn.h>
#include <torch/torch.h>
#include <unistd.h>

#include <thread>

#include "core/build_info.h"

#if __has_include(<ATen/cuda/CUDAContext.h>) && defined(HIPPO_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <ATen/detail/CUDAHooksInterface.h>
#define HIPPO_HAVE_CUDA_CONTEXT 1
#endif

namespace hippo {

absl::StatusOr<c10::Device> parse_device(absl::string_view text) {
  const std::string t(text);
  if (t == "auto") return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (t == "cpu") return c10::Device(c10::kCPU);
  if (t == "cuda" || t.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      return absl::FailedPreconditionError(absl::StrCat(
          "device '", t, "' requested but no CUDA GPU is usable (LibTorch ", TORCH_VERSION,
          " built without CUDA, or no driver); use --device cpu or auto"));
    int index = 0;
    if (t.size() > 5) {
      try {
        index = std::stoi(t.substr(5));
      } catch (...) {
        return absl::InvalidArgumentError(absl::StrCat("device '", t, "': expected cuda:N"));
      }
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      return absl::InvalidArgumentError(absl::StrCat("device '", t, "': only ", torch::cuda::device_count(),
                                                     " GPU(s) visible"));
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown device '", t, "'; accepted: cpu, cuda, cuda:N, auto"));
}

void seed_everything(uint64_t seed) {
  torch::manual_seed(seed);
  if (torch::cuda::is_available()) torch::cuda::manual_seed_all(seed);
}

int set_threads(int n) {
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(n);
  // Debian's LibTorch calls OpenBLAS, whose own thread pool ignores LibTorch's setting: with several worker
  // processes its extra threads fight over the cores (measured here: two 1-thread workers ran ~8x slower each).
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
  return n;
}

Json environment(const c10::Device& device) {
  Json env;
  env["hippo_version"] = build_version();
  env["commit"] = build_commit();
  env["torch_version"] = TORCH_VERSION;
  env["cuda_version"] = nullptr;
  env["cudnn_version"] = nullptr;
  env["gpu"] = nullptr;
#ifdef HIPPO_HAVE_CUDA_CONTEXT
  if (device.is_cuda()) {
    const auto* prop = at::cuda::getDeviceProperties(device.index());
    env["gpu"] = prop->name;
#ifdef CUDART_VERSION
    env["cuda_version"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#endif
    if (torch::cuda::cudnn_is_available()) env["cudnn_version"] = std::to_string(at::detail::getCUDAHooks().versionCuDNN());
  }
#endif
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  env["host"] = host;
  env["threads"] = torch::get_num_threads();
  env["device"] = device.str();
  // The kernel switches read from the environment (docs/FLASHCONV.md), those set: a row's speed depends on them.
  Json switches = Json::object();
  for (const char* name : {"HIPPO_FFTCONV_BLOCKFFT", "HIPPO_FFTCONV_DIRECT", "HIPPO_FFTCONV_FILTER", "HIPPO_FFTCONV_RECOMPUTE",
                           "HIPPO_FFTCONV_BWD_CHUNKS", "HIPPO_SSM_KERNEL", "HIPPO_PROJECTION"})
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') switches[name] = v;
  env["kernel_switches"] = switches;
  return env;
}

}  // namespace hippo
