// `hippo generate` (text from a trained model, recurrent where the layers allow) and `hippo tokenizer train`.
#include <absl/strings/numbers.h>
#include <absl/strings/str_format.h>
#include <absl/strings/str_split.h>
#include <c10/util/Exception.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "apps/cli.h"
#include "core/device.h"
#include "results/db.h"
#include "runner/model_io.h"

namespace hippo::cli {

int cmd_generate(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo generate: continue a prompt with a trained model. The prompt runs through the parallel (convolutional)\n"
      "form, then tokens are decoded one at a time: SSM layers through their recurrent step, attention through a\n"
      "key-value cache.\n"
      "example: hippo generate --run 3 --prompt 'ROMEO:' --max-new-tokens 200 --temperature 0.8 --top-k 40\noptions");
  desc.add_options()("help,h", "this help")("run", po::value<int64_t>(), "run id whose saved model to use (see hippo results list)")(
      "checkpoint", po::value<std::string>(), "a model file instead of --run (run-ID.model.pt)")(
      "prompt", po::value<std::string>(), "prompt text (text tasks), at least one token")(
      "prompt-ids", po::value<std::string>(), "prompt as comma-separated token ids (any task)")(
      "max-new-tokens", po::value<int64_t>()->default_value(200), "tokens to generate (>= 0)")(
      "temperature", po::value<double>()->default_value(1.0), "sampling temperature (0 = greedy)")(
      "top-k", po::value<int64_t>()->default_value(0), "sample among the k most likely tokens (0 = all)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the sampling");
  add_db_option(desc);
  add_run_options(desc);
  po::variables_map vm;
  if (auto st = parse(args, desc, {}, vm, "generate"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (auto st = apply_run_options(vm); !st.ok()) return report(st);
  if (vm.count("run") == vm.count("checkpoint"))
    return report(absl::InvalidArgumentError("hippo generate: give exactly one of --run RUN_ID and --checkpoint PATH"));
  if (vm.count("prompt") == vm.count("prompt-ids"))
    return report(absl::InvalidArgumentError("hippo generate: give exactly one of --prompt TEXT and --prompt-ids IDS"));
  const int64_t max_new = vm["max-new-tokens"].as<int64_t>();
  SamplingOptions so;
  so.temperature = vm["temperature"].as<double>();
  so.top_k = vm["top-k"].as<int64_t>();
  so.seed = vm["seed"].as<uint64_t>();
  if (max_new < 0) return report(absl::InvalidArgumentError("--max-new-tokens must be >= 0"));
  if (!(so.temperature >= 0) || !std::isfinite(so.temperature))
    return report(absl::InvalidArgumentError("--temperature must be a finite number >= 0 (0 = greedy)"));
  if (so.top_k < 0) return report(absl::InvalidArgumentError("--top-k must be >= 0 (0 = all tokens)"));

  std::string path;
  Json config;
  if (vm.count("run")) {
    auto db = ResultsDb::open(vm["db"].as<std::string>(), ResultsDb::Mode::kReadOnly);
    if (!db.ok()) return report(db.status());
    auto run = (*db)->get_run(vm["run"].as<int64_t>());
    if (!run.ok()) return report(run.status());
    if (run->model_path.empty())
      return report(absl::FailedPreconditionError(absl::StrCat(
          "run ", run->id, " (", run->layer, " × ", run->task, ", ", run->status,
          ") has no saved model: text tasks save theirs when they finish; other runs need hippo sweep/train "
          "--save-models")));
    path = run->model_path;
    config = run->config;
  } else {
    path = vm["checkpoint"].as<std::string>();
  }
  auto loaded = load_model(path, vm["device"].as<std::string>(), config);
  if (!loaded.ok()) return report(loaded.status());
  auto& model = loaded->model;
  const Tokenizer* tok = loaded->task->tokenizer();

  std::vector<int64_t> ids;
  if (vm.count("prompt")) {
    if (!tok)
      return report(absl::InvalidArgumentError(absl::StrCat(
          "task '", loaded->config.at("task").get<std::string>(), "' has no tokenizer: give --prompt-ids")));
    ids = tok->encode(vm["prompt"].as<std::string>());
  } else {
    for (absl::string_view p : absl::StrSplit(vm["prompt-ids"].as<std::string>(), ',', absl::SkipEmpty())) {
      int64_t v;
      if (!absl::SimpleAtoi(p, &v) || v < 0 || v >= model->config().vocab_size)
        return report(absl::InvalidArgumentError(absl::StrCat("--prompt-ids: '", p, "' is not a token id in [0, ",
                                                              model->config().vocab_size, ")")));
      ids.push_back(v);
    }
  }
  if (ids.empty()) return report(absl::InvalidArgumentError("the prompt must have at least one token"));
  if (!model->can_decode())
    return report(absl::InvalidArgumentError("a layer of this model cannot decode step by step"));
  const int64_t P = static_cast<int64_t>(ids.size()), max_len = model->config().max_seq_len;
  // The last new token is never fed back, so P + max_new - 1 positions are used.
  if (model->pos_embed_ && P + max_new - 1 > max_len)
    return report(absl::InvalidArgumentError(absl::StrFormat(
        "prompt (%d tokens) + --max-new-tokens (%d) - 1 exceed %d, the positions this model's learned position "
        "embeddings cover", P, max_new, max_len)));

  const torch::Device dev = value_or_throw(parse_device(vm["device"].as<std::string>()));
  auto prompt = torch::tensor(ids, torch::kInt64).unsqueeze(0).to(dev);
  const auto t0 = std::chrono::steady_clock::now();
  torch::Tensor out;
  try {
    out = model->generate(prompt, max_new, so).to(torch::kCPU);
  } catch (const c10::Error& e) {
    return report(absl::InternalError(absl::StrCat("generation failed: ", e.what_without_backtrace())));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int64_t> all(out.data_ptr<int64_t>(), out.data_ptr<int64_t>() + out.numel());
  if (tok) {
    std::string text = tok->decode(all);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  } else {
    for (size_t i = 0; i < all.size(); ++i) std::printf("%s%lld", i ? "," : "", static_cast<long long>(all[i]));
    std::printf("\n");
  }
  std::fprintf(stderr, "hippo generate: %lld prompt + %lld new tokens in %.3f s (%.1f new tokens/s, %s)\n",
               static_cast<long long>(P), static_cast<long long>(max_new), secs,
               secs > 0 ? static_cast<double>(max_new) / secs : 0.0, dev.str().c_str());
  return kExitOk;
}

int cmd_tokenizer(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo tokenizer train: train a SentencePiece BPE tokenizer on a text file (use it with the lm task's\n"
      "tokenizer option).\nexample: hippo tokenizer train --input ../shared/data/tinyshakespeare/input.txt "
      "--vocab-size 1024 --out shakespeare.model\noptions");
  desc.add_options()("help,h", "this help")("action", po::value<std::string>(), "train")(
      "input", po::value<std::string>(), "UTF-8 text file")("vocab-size", po::value<int64_t>(), "pieces, in [64, 1048576]")(
      "out", po::value<std::string>(), "model file to write");
  po::positional_options_description pos;
  pos.add("action", 1);
  po::variables_map vm;
  if (auto st = parse(args, desc, pos, vm, "tokenizer"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (!vm.count("action") || vm["action"].as<std::string>() != "train")
    return report(absl::InvalidArgumentError("hippo tokenizer: expected the action 'train' (the only one)"));
  if (!vm.count("input") || !vm.count("vocab-size") || !vm.count("out"))
    return report(absl::InvalidArgumentError("hippo tokenizer train: --input, --vocab-size and --out are required"));
  const auto t0 = std::chrono::steady_clock::now();
  if (auto st = train_sentencepiece(vm["input"].as<std::string>(), vm["vocab-size"].as<int64_t>(),
                                    vm["out"].as<std::string>());
      !st.ok())
    return report(st);
  auto tok = load_sentencepiece(vm["out"].as<std::string>());
  if (!tok.ok()) return report(tok.status());
  std::fprintf(stderr, "hippo tokenizer: wrote %s (%lld pieces) in %.1f s\n", vm["out"].as<std::string>().c_str(),
               static_cast<long long>((*tok)->vocab_size()),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return kExitOk;
}

}  // namespace hippo::cli
