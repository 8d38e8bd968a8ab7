// Summaries of the results database: the pivot table of a final metric (rows x columns, mean and 95%
// interval over seeds), and exports of runs and metrics as CSV or JSON.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "results/db.h"

namespace hippo {

// False for metrics where lower is better (names containing "loss", perplexity, bits_per_byte): --best-over
// then keeps the lowest mean.
bool higher_is_better(const std::string& metric);

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
  std::string rows = "layer";        // what the rows and columns are: layer, task, seed, or a config key
  std::string cols = "task";         //   (d_model, lr, seq_len, num_kv_pairs, ... or a dotted path in the config)
  std::optional<std::string> best_over;  // e.g. "lr": per cell, the value of this key with the best mean
  // Applied to each run's stored config before keys are looked up, e.g. with_omitted_defaults (runner/run_config.h)
  // so that options left out at their default pivot as their default value; none: the stored config as is.
  std::function<Json(const Json&)> complete_config;
};

// The value of `key` for a run, as text: "layer", "task" and "seed" from the run; otherwise `key` looked up in
// the canonical config: as a dotted path from the top, then under train, task_options and layer_options (so
// that "attention.n_heads" works as in sweep files), then with the run's task name as prefix ("mqar.seq_len")
// under task_options, then under each layer's options. "-" when absent.
std::string run_key(const RunRow& run, const std::string& key);

// Cells "mean ± half-width (n)" over finished runs' final `metric`, grouped by `rows` x `cols`; with
// `best_over`, each cell shows the best value of that key (by mean over the rest, seeds included) and its
// summary, "@ key=value" beside it. A "random" row gives each task's chance level when the columns are tasks.
// Errors: kNotFound when no finished run has the metric; kInvalidArgument for an unknown format, or a --rows,
// --cols or --best-over key that no run's config has (naming the key).
absl::StatusOr<std::string> results_table(ResultsDb& db, const TableOptions& options);

// A table as text (columns padded to their display width, `caption` above) or Markdown (`caption` below).
// rows: each of header.size() cells. Errors (kInvalidArgument): format other than "text" or "md".
absl::StatusOr<std::string> render_grid(const std::vector<std::string>& header,
                                        const std::vector<std::vector<std::string>>& rows, const std::string& caption,
                                        const std::string& format);

// Every run (columns of `runs`) with its final test and train metrics, as CSV (one row per run) or JSON (an
// array of objects with nested `config` and `metrics` [{step, split, name, value}]).
absl::StatusOr<std::string> export_runs(ResultsDb& db, const RunFilter& filter, const std::string& format);

}  // namespace hippo
