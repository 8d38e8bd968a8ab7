// `hippo reproduce table2`: trains the runs of the paper's Table 2 (resuming what a previous call left)
// through the sweep executor, then prints the measured table beside the paper's numbers.
#include <absl/strings/numbers.h>
#include <absl/strings/str_split.h>

#include <cstdio>
#include <functional>
#include <iostream>

#include "apps/cli.h"
#include "runner/reproduce.h"

namespace hippo::cli {

namespace {
absl::StatusOr<int64_t> parse_seeds(const std::string& text) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || n < 1 || n > 100)
    return absl::InvalidArgumentError(
        absl::StrCat("--seeds must be an integer in [1, 100], got '", text, "'"));
  return n;
}

absl::StatusOr<std::vector<double>> parse_lrs(const std::string& text) {
  std::vector<double> out;
  for (absl::string_view p : absl::StrSplit(text, ',')) {
    double v;
    if (p.empty() && text.empty()) break;  // no value at all: the message below
    if (!absl::SimpleAtod(p, &v) || !(v > 0 && v <= 1))
      return absl::InvalidArgumentError(absl::StrCat(
          "--lrs '", text, "': expected comma-separated learning rates in (0, 1], e.g. 5e-4,1e-3,2e-3"));
    for (double seen : out)
      if (seen == v)
        return absl::InvalidArgumentError(absl::StrCat("--lrs '", text, "': ", p, " is given twice"));
    out.push_back(v);
  }
  if (out.empty())
    return absl::InvalidArgumentError("--lrs: give at least one learning rate, e.g. 5e-4,1e-3,2e-3");
  return out;
}
// --schedule, with --quick as its shorthand. Errors (kInvalidArgument) when the two contradict.
absl::StatusOr<std::string> schedule_option(const po::variables_map& vm, const std::string& fallback) {
  std::string schedule = vm.count("schedule") ? vm["schedule"].as<std::string>() : fallback;
  if (vm["quick"].as<bool>()) {
    if (vm.count("schedule") && schedule != "quick")
      return absl::InvalidArgumentError(absl::StrCat("--quick contradicts --schedule ", schedule));
    schedule = "quick";
  }
  return schedule;
}

absl::StatusOr<std::string> format_option(const po::variables_map& vm) {
  const std::string format = vm["format"].as<std::string>();
  if (format != "text" && format != "md")
    return absl::InvalidArgumentError(absl::StrCat("--format '", format, "': accepted: text, md"));
  return format;
}

// Prints the plan (--dry-run), or executes its runs through the sweep executor and prints `render`'s table.
int run_plan(const po::variables_map& vm, const std::string& table, const ReproducePlan& plan,
             const std::function<absl::StatusOr<std::string>(ResultsDb&)>& render) {
  if (vm["dry-run"].as<bool>()) {
    std::printf("reproduce %s: sweep '%s', %zu runs\n%s\n", table.c_str(), plan.sweep_name.c_str(), plan.runs.size(),
                plan.schedule_text.c_str());
    for (const auto& r : plan.runs)
      std::printf("  %s  %-28s %-20s lr %-7g seed %lld  %s\n", r.hash.c_str(), r.layer_label.c_str(), r.task.c_str(),
                  r.config["train"]["lr"].get<double>(), static_cast<long long>(r.seed), r.config.dump().c_str());
    return kExitOk;
  }
  auto outcome = execute_sweep(vm, plan.sweep_name, plan.source, plan.runs);
  if (!outcome.ok()) return report(outcome.status());
  auto text = render(*outcome->db);
  if (!text.ok()) return report(text.status());
  std::printf("%s", text->c_str());
  return exit_code(outcome->summary);
}

// `hippo reproduce table3-mini`: the options already parsed by cmd_reproduce.
int reproduce_table3_mini(const po::variables_map& vm) {
  if (!vm["lrs"].defaulted())
    return report(absl::InvalidArgumentError("--lrs applies to table2 only (table3-mini uses one recipe)"));
  Table3MiniOptions o;
  o.corpus = vm["corpus"].as<std::string>();
  o.precision = vm["precision"].as<std::string>();
  auto schedule = schedule_option(vm, o.schedule);
  if (!schedule.ok()) return report(schedule.status());
  o.schedule = *schedule;
  if (!vm["seeds"].defaulted()) {
    auto seeds = parse_seeds(vm["seeds"].as<std::string>());
    if (!seeds.ok()) return report(seeds.status());
    o.seeds = *seeds;
  }
  auto format = format_option(vm);
  if (!format.ok()) return report(format.status());
  auto plan = table3_mini_plan(o);
  if (!plan.ok()) return report(plan.status());
  return run_plan(vm, "table3-mini", *plan, [&](ResultsDb& db) { return render_table3_mini(db, *plan, *format); });
}
}  // namespace

int cmd_reproduce(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo reproduce TABLE: train the runs of one of the paper's tables (resuming: finished runs are not "
      "trained\n"
      "again) and print the measured table beside the paper's numbers. TABLE: table2 (H3.md 6.4-6.5: S4D, "
      "GSS, H3 and\n"
      "attention on induction head and associative recall). The runs are stored as the sweep 'table2' "
      "('table2-quick'\n"
      "with --quick), so `hippo results table --sweep table2 --best-over lr` prints them again later.\n"
      "table3-mini (H3.md 7 at small scale: Transformer, H3, hybrid H3, S4D and GSS with one recipe on --corpus,\n"
      "validation loss, perplexity and bits per byte beside the paper's ordering; sweep 'table3-mini').\n"
      "example: hippo reproduce table2 --quick --format md\n"
      "example: hippo reproduce table3-mini --device cuda --precision bf16      (--quick: CPU-sized)\noptions");
  desc.add_options()("help,h", "this help")("table", po::value<std::string>(), "table2 or table3-mini")(
      "corpus", po::value<std::string>()->default_value("../shared/data/tinyshakespeare/input.txt"),
      "table3-mini: the text file(s) to train and validate on")(
      "quick", po::bool_switch(), "a short schedule for a first look (--schedule quick)")(
      "schedule", po::value<std::string>(),
      "paper (default: H3.md 6.4, 400/200 epochs), quick (8/4 epochs, a fiftieth of the steps), tiny (seconds, for tests; measures "
      "nothing)")("seeds", po::value<std::string>()->default_value("3"),
                  "seeds per cell (0 .. N-1), 1 to 100 (table3-mini: default 1)")(
      "lrs", po::value<std::string>()->default_value("5e-4,1e-3,2e-3"),
      "peak learning rates tried per layer and task; the table reports the best per cell")(
      "format", po::value<std::string>()->default_value("text"), "text or md")(
      "precision", po::value<std::string>()->default_value("fp32"),
      "table3-mini: fp32, or bf16 (CUDA autocast, SSM parameters and states in float32; sweep table3-mini-bf16)")(
      "dry-run", po::bool_switch(), "print the runs that would be made; write nothing");
  add_sweep_options(desc);
  add_db_option(desc);
  add_run_options(desc);
  add_exec_options(desc);
  po::positional_options_description pos;
  pos.add("table", 1);
  po::variables_map vm;
  if (auto st = parse(args, desc, pos, vm, "reproduce"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  // Every input is checked before anything is trained or written.
  if (!vm.count("table"))
    return report(absl::InvalidArgumentError("hippo reproduce: missing TABLE; accepted: table2, table3-mini"));
  const std::string table_name = vm["table"].as<std::string>();
  if (table_name != "table2" && table_name != "table3-mini")
    return report(absl::InvalidArgumentError(
        absl::StrCat("hippo reproduce: unknown table '", table_name, "'; accepted: table2, table3-mini")));
  if (table_name == "table3-mini") return reproduce_table3_mini(vm);
  if (!vm["precision"].defaulted())
    return report(absl::InvalidArgumentError("--precision applies to table3-mini only"));
  Table2Options to;
  auto schedule = schedule_option(vm, to.schedule);
  if (!schedule.ok()) return report(schedule.status());
  to.schedule = *schedule;
  auto seeds = parse_seeds(vm["seeds"].as<std::string>());
  if (!seeds.ok()) return report(seeds.status());
  to.seeds = *seeds;
  auto lrs = parse_lrs(vm["lrs"].as<std::string>());
  if (!lrs.ok()) return report(lrs.status());
  to.lrs = *lrs;
  auto format = format_option(vm);
  if (!format.ok()) return report(format.status());
  auto plan = table2_plan(to);
  if (!plan.ok()) return report(plan.status());
  return run_plan(vm, "table2", *plan, [&](ResultsDb& db) { return render_table2(db, *plan, *format); });
}

}  // namespace hippo::cli
