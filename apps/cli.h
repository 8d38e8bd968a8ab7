// Shared pieces of the `hippo` command line: exit codes, error reporting, and option parsing helpers.
#pragma once

#include <boost/program_options.hpp>

#include <string>
#include <vector>

#include "core/status.h"

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

// Common options: --db, --quiet, --threads, --device (each added only where asked).
void add_db_option(po::options_description& d);
void add_run_options(po::options_description& d);
// Checks and applies --quiet and --threads (0..4096). Errors (kInvalidArgument) name the flag.
absl::Status apply_run_options(const po::variables_map& vm);

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

}  // namespace hippo::cli
