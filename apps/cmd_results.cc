// `hippo results`: list, show, table, export, query and schema over the results database (read-only).
#include <absl/strings/str_format.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_join.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>

#include "apps/cli.h"
#include "results/schema.h"
#include "results/table.h"
#include "runner/run_config.h"

namespace hippo::cli {

namespace {
const char* kResultsUsage =
    "usage: hippo results SUBCOMMAND [options]\n"
    "  list [--sweep NAME] [--status S]      runs with status, final test accuracy and wall time\n"
    "  show RUN                              one run: config, environment, every metric\n"
    "  table [--sweep NAME] [--metric M] [--split S] [--format text|md] [--rows K] [--cols K] [--best-over K]\n"
    "                                        final metric pivoted (default layers x tasks), mean ± 95% interval, n\n"
    "  export [--format csv|json] [--sweep NAME] [--status S] [--out FILE]\n"
    "  query \"SQL\"                           any SQL on a read-only connection\n"
    "  schema                                every table and column with its meaning (Markdown)\n"
    "  merge OUT.db SHARD.db...              fold shard databases (e.g. of a Slurm array) into OUT; idempotent\n"
    "every subcommand takes --db PATH (default results.db)\n";

absl::StatusOr<std::unique_ptr<ResultsDb>> open_ro(const po::variables_map& vm) {
  return ResultsDb::open(vm["db"].as<std::string>(), ResultsDb::Mode::kReadOnly);
}

absl::Status check_status_name(const po::variables_map& vm) {
  if (!vm.count("status")) return absl::OkStatus();
  const auto s = vm["status"].as<std::string>();
  for (const char* ok : {"queued", "running", "finished", "failed", "diverged"})
    if (s == ok) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unknown status '", s, "'; accepted: queued, running, finished, failed, diverged"));
}

RunFilter filter_of(const po::variables_map& vm) {
  RunFilter f;
  if (vm.count("sweep")) f.sweep = vm["sweep"].as<std::string>();
  if (vm.count("status")) f.status = vm["status"].as<std::string>();
  return f;
}

int list(ResultsDb& db, const po::variables_map& vm) {
  auto runs = db.list_runs(filter_of(vm));
  if (!runs.ok()) return report(runs.status());
  std::printf("%-5s %-10s %-26s %-20s %-5s %-9s %9s %8s %s\n", "id", "status", "layer", "task", "seed", "params",
              "test acc", "wall", "config hash");
  for (const auto& r : *runs) {
    auto ms = db.metrics(r.id);
    std::string acc = "-";
    if (ms.ok())
      for (const auto& m : *ms)
        if (m.split == "test" && m.name == "accuracy") acc = absl::StrFormat("%.1f%%", 100 * m.value);
    if (r.status != "finished" && r.status != "diverged") acc = "-";
    std::printf("%-5lld %-10s %-26s %-20s %-5lld %-9s %9s %8s %s\n", static_cast<long long>(r.id), r.status.c_str(),
                r.layer.c_str(), r.task.c_str(), static_cast<long long>(r.seed),
                r.param_count ? std::to_string(*r.param_count).c_str() : "-", acc.c_str(),
                r.wall_seconds ? absl::StrFormat("%.1fs", *r.wall_seconds).c_str() : "-", r.config_hash.c_str());
    if (r.status == "failed" && !r.error.empty()) std::printf("      error: %s\n", r.error.c_str());
  }
  if (runs->empty()) std::fprintf(stderr, "hippo: no runs match\n");
  return kExitOk;
}

int show(ResultsDb& db, const std::string& id_text) {
  int64_t id;
  if (!absl::SimpleAtoi(id_text, &id))
    return report(absl::InvalidArgumentError(absl::StrCat("RUN must be a run id (an integer), got '", id_text, "'")));
  auto r = db.get_run(id);
  if (!r.ok()) return report(r.status());
  auto opt = [](const std::optional<int64_t>& v) { return v ? std::to_string(*v) : std::string("-"); };
  std::printf("run %lld: %s × %s, seed %lld, %s\n", static_cast<long long>(r->id), r->layer.c_str(), r->task.c_str(),
              static_cast<long long>(r->seed), r->status.c_str());
  std::printf("  config hash   %s\n  parameters    %s\n  state size    %s (real scalars per sequence)\n", r->config_hash.c_str(),
              opt(r->param_count).c_str(), opt(r->state_size).c_str());
  std::printf("  steps         %s\n  attempts      %lld\n  created       %s\n  started       %s\n  ended         %s\n",
              opt(r->steps).c_str(), static_cast<long long>(r->attempts), r->created_at.c_str(), r->started_at.c_str(),
              r->ended_at.c_str());
  if (r->wall_seconds) std::printf("  wall time     %.1fs\n", *r->wall_seconds);
  std::printf("  environment   hippo %s (commit %s), LibTorch %s, device %s, host %s, threads %s\n",
              r->hippo_version.c_str(), r->commit_hash.c_str(), r->torch_version.c_str(), r->device.c_str(),
              r->host.c_str(), opt(r->threads).c_str());
  if (r->diverged_step) std::printf("  diverged at   step %lld\n", static_cast<long long>(*r->diverged_step));
  if (!r->error.empty()) std::printf("  error         %s\n", r->error.c_str());
  if (!r->model_path.empty()) std::printf("  model         %s  (hippo generate --run %lld)\n", r->model_path.c_str(), static_cast<long long>(r->id));
  std::printf("  config        %s\n", r->config.dump().c_str());
  auto ms = db.metrics(id);
  if (!ms.ok()) return report(ms.status());
  std::printf("  metrics (step split name value):\n");
  for (const auto& m : *ms)
    std::printf("    %8lld %-6s %-16s %.6g\n", static_cast<long long>(m.step), m.split.c_str(), m.name.c_str(), m.value);
  return kExitOk;
}
int merge(const po::variables_map& vm) {
  const auto paths = vm.count("paths") ? vm["paths"].as<std::vector<std::string>>() : std::vector<std::string>{};
  if (paths.size() < 2)
    return report(absl::InvalidArgumentError("hippo results merge: expected OUT.db and at least one SHARD.db"));
  // Every shard must open as a hippo database before OUT is touched.
  std::vector<std::unique_ptr<ResultsDb>> shards;
  std::set<std::string> seen;
  for (size_t i = 1; i < paths.size(); ++i) {
    if (paths[i] == paths[0]) return report(absl::InvalidArgumentError("hippo results merge: OUT.db is also a shard"));
    if (!seen.insert(paths[i]).second) continue;  // the same shard named twice is merged once
    auto s = ResultsDb::open(paths[i], ResultsDb::Mode::kReadOnly);
    if (!s.ok()) return report(s.status());
    shards.push_back(*std::move(s));
  }
  auto out = ResultsDb::open(paths[0], ResultsDb::Mode::kReadWrite);
  if (!out.ok()) return report(out.status());
  int64_t changed = 0;
  for (auto& s : shards) {
    auto n = (*out)->merge_from(*s);
    if (!n.ok()) return report(n.status());
    changed += *n;
  }
  auto runs = (*out)->list_runs({});
  std::printf("merged %zu shard(s) into %s: %lld run(s) added or replaced, %zu runs in all\n", shards.size(),
              paths[0].c_str(), static_cast<long long>(changed), runs.ok() ? runs->size() : 0);
  return kExitOk;
}
}  // namespace

int cmd_results(const std::vector<std::string>& args) {
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kResultsUsage, args.empty() ? stderr : stdout);
    return args.empty() ? kExitBadInput : kExitOk;
  }
  const std::string sub = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  po::options_description desc(absl::StrCat("hippo results ", sub));
  desc.add_options()("help,h", "this help");
  add_db_option(desc);
  po::positional_options_description pos;
  if (sub == "list") {
    desc.add_options()("sweep", po::value<std::string>(), "only this sweep")("status", po::value<std::string>(),
                                                                             "queued|running|finished|failed|diverged");
  } else if (sub == "show") {
    desc.add_options()("run", po::value<std::string>(), "run id");
    pos.add("run", 1);
  } else if (sub == "table") {
    desc.add_options()("sweep", po::value<std::string>(), "only this sweep")(
        "metric", po::value<std::string>()->default_value("accuracy"), "metric name")(
        "split", po::value<std::string>()->default_value("test"), "train or test")(
        "format", po::value<std::string>()->default_value("text"), "text or md")(
        "rows", po::value<std::string>()->default_value("layer"), "rows: layer, task, seed or a config key (d_model, lr, seq_len, ...)")(
        "cols", po::value<std::string>()->default_value("task"), "columns: the same choices")(
        "best-over", po::value<std::string>(), "per cell, keep the value of this key (e.g. lr) with the best mean");
  } else if (sub == "export") {
    desc.add_options()("format", po::value<std::string>()->default_value("csv"), "csv or json")(
        "sweep", po::value<std::string>(), "only this sweep")("status", po::value<std::string>(), "only this status")(
        "out", po::value<std::string>(), "write to FILE instead of standard output");
  } else if (sub == "query") {
    desc.add_options()("sql", po::value<std::string>(), "SQL statement");
    pos.add("sql", 1);
  } else if (sub == "schema") {
  } else if (sub == "merge") {
    desc.add_options()("paths", po::value<std::vector<std::string>>()->composing(), "OUT.db SHARD.db...");
    pos.add("paths", -1);
  } else {
    std::fprintf(stderr, "hippo: error: unknown results subcommand '%s'; accepted: list, show, table, export, query, schema, merge\n",
                 sub.c_str());
    return kExitBadInput;
  }
  po::variables_map vm;
  if (auto st = parse(rest, desc, pos, vm, "results " + sub); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (sub == "schema") {
    std::printf("%s", schema_markdown().c_str());
    return kExitOk;
  }
  if (sub == "merge") return merge(vm);
  if (auto st = check_status_name(vm); !st.ok()) return report(st);
  auto db = open_ro(vm);
  if (!db.ok()) return report(db.status());
  if (sub == "list") return list(**db, vm);
  if (sub == "show") {
    if (!vm.count("run")) return report(absl::InvalidArgumentError("hippo results show: missing RUN (a run id)"));
    return show(**db, vm["run"].as<std::string>());
  }
  if (sub == "table") {
    TableOptions o;
    if (vm.count("sweep")) o.sweep = vm["sweep"].as<std::string>();
    o.metric = vm["metric"].as<std::string>();
    o.split = vm["split"].as<std::string>();
    o.format = vm["format"].as<std::string>();
    o.percent = o.metric.find("accuracy") != std::string::npos || o.metric == "chance";
    o.rows = vm["rows"].as<std::string>();
    o.cols = vm["cols"].as<std::string>();
    if (vm.count("best-over")) o.best_over = vm["best-over"].as<std::string>();
    o.complete_config = with_omitted_defaults;
    auto t = results_table(**db, o);
    if (!t.ok()) return report(t.status());
    std::printf("%s", t->c_str());
    return kExitOk;
  }
  if (sub == "export") {
    auto text = export_runs(**db, filter_of(vm), vm["format"].as<std::string>());
    if (!text.ok()) return report(text.status());
    if (vm.count("out")) {
      std::ofstream out(vm["out"].as<std::string>());
      if (!out) return report(absl::FailedPreconditionError(absl::StrCat("cannot write '", vm["out"].as<std::string>(), "'")));
      out << *text;
    } else {
      std::printf("%s", text->c_str());
    }
    return kExitOk;
  }
  // query
  if (!vm.count("sql")) return report(absl::InvalidArgumentError("hippo results query: missing SQL"));
  auto r = (*db)->query(vm["sql"].as<std::string>());
  if (!r.ok()) return report(r.status());
  std::printf("%s\n", absl::StrJoin(r->columns, "\t").c_str());
  for (const auto& row : r->rows) std::printf("%s\n", absl::StrJoin(row, "\t").c_str());
  return kExitOk;
}

}  // namespace hippo::cli
