// libFuzzer target for the sweep-file parser: any byte string must give a SweepSpec or a clean error, never a
// crash, hang or sanitizer report. Built by scripts/fuzz.sh with clang (-fsanitize=fuzzer,address,undefined).
#include <cstddef>
#include <cstdint>
#include <string>

#include "runner/sweep.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto sweep = hippo::parse_sweep(text, "fuzz.yaml");
  if (sweep.ok()) {
    // The parts the expansion reads must be well formed whenever parsing succeeded.
    for (const auto& [key, values] : sweep->grid)
      if (values.empty() || key.empty()) __builtin_trap();
    (void)sweep->source.dump();
  }
  (void)hippo::yaml_to_json(text, "fuzz.yaml");
  return 0;
}
