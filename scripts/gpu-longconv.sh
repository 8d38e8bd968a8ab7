#!/usr/bin/env bash
# On the CUDA host, with hippo already built in build-gpu (this script builds nothing) and
# `source build-gpu/gpu-env.sh` done: the chunked (overlap-save) convolution's tests (H3.md 8: fused windows at
# L = 16K, 64K, 1M against a float64 single pass; the CPU tests of the chunking too) and `hippo bench fftconv` with
# a short filter at L = 16K..1M (chunked against the reference; forward, forward+backward; L_k = 256, 1024, 4096;
# a window of FFT size 16384 instead of the default at L_k = 1024), tables and logs under OUT_DIR, a summary at
# the end. Each step has its own time limit, 120 s in all at most. Not yet run on a GPU.
# Usage: scripts/gpu-longconv.sh OUT_DIR
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-longconv.sh OUT_DIR}
mkdir -p "$out"
hippo=build-gpu/apps/hippo
tests=build-gpu/tests/hippo_tests
for f in "$hippo" "$tests"; do
  [ -x "$f" ] || { echo "gpu-longconv: $f is missing: build build-gpu first (this script builds nothing)" >&2; exit 2; }
done
source scripts/gpu-step.sh  # step(), status
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1
step 45 "$out/tests.txt" "$tests" --gtest_brief=1 --gtest_filter='*FftConvChunked*:Cli.BenchFftconv*'
bench=("$hippo" bench fftconv --batch 1 --channels 768 --seq-len 16384,65536,1048576 --dtype bf16 --iters 20
       --warmup 3 --db "$out/bench.db")
step 15 "$out/bench-k1024.md" "${bench[@]}" --kernel-len 1024
step 20 "$out/bench-k1024-backward.md" "${bench[@]}" --kernel-len 1024 --backward
step 12 "$out/bench-k256.md" "${bench[@]}" --kernel-len 256
step 12 "$out/bench-k4096.md" "${bench[@]}" --kernel-len 4096
# The default window at L_k = 1024 fills an FFT of 8192 (7169 positions, 6146 kept); this one fills 16384.
step 12 "$out/bench-k1024-window15361.md" "${bench[@]}" --kernel-len 1024 --window 15361

{
  echo "== gpu-longconv summary ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null))"
  head -2 "$out/gpu.txt" | tail -1
  grep -E "^\[  PASSED|^\[  FAILED|^\[  SKIPPED|tests? ran" "$out/tests.txt" | head -20
  # Lines: [chunked fwd|bwd] CASE ... err E  single-pass err R; float32 is held to 1e-5, bf16 to E <= 2 R.
  grep -E "^\[chunked (fwd|bwd)\]" "$out/tests.txt" | awk '
    { e = -1; r = -1
      for (i = 1; i < NF; i++) if ($i == "err") { if (e < 0) e = $(i + 1); else r = $(i + 1) }
      if (/ Float /) { n32++; if (e > w32) w32 = e } else if (r > 0) { n16++; if (e / r > w16) w16 = e / r } }
    END { fmt = "chunked path in the tests: float32 worst relative error %.3e (%d lines); "
          fmt = fmt "bf16 worst error / single-pass error %.3f (%d lines)\n"
          printf fmt, w32, n32, w16, n16 }'
  for f in "$out"/bench-*.md; do
    echo "-- $(basename "$f")"
    grep -E "^\| [0-9]" "$f"
  done
  printf '%s\n' "${step_lines[@]}"
  echo "overall: $([ $status = 0 ] && echo ok || echo FAILED)"
} 2>&1 | tee "$out/summary.txt"
exit $status
