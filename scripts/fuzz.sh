#!/usr/bin/env bash
# Builds the sweep-parser fuzz target with clang and libFuzzer (ASan + UBSan) into build-fuzz/ and runs it for
# SECONDS (default 60) from a seed corpus of the project's sweep files. Exits non-zero on any crash.
# Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
if ! command -v clang++ >/dev/null; then
  echo "fuzz: SKIPPED: clang++ not installed (scripts/install-deps.sh installs it)" >&2
  exit 77
fi
out=build-fuzz
mkdir -p "$out/corpus"
cp sweeps/*.yaml tests/fuzz/regressions/* "$out/corpus/" 2>/dev/null || true
flags="-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I."
# Only the parser's own sources: it has no LibTorch dependency (runner/sweep_file.cc, core/options.cc).
ccache_cmd=$(command -v ccache || true)
$ccache_cmd clang++ $flags tests/fuzz/sweep_fuzz.cc runner/sweep_file.cc core/options.cc -o "$out/sweep_fuzz" \
  $(pkg-config --libs yaml-cpp) -labsl_strings -labsl_status -labsl_statusor -labsl_str_format_internal \
  -labsl_strings_internal -labsl_throw_delegate -labsl_raw_logging_internal -labsl_int128 -labsl_cord \
  -labsl_cord_internal -labsl_cordz_info -labsl_cordz_functions -labsl_cordz_handle -labsl_synchronization \
  -labsl_time -labsl_base -labsl_spinlock_wait -labsl_stacktrace -labsl_symbolize
echo "fuzz: running the sweep parser for ${seconds}s" >&2
# Inputs that crashed the parser once must never crash it again.
"$out/sweep_fuzz" -error_exitcode=1 tests/fuzz/regressions/* > "$out/regressions.log" 2>&1 ||
  { tail -n 30 "$out/regressions.log"; echo "fuzz: a regression input crashes the parser again"; exit 1; }
# libFuzzer exits 77 on a crash by default, which CTest would read as "skipped": make every finding exit 1.
"$out/sweep_fuzz" -max_total_time="$seconds" -max_len=4096 -timeout=10 -error_exitcode=1 -timeout_exitcode=1 \
  -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" 2>&1 | tail -n 12
echo "fuzz: no crash in ${seconds}s"
