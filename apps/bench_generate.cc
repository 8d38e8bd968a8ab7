// `hippo bench generate`: decoding speed of hybrid H3 against a Transformer of the same size (H3.md 8: the
// paper reports hybrid H3 2.4x faster than a Transformer at 1.3B parameters). Random weights: speed only.
#include <absl/strings/str_format.h>
#include <absl/strings/str_join.h>
#include <absl/strings/str_split.h>
#include <absl/strings/numbers.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "apps/cli.h"
#include "core/device.h"
#include "layers/model.h"
#include "apps/bench_util.h"

namespace hippo::cli {

namespace {
// The schedules compared: every layer attention, or H3 with attention at layers 1 and n/2 + 1 (two attention
// layers, as the paper's hybrids; H3.md 7).
std::vector<std::string> schedule(const std::string& model, int64_t n_layer) {
  if (model == "transformer") return std::vector<std::string>(n_layer, "attention");
  std::vector<std::string> s(n_layer, "h3");
  s[std::min<int64_t>(1, n_layer - 1)] = "attention";
  if (n_layer >= 4) s[n_layer / 2 + 1] = "attention";
  return s;
}

void sync(const torch::Device& dev) {
  if (dev.is_cuda()) torch::cuda::synchronize(dev.index());
}
}  // namespace

int bench_generate(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo bench generate: tokens per second of recurrent generation, hybrid H3 against a Transformer of the\n"
      "same width and depth (random weights, float32, greedy). Prefill runs the prompt through the parallel form;\n"
      "decoding steps SSM states and attention key-value caches.\n"
      "example: hippo bench generate --device cuda --d-model 768 --n-layer 12 --batch 1,64 --prompt-len 512,1024,2048\noptions");
  desc.add_options()("help,h", "this help")("d-model", po::value<int64_t>()->default_value(256), "model width")(
      "n-layer", po::value<int64_t>()->default_value(4), "layers (the hybrid has attention at layer 1, and also at n/2+1 when n >= 4)")(
      "n-heads", po::value<int64_t>()->default_value(4), "attention heads")(
      "batch", po::value<std::string>()->default_value("1"), "batch sizes, comma-separated")(
      "prompt-len", po::value<std::string>()->default_value("128"), "prompt lengths, comma-separated")(
      "new-tokens", po::value<int64_t>()->default_value(32), "tokens generated per sequence")(
      "vocab", po::value<int64_t>()->default_value(256), "vocabulary size")(
      "repeats", po::value<int64_t>()->default_value(3), "timed repetitions (the median is reported) after one warm-up")(
      "no-db", po::bool_switch(), "print only, write nothing");
  add_db_option(desc);
  add_run_options(desc);
  po::variables_map vm;
  if (auto st = parse(args, desc, {}, vm, "bench generate"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (auto st = apply_run_options(vm); !st.ok()) return report(st);
  auto batches = int_list(vm["batch"].as<std::string>(), "--batch", 1);
  if (!batches.ok()) return report(batches.status());
  auto prompts = int_list(vm["prompt-len"].as<std::string>(), "--prompt-len", 1);
  if (!prompts.ok()) return report(prompts.status());
  const int64_t D = vm["d-model"].as<int64_t>(), n_layer = vm["n-layer"].as<int64_t>(),
                heads = vm["n-heads"].as<int64_t>(), new_tokens = vm["new-tokens"].as<int64_t>(),
                V = vm["vocab"].as<int64_t>(), repeats = vm["repeats"].as<int64_t>();
  if (D < 1 || n_layer < 1 || heads < 1 || D % heads != 0)
    return report(absl::InvalidArgumentError(absl::StrFormat(
        "--d-model %d, --n-layer %d, --n-heads %d: need positive values with d_model divisible by n_heads", D, n_layer, heads)));
  if (new_tokens < 1 || V < 2 || repeats < 1)
    return report(absl::InvalidArgumentError("--new-tokens and --repeats must be >= 1, --vocab >= 2"));
  auto dev = parse_device(vm["device"].as<std::string>());
  if (!dev.ok()) return report(dev.status());
  auto sink = open_bench_sink(vm["db"].as<std::string>(), vm["no-db"].as<bool>(), *dev);
  if (!sink.ok()) return report(sink.status());
  std::vector<Json> rows;

  std::printf("generation speed, d_model %lld, %lld layers, float32, %lld new tokens, %s (median of %lld)\n",
              static_cast<long long>(D), static_cast<long long>(n_layer), static_cast<long long>(new_tokens),
              dev->str().c_str(), static_cast<long long>(repeats));
  std::printf("%-6s %-7s %-12s %10s %10s %12s\n", "batch", "prompt", "model", "prefill_ms", "decode_ms", "tokens/s");
  for (int64_t B : *batches)
    for (int64_t P : *prompts) {
      std::map<std::string, double> tps;
      for (const std::string model : {"transformer", "hybrid_h3"}) {
        ModelConfig c;
        c.vocab_size = V;
        c.d_model = D;
        c.max_seq_len = P + new_tokens;
        c.schedule = schedule(model, n_layer);
        for (const auto& n : c.schedule) {
          const LayerEntry* e = value_or_throw(LayerRegistry::global().find(n, "layer"));
          Json given = n == "attention" ? Json{{"n_heads", heads}} : Json::object();
          c.layer_options[n] = value_or_throw(resolve_options(e->schema, given, n));
        }
        torch::manual_seed(0);
        LanguageModel m(c);
        m->to(*dev);
        m->eval();
        torch::NoGradGuard no_grad;
        auto prompt = torch::randint(V, {B, P}, torch::TensorOptions().dtype(torch::kLong).device(*dev));
        std::vector<double> pre, dec;
        for (int64_t r = 0; r <= repeats; ++r) {
          DecodeState st;
          sync(*dev);
          const auto t0 = std::chrono::steady_clock::now();
          auto next = m->prefill(prompt, st).argmax(-1);
          sync(*dev);
          const auto t1 = std::chrono::steady_clock::now();
          for (int64_t t = 1; t < new_tokens; ++t) next = m->decode_step(next, st).argmax(-1);
          sync(*dev);
          const auto t2 = std::chrono::steady_clock::now();
          if (r == 0) continue;  // warm-up
          pre.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
          dec.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        }
        auto median = [](std::vector<double> v) {
          std::sort(v.begin(), v.end());
          return v[v.size() / 2];
        };
        const double p_ms = median(pre), d_ms = median(dec);
        double fastest = pre[0] + dec[0];
        for (size_t i = 1; i < pre.size(); ++i) fastest = std::min(fastest, pre[i] + dec[i]);
        tps[model] = static_cast<double>(B * new_tokens) / ((p_ms + d_ms) / 1000.0);
        std::printf("%-6lld %-7lld %-12s %10.2f %10.2f %12.1f\n", static_cast<long long>(B), static_cast<long long>(P),
                    model.c_str(), p_ms, d_ms, tps[model]);
        // One bench row per model and shape: median_ms is prefill + decode of one repetition; the generation
        // specifics (layers, new tokens, prefill/decode split, tokens/s) ride in `environment`.
        Json row = sink->common_columns(
            {{"bench_generate",
              {{"n_layer", n_layer}, {"n_heads", heads}, {"new_tokens", new_tokens}, {"vocab", V},
               {"prefill_ms", p_ms}, {"decode_ms", d_ms}, {"tokens_per_s", tps[model]}, {"schedule", c.schedule}}}});
        row.update(Json{{"benchmark", "generate"},
                        {"variant", model},
                        {"pass", "forward"},  // prefill + decoding: inference, no backward
                        {"batch", B},
                        {"channels", D},
                        {"seq_len", P},
                        {"fft_size", 0},
                        {"dtype", "float32"},
                        {"median_ms", p_ms + d_ms},  // one repetition: prefill + all decoding steps
                        {"min_ms", fastest},
                        {"iters", repeats},
                        {"bytes", 0},
                        {"gbytes_per_s", 0.0},
                        {"copy_gbytes_per_s", 0.0},
                        {"speedup", 1.0}});  // set below: the Transformer's time over this row's
        rows.push_back(row);
      }
      // speedup: tokens per second over the Transformer's at the same batch and prompt (its own row: 1).
      for (auto& r : rows)
        if (r["batch"] == B && r["seq_len"] == P) r["speedup"] = tps[r["variant"].get<std::string>()] / tps["transformer"];
      std::printf("%-6lld %-7lld %-12s %34s\n", static_cast<long long>(B), static_cast<long long>(P), "ratio",
                  absl::StrFormat("hybrid_h3 / transformer = %.2fx", tps["hybrid_h3"] / tps["transformer"]).c_str());
      std::fflush(stdout);
    }
  if (auto st = sink->write(rows); !st.ok()) return report(st);
  return kExitOk;
}

}  // namespace hippo::cli
