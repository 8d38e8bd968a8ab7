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
// paper's number, the re-run's and the random baseline; then every lr of the sweep; then every run's final test
// accuracy by seed (one row per task, layer and lr). format: text or md.
// Errors: kInvalidArgument for another format; database errors as kInternal.
absl::StatusOr<std::string> render_table2(ResultsDb& db, const ReproducePlan& plan,
                                          const std::string& format);

}  // namespace hippo

namespace hippo {

// One row of the paper's Table 3 (H3.md 7: OpenWebText, 125M parameters, GPT-2 tokens), validation perplexity.
struct PaperLmRow {
  std::string model;      // Transformer, H3, H3 hybrid, S4D, GSS, GSS hybrid
  double perplexity = 0;  // as printed
};
// The paper's Table 3; the only copy of these numbers in the code base.
const std::vector<PaperLmRow>& table3_paper();

// What `hippo reproduce table3-mini` runs: the five model kinds of H3.md 7 (Transformer, H3, hybrid H3 with
// attention at layers 1 and 4, S4D, GSS) with one recipe and token budget on a text corpus (byte tokens).
struct Table3MiniOptions {
  // paper: 6 layers, d_model 384, context 256, batch 64, 5,000 steps (the nanoGPT "shakespeare_char" recipe the
  // corpus README quotes, 1.47 nats/char for the Transformer); quick: 4 layers, d_model 128, context 128, batch 32,
  // 800 steps (two CPU cores); tiny: seconds, for tests.
  std::string schedule = "paper";
  std::string corpus = "../shared/data/tinyshakespeare/input.txt";
  int64_t seeds = 1;
  // train.precision of every run: fp32, or bf16 (CUDA autocast, H3.md 5; the sweep name gains "-bf16").
  std::string precision = "fp32";
};

// "paper, quick, tiny".
std::string table3_mini_schedules();

// The runs of table3-mini under `options` (sweep table3-mini, table3-mini-quick or table3-mini-tiny, each with
// "-bf16" appended for bf16). Errors (kInvalidArgument, naming the accepted values): an unknown schedule or
// precision, seeds outside [1, 100], a corpus the lm task refuses (unreadable, empty, binary, too short).
absl::StatusOr<ReproducePlan> table3_mini_plan(const Table3MiniOptions& options);

// The measured table of `plan`'s runs: per model, final validation loss (nats/token), perplexity and bits per byte
// (mean ± 95% interval over seeds, n), parameters, the paper's perplexity for that kind; then the measured order
// against the paper's claims (hybrid <= Transformer < H3 < S4D), each said to agree or disagree, and for the paper
// schedule the Transformer against the corpus README's 1.47 nats/char (at most 1.50 expected). format: text or md.
absl::StatusOr<std::string> render_table3_mini(ResultsDb& db, const ReproducePlan& plan, const std::string& format);

}  // namespace hippo
