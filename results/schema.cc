// hippo's results schema, version 3 (2 added runs.model_path, 3 the bench table).
#include "results/schema.h"

#include <sstream>

namespace hippo {

const std::vector<TableDef>& schema_tables() {
  static const std::vector<TableDef> tables = {
      {"sweeps",
       "one row per sweep name; a sweep file launched again reuses its row",
       {{"id", "INTEGER PRIMARY KEY", "sweep id"},
        {"name", "TEXT NOT NULL UNIQUE", "sweep name (the file's `name:`, or the file name without extension)"},
        {"spec", "TEXT NOT NULL", "the sweep file as JSON, as last launched"},
        {"created_at", "TEXT NOT NULL", "first launch, ISO 8601 UTC"}},
       "",
       false},
      {"runs",
       "one row per distinct run config (config_hash); a run belongs to any number of sweeps",
       {{"id", "INTEGER PRIMARY KEY", "run id (what `hippo results show RUN` takes)"},
        {"config_hash", "TEXT NOT NULL UNIQUE", "16 hex digits, FNV-1a 64 of `config` (canonical JSON)"},
        {"config", "TEXT NOT NULL", "the full resolved config as canonical JSON (sorted keys, every default)"},
        {"layer", "TEXT NOT NULL", "layer label: the mixer name, or the schedule joined by '+' for hybrids"},
        {"task", "TEXT NOT NULL", "task name"},
        {"seed", "INTEGER NOT NULL", "seed of weights, dropout and data"},
        {"status", "TEXT NOT NULL CHECK (status IN ('queued','running','finished','failed','diverged'))",
         "queued, running, finished, failed (error holds the message) or diverged (NaN/Inf loss)"},
        {"attempts", "INTEGER NOT NULL DEFAULT 0", "times a worker has started this run"},
        {"worker", "TEXT", "host:pid of the worker that last claimed the run"},
        {"lease_until", "TEXT", "claim expiry, ISO 8601 UTC; a running run past it is taken over"},
        {"param_count", "INTEGER", "trainable parameters"},
        {"state_size", "INTEGER",
         "recurrent state per sequence in real scalars (complex counts 2), summed over layers; attention "
         "counts its key-value cache at the task's input length"},
        {"steps", "INTEGER", "optimiser steps completed"},
        {"diverged_step", "INTEGER", "step at which the loss became NaN or infinite"},
        {"error", "TEXT", "message of the exception that failed the run"},
        {"created_at", "TEXT NOT NULL", "queued at, ISO 8601 UTC"},
        {"started_at", "TEXT", "last start, ISO 8601 UTC"},
        {"ended_at", "TEXT", "end, ISO 8601 UTC"},
        {"wall_seconds", "REAL", "training wall time of the last attempt, seconds"},
        {"commit_hash", "TEXT", "git commit of the hippo binary (\"-dirty\" if uncommitted changes)"},
        {"hippo_version", "TEXT", "hippo version"},
        {"torch_version", "TEXT", "LibTorch version"},
        {"cuda_version", "TEXT", "CUDA runtime version, NULL on CPU"},
        {"device", "TEXT", "device the run trained on (cpu, cuda:0, ...)"},
        {"host", "TEXT", "host name"},
        {"threads", "INTEGER", "LibTorch intra-op threads"},
        {"environment", "TEXT", "the whole environment fingerprint as JSON"},
        {"model_path", "TEXT",
         "file of the final model and its config (hippo generate --run); written for text tasks, and for every "
         "run with --save-models; NULL when none was saved"}},
       "",
       false},
      {"sweep_runs",
       "membership of runs in sweeps",
       {{"sweep_id", "INTEGER NOT NULL REFERENCES sweeps(id)", "sweep"},
        {"run_id", "INTEGER NOT NULL REFERENCES runs(id)", "run"}},
       "PRIMARY KEY (sweep_id, run_id)",
       true},
      {"metrics",
       "one value per (run, step, split, name); re-writing a step replaces it, so resumed runs never duplicate",
       {{"run_id", "INTEGER NOT NULL REFERENCES runs(id)", "run"},
        {"step", "INTEGER NOT NULL", "optimiser steps completed when measured"},
        {"split", "TEXT NOT NULL", "train or test (test: the held-out split)"},
        {"name", "TEXT NOT NULL",
         "loss (mean cross-entropy over the loss mask, nats/token); accuracy (fraction correct at the answer "
         "positions only, the paper's metric); token_accuracy (fraction correct over every position); chance "
         "(accuracy of a uniform guess among the answers); lr (learning rate at that step); running_loss (mean "
         "training loss since the last evaluation); tokens_seen (training tokens fed to the model so far: steps * "
         "batch_size * input length); tokens_per_second and step_ms (train, every evaluation after step 0: training "
         "tokens per wall-clock second and milliseconds per optimiser step since the previous evaluation, evaluation "
         "time excluded, the GPU synchronised before each clock reading; they measure the machine, not the model; with --ensemble, the whole ensemble's lockstep step as each "
         "member saw it); "
         "for text tasks also perplexity (exp of the test loss) and bits_per_byte (test "
         "loss / ln 2 / UTF-8 bytes per token); accuracy_pos_A_B (accuracy at the answer positions A..B, MQAR); accuracy_pairs_K (MQAR with test_kv_pairs: accuracy of the test examples with K key-value pairs); "
         "accuracy_trigger_A_B (induction head: accuracy of the examples whose earlier trigger sits at A..B); "
         "accuracy_len_L and loss_len_L (test, final step: the final model on fresh examples at the task's seq_len L, "
         "from the task option eval_seq_lens)"},
        {"value", "REAL NOT NULL", "the value, in the unit its name gives (fractions in [0, 1])"}},
       "PRIMARY KEY (run_id, step, split, name)",
       true},
      {"bench",
       "one row per timed point of `hippo bench fftconv` and `hippo bench layer` (schema version 3): one variant of "
       "an operator, layer or model at one shape, timed with CUDA events (the steady clock for CPU rows of bench layer "
       "and for bench generate, which synchronises the device) after warm-up; the reference is timed in the same run "
       "beside every other variant",
       {{"id", "INTEGER PRIMARY KEY", "row id"},
        {"created_at", "TEXT NOT NULL", "measured at, ISO 8601 UTC"},
        {"benchmark", "TEXT NOT NULL",
         "what was timed: fftconv (the operator of kernels/fftconv.h), layer (H3 and attention layers) or generate "
         "(prompt prefill + recurrent decoding of a whole model, hippo bench generate)"},
        {"variant", "TEXT NOT NULL",
         "fftconv: reference (torch::fft, fftconv_ref), fused (the CUDA kernel, fftconv_fused), blockfft and blockfft_single "
         "(fftconv_blockfft, split and single half products), direct (a filter of --kernel-len <= 64 taps by direct "
         "summation on the GPU, fftconv_short), state_passing (a "
         "diagonal-SSM filter in chunks of --chunk-len (default 16384 up to L = 262144, 8192 beyond) past the fused limit) or chunked (a short "
         "filter, --kernel-len, past the fused limit: overlapping windows through the fused kernel, fftconv_chunked; "
         "kernel_len and window in environment); layer: h3 (default path: fused, its 64-tap shift SSM by direct summation, state passing past L = 16384 or "
         "past --chunk-len), h3_reference (torch::fft over the whole sequence) or attention; generate: transformer "
         "(the reference) or hybrid_h3"},
        {"pass", "TEXT NOT NULL CHECK (pass IN ('forward','forward+backward'))",
         "forward, or forward+backward (the gradients of u, k and D; of a layer's input and parameters); generate: forward"},
        {"batch", "INTEGER NOT NULL", "B"},
        {"channels", "INTEGER NOT NULL", "H (fftconv), d_model (layer, generate)"},
        {"seq_len", "INTEGER NOT NULL", "L (generate: the prompt length)"},
        {"fft_size", "INTEGER NOT NULL",
         "FFT size n (next power of two >= 2L - 1, at least 16; of one chunk for state passing; 0 for direct, attention and "
         "generate)"},
        {"dtype", "TEXT NOT NULL", "dtype of u and y: float32, float16 or bfloat16 (k and D are float32)"},
        {"median_ms", "REAL NOT NULL", "median time of one call, milliseconds"},
        {"min_ms", "REAL NOT NULL", "fastest call, milliseconds"},
        {"iters", "INTEGER NOT NULL", "timed calls (after the warm-up calls)"},
        {"bytes", "INTEGER NOT NULL",
         "bytes a call must move at least: u (a layer's input x) read and y written (forward); plus u and dy read and "
         "du written (forward+backward); 0 for generate"},
        {"gbytes_per_s", "REAL NOT NULL", "bytes / median time, in 1e9 bytes per second"},
        {"copy_gbytes_per_s", "REAL NOT NULL",
         "device-to-device copy bandwidth measured in the same run (bytes read + written / time), 1e9 B/s"},
        {"speedup", "REAL NOT NULL", "median time of the reference / this median time (1 for the reference); generate: tokens per second over the "
         "Transformer's at the same batch and prompt, with new tokens, layers and the prefill/decode split in environment"},
        {"commit_hash", "TEXT", "git commit of the hippo binary (\"-dirty\" if uncommitted changes)"},
        {"hippo_version", "TEXT", "hippo version"},
        {"torch_version", "TEXT", "LibTorch version"},
        {"cuda_version", "TEXT", "CUDA runtime version"},
        {"device", "TEXT", "GPU name, or cpu"},
        {"host", "TEXT", "host name"},
        {"environment", "TEXT", "the whole environment fingerprint as JSON"}},
       "",
       false},
  };
  return tables;
}

std::string create_table_sql(const TableDef& t) {
  std::ostringstream os;
  os << "CREATE TABLE IF NOT EXISTS " << t.name << " (";
  for (size_t i = 0; i < t.columns.size(); ++i) os << (i ? ", " : "") << t.columns[i].name << " " << t.columns[i].sql;
  if (*t.constraints) os << ", " << t.constraints;
  os << ")" << (t.without_rowid ? " WITHOUT ROWID" : "");
  return os.str();
}

std::string schema_markdown() {
  std::ostringstream os;
  os << "Schema version " << kSchemaVersion << " (PRAGMA user_version), application_id 0x" << std::hex
     << kApplicationId << std::dec << ".\n";
  for (const auto& t : schema_tables()) {
    os << "\n### " << t.name << "\n" << t.doc << ".\n\n| column | type | meaning |\n|---|---|---|\n";
    for (const auto& c : t.columns) os << "| " << c.name << " | " << c.sql << " | " << c.doc << " |\n";
    if (*t.constraints) os << "\nConstraint: " << t.constraints << ".\n";
  }
  return os.str();
}

}  // namespace hippo
