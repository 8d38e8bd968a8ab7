// `hippo layers` and `hippo tasks`: what is registered, with every option, its type, default and meaning.
#include <absl/strings/str_format.h>

#include <cstdio>

#include "apps/cli.h"
#include "layers/mixer.h"
#include "runner/run_config.h"
#include "tasks/task.h"

namespace hippo::cli {

namespace {
void print_schema(const OptionSchema& schema, const Json& values) {
  if (schema.specs().empty()) std::printf("    (no options)\n");
  for (const auto& s : schema.specs()) {
    const Json& v = values.contains(s.name) ? values[s.name] : s.default_value;
    std::printf("    %-16s %-26s %-10s %s\n", s.name.c_str(), s.accepted().c_str(), v.dump().c_str(), s.doc.c_str());
  }
}
}  // namespace

int cmd_layers(const std::vector<std::string>& args) {
  po::options_description desc("hippo layers: the registered sequence-mixing layers");
  desc.add_options()("help,h", "this help")("d-model", po::value<int64_t>()->default_value(64),
                                            "model width for the state sizes shown")(
      "seq-len", po::value<int64_t>()->default_value(256), "sequence length for state sizes that grow with it")(
      "set", po::value<std::vector<std::string>>()->composing(), "LAYER.OPTION=VALUE for the state sizes shown");
  po::variables_map vm;
  if (auto st = parse(args, desc, {}, vm, "layers"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  const int64_t d = vm["d-model"].as<int64_t>(), L = vm["seq-len"].as<int64_t>();
  Json given = Json::object();
  if (vm.count("set"))
    for (const auto& kv : vm["set"].as<std::vector<std::string>>()) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) return report(absl::InvalidArgumentError(absl::StrCat("--set '", kv, "': expected LAYER.OPTION=VALUE")));
      if (auto st = set_path(given, kv.substr(0, eq), parse_scalar(kv.substr(eq + 1))); !st.ok()) return report(st);
    }
  for (auto it = given.begin(); it != given.end(); ++it)
    if (!LayerRegistry::global().contains(it.key()))
      return report(LayerRegistry::global().find(it.key(), "layer").status());
  std::printf("Registered layers (option, accepted values, value, meaning); state sizes at d_model=%lld, seq_len=%lld,\n"
              "in real scalars per sequence (a complex number counts 2):\n", static_cast<long long>(d),
              static_cast<long long>(L));
  for (const auto& [name, e] : LayerRegistry::global().entries()) {
    auto opts = resolve_options(e.schema, given.contains(name) ? given[name] : Json(), "layer '" + name + "'");
    if (!opts.ok()) return report(opts.status());
    if (e.validate)
      if (auto st = e.validate(*opts, d); !st.ok()) return report(st);
    std::printf("\n%s: %s\n", name.c_str(), e.doc.c_str());
    std::printf("  recurrent: %s; state size per layer: %s = %lld\n",
                e.recurrent ? "yes (fixed-size state)" : "no (decodes with a growing cache)", e.state_formula.c_str(),
                static_cast<long long>(e.state_size(*opts, d, L)));
    print_schema(e.schema, opts->json());
  }
  return kExitOk;
}

int cmd_tasks(const std::vector<std::string>& args) {
  po::options_description desc("hippo tasks: the registered tasks");
  desc.add_options()("help,h", "this help");
  po::variables_map vm;
  if (auto st = parse(args, desc, {}, vm, "tasks"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  std::printf("Registered tasks (option, accepted values, default, meaning):\n");
  for (const auto& [name, e] : TaskRegistry::global().entries()) {
    auto opts = resolve_options(e.schema, {}, "task '" + name + "'");
    if (auto st = e.validate ? e.validate(*opts) : absl::OkStatus(); !st.ok()) {
      std::printf("\n%s: %s\n  defaults: not usable alone: %s\n", name.c_str(), e.doc.c_str(), std::string(st.message()).c_str());
    } else {
      auto task = e.factory(*opts);
      std::printf("\n%s: %s\n  defaults: vocab_size %lld, model input length %lld, chance %.3g%%\n", name.c_str(),
                  e.doc.c_str(), static_cast<long long>(task->vocab_size()), static_cast<long long>(task->input_len()),
                  100.0 * task->chance());
    }
    print_schema(e.schema, opts->json());
  }
  std::printf(
      "\nRun keys (top-level keys of a run config or sweep file):\n"
      "    layer            string                                mixer in every layer (hippo layers)\n"
      "    layers           list of strings                       per-layer schedule, e.g. [h3, attention] (instead of layer)\n"
      "    attn_layers      int list                              with layer: these 0-based layers are attention (hybrids)\n"
      "    task             string                                a task above\n"
      "    seed             int >= 0                   0          seed of weights, dropout and data\n"
      "    LAYER / TASK     map                                   options of that layer or task, e.g. s4d: {d_state: 32}\n");
  std::printf("\nTraining options (top-level keys of a run config or sweep file):\n");
  print_schema(train_schema(), Json::object());
  return kExitOk;
}

}  // namespace hippo::cli
