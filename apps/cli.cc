// Error reporting and option parsing shared by the subcommands.
#include "apps/cli.h"

#include <absl/strings/match.h>
#include <absl/strings/numbers.h>
#include <absl/strings/str_cat.h>
#include <absl/strings/str_split.h>
#include <absl/strings/strip.h>

#include <cstdio>

#include "core/device.h"
#include "core/progress.h"

namespace hippo::cli {

int report(const absl::Status& s) {
  // Messages may name their command ("hippo generate: ..."); print that as "hippo: error: generate: ...".
  absl::string_view m = s.message();
  absl::ConsumePrefix(&m, "hippo ");
  std::fprintf(stderr, "hippo: error: %s\n", std::string(m).c_str());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kOutOfRange:
      return kExitBadInput;
    default:
      return kExitFailure;
  }
}

absl::Status parse(const std::vector<std::string>& args, const po::options_description& desc,
                   const po::positional_options_description& pos, po::variables_map& vm, const std::string& command) {
  try {
    po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    return absl::InvalidArgumentError(absl::StrCat("hippo ", command, ": ", e.what(), " (see hippo ", command, " --help)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> int_list(const std::string& text, const std::string& flag,
                                              std::optional<int64_t> min) {
  std::vector<int64_t> out;
  // Only commas (or nothing): the empty list. Otherwise every part must be an integer: "1,,2" is refused.
  const bool only_commas = text.find_first_not_of(',') == std::string::npos;
  for (absl::string_view p : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v;
    if (!absl::SimpleAtoi(p, &v) || (min && v < *min))
      return absl::InvalidArgumentError(absl::StrCat(flag, " '", text, "': expected comma-separated integers",
                                                     min ? absl::StrCat(" >= ", *min) : ""));
    out.push_back(v);
  }
  if (!only_commas && absl::StrContains(absl::StrCat(",", text, ","), ",,"))
    return absl::InvalidArgumentError(absl::StrCat(flag, " '", text, "': expected comma-separated integers",
                                                   min ? absl::StrCat(" >= ", *min) : "", " (an empty item)"));
  if (min && out.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": empty list"));
  return out;
}

void add_db_option(po::options_description& d) {
  d.add_options()("db", po::value<std::string>()->default_value("results.db"), "results database (SQLite) path");
}

void add_run_options(po::options_description& d) {
  d.add_options()("device", po::value<std::string>()->default_value("cpu"), "cpu, cuda, cuda:N or auto")(
      "threads", po::value<int>()->default_value(1),
      "LibTorch intra-op threads per process (0 = all cores); 1 is fastest for the small synthetic models")(
      "quiet,q", po::bool_switch(), "no progress display")(
      "log-only", po::bool_switch(), "log lines only, no live progress line (what sweep workers use)");
}

absl::Status apply_run_options(const po::variables_map& vm) {
  const int threads = vm["threads"].as<int>();
  if (threads < 0 || threads > 4096)
    return absl::InvalidArgumentError(absl::StrCat("--threads must be in [0, 4096] (0 = all cores), got ", threads));
  Progress::set_quiet(vm["quiet"].as<bool>());
  Progress::set_log_only(vm["log-only"].as<bool>());
  set_threads(threads);
  return absl::OkStatus();
}

}  // namespace hippo::cli
