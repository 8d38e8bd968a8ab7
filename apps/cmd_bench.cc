// `hippo bench fftconv`: times the reference (torch::fft), the fused CUDA FFT convolution and the block FFT on
// tensor cores (split and single half products) in one run (CUDA events, warm-up, median), prints ms, GB/s
// against the device-to-device copy bandwidth measured in the same run, the speed-up over the reference and the
// faster of fused and block FFT, and stores one row per variant and length in the bench table.
// Past the fused limit (L > 16384) the second variant is state passing of a diagonal-SSM filter (H3.md 8), or,
// with a short filter (--kernel-len), the chunked overlap-save path with the fused kernel inside.
// Without a CUDA device (or in a build without the CUDA kernels) it measures nothing and exits 2.
#include <absl/strings/numbers.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_split.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>

#include "apps/bench_util.h"
#include "apps/cli.h"
#include "core/device.h"
#include "kernels/fftconv.h"
#include "kernels/fftconv_blockfft.h"
#include "layers/ssm.h"
#include "results/db.h"

namespace hippo::cli {

namespace {
const char* kBenchUsage =
    "usage: hippo bench fftconv [options]   |   hippo bench generate|layer [options] (hippo bench layer "
    "--help)\n"
    "  times fftconv_ref (torch::fft), fftconv_fused (the CUDA kernel) and fftconv_blockfft (block FFT, "
    "split and\n"
    "  single half products; the faster of fused and block FFT is printed and recorded) on u (B, H, L), k (H, "
    "L), D (H); past\n"
    "  L = 16384 (fft size 32768) an s4d-style filter by state passing (chunks of --chunk-len) instead of the "
    "fused one:\n"
    "  CUDA events, warm-up calls, the median of the timed calls; GB/s counts u read and y written (plus u, "
    "dy\n"
    "  read and du written with --backward) against a device-to-device copy measured in the same run. Rows "
    "go\n"
    "  to the bench table of --db. Needs a CUDA GPU: without one it measures nothing and exits 2.\n"
    "  --kernel-len N times a filter of L_k = min(N, L) taps instead (a long sequence, a short\n"
    "  filter): past the fused limit the second variant is then the chunked path (overlapping\n"
    "  windows through the fused kernel, fftconv_chunked; --window W sets their length, default\n"
    "  fftconv_chunk_window(L_k)). With L_k <= 64 the last column times direct summation on the GPU\n"
    "  (fftconv_short, what fftconv() takes for such a filter by default).\n";

struct BenchConfig {
  int64_t batch = 16, channels = 768;
  std::vector<int64_t> seq_lens;
  torch::ScalarType dtype = torch::kBFloat16;
  bool backward = false;
  int64_t kernel_len = 0;  // 0: L_k = L
  int64_t window = 0;      // 0: fftconv_chunk_window(L_k)
  int64_t chunk_len = 0;   // state passing's chunks; 0: DiagSSMImpl::default_chunk_len(L)
  int warmup = 5, iters = 30;
  bool graphed = false;  // --cuda-graph
  std::string db;
  bool no_db = false;
};

#if defined(HIPPO_WITH_CUDA)
int run_fftconv(const BenchConfig& c) {
  if (!torch::cuda::is_available())
    return report(
        absl::FailedPreconditionError("hippo bench fftconv: no CUDA device is usable; nothing was measured "
                                      "(the benchmark times CUDA kernels)"));
  if (c.graphed && !cuda_graphs_built())
    return report(absl::FailedPreconditionError(
        "hippo bench fftconv: --cuda-graph needs a build with CUDA graphs (LibTorch with CUDA)"));
  const c10::Device device(c10::kCUDA, 0);
  auto sink = open_bench_sink(c.db, c.no_db, device);
  if (!sink.ok()) return report(sink.status());
  const std::string& gpu = sink->device_name;
  const double copy_gbs = copy_bandwidth(c.warmup, c.iters, device);
  const char* pass = c.backward ? "forward+backward" : "forward";
  std::printf(
      "hippo bench fftconv: B=%lld H=%lld %s, %s, on %s; device-to-device copy %.0f GB/s (measured now)\n",
      static_cast<long long>(c.batch), static_cast<long long>(c.channels), dtype_name(c.dtype), pass,
      gpu.c_str(), copy_gbs);
  std::printf(
      "median of %d calls after %d warm-up calls (%s); bytes = %s; speed-up = reference / fused;\n"
      "blockfft = fftconv_blockfft with split half products (kSplit), single = one product per stage "
      "(kSingle); faster = the faster of fused and blockfft (split)\n",
      c.iters, c.warmup,
      c.graphed ? "CUDA events around CUDA graph replays, one replay = one call per input set" : "CUDA events",
      c.backward ? "u read, y written, u and dy read, du written" : "u read, y written");
  if (c.kernel_len > 0)
    std::printf(
        "filter k: (H, L_k) with L_k = min(%lld, L); fft size: of the whole sequence (reference, fused), "
        "of one window (chunked)\n",
        static_cast<long long>(c.kernel_len));
  std::printf("\n");
  std::printf(
      "| L | fft size | reference ms | reference GB/s | fused ms | fused GB/s | fused %% of copy | speed-up "
      "| blockfft ms | single ms | faster | direct ms (speed-up) |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
  std::fflush(stdout);

  std::vector<Json> rows;
  int failed = 0;  // lengths whose remaining rows failed (printed as `failed: ...`)
  const auto f32 = torch::TensorOptions().device(device).dtype(torch::kFloat);
  for (const int64_t L : c.seq_lens) {
    const int64_t Lk = c.kernel_len > 0 ? std::min(c.kernel_len, L) : L;
    const int64_t n = fftconv_size(L, Lk);
    const int64_t elems = c.batch * c.channels * L, esize = static_cast<int64_t>(c10::elementSize(c.dtype));
    // Several input sets, rotated, so that small sizes are not timed out of the L2 cache.
    const int64_t sets =
        std::clamp<int64_t>((int64_t{256} << 20) / std::max<int64_t>(1, elems * esize), 1, 16);
    torch::manual_seed(L);
    std::vector<torch::Tensor> us, dys;
    for (int64_t s = 0; s < sets; ++s) {
      us.push_back(torch::randn({c.batch, c.channels, L}, f32).to(c.dtype).requires_grad_(c.backward));
      if (c.backward) dys.push_back(torch::randn({c.batch, c.channels, L}, f32).to(c.dtype));
    }
    auto k =
        (torch::randn({c.channels, Lk}, f32) / std::sqrt(static_cast<double>(Lk))).requires_grad_(c.backward);
    auto D = torch::randn({c.channels}, f32).requires_grad_(c.backward);
    // 0: reference, 1: fused, 2: block FFT (split products), 3: block FFT (single products), 4: direct
    // summation on the GPU (fftconv_short, L_k <= 64).
    auto run = [&](int variant, const torch::Tensor& u) {
      switch (variant) {
        case 0: return fftconv_ref(u, k, D);
        case 1: return fftconv_fused(u, k, D);
        case 4: return fftconv_short(u, k, D);
        case 2: return fftconv_blockfft(u, k, D, {}, BlockFftPrecision::kSplit);
        default: return fftconv_blockfft(u, k, D, {}, BlockFftPrecision::kSingle);
      }
    };
    auto call = [&](int variant) {
      return [&, variant](int i) {
        const auto& u = us[i % sets];
        if (!c.backward) {
          torch::NoGradGuard no_grad;
          auto y = run(variant, u);
        } else {
          auto y = run(variant, u);
          auto g = torch::autograd::grad({y}, {u, k, D}, {dys[i % sets]});
        }
      };
    };
    const int64_t bytes = (c.backward ? 5 : 2) * elems * esize;
    // Eager calls, or (--cuda-graph) replays of a graph of one call per input set: no host dispatch between
    // kernels, as a graphed training step sees them.
    auto time = [&](const std::function<void(int)>& fn) {
      return c.graphed ? time_graphed(fn, c.warmup, c.iters, device, static_cast<int>(sets))
                       : time_calls(fn, c.warmup, c.iters, device);
    };
    auto add_row = [&](const char* variant, const std::vector<double>& ms, double speedup, int64_t fft_size,
                       Json extra = Json::object()) {
      // The filter length (and a chunked row's window) has no column of its own: it goes into environment.
      extra["kernel_len"] = Lk;
      if (c.graphed) extra["cuda_graph"] = true;
      Json r = sink->common_columns(extra);
      r.update(Json{{"benchmark", "fftconv"},
                {"variant", variant},
                {"pass", pass},
                {"batch", c.batch},
                {"channels", c.channels},
                {"seq_len", L},
                {"fft_size", fft_size},
                {"dtype", dtype_name(c.dtype)},
                {"median_ms", median(ms)},
                {"min_ms", *std::min_element(ms.begin(), ms.end())},
                {"iters", c.iters},
                {"bytes", bytes},
                {"gbytes_per_s", static_cast<double>(bytes) / (median(ms) * 1e-3) / 1e9},
                {"copy_gbytes_per_s", copy_gbs},
                {"speedup", speedup}});
      rows.push_back(r);
      return r;
    };
    try {
      const auto ref_ms = time(call(0));
      const Json ref = add_row("reference", ref_ms, 1.0, n);
      const double ref_med = median(ref_ms);
      // A filter of at most 64 taps (--kernel-len <= 64, or L <= 64) also by direct summation: the last column.
      std::string direct = "-";
      if (fftconv_short_supported(us[0], k, D)) {
        const auto direct_ms = time(call(4));
        const double med = median(direct_ms);
        add_row("direct", direct_ms, ref_med / med, 0);
        direct = absl::StrFormat("%.3f (%.2fx)", med, ref_med / med);
      }
      std::printf("| %lld | %lld | %.3f | %.0f |", static_cast<long long>(L), static_cast<long long>(n),
                  ref_med, ref["gbytes_per_s"].get<double>());
      if (fftconv_fused_supported(us[0], k, D)) {
        const auto fused_ms = time(call(1));
        const double med = median(fused_ms);
        const Json fused = add_row("fused", fused_ms, ref_med / med, n);
        const double gbs = fused["gbytes_per_s"].get<double>();
        std::printf(" %.3f | %.0f | %.0f%% | %.2fx |", med, gbs, 100.0 * gbs / copy_gbs, ref_med / med);
        std::fflush(stdout);
        // The block FFT beside it (H3.md 8); the faster of fused and block (split) is the per-size choice,
        // recorded in each block row's environment column as faster_of_fused_and_blockfft. The block path
        // stops at kBlockFftMaxSize.
        if (n > kBlockFftMaxSize) {
          std::printf(" - | - | fused (no block FFT past %lld) | %s |\n", static_cast<long long>(kBlockFftMaxSize),
                      direct.c_str());
          std::fflush(stdout);
          continue;
        }
        const auto block_ms = time(call(2));
        const auto single_ms = time(call(3));
        const double bmed = median(block_ms), smed = median(single_ms);
        const char* faster = bmed < med ? "blockfft" : "fused";
        add_row("blockfft", block_ms, ref_med / bmed, n,
                Json{{"blockfft_precision", "split"}, {"faster_of_fused_and_blockfft", faster}});
        add_row("blockfft_single", single_ms, ref_med / smed, n,
                Json{{"blockfft_precision", "single"}, {"faster_of_fused_and_blockfft", faster}});
        std::printf(" %.3f | %.3f | %s | %s |\n", bmed, smed, faster, direct.c_str());
      } else if (c.kernel_len > 0 && (c.window > 0 || fftconv_chunked_supported(us[0], k, D))) {
        // A short filter past the fused limit: overlapping windows as rows of one fused call (H3.md 8).
        const int64_t W = c.window > 0 ? c.window : fftconv_chunk_window(Lk);
        auto chunked_call = [&](int i) {
          const auto& u = us[i % sets];
          if (!c.backward) {
            torch::NoGradGuard no_grad;
            auto y = fftconv_chunked(u, k, D, {}, FftConvInner::kFused, W);
          } else {
            auto y = fftconv_chunked(u, k, D, {}, FftConvInner::kFused, W);
            auto g = torch::autograd::grad({y}, {u, k, D}, {dys[i % sets]});
          }
        };
        const auto ch_ms = time(chunked_call);
        const double med = median(ch_ms);
        const Json ch = add_row("chunked", ch_ms, ref_med / med, fftconv_size(W, Lk), Json{{"window", W}});
        const double gbs = ch["gbytes_per_s"].get<double>();
        std::printf(" %.3f (chunked, windows of %lld) | %.0f | %.0f%% | %.2fx | - | - | - | %s |\n", med,
                    static_cast<long long>(W), gbs, 100.0 * gbs / copy_gbs, ref_med / med, direct.c_str());
      } else if (Lk < L) {
        std::printf(" - (L_k = %lld: no fused or chunked path) | | | | - | - | - | %s |\n", static_cast<long long>(Lk),
                    direct.c_str());
      } else {
        // Past the fused kernel's limit: an s4d-style filter (a diagonal SSM, d_state 64, zero-order hold) by
        // state passing in chunks of --chunk-len (default: the layer's for this L) through the fused kernel (H3.md 8). Its time includes making the
        // chunk kernel and the state terms from the SSM's parameters, while the reference is handed k: the
        // comparison favours the reference.
        torch::manual_seed(L + 1);
        DiagSSM ssm(c.channels, 64, "zoh", 1e-3, 1e-1);
        ssm->to(device);
        std::vector<torch::Tensor> params = ssm->parameters();
        auto sp_call = [&](int i) {
          const auto& u = us[i % sets];
          if (!c.backward) {
            torch::NoGradGuard no_grad;
            auto y = ssm->forward(u);
          } else {
            std::vector<torch::Tensor> wrt = {u};
            wrt.insert(wrt.end(), params.begin(), params.end());
            auto g = torch::autograd::grad({ssm->forward(u)}, wrt, {dys[i % sets]}, false, false, true);
          }
        };
        const int64_t chunk = c.chunk_len > 0 ? c.chunk_len : DiagSSMImpl::default_chunk_len(L);
        ssm->set_chunk_len(chunk);
        const auto sp_ms = time(sp_call);
        const double med = median(sp_ms);
        const Json sp = add_row("state_passing", sp_ms, ref_med / med, fftconv_size(chunk, chunk));
        const double gbs = sp["gbytes_per_s"].get<double>();
        std::printf(" %.3f (state passing, chunks of %lld) | %.0f | %.0f%% | %.2fx | - | - | - | - |\n", med,
                    static_cast<long long>(chunk), gbs, 100.0 * gbs / copy_gbs, ref_med / med);
      }
    } catch (const c10::Error& e) {
      // Out of memory at long L with a large B * H: this length's remaining rows are missing, the run goes
      // on.
      std::printf(" failed: %s |\n", e.what_without_backtrace());
      ++failed;
    }
    std::fflush(stdout);
  }
  if (auto st = sink->write(rows); !st.ok()) return report(st);
  if (failed > 0) {
    std::fprintf(stderr,
                 "hippo: error: bench fftconv: %d of %zu lengths failed (rows marked `failed`); the %zu rows "
                 "measured were kept\n",
                 failed, c.seq_lens.size(), rows.size());
    return kExitFailure;
  }
  return kExitOk;
}
#else
int run_fftconv(const BenchConfig&) {
  return report(
      absl::FailedPreconditionError("hippo bench fftconv: this hippo was built without the CUDA kernels "
                                    "(LibTorch without CUDA); nothing was "
                                    "measured. Build on a CUDA host (../shared/gpu/README.md) to benchmark"));
}
#endif
}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  if (args.empty())
    return report(absl::InvalidArgumentError(
        "missing BENCHMARK: usage: hippo bench fftconv|generate|layer [options] (hippo bench --help)"));
  if (args[0] == "--help" || args[0] == "-h") {
    std::fputs(kBenchUsage, stdout);
    return kExitOk;
  }
  if (args[0] == "generate") return bench_generate(std::vector<std::string>(args.begin() + 1, args.end()));
  if (args[0] == "layer") return bench_layer(std::vector<std::string>(args.begin() + 1, args.end()));
  if (args[0] != "fftconv") {
    std::fprintf(stderr, "hippo: error: unknown benchmark '%s'; accepted: fftconv, generate, layer\n",
                 args[0].c_str());
    return kExitBadInput;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  po::options_description desc("hippo bench fftconv");
  desc.add_options()("help,h", "this help")("batch", po::value<int64_t>()->default_value(16), "B")(
      "channels", po::value<int64_t>()->default_value(768), "H")(
      "seq-len", po::value<std::string>()->default_value("256,1024,4096,8192"), "comma-separated lengths L")(
      "dtype", po::value<std::string>()->default_value("bf16"), "dtype of u and y: bf16, fp16 or fp32")(
      "backward", po::bool_switch(), "time forward plus backward (gradients of u, k and D)")(
      "warmup", po::value<int>()->default_value(5), "untimed calls first")(
      "iters", po::value<int>()->default_value(30), "timed calls (at least 20); the median is reported")(
      "kernel-len", po::value<int64_t>(), "filter length N: L_k = min(N, L) (default: L_k = L)")(
      "window", po::value<int64_t>()->default_value(0),
      "chunked path's window length (>= L_k; 0: fftconv_chunk_window(L_k)); needs --kernel-len")(
      "chunk-len", po::value<int64_t>(),
      "state passing's chunk length past the fused limit (1 to the longest fused L; default: the diagonal SSM "
      "layers' own, 16384 up to L = 262144 and 8192 beyond)")(
      "cuda-graph", po::bool_switch(),
      "time each variant as replays of a CUDA graph of one call per input set (no host dispatch or launch "
      "gaps, as a --cuda-graph training step sees them; the environment column records cuda_graph)")(
      "no-db", po::bool_switch(), "print only, write nothing");
  add_db_option(desc);
  po::variables_map vm;
  if (auto s = parse(rest, desc, {}, vm, "bench fftconv"); !s.ok()) return report(s);
  if (vm.count("help") || std::find(rest.begin(), rest.end(), "-h") != rest.end()) {
    std::cout << kBenchUsage << desc;
    return kExitOk;
  }
  BenchConfig c;
  c.batch = vm["batch"].as<int64_t>();
  c.channels = vm["channels"].as<int64_t>();
  c.backward = vm["backward"].as<bool>();
  c.warmup = vm["warmup"].as<int>();
  c.iters = vm["iters"].as<int>();
  c.db = vm["db"].as<std::string>();
  c.no_db = vm["no-db"].as<bool>();
  c.graphed = vm["cuda-graph"].as<bool>();
  if (vm.count("kernel-len")) {
    c.kernel_len = vm["kernel-len"].as<int64_t>();
    if (c.kernel_len < 1)
      return report(absl::InvalidArgumentError(
          absl::StrCat("--kernel-len must be at least 1 (or left out for L_k = L), got ", c.kernel_len)));
  }
  if (vm.count("chunk-len")) c.chunk_len = vm["chunk-len"].as<int64_t>();
  if (vm.count("chunk-len") && (c.chunk_len < 1 || c.chunk_len > kFftConvFusedMaxLen))
    return report(absl::InvalidArgumentError(absl::StrCat("--chunk-len must be in [1, ", kFftConvFusedMaxLen,
                                                          "] (the longest L of the fused kernel), got ",
                                                          c.chunk_len)));
  c.window = vm["window"].as<int64_t>();
  if (c.window < 0 || (c.window > 0 && (c.kernel_len == 0 || c.window < c.kernel_len)))
    return report(absl::InvalidArgumentError(absl::StrCat(
        "--window must be 0 (the default) or at least --kernel-len, and needs --kernel-len; got --window ",
        c.window, c.kernel_len > 0 ? absl::StrCat(" with --kernel-len ", c.kernel_len) : " without --kernel-len")));
  if (c.batch < 1 || c.channels < 1)
    return report(absl::InvalidArgumentError(
        absl::StrCat("--batch and --channels must be at least 1, got --batch ", c.batch, " --channels ", c.channels)));
  if (c.warmup < 0 || c.iters < 20)
    return report(absl::InvalidArgumentError(
        absl::StrCat("--warmup must be >= 0 and --iters >= 20 (a median of fewer is noise), got --warmup ", c.warmup,
                     " --iters ", c.iters)));
  auto dtype = parse_dtype(vm["dtype"].as<std::string>());
  if (!dtype.ok()) return report(dtype.status());
  c.dtype = *dtype;
  auto lens = parse_lengths(vm["seq-len"].as<std::string>());
  if (!lens.ok()) return report(lens.status());
  c.seq_lens = *lens;
  return run_fftconv(c);
}

}  // namespace hippo::cli
