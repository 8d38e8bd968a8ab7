// `hippo bench layer`: the H3 layer (head_dim 1) through the default fftconv path (the fused CUDA kernel, the
// shift SSM's 64 taps by direct summation under HIPPO_FFTCONV_DIRECT=auto, and state passing past the diagonal SSM's single-pass length) and through the reference path (FftConvReferenceScope: torch::fft, one
// pass over the whole sequence), against the attention layer (scaled_dot_product_attention on LibTorch 2.x),
// forward and forward+backward; ms, speed-ups, rows in the bench table (benchmark 'layer'). Issue 6.
#include <absl/strings/ascii.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>

#include "apps/bench_util.h"
#include "apps/cli.h"
#include "core/device.h"
#include "core/op_count.h"
#include "kernels/fftconv.h"
#include "layers/mixer.h"
#include "layers/ssm.h"

namespace hippo::cli {

namespace {
const char* kVariants[] = {"h3", "h3_reference", "attention"};

// The mixer `name` with `options` at width d_model, in `dtype` on `device`; the SSMs inside (their parameters
// and their kernels) stay float32, as the fused kernel expects: only the projections run in half precision.
Mixer build(const std::string& name, const Json& options, int64_t d_model, int64_t L, torch::ScalarType dtype,
            const c10::Device& device, int64_t chunk_len, int64_t single_pass_len) {
  const LayerEntry* e = value_or_throw(LayerRegistry::global().find(name, "layer"));
  MixerArgs a;
  a.d_model = d_model;
  a.max_seq_len = L;
  a.options = value_or_throw(resolve_options(e->schema, options, name));
  auto m = e->factory(a);
  m->to(device, dtype);
  for (const auto& sub : m->modules(/*include_self=*/false)) {
    if (auto* diag = sub->as<DiagSSMImpl>()) {
      diag->to(torch::kFloat);
      diag->set_chunk_len(chunk_len);
      diag->set_single_pass_len(single_pass_len);
    }
    if (auto* shift = sub->as<ShiftSSMImpl>()) shift->to(torch::kFloat);
  }
  return m;
}
}  // namespace

int bench_layer(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo bench layer: the H3 layer (head_dim 1) through the default path (fused CUDA FFT convolution,\n"
      "the shift SSM's filter by direct summation unless HIPPO_FFTCONV_DIRECT=off; projections into and\n"
      "out of the (B, D, L) rows by batched GEMMs unless HIPPO_PROJECTION=transpose; state passing past\n"
      "L = 16384, or past --chunk-len) and the reference path (torch::fft, whole sequence),\n"
      "against attention (scaled_dot_product_attention on LibTorch 2.x), forward and forward+backward.\n"
      "Timing: CUDA events on a GPU (the steady clock on the CPU), warm-up calls, the median of the timed\n"
      "calls. Rows go to the bench table of --db (benchmark 'layer'; device 'cpu' for CPU rows).\n"
      "example: hippo bench layer --batch 4 --seq-len 1024,2048,4096,8192,16384 --dtype bf16\noptions");
  desc.add_options()("help,h", "this help")("batch", po::value<int64_t>()->default_value(4), "B")(
      "d-model", po::value<int64_t>()->default_value(768), "model width D")(
      "n-heads", po::value<int64_t>()->default_value(12), "attention heads (768 / 12 = 64-wide heads)")(
      "seq-len", po::value<std::string>()->default_value("1024,2048,4096,8192,16384"),
      "comma-separated lengths L")(
      "dtype", po::value<std::string>()->default_value("bf16"),
      "dtype of activations and projections: bf16, fp16 or fp32 (SSM parameters stay float32)")(
      "chunk-len", po::value<int64_t>(),
      "state passing past this L, in chunks of this length, in the H3 layer's diagonal SSM (default: past "
      "16384, the fused kernel's longest L, in chunks of 16384 up to L = 262144 and of 8192 beyond)")(
      "device", po::value<std::string>()->default_value("auto"), "cpu, cuda, cuda:N or auto")(
      "warmup", po::value<int>()->default_value(3), "untimed calls first")(
      "iters", po::value<int>()->default_value(20), "timed calls (at least 20); the median is reported")(
      "no-db", po::bool_switch(), "print only, write nothing")(
      "cuda-graph", po::bool_switch(),
      "time each call as one replay of a CUDA graph captured after the warm-up (no host dispatch or launch "
      "gaps, as a --cuda-graph training step sees them); needs a CUDA device")(
      "variants", po::value<std::string>()->default_value("h3,h3_reference,attention"),
      "comma-separated subset of h3, h3_reference, attention to time (rows need h3_reference for their "
      "speedup column: without it, pass --no-db; a profiler run over h3 alone is the use)")(
      "count-ops", po::bool_switch(),
      "also count the ATen operator calls of one call of each variant and pass (top level and all, with the "
      "most frequent), printed after each row");
  add_db_option(desc);
  po::variables_map vm;
  if (auto s = parse(args, desc, {}, vm, "bench layer"); !s.ok()) return report(s);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  const int64_t B = vm["batch"].as<int64_t>(), D = vm["d-model"].as<int64_t>(),
                heads = vm["n-heads"].as<int64_t>();
  // chunk 0: the layer's default chunk for each L (DiagSSMImpl::default_chunk_len).
  const int64_t chunk = vm.count("chunk-len") ? vm["chunk-len"].as<int64_t>() : 0,
                single_pass = vm.count("chunk-len") ? chunk : DiagSSMImpl::kDefaultSinglePassLen;
  const int warmup = vm["warmup"].as<int>(), iters = vm["iters"].as<int>();
  const bool count_ops = vm["count-ops"].as<bool>(), graphed = vm["cuda-graph"].as<bool>();
  if (B < 1 || D < 1 || heads < 1 || D % heads != 0)
    return report(absl::InvalidArgumentError(absl::StrFormat(
        "--batch %d, --d-model %d, --n-heads %d: need positive values with d_model divisible by n_heads", B,
        D, heads)));
  if (vm.count("chunk-len") && chunk < 1)
    return report(absl::InvalidArgumentError(absl::StrCat("--chunk-len must be >= 1, got ", chunk)));
  if (warmup < 0 || iters < 20)
    return report(absl::InvalidArgumentError(
        absl::StrCat("--warmup must be >= 0 and --iters >= 20 (a median of fewer is noise), got --warmup ", warmup,
                     " --iters ", iters)));
  std::vector<std::string> variants;
  for (absl::string_view v :
       absl::StrSplit(vm["variants"].as<std::string>(), ',', absl::SkipWhitespace())) {
    v = absl::StripAsciiWhitespace(v);
    if (std::find(std::begin(kVariants), std::end(kVariants), v) == std::end(kVariants))
      return report(absl::InvalidArgumentError(absl::StrCat(
          "--variants: unknown variant '", v, "'; accepted: ", absl::StrJoin(kVariants, ", "))));
    if (std::find(variants.begin(), variants.end(), v) == variants.end()) variants.emplace_back(v);
  }
  if (variants.empty())
    return report(absl::InvalidArgumentError(
        absl::StrCat("--variants: no variant named; accepted: ", absl::StrJoin(kVariants, ", "))));
  const bool no_db = vm["no-db"].as<bool>();
  if (!no_db && std::find(variants.begin(), variants.end(), "h3_reference") == variants.end())
    return report(absl::InvalidArgumentError(
        "--variants without h3_reference: the rows' speedup column is the reference's time over theirs; add "
        "h3_reference or pass --no-db"));
  auto dtype = parse_dtype(vm["dtype"].as<std::string>());
  if (!dtype.ok()) return report(dtype.status());
  auto lens = parse_lengths(vm["seq-len"].as<std::string>());
  if (!lens.ok()) return report(lens.status());
  auto device = parse_device(vm["device"].as<std::string>());
  if (!device.ok()) return report(device.status());
  if (device->is_cpu() && vm["device"].as<std::string>() == "auto")
    std::fprintf(stderr,
                 "hippo bench layer: no CUDA GPU usable here, so this times the CPU (the fused kernels and the "
                 "comparison the benchmark is for need --device cuda); --device cpu says so and drops this note\n");
  if (graphed && (!device->is_cuda() || !cuda_graphs_built()))
    return report(absl::InvalidArgumentError(absl::StrCat(
        "--cuda-graph needs a CUDA device and a build with CUDA graphs; got --device ", device->str(),
        cuda_graphs_built() ? "" : " in a build without CUDA")));
  auto sink = open_bench_sink(vm["db"].as<std::string>(), no_db, *device);
  if (!sink.ok()) return report(sink.status());
  const std::string& dev_name = sink->device_name;
  const double copy_gbs = copy_bandwidth(warmup, iters, *device);
  const bool fused = device->is_cuda() && fftconv_cuda_built();
  std::printf(
      "hippo bench layer: B=%lld D=%lld, %s, on %s; h3: head_dim 1, d_state 64, %s, state passing past "
      "L=%lld in chunks of %s; "
      "attention: %lld heads\n",
      static_cast<long long>(B), static_cast<long long>(D), dtype_name(*dtype), dev_name.c_str(),
      fused ? "fused CUDA fftconv" : "fftconv reference (no CUDA kernels here)",
      static_cast<long long>(single_pass),
      chunk > 0 ? std::to_string(chunk).c_str() : "16384 (8192 past L=262144)", static_cast<long long>(heads));
  std::printf(
      "median of %d calls after %d warm-up calls (%s); h3_reference: torch::fft over the whole sequence\n\n",
      iters, warmup,
      graphed ? "CUDA events around CUDA graph replays" : device->is_cuda() ? "CUDA events" : "steady clock");
  std::printf("| L | pass | h3 ms | h3_reference ms | attention ms | h3 vs reference | h3 vs attention |\n");
  std::printf("|---:|---|---:|---:|---:|---:|---:|\n");
  std::fflush(stdout);

  std::vector<Json> rows;
  int failed = 0, attempted = 0;  // measurements that threw (their rows are missing), of all tried
  std::string ops_report;  // --count-ops: printed after the table
  const int64_t esize = static_cast<int64_t>(c10::elementSize(*dtype));
  for (const int64_t L : *lens) {
    torch::manual_seed(L);
    std::map<std::string, Mixer> mixers;
    try {
      mixers["h3"] = build("h3", Json{{"head_dim", 1}}, D, L, *dtype, *device, chunk, single_pass);
      if (std::find(variants.begin(), variants.end(), "attention") != variants.end())
        mixers["attention"] =
            build("attention", Json{{"n_heads", heads}}, D, L, *dtype, *device, chunk, single_pass);
    } catch (const std::exception& e) {
      // The rows of the lengths before this one are written first: nothing measured is lost (exit 1 then; 2 when
      // nothing was measured, so nothing written).
      const auto error = absl::InvalidArgumentError(absl::StrCat("hippo bench layer: cannot build the layers at L=", L,
                                                                 ": ", e.what()));
      if (rows.empty()) return report(error);
      if (auto st = sink->write(rows); !st.ok()) return report(st);
      std::fprintf(stderr, "hippo: error: %s (the %zu rows measured before were kept)\n",
                   std::string(error.message()).c_str(), rows.size());
      return kExitFailure;
    }
    mixers["h3_reference"] = mixers["h3"];
    const auto opts = torch::TensorOptions().device(*device);
    const auto x = torch::randn({B, L, D}, opts).to(*dtype).requires_grad_(true);
    const auto dy = torch::randn({B, L, D}, opts).to(*dtype);
    for (const bool backward : {false, true}) {
      const char* pass = backward ? "forward+backward" : "forward";
      std::map<std::string, double> med;
      for (const std::string& variant : variants) {
        auto& m = mixers[variant];
        std::vector<torch::Tensor> wrt = {x};
        for (const auto& p : m->parameters()) wrt.push_back(p);
        auto call = [&](int) {
          std::optional<FftConvReferenceScope> reference;
          if (variant == "h3_reference") reference.emplace();
          if (!backward) {
            torch::NoGradGuard no_grad;
            m->forward(x);
          } else {
            auto g = torch::autograd::grad({m->forward(x)}, wrt, {dy}, false, false, /*allow_unused=*/true);
          }
        };
        std::vector<double> ms;
        ++attempted;
        try {
          ms = graphed ? time_graphed(call, warmup, iters, *device) : time_calls(call, warmup, iters, *device);
        } catch (const c10::Error& e) {
          // Out of memory at long L (attention's scores on LibTorch 1.13): the row is missing, the run goes
          // on.
          std::fprintf(stderr, "hippo bench layer: %s L=%lld %s failed: %s\n", variant.c_str(),
                       static_cast<long long>(L), pass, e.what_without_backtrace());
          ++failed;
          continue;
        }
        med[variant] = median(ms);
        if (count_ops) {
          // After the timed calls, so the counter's own cost never enters the times.
          OpCounter c;
          call(0);
          ops_report += absl::StrFormat("L=%d %s %s: %d top-level ops (%d with nested); most frequent: %s\n",
                                        L, variant, pass, c.top_level_total(), c.all_total(), c.summary(6));
        }
        const int64_t bytes = (backward ? 5 : 2) * B * L * D * esize;
        const int64_t fft_size = variant == "attention" ? 0
                                 : variant == "h3_reference"
                                     ? fftconv_size(L, L)
                                 : L <= single_pass ? fftconv_size(L, L)
                                                    : fftconv_size(chunk > 0 ? chunk : DiagSSMImpl::default_chunk_len(L),
                                                                   chunk > 0 ? chunk : DiagSSMImpl::default_chunk_len(L));
        Json row = sink->common_columns(graphed ? Json{{"cuda_graph", true}} : Json::object());
        row.update(Json{{"benchmark", "layer"},
                            {"variant", variant},
                            {"pass", pass},
                            {"batch", B},
                            {"channels", D},
                            {"seq_len", L},
                            {"fft_size", fft_size},
                            {"dtype", dtype_name(*dtype)},
                            {"median_ms", med[variant]},
                            {"min_ms", *std::min_element(ms.begin(), ms.end())},
                            {"iters", iters},
                            {"bytes", bytes},
                            {"gbytes_per_s", static_cast<double>(bytes) / (med[variant] * 1e-3) / 1e9},
                            {"copy_gbytes_per_s", copy_gbs},
                            {"speedup", 1.0}});  // set below, once the reference is timed
        rows.push_back(row);
      }
      // speedup: the H3 reference path's median over this row's (the bench table's meaning of the column).
      // Without the reference's time (it failed) this row's others cannot say their speedup: they are printed,
      // not stored.
      const bool have_ref = med.count("h3_reference") > 0;
      for (auto it = rows.begin(); it != rows.end();) {
        if ((*it)["seq_len"] != L || (*it)["pass"] != pass) {
          ++it;
        } else if (have_ref) {
          (*it)["speedup"] = med["h3_reference"] / (*it)["median_ms"].get<double>();
          ++it;
        } else {
          if (!no_db)
            std::fprintf(stderr, "hippo bench layer: L=%lld %s: %s not stored (no h3_reference time for its speedup)\n",
                         static_cast<long long>(L), pass, (*it)["variant"].get<std::string>().c_str());
          it = rows.erase(it);
        }
      }
      auto cell = [&](const std::string& v) {
        if (std::find(variants.begin(), variants.end(), v) == variants.end()) return std::string("-");
        return med.count(v) ? absl::StrFormat("%.3f", med[v]) : std::string("failed");
      };
      auto ratio = [&](const std::string& a, const std::string& b) {
        return med.count(a) && med.count(b) ? absl::StrFormat("%.2fx", med[a] / med[b]) : std::string("-");
      };
      std::printf("| %lld | %s | %s | %s | %s | %s | %s |\n", static_cast<long long>(L), pass,
                  cell("h3").c_str(), cell("h3_reference").c_str(), cell("attention").c_str(),
                  ratio("h3_reference", "h3").c_str(), ratio("attention", "h3").c_str());
      std::fflush(stdout);
    }
  }
  if (count_ops) std::printf("\nATen operator calls of one call (--count-ops):\n%s", ops_report.c_str());
  if (auto st = sink->write(rows); !st.ok()) return report(st);
  if (failed > 0) {
    std::fprintf(stderr, "hippo: error: bench layer: %d of %d measurements failed (messages above); the %zu rows "
                 "measured were kept\n", failed, attempted, rows.size());
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace hippo::cli
