// Timing and flag parsing shared by the benchmarks `hippo bench fftconv` and `hippo bench layer`: per-call
// timing (CUDA events on a GPU, the steady clock on the CPU), the median, the device's copy bandwidth.
#pragma once

#include <torch/types.h>

#include <functional>
#include <string>
#include <vector>

#include "core/options.h"
#include "core/status.h"
#include "results/db.h"

namespace hippo::cli {

// "float32", "float16" or "bfloat16".
const char* dtype_name(torch::ScalarType t);
// bf16|bfloat16, fp16|float16|half, fp32|float32|float. kInvalidArgument naming --dtype and the accepted
// values otherwise.
absl::StatusOr<torch::ScalarType> parse_dtype(const std::string& s);
// Comma-separated lengths in [1, 1048576] for --seq-len; kInvalidArgument naming the flag otherwise.
absl::StatusOr<std::vector<int64_t>> parse_lengths(const std::string& s);

// Milliseconds of each of `iters` calls call(warmup + i) after `warmup` untimed calls call(i). On a CUDA
// device: CUDA events around each call on the current stream, the device idle before each start (a call's
// launch gaps count); on the CPU: the steady clock. Raises what `call` raises.
std::vector<double> time_calls(const std::function<void(int)>& call, int warmup, int iters,
                               const c10::Device& device);
// As time_calls, but every timed call is one replay of a CUDA graph holding call(0) .. call(calls_per_graph - 1)
// (>= 1; several when calls rotate over input sets, so that a replay does not find its inputs in L2): call(i)
// runs max(warmup, 3) times eagerly on a side stream (lazy initialisations, cached plans and allocations), then
// the calls are captured once on that stream and the graph replayed `iters` times between CUDA events on the
// current stream; each entry is a replay's time / calls_per_graph. What a graphed training step (--cuda-graph)
// sees: no host-side dispatch or launch gaps. `call` must be capturable (no host synchronisation, fixed shapes).
// Raises c10::Error on a CPU device, in a build without CUDA graphs, for calls_per_graph < 1, or when the
// capture fails (naming it).
std::vector<double> time_graphed(const std::function<void(int)>& call, int warmup, int iters,
                                 const c10::Device& device, int calls_per_graph = 1);
// Whether this build can capture CUDA graphs (time_graphed).
bool cuda_graphs_built();
double median(std::vector<double> v);
// Copy bandwidth of `device` (bytes read + written per second, in 1e9 B/s): 1 GiB device-to-device on a GPU,
// 64 MiB on the CPU, median of `iters` copies.
double copy_bandwidth(int warmup, int iters, const c10::Device& device);

// Where a benchmark's rows go, and what every row says about the machine (H3.md 8's speed claims are only
// comparable with the machine beside them).
struct BenchSink {
  std::unique_ptr<ResultsDb> db;  // null with --no-db
  std::string db_path;
  Json env;                 // environment(device): commit, versions, host, GPU
  std::string device_name;  // the GPU's name on CUDA, "cpu" on the CPU
  // The columns every bench row shares: created_at (now, ISO 8601 UTC), commit_hash, hippo_version,
  // torch_version, cuda_version, device, host, and environment (env as JSON text, with `extra` merged in).
  Json common_columns(const Json& extra = Json::object()) const;
  // Adds `rows` to the bench table and prints how many went where; nothing without a database. Errors: the
  // database's (kInternal on SQL failure, kInvalidArgument for a row the schema refuses).
  absl::Status write(const std::vector<Json>& rows) const;
};
// Opens (creating if needed) the results database at `db_path` unless `no_db`, and fingerprints `device`.
// Errors: the database's open errors (not a hippo database, newer schema, unwritable path), as they come.
absl::StatusOr<BenchSink> open_bench_sink(const std::string& db_path, bool no_db, const c10::Device& device);

}  // namespace hippo::cli
