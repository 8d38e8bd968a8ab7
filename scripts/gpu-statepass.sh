#!/usr/bin/env bash
# On the CUDA host, with hippo already built in build-gpu (scripts/gpu-fftconv.sh or .gpu/build.sh build-gpu)
# and `source build-gpu/gpu-env.sh` done: state passing's GPU tests (H3.md 8: 16K, 64K, 1M against the
# single-pass reference), `hippo bench layer` (H3 fused / reference / attention, L = 1K..16K) and the long-L
# `hippo bench fftconv` (state passing past L = 16384, up to 1M), tables and logs under OUT_DIR. Each step has
# its own time limit; the whole script took 119 s on an H200 (2026-11-30).
# Usage: scripts/gpu-statepass.sh OUT_DIR
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-statepass.sh OUT_DIR}
mkdir -p "$out"
source scripts/gpu-step.sh  # step(), status
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv > "$out/gpu.txt"
step 60 "$out/tests.txt" build-gpu/tests/hippo_tests --gtest_brief=1 \
  --gtest_filter='*StatePassing*:*FftConvCudaLayers*:Cli.BenchLayer*:Cli.BenchFftconv*'
grep -E "^\[state passing|^\[  FAILED|^\[  PASSED|SKIPPED|Failure|Expected|Which is" "$out/tests.txt" | head -60
step 40 "$out/bench-layer.md" build-gpu/apps/hippo bench layer --batch 4 --d-model 768 \
  --seq-len 1024,2048,4096,8192,16384 --dtype bf16 --db "$out/bench.db"
for pass in "" "--backward"; do
  step 25 "$out/bench-fftconv-long${pass:+-backward}.md" build-gpu/apps/hippo bench fftconv --batch 1 \
    --channels 768 --seq-len 8192,16384,65536,1048576 --dtype bf16 --iters 20 --warmup 3 $pass --db "$out/bench.db"
done
exit $status
