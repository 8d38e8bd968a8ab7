#!/usr/bin/env bash
# On the CUDA host, with hippo already built in build-gpu and `source build-gpu/gpu-env.sh` done (this script
# builds nothing): the block-FFT GPU tests (fftconv_blockfft against a float64 reference over the issue's grid,
# gradients, autotune dispatch; plus the `hippo bench fftconv` CLI tests) and `hippo bench fftconv` (reference,
# fused, block FFT split and single; bf16, B 16, H 768, L 256..8192) forward and forward+backward, logs and
# tables under OUT_DIR, then a short summary (summary.md).
# Each step has its own time limit (80 + 30 + 30 s, under 150 s in all); not yet run on the H200.
# Usage: scripts/gpu-blockfft.sh OUT_DIR
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-blockfft.sh OUT_DIR}
mkdir -p "$out"
step_summary="$out/summary.txt"
source scripts/gpu-step.sh  # step(), status; step lines also into summary.txt
: > "$out/summary.txt"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1
step 80 "$out/tests.txt" build-gpu/tests/hippo_tests --gtest_brief=1 --gtest_filter='*BlockFft*:Cli.BenchFftconv*'
for pass in "" "--backward"; do
  step 30 "$out/bench-fftconv${pass:+-backward}.md" build-gpu/apps/hippo bench fftconv --batch 16 --channels 768 \
    --seq-len 256,1024,4096,8192 --dtype bf16 $pass --db "$out/bench.db"
done
{
  echo "== summary (scripts/gpu-blockfft.sh, $(date -u +%FT%TZ))"
  grep -E "^\[  PASSED|^\[  FAILED|^\[  SKIPPED|tests? ran" "$out/tests.txt" | head -30
  # Worst block-FFT errors by dtype, and the worst ratio to the plain half path.
  awk '/^\[blockfft (fwd|bwd)\]/ { for (i = 1; i <= NF; i++) { if ($i == "err" && $(i-1) != "plain-path") e = $(i+1);
         if ($i == "plain-path") p = $(i+2) }; t = ($0 ~ / Float /) ? "float32" : "half"; kind = $2 " " t;
         if (e + 0 > worst[kind]) worst[kind] = e + 0; if (t == "half" && p > 0 && e / p > ratio[$2]) ratio[$2] = e / p }
       END { for (k in worst) printf "worst err %-22s %.3e\n", k, worst[k];
             for (k in ratio) printf "worst half ratio to plain path %s %.3f\n", k, ratio[k] }' "$out/tests.txt"
  echo "-- forward (bench-fftconv.md):"; grep -E "^\| [0-9]" "$out/bench-fftconv.md"
  echo "-- forward+backward (bench-fftconv-backward.md):"; grep -E "^\| [0-9]" "$out/bench-fftconv-backward.md"
  cat "$out/summary.txt"
  echo "overall: $([ $status = 0 ] && echo ok || echo FAILED)"
} 2>&1 | tee "$out/summary.md"
exit $status
