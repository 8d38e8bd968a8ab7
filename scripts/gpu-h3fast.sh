#!/usr/bin/env bash
# On the CUDA host, with hippo already built in build-gpu (.gpu/build.sh build-gpu; add -DHIPPO_BUILD_BENCH=ON
# for the before/now comparison of bench/h3_ops) and `source build-gpu/gpu-env.sh` done; builds nothing.
# Issue 6, the H3 layer's per-operation overhead: the H3, SSM and layer tests on the GPU, `hippo bench layer`
# (H3 fused / reference / attention, bf16, B = 4, d_model 768, L = 1K..8K) with --count-ops (ATen operator
# calls of one forward and one forward+backward), and, when built, bench/h3_ops (the pre-issue-6 layer against
# today's on the same parameters: op counts, ms and the largest difference). Logs and tables under OUT_DIR.
# Each step has its own time limit; at most 117 s in all (the limits; estimated, not yet measured on the H200).
# Usage: scripts/gpu-h3fast.sh OUT_DIR
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-h3fast.sh OUT_DIR}
mkdir -p "$out"
source scripts/gpu-step.sh  # step(), status
hippo=build-gpu/apps/hippo
[[ -x $hippo ]] || { echo "no $hippo: build hippo in build-gpu first (.gpu/build.sh build-gpu)" >&2; exit 2; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,memory.used,memory.total --format=csv > "$out/gpu.txt" 2>&1
step 70 "$out/tests.txt" build-gpu/tests/hippo_tests --gtest_brief=1 \
  --gtest_filter='*H3*:*h3*:*Ssm*:*SSM*:*StatePassing*:*FftConvCudaLayers*:OpCounter*:Cli.BenchLayer*'
grep -E "^\[  FAILED|^\[  PASSED|SKIPPED|Failure|Expected|Which is" "$out/tests.txt" | head -40
step 35 "$out/bench-layer.md" "$hippo" bench layer --device cuda --batch 4 --d-model 768 \
  --seq-len 1024,2048,4096,8192 --dtype bf16 --count-ops --db "$out/bench.db"
if [[ -x build-gpu/bench/h3_ops ]]; then
  step 12 "$out/h3-ops-bf16-L1024.md" build-gpu/bench/h3_ops --device cuda --batch 4 --d-model 768 \
    --seq-len 1024 --dtype bf16 --iters 30
else
  echo "build-gpu/bench/h3_ops not built (configure build-gpu with -DHIPPO_BUILD_BENCH=ON): no before/now table" \
    | tee "$out/h3-ops-missing.txt"
fi
exit $status
