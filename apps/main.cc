// `hippo`: the command-line entry point. Dispatches to the subcommands in apps/cmd_*.cc.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <cstdlib>

#include "apps/cli.h"
#include "core/build_info.h"
#include "kernels/ssm_fused.h"
#include "kernels/fftconv.h"
#include "kernels/fftconv_blockfft.h"
#include "layers/projection.h"

namespace {
const char* kUsage =
    "usage: hippo COMMAND [options]   (hippo COMMAND --help for its options)\n"
    "\n"
    "commands:\n"
    "  layers     list the registered sequence-mixing layers with every option and state size\n"
    "  tasks      list the registered tasks with every option\n"
    "  train      train one run and store it in the results database\n"
    "  sweep      expand a sweep file into runs and execute those not yet finished\n"
    "  worker     execute queued runs of a database (another process beside a running sweep)\n"
    "  results    list | show RUN | table | export | query SQL | schema\n"
    "  reproduce  table2 | table3-mini: train a paper table's runs (resuming), print them beside the paper\n"
    "  generate   continue a prompt with a trained model (recurrent decoding where the layers allow)\n"
    "  tokenizer  train a SentencePiece tokenizer for the lm task\n"
    "  bench      fftconv | layer | generate: kernel, layer and decoding speed, beside the plain path\n"
    "  version    print hippo's version and commit\n";
}

int main(int argc, char** argv) {
  using namespace hippo::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? kExitBadInput : kExitOk;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  // HIPPO_FFTCONV_BLOCKFFT, HIPPO_FFTCONV_DIRECT, HIPPO_FFTCONV_FILTER, HIPPO_FFTCONV_RECOMPUTE,
  // HIPPO_FFTCONV_BWD_CHUNKS, HIPPO_SSM_KERNEL and HIPPO_PROJECTION are read on first use, deep inside a run:
  // a bad value is bad input here, before any command writes anything (not a failed run in the database).
  const struct {
    const char* name;
    void (*parse)(const char*);
    const char* unset_means;
  } env_switches[] = {
      {"HIPPO_FFTCONV_BLOCKFFT", [](const char* v) { hippo::parse_blockfft_dispatch(v); }, "off"},
      {"HIPPO_FFTCONV_DIRECT", [](const char* v) { hippo::parse_direct_dispatch(v); }, "auto"},
      {"HIPPO_FFTCONV_FILTER", [](const char* v) { hippo::internal::parse_fftconv_filter_env(v); }, "kernel"},
      {"HIPPO_FFTCONV_RECOMPUTE", [](const char* v) { hippo::internal::parse_fftconv_recompute_env(v); }, "off"},
      {"HIPPO_FFTCONV_BWD_CHUNKS", [](const char* v) { hippo::internal::parse_fftconv_bwd_chunks_env(v); }, "auto"},
      {"HIPPO_SSM_KERNEL", [](const char* v) { hippo::internal::parse_ssm_kernel_env(v); }, "fused"},
      {"HIPPO_PROJECTION", [](const char* v) { hippo::internal::parse_projection_env(v); }, "direct"},
  };
  for (const auto& sw : env_switches) {
    const char* env = std::getenv(sw.name);
    if (!env || !*env) continue;
    try {
      sw.parse(env);
    } catch (const c10::Error& e) {
      std::fprintf(stderr, "hippo: error: %s (unset means %s)\n", e.what_without_backtrace(), sw.unset_means);
      return kExitBadInput;
    }
  }
  try {
    if (cmd == "layers") return cmd_layers(args);
    if (cmd == "tasks") return cmd_tasks(args);
    if (cmd == "train") return cmd_train(args);
    if (cmd == "sweep") return cmd_sweep(args);
    if (cmd == "worker") return cmd_worker(args);
    if (cmd == "results") return cmd_results(args);
    if (cmd == "generate") return cmd_generate(args);
    if (cmd == "tokenizer") return cmd_tokenizer(args);
    if (cmd == "bench") return cmd_bench(args);
    if (cmd == "reproduce") return cmd_reproduce(args);
    if (cmd == "version" || cmd == "--version") {
      std::printf("hippo %s (commit %s)\n", hippo::build_version(), hippo::build_commit());
      return kExitOk;
    }
  } catch (const hippo::StatusError& e) {
    return report(e.status());
  } catch (const std::exception& e) {
    return report(absl::InternalError(e.what()));
  }
  std::fprintf(stderr, "hippo: error: unknown command '%s'; accepted: layers, tasks, train, sweep, worker, results, reproduce, generate, tokenizer, bench, version\n",
               cmd.c_str());
  return kExitBadInput;
}
