// Counting (and timing on the host) ATen operator calls (RecordFunction callbacks) to see where a layer's
// per-operation overhead goes: every operator call is at least one dispatch on the host and, on a GPU,
// usually one or more kernel launches. For benchmarks and tests of op budgets; not for use inside models.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace hippo {

// While an instance lives, every ATen operator call and every autograd backward node on any thread is counted
// by name (a global RecordFunction callback, so the autograd engine's device threads count too). "Top level"
// calls are those not nested inside another recorded call on the same thread: the calls the caller's code (or
// the autograd engine) makes, as opposed to the operators that operators call internally. Only one counter
// may be live at a time; raises c10::Error otherwise. Not free: slows every operator call while it lives.
class OpCounter {
 public:
  OpCounter();
  ~OpCounter();
  OpCounter(const OpCounter&) = delete;
  OpCounter& operator=(const OpCounter&) = delete;

  // Top-level calls by operator name (e.g. "aten::mul", "MulBackward0").
  std::map<std::string, int64_t> top_level() const;
  // Sum of top_level(), and every recorded call including nested ones.
  int64_t top_level_total() const;
  int64_t all_total() const;
  // Host wall time (ms) spent inside top-level calls by name, nested calls included (on a GPU: dispatch and
  // launch, not the kernels, unless a call synchronises).
  std::map<std::string, double> top_level_ms() const;
  // The `n` most frequent top-level names as "name xcount, ..." (for a printed summary).
  std::string summary(int n) const;
  // The `n` top-level names with the most time, as "name T ms (xcount), ...".
  std::string summary_ms(int n) const;

  struct State;  // the counts, shared with the callbacks (defined in op_count.cc)

 private:
  std::shared_ptr<State> state_;
  uint64_t handle_;
};

}  // namespace hippo
