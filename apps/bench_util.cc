// Timing and flag parsing shared by the benchmarks (apps/bench_util.h).
#include "apps/bench_util.h"

#include <cstdio>

#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>

#include "core/device.h"

#if defined(HIPPO_WITH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#if __has_include(<ATen/cuda/CUDAGraph.h>)
#include <ATen/cuda/CUDAGraph.h>
#define HIPPO_BENCH_GRAPHS 1
#endif
#endif

namespace hippo::cli {

const char* dtype_name(torch::ScalarType t) {
  return t == torch::kFloat ? "float32" : t == torch::kHalf ? "float16" : "bfloat16";
}

absl::StatusOr<torch::ScalarType> parse_dtype(const std::string& s) {
  if (s == "bf16" || s == "bfloat16") return torch::kBFloat16;
  if (s == "fp16" || s == "float16" || s == "half") return torch::kHalf;
  if (s == "fp32" || s == "float32" || s == "float") return torch::kFloat;
  return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16, fp16 or fp32, got '", s, "'"));
}

absl::StatusOr<std::vector<int64_t>> parse_lengths(const std::string& s) {
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(s, ',')) {
    int64_t v;
    if (!absl::SimpleAtoi(part, &v) || v < 1 || v > (int64_t{1} << 20))
      return absl::InvalidArgumentError(
          absl::StrCat("--seq-len must be a comma-separated list of lengths in [1, 1048576], got '", s, "'"));
    out.push_back(v);
  }
  return out;
}

std::vector<double> time_calls(const std::function<void(int)>& call, int warmup, int iters,
                               const c10::Device& device) {
  for (int i = 0; i < warmup; ++i) call(i);
  std::vector<double> ms;
#if defined(HIPPO_WITH_CUDA)
  if (device.is_cuda()) {
    torch::cuda::synchronize();
    for (int i = 0; i < iters; ++i) {
      at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
      start.record();
      call(warmup + i);
      stop.record();
      stop.synchronize();
      ms.push_back(start.elapsed_time(stop));
    }
    return ms;
  }
#endif
  TORCH_CHECK(!device.is_cuda(), "time_calls: this hippo was built without CUDA; cannot time on ", device);
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    call(warmup + i);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return ms;
}

bool cuda_graphs_built() {
#if defined(HIPPO_BENCH_GRAPHS)
  return true;
#else
  return false;
#endif
}

std::vector<double> time_graphed(const std::function<void(int)>& call, int warmup, int iters,
                                 const c10::Device& device, int calls_per_graph) {
  TORCH_CHECK(device.is_cuda(), "time_graphed: CUDA graphs need a CUDA device, got ", device);
  TORCH_CHECK(calls_per_graph >= 1, "time_graphed: calls_per_graph must be at least 1, got ",
              calls_per_graph);
#if defined(HIPPO_BENCH_GRAPHS)
  const c10::cuda::CUDAGuard device_guard(device);
  auto side = c10::cuda::getStreamFromPool(false, device.index());
  torch::cuda::synchronize();
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    for (int i = 0; i < std::max(warmup, 3); ++i) call(i);
  }
  torch::cuda::synchronize();
  // The capture allocates from the graph's own pool, which cannot reuse blocks the eager calls left cached: hand
  // those back first (seen: B 16, H 768, L 16384 forward+backward ran out of memory with 78 GiB cached and unused).
  c10::cuda::CUDACachingAllocator::emptyCache();
  at::cuda::CUDAGraph graph;
  {
    const c10::cuda::CUDAStreamGuard guard(side);
    graph.capture_begin();
    try {
      for (int i = 0; i < calls_per_graph; ++i) call(i);
    } catch (...) {
      try {
        graph.capture_end();  // leaves capture mode; the graph is not used
      } catch (...) {
      }
      throw;
    }
    graph.capture_end();
  }
  torch::cuda::synchronize();
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
    start.record();
    graph.replay();
    stop.record();
    stop.synchronize();
    ms.push_back(start.elapsed_time(stop) / calls_per_graph);
  }
  return ms;
#else
  (void)call, (void)warmup, (void)iters, (void)calls_per_graph;
  TORCH_CHECK(false, "time_graphed: this hippo was built without CUDA graphs (LibTorch without CUDA)");
#endif
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double copy_bandwidth(int warmup, int iters, const c10::Device& device) {
  const int64_t bytes = device.is_cuda() ? int64_t{1} << 30 : int64_t{64} << 20;
  auto src = torch::randn({bytes / 4}, torch::TensorOptions().device(device));
  auto dst = torch::empty_like(src);
  const double ms = median(time_calls([&](int) { dst.copy_(src); }, warmup, iters, device));
  return 2.0 * static_cast<double>(bytes) / (ms * 1e-3) / 1e9;
}

Json BenchSink::common_columns(const Json& extra) const {
  Json e = env;
  for (const auto& [k, v] : extra.items()) e[k] = v;
  return Json{{"created_at", utc_now()},
              {"commit_hash", env["commit"]},
              {"hippo_version", env["hippo_version"]},
              {"torch_version", env["torch_version"]},
              {"cuda_version", env["cuda_version"]},
              {"device", device_name},
              {"host", env["host"]},
              {"environment", e.dump()}};
}

absl::Status BenchSink::write(const std::vector<Json>& rows) const {
  if (!db) return absl::OkStatus();
  HIPPO_RETURN_IF_ERROR(db->add_bench_rows(rows));
  std::printf("\n%zu rows written to the bench table of %s\n", rows.size(), db_path.c_str());
  return absl::OkStatus();
}

absl::StatusOr<BenchSink> open_bench_sink(const std::string& db_path, bool no_db, const c10::Device& device) {
  BenchSink s;
  s.db_path = db_path;
  if (!no_db) {
    auto opened = ResultsDb::open(db_path, ResultsDb::Mode::kReadWrite);
    if (!opened.ok()) return opened.status();
    s.db = std::move(*opened);
  }
  s.env = environment(device);
  s.device_name = device.is_cuda() ? (s.env["gpu"].is_string() ? s.env["gpu"].get<std::string>() : device.str())
                                   : std::string("cpu");
  return s;
}

}  // namespace hippo::cli
