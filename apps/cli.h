// Shared pieces of the `hippo` command line: exit codes, error reporting, and option parsing helpers.
#pragma once

#include <boost/program_options.hpp>

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "results/db.h"
#include "runner/executor.h"
#include "runner/run_config.h"

namespace hippo::cli {

namespace po = boost::program_options;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;   // something failed while running (a run failed, a database error)
constexpr int kExitBadInput = 2;  // bad input: nothing was written

// Prints "hippo: error: MESSAGE" on stderr and returns the exit code for the status (2 for bad input:
// kInvalidArgument, kNotFound, kFailedPrecondition, kAlreadyExists, kOutOfRange; else 1).
int report(const absl::Status& status);

// Parses args (without the command words) against `desc` with the given positionals. Unknown options and
// malformed values become kInvalidArgument naming the option and the command.
absl::Status parse(const std::vector<std::string>& args, const po::options_description& desc,
                   const po::positional_options_description& pos, po::variables_map& vm, const std::string& command);

// Comma-separated integers of a flag (e.g. --gpus 0,1); with `min`, each must be >= min and the list non-empty.
// Text of only commas (or none) is the empty list; otherwise an empty item ("1,,2", "1,") is an error. Errors
// (kInvalidArgument) name the flag and the text.
absl::StatusOr<std::vector<int64_t>> int_list(const std::string& text, const std::string& flag,
                                              std::optional<int64_t> min = std::nullopt);

// Common options: --db, --quiet, --threads, --device (each added only where asked).
void add_db_option(po::options_description& d);
void add_run_options(po::options_description& d);
// Checks and applies --quiet and --threads (0..4096). Errors (kInvalidArgument) name the flag.
absl::Status apply_run_options(const po::variables_map& vm);

// Options of the commands that execute runs: --checkpoint-every, --keep-checkpoints, --checkpoint-dir, --lease
// (add_exec_options); --retry-failed, --workers, --gpus (add_sweep_options, for commands that run a sweep).
void add_exec_options(po::options_description& d);
void add_sweep_options(po::options_description& d);
// The ExecOptions of the parsed exec options. Errors (kInvalidArgument) name the flag.
absl::StatusOr<ExecOptions> exec_options(const po::variables_map& vm);
// 130 when interrupted, 1 when a run failed, else 0.
int exit_code(const ExecSummary& summary);

// Queues `runs` under the sweep `name` (its definition `source` stored with it) in --db, in one transaction,
// then executes every run of the sweep not yet finished with --workers processes (or one per GPU with --gpus),
// this process being one of them; --retry-failed queues failed runs again first. Prints progress and a summary
// line on stderr. Returns the open database and what happened (summary.failed > 0 when any run of the sweep is
// failed). Errors: kInvalidArgument for bad flags (nothing written), database errors as they come.
struct SweepOutcome {
  std::unique_ptr<ResultsDb> db;
  ExecSummary summary;
};
absl::StatusOr<SweepOutcome> execute_sweep(const po::variables_map& vm, const std::string& name, const Json& source,
                                           const std::vector<RunSpec>& runs);

// The commands; each returns an exit code. args exclude the command words.
int cmd_layers(const std::vector<std::string>& args);
int cmd_tasks(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_sweep(const std::vector<std::string>& args);
int cmd_worker(const std::vector<std::string>& args);
int cmd_results(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_tokenizer(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
// `hippo bench generate` (apps/bench_generate.cc), dispatched by cmd_bench.
int bench_generate(const std::vector<std::string>& args);
// `hippo bench layer` (apps/bench_layer.cc), dispatched by cmd_bench.
int bench_layer(const std::vector<std::string>& args);
int cmd_reproduce(const std::vector<std::string>& args);

}  // namespace hippo::cli
