// `hippo train`, `hippo sweep` and `hippo worker`: the commands that create and execute runs.
#include <absl/strings/str_format.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_split.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <filesystem>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "apps/cli.h"
#include "core/device.h"
#include "core/progress.h"
#include "results/table.h"
#include "runner/executor.h"
#include "runner/sweep.h"

namespace hippo::cli {

namespace {
// Final test metrics of a run, for the one-line summary.
std::string run_summary(ResultsDb& db, int64_t run_id) {
  auto run = db.get_run(run_id);
  auto ms = db.metrics(run_id);
  if (!run.ok() || !ms.ok()) return "";
  double acc = -1, loss = -1, chance = -1;
  for (const auto& m : *ms) {
    if (m.split != "test") continue;
    if (m.name == "accuracy") acc = m.value;
    if (m.name == "loss") loss = m.value;
    if (m.name == "chance") chance = m.value;
  }
  std::string s = absl::StrFormat("run %d (%s × %s, seed %d): %s", run->id, run->layer, run->task, run->seed, run->status);
  // Only a run that ended has final metrics (an interrupted one holds its step-0 evaluation).
  const bool ended = run->status == "finished" || run->status == "diverged";
  if (ended && acc >= 0)
    s += absl::StrFormat(", test accuracy %.1f%% (chance %.3g%%), test loss %.4f", 100 * acc, 100 * chance, loss);
  if (run->steps) s += absl::StrFormat(", %d steps", *run->steps);
  if (run->wall_seconds) s += absl::StrFormat(", %.1fs", *run->wall_seconds);
  if (!run->error.empty()) s += ": " + run->error;
  return s;
}

// The path of this hippo binary (to start workers and to write into Slurm scripts).
absl::StatusOr<std::string> self_exe() {
  char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len <= 0) return absl::InternalError("cannot find the hippo executable");
  exe[len] = 0;
  return std::string(exe);
}

// Starts `hippo worker` child processes on the same database and sweep; returns their pids.
// gpus: when non-empty, worker i sees only GPU gpus[i] (CUDA_VISIBLE_DEVICES) and trains on cuda.
// SIGINT/SIGTERM received by a parent that only waits for its --gpus workers (it trains nothing itself).
volatile std::sig_atomic_t g_parent_signal = 0;
extern "C" void on_parent_signal(int sig) { g_parent_signal = sig; }

// While alive: SIGINT and SIGTERM set g_parent_signal instead of ending the process, and interrupt waitpid (no
// SA_RESTART), so that the parent can pass the interrupt on to its workers (which put their runs back in the
// queue) and wait for them. Without it, `kill -INT` or `timeout -s INT` on the parent killed the parent alone and
// left the workers training, unseen.
class ForwardInterrupts {
 public:
  ForwardInterrupts() {
    g_parent_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_parent_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~ForwardInterrupts() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }
  ForwardInterrupts(const ForwardInterrupts&) = delete;
  ForwardInterrupts& operator=(const ForwardInterrupts&) = delete;

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

absl::StatusOr<std::vector<pid_t>> spawn_workers(int n, const std::string& db, const std::string& sweep,
                                                 const po::variables_map& vm, const std::vector<int64_t>& gpus = {}) {
  std::vector<pid_t> pids;
  HIPPO_ASSIGN_OR_RETURN(const std::string exe, self_exe());
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> a = {exe, "worker", "--db", db, "--sweep", sweep, "--device",
                                  gpus.empty() ? vm["device"].as<std::string>() : "cuda",
                                  "--threads", std::to_string(vm["threads"].as<int>()),
                                  vm["quiet"].as<bool>() ? "--quiet" : "--log-only",
                                  "--checkpoint-every", std::to_string(vm["checkpoint-every"].as<int64_t>()),
                                  "--lease", std::to_string(vm["lease"].as<double>())};
    if (vm["keep-checkpoints"].as<bool>()) a.push_back("--keep-checkpoints");
    if (vm["save-models"].as<bool>()) a.push_back("--save-models");
    if (vm["cuda-graph"].as<bool>()) a.push_back("--cuda-graph");
    a.push_back("--ensemble");
    a.push_back(std::to_string(vm["ensemble"].as<int64_t>()));
    if (vm.count("checkpoint-dir")) {
      a.push_back("--checkpoint-dir");
      a.push_back(vm["checkpoint-dir"].as<std::string>());
    }
    std::vector<char*> argv;
    for (auto& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e)
      if (gpus.empty() || std::string(*e).rfind("CUDA_VISIBLE_DEVICES=", 0) != 0) env.push_back(*e);
    if (!gpus.empty()) env.push_back("CUDA_VISIBLE_DEVICES=" + std::to_string(gpus[i]));
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0)
      return absl::InternalError("cannot start a worker process");
    pids.push_back(pid);
  }
  return pids;
}

// Number of different ids in a --gpus list.
int distinct_gpus(std::vector<int64_t> gpus) {
  std::sort(gpus.begin(), gpus.end());
  return static_cast<int>(std::unique(gpus.begin(), gpus.end()) - gpus.begin());
}

}  // namespace

void add_exec_options(po::options_description& d) {
  d.add_options()("checkpoint-every", po::value<int64_t>()->default_value(1000),
                  "write a mid-run checkpoint every this many steps (0 = never); a re-queued run resumes from it")(
      "keep-checkpoints", po::bool_switch(), "keep each run's last checkpoint after it ends")(
      "save-models", po::bool_switch(),
      "save every run's final model to CHECKPOINT_DIR/run-ID.model.pt (text tasks always do; see hippo generate)")(
      "checkpoint-dir", po::value<std::string>(), "checkpoint folder (default: DB.checkpoints)")(
      "lease", po::value<double>()->default_value(60),
      "seconds a claimed run stays claimed without its worker's heartbeat; then another worker takes it over")(
      "cuda-graph", po::bool_switch(),
      "capture each run's training step in a CUDA graph and replay it (GPU only: an error with a CPU device; "
      "an execution option, not part of the run config: results equal the eager run's within float32 rounding; "
      "losses are read every 50 steps)")(
      "ensemble", po::value<int64_t>()->default_value(1),
      "train up to this many queued runs that differ only in seed and lr together in one process, in lockstep "
      "(each is exactly the run trained alone; with --cuda-graph all in one graph, each on its own CUDA stream, "
      "so that the GPU runs them concurrently); 1 to 256; 1 = one run at a time (sweep, worker and reproduce; "
      "hippo train refuses more than 1)");
}

void add_sweep_options(po::options_description& d) {
  d.add_options()("retry-failed", po::bool_switch(), "queue the sweep's failed runs again")(
      "workers", po::value<int>()->default_value(0),
      "worker processes running runs in parallel (0 = cores / threads); more can join with hippo worker")(
      "gpus", po::value<std::string>(),
      "comma-separated GPU ids, one worker process per entry, each seeing only its GPU; repeat an id for several "
      "workers on one GPU (0,0,0,0,1,1,1,1: four on each of GPUs 0 and 1; useful with --cuda-graph)");
}

absl::StatusOr<ExecOptions> exec_options(const po::variables_map& vm) {
  ExecOptions eo;
  eo.device = vm["device"].as<std::string>();
  eo.checkpoint_every = vm["checkpoint-every"].as<int64_t>();
  eo.keep_checkpoints = vm["keep-checkpoints"].as<bool>();
  eo.save_models = vm["save-models"].as<bool>();
  if (vm.count("checkpoint-dir")) eo.checkpoint_dir = vm["checkpoint-dir"].as<std::string>();
  eo.lease_seconds = vm["lease"].as<double>();
  eo.cuda_graph = vm["cuda-graph"].as<bool>();
  eo.ensemble = vm["ensemble"].as<int64_t>();
  if (eo.ensemble < 1 || eo.ensemble > 256)
    return absl::InvalidArgumentError(
        absl::StrCat("--ensemble must be between 1 and 256 runs trained together, got ", eo.ensemble));
  if (eo.checkpoint_every < 0) return absl::InvalidArgumentError("--checkpoint-every must be >= 0");
  if (!(eo.lease_seconds >= 2)) return absl::InvalidArgumentError("--lease must be at least 2 seconds");
  eo.renew_every_seconds = std::min(10.0, eo.lease_seconds / 3);
  // With --gpus every worker trains on its GPU; otherwise --device must be a CUDA device.
  if (eo.cuda_graph && !vm.count("gpus")) {
    HIPPO_ASSIGN_OR_RETURN(const c10::Device dev, parse_device(eo.device));
    if (!dev.is_cuda())
      return absl::InvalidArgumentError(absl::StrCat("--cuda-graph needs a CUDA device, but --device is '", eo.device,
                                                     "' (", dev.str(), "); use --device cuda, cuda:N or --gpus IDS"));
  }
  return eo;
}

int exit_code(const ExecSummary& s) {
  if (s.interrupted) return 130;
  return s.failed > 0 ? kExitFailure : kExitOk;
}

namespace {
// bf16 autocast is a CUDA feature (train.precision, runner/train_step.h): refuse a run that asks for it on the CPU
// before anything is written, instead of queueing a run that can only fail.
absl::Status check_precision(const std::vector<const RunSpec*>& runs, bool on_cuda) {
  if (on_cuda) return absl::OkStatus();
  for (const RunSpec* r : runs) {
    const Json& t = r->config["train"];
    if (t.contains("precision") && t["precision"] == "bf16")
      return absl::InvalidArgumentError(absl::StrCat(
          "train.precision 'bf16' needs a CUDA device (--device cuda, or --gpus); accepted on the CPU: fp32 (run ",
          r->layer_label, " on ", r->task, ", seed ", r->seed, ")"));
  }
  return absl::OkStatus();
}
}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo train: train one run and store it (a finished identical config is not trained again)\n"
      "example: hippo train --layer s4d --task associative_recall --epochs 10 --set s4d.d_state=32\noptions");
  desc.add_options()("help,h", "this help")("layer", po::value<std::string>(), "mixer in every layer (see hippo layers)")(
      "layers", po::value<std::string>(), "per-layer schedule, comma-separated (e.g. s4d,attention)")(
      "attn-layers", po::value<std::string>(), "0-based layers that become attention (e.g. 1,8)")(
      "task", po::value<std::string>(), "task (see hippo tasks)")("seed", po::value<int64_t>(), "seed (default 0)")(
      "d-model", po::value<int64_t>(), "model width")("n-layer", po::value<int64_t>(), "layers")(
      "lr", po::value<double>(), "peak learning rate")("weight-decay", po::value<double>(), "AdamW weight decay")(
      "epochs", po::value<int64_t>(), "epochs")("batch-size", po::value<int64_t>(), "batch size")(
      "max-steps", po::value<int64_t>(), "stop after this many optimiser steps (0: no limit, the epochs decide)")(
      "set", po::value<std::vector<std::string>>()->composing(), "KEY=VALUE, any run-config key, dotted for layer/task options (repeatable)")(
      "config", po::value<std::string>(), "YAML file with a run config (flags override it)")(
      "force", po::bool_switch(), "train again even if this config already finished");
  add_db_option(desc);
  add_run_options(desc);
  add_exec_options(desc);
  po::variables_map vm;
  if (auto st = parse(args, desc, {}, vm, "train"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  Json raw = Json::object();
  if (vm.count("config")) {
    const std::string path = vm["config"].as<std::string>();
    std::ifstream in(path);
    if (!in) return report(absl::NotFoundError(absl::StrCat("cannot read config file '", path, "'")));
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = yaml_to_json(ss.str(), path);
    if (!j.ok()) return report(j.status());
    if (!j->is_object()) return report(absl::InvalidArgumentError(absl::StrCat(path, ": a run config must be a mapping")));
    raw = *j;
  }
  auto set = [&](const std::string& key, const Json& v) { raw[key] = v; };
  if (vm.count("layer")) set("layer", vm["layer"].as<std::string>());
  if (vm.count("layers")) {
    std::vector<std::string> names = absl::StrSplit(vm["layers"].as<std::string>(), ',');
    for (const auto& n : names)
      if (n.empty())
        return report(absl::InvalidArgumentError(
            absl::StrCat("--layers '", vm["layers"].as<std::string>(), "': an empty layer name")));
    set("layers", names);
  }
  if (vm.count("attn-layers")) {
    auto l = int_list(vm["attn-layers"].as<std::string>(), "--attn-layers");
    if (!l.ok()) return report(l.status());
    set("attn_layers", *l);
  }
  if (vm.count("task")) set("task", vm["task"].as<std::string>());
  if (vm.count("seed")) set("seed", vm["seed"].as<int64_t>());
  if (vm.count("d-model")) set("d_model", vm["d-model"].as<int64_t>());
  if (vm.count("n-layer")) set("n_layer", vm["n-layer"].as<int64_t>());
  if (vm.count("lr")) set("lr", vm["lr"].as<double>());
  if (vm.count("weight-decay")) set("weight_decay", vm["weight-decay"].as<double>());
  if (vm.count("epochs")) set("epochs", vm["epochs"].as<int64_t>());
  if (vm.count("batch-size")) set("batch_size", vm["batch-size"].as<int64_t>());
  if (vm.count("max-steps")) set("max_steps", vm["max-steps"].as<int64_t>());
  if (vm.count("set"))
    for (const auto& kv : vm["set"].as<std::vector<std::string>>()) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0)
        return report(absl::InvalidArgumentError(absl::StrCat("--set '", kv, "': expected KEY=VALUE")));
      if (auto st = set_path(raw, kv.substr(0, eq), parse_scalar(kv.substr(eq + 1))); !st.ok()) return report(st);
    }
  auto spec = resolve_run(raw);
  if (!spec.ok())
    return report(vm.count("config") ? absl::Status(spec.status().code(), absl::StrCat(vm["config"].as<std::string>(), " (with the flags): ",
                                                                                     spec.status().message()))
                                     : spec.status());
  // Options for a layer or task this run does not have are dropped from its config: say so (a typo in --layer or
  // --task, or a config file written for another model, would otherwise pass unseen).
  for (const auto& unused : unused_option_maps(raw, *spec)) std::fprintf(stderr, "hippo: note: %s\n", unused.c_str());
  auto eo = exec_options(vm);
  if (!eo.ok()) return report(eo.status());
  if (eo->ensemble > 1)
    return report(absl::InvalidArgumentError(
        "--ensemble trains several queued runs together; hippo train trains one: use hippo sweep (a grid over "
        "seed and lr) or hippo worker with --ensemble"));
  auto dev = parse_device(vm["device"].as<std::string>());
  if (!dev.ok()) return report(dev.status());
  if (auto st = check_precision({&*spec}, dev->is_cuda()); !st.ok()) return report(st);
  if (auto st = apply_run_options(vm); !st.ok()) return report(st);

  auto db = ResultsDb::open(vm["db"].as<std::string>(), ResultsDb::Mode::kReadWrite);
  if (!db.ok()) return report(db.status());
  auto q = (*db)->enqueue(spec->hash, spec->config, spec->layer_label, spec->task, spec->seed, std::nullopt);
  if (!q.ok()) return report(q.status());
  auto run = (*db)->get_run(q->id);
  if (!run.ok()) return report(run.status());
  if (!q->created && (run->status == "finished" || run->status == "diverged" || run->status == "failed")) {
    if (!vm["force"].as<bool>()) {
      std::printf("%s\n(already in %s with this config; --force trains it again)\n", run_summary(**db, q->id).c_str(),
                  (*db)->path().c_str());
      return run->status == "failed" ? kExitFailure : kExitOk;
    }
    if (auto st = (*db)->requeue(q->id); !st.ok()) return report(st);
  }
  eo->run_id = q->id;
  auto sum = execute_queue(**db, std::nullopt, *eo);
  if (!sum.ok()) return report(sum.status());
  std::printf("%s\n", run_summary(**db, q->id).c_str());
  return exit_code(*sum);
}

namespace {

std::string absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return p;
  char cwd[4096];
  return std::string(getcwd(cwd, sizeof(cwd)) ? cwd : ".") + "/" + p;
}

// A word safe inside single quotes in a POSIX shell script: ' becomes '\''.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Paths and names that go into #SBATCH lines, which Slurm reads without shell quoting.
absl::Status check_sbatch_word(const std::string& what, const std::string& s) {
  for (unsigned char c : s)
    if (std::isspace(c) || c == '\'' || c == '"' || c == '\\' || c == '$' || c == '`' || c < 0x20)
      return absl::InvalidArgumentError(absl::StrCat(what, " '", s, "' must not contain spaces, quotes, '\\', '$' or '`' "
                                                     "(it is written into #SBATCH lines)"));
  return absl::OkStatus();
}

// Writes OUTDIR/sweep.yaml (a frozen copy), OUTDIR/sweep.sbatch (a job array, one shard database per task) and
// OUTDIR/merge.sh; with `submit`, runs sbatch. Returns the script path. No path or name reaches a shell unquoted.
absl::StatusOr<std::string> write_slurm(const po::variables_map& vm, const SweepSpec& sweep, size_t n_runs) {
  const std::string out = absolute(vm["slurm"].as<std::string>());
  HIPPO_RETURN_IF_ERROR(check_sbatch_word("--slurm OUTDIR", out));
  HIPPO_RETURN_IF_ERROR(check_sbatch_word("the sweep name", sweep.name));
  if (vm.count("partition")) HIPPO_RETURN_IF_ERROR(check_sbatch_word("--partition", vm["partition"].as<std::string>()));
  std::error_code ec;
  std::filesystem::create_directories(out + "/shards", ec);
  if (!ec) std::filesystem::create_directories(out + "/logs", ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("cannot create '", out, "': ", ec.message()));
  HIPPO_ASSIGN_OR_RETURN(std::string exe, self_exe());
  {
    std::ifstream in(vm["file"].as<std::string>());
    std::ofstream copy(out + "/sweep.yaml");
    copy << in.rdbuf();
    if (!copy) return absl::FailedPreconditionError(absl::StrCat("cannot write '", out, "/sweep.yaml'"));
  }
  int64_t tasks = vm["array-size"].as<int64_t>();
  if (tasks <= 0) tasks = static_cast<int64_t>(std::min<size_t>(n_runs, 64));
  if (tasks > static_cast<int64_t>(n_runs)) tasks = static_cast<int64_t>(n_runs);
  const int64_t gpus = vm["gpus-per-task"].as<int64_t>();
  const int threads = std::max(1, vm["threads"].as<int>());
  std::ostringstream sb;
  sb << "#!/bin/bash\n"
     << "# Written by `hippo sweep --slurm` (" << n_runs << " runs in " << tasks << " array tasks).\n"
     << "# Each task runs its share into its own shard database (SQLite is never shared over a network file\n"
     << "# system); merge.sh folds the shards into one database afterwards.\n"
     << "#SBATCH --job-name=hippo-" << sweep.name << "\n"
     << "#SBATCH --array=0-" << tasks - 1;
  if (vm["max-parallel"].as<int64_t>() > 0) sb << "%" << vm["max-parallel"].as<int64_t>();
  sb << "\n#SBATCH --output=" << out << "/logs/%A_%a.out\n#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=" << threads << "\n";
  if (vm.count("partition")) sb << "#SBATCH --partition=" << vm["partition"].as<std::string>() << "\n";
  if (gpus > 0) sb << "#SBATCH --gpus-per-task=" << gpus << "\n";
  sb << "set -euo pipefail\n"
     << "exec " << shell_quote(exe) << " sweep " << shell_quote(out + "/sweep.yaml") << " --db "
     << shell_quote(out + "/shards/shard-") << "\"${SLURM_ARRAY_TASK_ID}\".db --shard \"${SLURM_ARRAY_TASK_ID}/" << tasks
     << "\" --workers 1 --threads " << threads << " --device " << (gpus > 0 ? "cuda" : "cpu") << " --checkpoint-every "
     << vm["checkpoint-every"].as<int64_t>() << (vm["save-models"].as<bool>() ? " --save-models" : "") << " --quiet\n";
  const std::string script = out + "/sweep.sbatch";
  std::ofstream(script) << sb.str();
  std::ofstream(out + "/merge.sh") << "#!/bin/bash\n# Folds every shard into OUT (default OUTDIR/merged.db); safe to run again.\n"
                                   << "set -euo pipefail\nexec " << shell_quote(exe) << " results merge \"${1:-"
                                   << shell_quote(out + "/merged.db") << "}\" " << shell_quote(out + "/shards")
                                   << "/shard-*.db\n";
  for (const std::string f : {script, out + "/merge.sh"})
    std::filesystem::permissions(f, std::filesystem::perms::owner_exec | std::filesystem::perms::group_exec,
                                 std::filesystem::perm_options::add, ec);
  return script;
}
}  // namespace

absl::StatusOr<SweepOutcome> execute_sweep(const po::variables_map& vm, const std::string& name, const Json& source,
                                           const std::vector<RunSpec>& runs) {
  HIPPO_ASSIGN_OR_RETURN(const ExecOptions eo, exec_options(vm));
  if (vm["workers"].as<int>() < 0) return absl::InvalidArgumentError("--workers must be >= 0");
  std::vector<int64_t> gpus;
  if (vm.count("gpus")) {
    auto g = int_list(vm["gpus"].as<std::string>(), "--gpus", 0);
    if (!g.ok()) return g.status();
    for (int64_t id : *g)
      if (auto dev = parse_device(absl::StrCat("cuda:", id)); !dev.ok())
        return absl::Status(dev.status().code(),
                            absl::StrCat("--gpus ", vm["gpus"].as<std::string>(), ": ", dev.status().message(),
                                         " (or drop --gpus)"));
    gpus = *g;
  }
  {
    HIPPO_ASSIGN_OR_RETURN(const c10::Device dev,
                           parse_device(gpus.empty() ? vm["device"].as<std::string>() : std::string("cuda")));
    std::vector<const RunSpec*> all;
    for (const auto& r : runs) all.push_back(&r);
    HIPPO_RETURN_IF_ERROR(check_precision(all, dev.is_cuda()));
  }
  if (auto st = apply_run_options(vm); !st.ok()) return st;
  auto db = ResultsDb::open(vm["db"].as<std::string>(), ResultsDb::Mode::kReadWrite);
  if (!db.ok()) return db.status();
  std::vector<ResultsDb::NewRun> new_runs;
  for (const auto& r : runs) new_runs.push_back({r.hash, r.config, r.layer_label, r.task, r.seed});
  auto enq = (*db)->enqueue_sweep(name, source, new_runs);
  if (!enq.ok()) return enq.status();
  const std::optional<int64_t> sweep_id = enq->sweep_id;
  const int64_t created = enq->created;
  if (vm["retry-failed"].as<bool>()) {
    auto n = (*db)->requeue_failed(*sweep_id);
    if (!n.ok()) return n.status();
    std::fprintf(stderr, "hippo: %lld failed run(s) queued again\n", static_cast<long long>(*n));
  }
  // Counts over this grid's runs only: a sweep name may also hold runs of an earlier, different grid.
  std::set<std::string> grid_hashes;
  for (const auto& r : runs) grid_hashes.insert(r.hash);
  auto in_grid = [&](const std::vector<RunRow>& rows) {
    return static_cast<size_t>(std::count_if(rows.begin(), rows.end(), [&](const RunRow& r) {
      return grid_hashes.count(r.config_hash) > 0;
    }));
  };
  auto before = (*db)->list_runs({name, std::string("finished")});
  if (!before.ok()) return before.status();
  std::fprintf(stderr, "hippo: sweep '%s': %zu runs (%lld new, %zu finished before) into %s\n", name.c_str(),
               runs.size(), static_cast<long long>(created), in_grid(*before), (*db)->path().c_str());
  int workers = vm["workers"].as<int>();
  if (workers == 0)
    workers = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / std::max(1, vm["threads"].as<int>()));
  // Runs left to train (queued, or running under a lease another worker may have lost): no more workers than
  // that, and none at all when the sweep is done.
  auto queued = (*db)->list_runs({name, std::string("queued")});
  auto running = (*db)->list_runs({name, std::string("running")});
  if (!queued.ok()) return queued.status();
  if (!running.ok()) return running.status();
  const int pending = static_cast<int>(queued->size() + running->size());
  workers = std::max(1, std::min(workers, pending));
  std::vector<pid_t> children;
  // With --gpus this process only waits: it passes an interrupt on to the workers.
  std::optional<ForwardInterrupts> forward;
  if (pending > 0 && !gpus.empty()) forward.emplace();
  if (pending > 0 && (!gpus.empty() || workers > 1)) {
    // With --gpus every worker is a child bound to its GPU; otherwise this process is one of the workers.
    const int n = gpus.empty() ? workers - 1 : static_cast<int>(gpus.size());
    auto pids = spawn_workers(n, (*db)->path(), name, vm, gpus);
    if (!pids.ok()) return pids.status();
    children = *pids;
    std::fprintf(stderr, "hippo: %d worker processes%s\n", gpus.empty() ? workers : n,
                 gpus.empty() ? "" : absl::StrFormat(", one per --gpus entry (on %d GPU(s))", distinct_gpus(gpus)).c_str());
  }
  absl::StatusOr<ExecSummary> sum = ExecSummary{};
  if (gpus.empty() && pending > 0) sum = execute_queue(**db, *sweep_id, eo);
  int child_failures = 0;
  bool forwarded = false;
  auto forward_once = [&]() {
    if (forwarded || !g_parent_signal) return;
    forwarded = true;
    for (pid_t c : children) kill(c, SIGINT);
  };
  for (pid_t pid : children) {
    int st = 0;
    if (!sum.ok() || sum->interrupted) kill(pid, SIGINT);
    forward_once();
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) forward_once();
    child_failures += !(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 1 ||
                                          ((forwarded || (sum.ok() && sum->interrupted)) && WEXITSTATUS(st) == 130)));
  }
  forward.reset();
  if (forwarded && sum.ok()) sum->interrupted = true;
  if (!sum.ok()) return sum.status();
  if (child_failures)
    std::fprintf(stderr, "hippo: %d worker process(es) ended abnormally; their runs are taken over when their leases expire\n",
                 child_failures);
  // With worker children each child printed its own line; this process was one of the workers too.
  if (!children.empty() && gpus.empty() && !Progress::quiet())
    std::fprintf(stderr, "hippo: worker %d (this process): trained %lld to the end, %lld diverged, %lld failed\n",
                 static_cast<int>(getpid()), static_cast<long long>(sum->finished),
                 static_cast<long long>(sum->diverged), static_cast<long long>(sum->failed));
  auto fin = (*db)->list_runs({name, std::string("finished")});
  auto fail = (*db)->list_runs({name, std::string("failed")});
  auto div = (*db)->list_runs({name, std::string("diverged")});
  if (!fin.ok() || !fail.ok() || !div.ok()) return absl::InternalError("cannot read the sweep's runs back");
  std::fprintf(stderr, "hippo: sweep '%s': %zu finished, %zu diverged, %zu failed of %zu runs%s\n", name.c_str(),
               in_grid(*fin), in_grid(*div), in_grid(*fail), runs.size(), sum->interrupted ? " (interrupted)" : "");
  if (in_grid(*fail) > 0) sum->failed += 1;
  return SweepOutcome{*std::move(db), *sum};
}

int cmd_sweep(const std::vector<std::string>& args) {
  po::options_description desc(
      "hippo sweep FILE: expand a sweep file (fixed settings + grid) into runs and execute every run not yet\n"
      "finished; launching it again skips what is finished. example: hippo sweep sweeps/quick.yaml");
  desc.add_options()("help,h", "this help")("file", po::value<std::string>(), "sweep file (YAML)")(
      "dry-run", po::bool_switch(), "print the runs the grid expands to; write nothing")(
      "shard", po::value<std::string>(), "I/K: queue only the runs whose index in the grid is I modulo K")(
      "slurm", po::value<std::string>(), "OUTDIR: write a Slurm job-array script (and merge.sh) instead of running")(
      "partition", po::value<std::string>(), "Slurm partition (with --slurm)")(
      "gpus-per-task", po::value<int64_t>()->default_value(0), "GPUs per array task (with --slurm)")(
      "max-parallel", po::value<int64_t>()->default_value(0), "array tasks running at once (with --slurm; 0 = no limit)")(
      "array-size", po::value<int64_t>()->default_value(0), "array tasks (with --slurm; 0 = min(runs, 64))")(
      "submit", po::bool_switch(), "submit the script with sbatch (with --slurm)");
  add_sweep_options(desc);
  add_db_option(desc);
  add_run_options(desc);
  add_exec_options(desc);
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (auto st = parse(args, desc, pos, vm, "sweep"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (!vm.count("file")) return report(absl::InvalidArgumentError("hippo sweep: missing FILE (a sweep YAML file)"));
  auto eo = exec_options(vm);
  if (!eo.ok()) return report(eo.status());
  if (vm["workers"].as<int>() < 0) return report(absl::InvalidArgumentError("--workers must be >= 0"));
  auto sweep = load_sweep_file(vm["file"].as<std::string>());
  if (!sweep.ok()) return report(sweep.status());
  auto runs = expand_sweep(*sweep);
  if (!runs.ok()) return report(runs.status());
  if (vm.count("shard")) {
    int64_t i = -1, k = 0;
    const std::string sh = vm["shard"].as<std::string>();
    const auto slash = sh.find('/');
    if (slash == std::string::npos || !absl::SimpleAtoi(sh.substr(0, slash), &i) || !absl::SimpleAtoi(sh.substr(slash + 1), &k) ||
        k < 1 || i < 0 || i >= k)
      return report(absl::InvalidArgumentError(absl::StrCat("--shard '", sh, "': expected I/K with 0 <= I < K")));
    std::vector<RunSpec> mine;
    for (size_t j = 0; j < runs->size(); ++j)
      if (static_cast<int64_t>(j) % k == i) mine.push_back((*runs)[j]);
    *runs = std::move(mine);
  }
  if (vm["dry-run"].as<bool>()) {
    std::printf("sweep '%s': %zu runs\n", sweep->name.c_str(), runs->size());
    for (const auto& r : *runs)
      std::printf("  %s  %-24s %-20s seed %lld  %s\n", r.hash.c_str(), r.layer_label.c_str(), r.task.c_str(),
                  static_cast<long long>(r.seed), r.config.dump().c_str());
    return kExitOk;
  }
  if (!vm.count("slurm") && (vm.count("partition") || vm["submit"].as<bool>() || vm["gpus-per-task"].as<int64_t>() != 0 ||
                             vm["max-parallel"].as<int64_t>() != 0 || vm["array-size"].as<int64_t>() != 0))
    return report(absl::InvalidArgumentError(
        "--partition, --gpus-per-task, --max-parallel, --array-size and --submit only apply with --slurm OUTDIR"));
  if (vm.count("slurm")) {
    if (runs->empty()) return report(absl::InvalidArgumentError("the sweep has no runs to distribute"));
    auto script = write_slurm(vm, *sweep, runs->size());
    if (!script.ok()) return report(script.status());
    std::printf("wrote %s (and merge.sh beside it)\n", script->c_str());
    if (vm["submit"].as<bool>()) {
      const int rc = std::system(("sbatch " + shell_quote(*script)).c_str());
      if (rc != 0) return report(absl::FailedPreconditionError("sbatch failed (is Slurm installed and reachable?)"));
    } else {
      std::printf("submit with: sbatch %s\n", script->c_str());
    }
    return kExitOk;
  }
  auto outcome = execute_sweep(vm, sweep->name, sweep->source, *runs);
  if (!outcome.ok()) return report(outcome.status());
  TableOptions to;
  to.sweep = sweep->name;
  auto table = results_table(*outcome->db, to);
  if (table.ok()) std::printf("%s", table->c_str());
  else std::fprintf(stderr, "hippo: %s\n", std::string(table.status().message()).c_str());
  return exit_code(outcome->summary);
}

int cmd_worker(const std::vector<std::string>& args) {
  po::options_description desc("hippo worker: execute queued runs of a database until none is left");
  desc.add_options()("help,h", "this help")("sweep", po::value<std::string>(), "only runs of this sweep");
  add_db_option(desc);
  add_run_options(desc);
  add_exec_options(desc);
  po::variables_map vm;
  if (auto st = parse(args, desc, {}, vm, "worker"); !st.ok()) return report(st);
  if (vm.count("help")) {
    std::cout << desc;
    return kExitOk;
  }
  if (auto dev = parse_device(vm["device"].as<std::string>()); !dev.ok()) return report(dev.status());
  auto eo = exec_options(vm);
  if (!eo.ok()) return report(eo.status());
  if (auto st = apply_run_options(vm); !st.ok()) return report(st);
  // A worker joins an existing queue: it never creates a database.
  if (!std::ifstream(vm["db"].as<std::string>()).good())
    return report(absl::NotFoundError(absl::StrCat("no results database at '", vm["db"].as<std::string>(), "'")));
  auto db = ResultsDb::open(vm["db"].as<std::string>(), ResultsDb::Mode::kReadWrite);
  if (!db.ok()) return report(db.status());
  std::optional<int64_t> sweep_id;
  if (vm.count("sweep")) {
    auto id = (*db)->find_sweep(vm["sweep"].as<std::string>());
    if (!id.ok()) return report(id.status());
    if (!*id) return report(absl::NotFoundError(absl::StrCat("no sweep named '", vm["sweep"].as<std::string>(), "'")));
    sweep_id = **id;
  }
  auto sum = execute_queue(**db, sweep_id, *eo);
  if (!sum.ok()) return report(sum.status());
  if (!Progress::quiet())
    std::fprintf(stderr, "hippo: worker %d: trained %lld to the end, %lld diverged, %lld failed\n",
                 static_cast<int>(getpid()), static_cast<long long>(sum->finished),
               static_cast<long long>(sum->diverged), static_cast<long long>(sum->failed));
  return exit_code(*sum);
}

}  // namespace hippo::cli
