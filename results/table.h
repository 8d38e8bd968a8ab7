// Summaries of the results database: the pivot table of a final metric (rows x columns, mean and 95%
// interval over seeds), and exports of runs and metrics as CSV or JSON.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "results/db.h"

namespace hippo {

// Mean and the half-width of its two-sided 95% Student-t interval (0 when n < 2).
struct Summary {
  int64_t n = 0;
  double mean = 0, half_width = 0;
};
Summary summarize(const std::vector<double>& values);

struct TableOptions {
  std::optional<std::string> sweep;  // restrict to one sweep
  std::string metric = "accuracy";   // metric name at each finished run's last step on `split`
  std::string split = "test";
  std::string format = "text";       // text or md
  bool percent = true;               // print fractions as percentages
};

// Rows: layer label; columns: task; cells "mean ± half-width (n)" over finished runs' final `metric`, plus a
// "random" row with each task's chance level when recorded. Errors: kNotFound when no finished run has the
// metric; kInvalidArgument for an unknown format.
absl::StatusOr<std::string> results_table(ResultsDb& db, const TableOptions& options);

// Every run (columns of `runs`) with its final test and train metrics, as CSV (one row per run) or JSON (an
// array of objects with nested `config` and `metrics` [{step, split, name, value}]).
absl::StatusOr<std::string> export_runs(ResultsDb& db, const RunFilter& filter, const std::string& format);

}  // namespace hippo
