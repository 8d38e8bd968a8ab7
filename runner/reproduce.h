// Reproductions of the paper's tables: the runs that make Table 2 of the H3 paper (H3.md 6.4-6.5), the
// paper's published numbers, and the measured table rendered beside them. No LibTorch in this header.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "results/db.h"
#include "runner/run_config.h"

namespace hippo {

// One cell of the paper's Table 2 (H3.md 6.5), test accuracy in percent.
struct PaperCell {
  std::string task;             // induction_head | associative_recall
  std::string layer;            // s4d | gss | h3 | attention
  double paper = 0;             // as printed in the paper
  std::optional<double> rerun;  // the independent re-run of the public configurations (H3.md 6.5), if any
};

// The paper's Table 2, in the order printed (tasks, then S4D, GSS, H3, attention); the only copy of these
// numbers in the code base.
const std::vector<PaperCell>& table2_paper();
// The random baseline the paper printed for a task (5.0 for induction_head, 25.0 for associative_recall).
double table2_paper_random(const std::string& task);

// What `hippo reproduce table2` runs.
struct Table2Options {
  // paper: H3.md 6.4 (400 epochs induction head, 200 associative recall, 157 steps per epoch);
  // quick: a short schedule for a first look; tiny: seconds, for tests (64 training examples, 1 epoch).
  std::string schedule = "paper";
  int64_t seeds = 3;                             // seeds 0 .. seeds-1
  std::vector<double> lrs = {5e-4, 1e-3, 2e-3};  // peak learning rates tried per layer and task
};

// The accepted schedule names, in order: "paper, quick, tiny".
std::string table2_schedules();

struct ReproducePlan {
  std::string sweep_name;     // table2, table2-quick or table2-tiny
  Json source;                // stored with the sweep: the protocol as data
  std::string schedule_text;  // one line describing the schedule
  Table2Options options;
  std::vector<RunSpec> runs;  // tasks x layers x lrs x seeds, resolved
};

// The runs of Table 2 under `options`: S4D, GSS, H3 and attention (one head, learned positions, H3.md 4) on
// induction head (V = 20, length 30) and associative recall (V = 10, length 20), 2 layers, d_model 32, MLP
// 128, AdamW (weight decay 0.1, betas 0.9/0.999), batch 32, embedding dropout 0.1, warmup 10% from 1e-6 then
// cosine to 0.1 * lr (H3.md 6.4); layer options otherwise the registry's defaults (`hippo layers`). Errors
// (kInvalidArgument, naming the accepted values): an unknown schedule, seeds outside [1, 100], no lr or an lr
// outside (0, 1].
absl::StatusOr<ReproducePlan> table2_plan(const Table2Options& options);

// The measured Table 2 of `plan`'s runs as stored in `db` (only those runs, found by config hash): per task
// and layer, the final test accuracy (%) at the best lr (highest mean over seeds; chosen on the test split as
// the peers do, which the caption says), mean ± 95% Student-t interval and n finished runs, beside the
// paper's number, the re-run's and the random baseline; then every lr of the sweep. format: text or md.
// Errors: kInvalidArgument for another format; database errors as kInternal.
absl::StatusOr<std::string> render_table2(ResultsDb& db, const ReproducePlan& plan,
                                          const std::string& format);

}  // namespace hippo
