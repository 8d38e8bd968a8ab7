#!/usr/bin/env bash
# On the CUDA host (see ../shared/gpu/README.md): builds hippo with the CUDA kernels, runs the fused FFT
# convolution's GPU tests and `hippo bench fftconv` forward and forward+backward, writing logs to OUT_DIR.
# Usage: scripts/gpu-fftconv.sh OUT_DIR [GTEST_FILTER]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-fftconv.sh OUT_DIR [GTEST_FILTER]}
filter=${2:-'*FftConv*:Cli.Bench*'}
mkdir -p "$out"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,utilization.gpu --format=csv | tee "$out/gpu.txt"
start=$(date +%s)
if ! bash .gpu/build.sh build-gpu > "$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -40
  tail -20 "$out/build.log"
  exit 1
fi
echo "build: $(( $(date +%s) - start )) s"
source build-gpu/gpu-env.sh
build-gpu/tests/hippo_tests --gtest_filter="$filter" > "$out/tests.txt" 2>&1
echo "tests exit $?: $(grep -cE '^\[       OK' "$out/tests.txt") ok, $(grep -cE '^\[  FAILED  \] [A-Za-z]' "$out/tests.txt") failed lines"
grep -E "^\[  FAILED|^\[  PASSED|^\[  SKIPPED|Failure|error:|Expected|Which is|  Actual" "$out/tests.txt" | head -40
for pass in "" "--backward"; do
  build-gpu/apps/hippo bench fftconv --batch 16 --channels 768 --seq-len 256,1024,4096,8192 --dtype bf16 $pass \
    --db "$out/bench.db" 2>&1 | tee -a "$out/bench.txt"
done
