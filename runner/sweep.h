// Sweep files (YAML): fixed settings plus a grid whose lists expand as a Cartesian product, each point
// resolved into a RunSpec. Parsing and expansion write nothing; errors name the file, line and column where
// YAML gives them, or the key and grid point.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "runner/run_config.h"

namespace hippo {

// A parsed sweep file:
//   name: quick                  (optional; default: the file name without extension)
//   description: "..."           (optional)
//   fixed: {key: value, ...}     (optional; any run-config key, dotted keys like s4d.d_state allowed)
//   grid:  {key: [v1, v2], ...}  (optional; each a non-empty list; a scalar is a list of one)
struct SweepSpec {
  std::string name;
  std::string description;
  Json fixed = Json::object();
  std::vector<std::pair<std::string, std::vector<Json>>> grid;  // in file order
  Json source;  // the whole file as JSON (stored with the sweep)
};

// Parses YAML text; `filename` is used in messages and for the default name. Errors (kInvalidArgument):
// "FILE:LINE:COL: ..." for syntax errors and misplaced keys.
absl::StatusOr<SweepSpec> parse_sweep(const std::string& text, const std::string& filename);
// Reads and parses a file. kNotFound if it cannot be read.
absl::StatusOr<SweepSpec> load_sweep_file(const std::string& path);

// Expands the grid (first key outermost) and resolves every point. Identical configs appear once.
// Errors name the grid point that failed to resolve.
absl::StatusOr<std::vector<RunSpec>> expand_sweep(const SweepSpec& sweep);

// Converts a YAML document to JSON: plain scalars are typed (int, float, bool, null), quoted ones stay strings.
// Exposed for `hippo train --config`.
absl::StatusOr<Json> yaml_to_json(const std::string& text, const std::string& filename);

}  // namespace hippo
