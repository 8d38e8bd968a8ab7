#!/usr/bin/env bash
# On the CUDA host (no LibTorch build needed): the fused kernels alone (bench/fftconv_probe.cu), a base copy of
# the kernel files against the working tree's, two binaries alternated in one run, then the float64 check of the
# working tree's forward. The probe does not check the backward's values: run the GPU tests for that.
# Usage: bash scripts/gpu-kernel-ab.sh OUT_DIR BASE_DIR [LENGTHS]
#   BASE_DIR holds kernels/fftconv_kernel.cu, kernels/fftconv_kernel.h, kernels/cuda_elem.cuh and
#   bench/fftconv_probe.cu of the base, made here (the device copy has no .git) with e.g.
#   for f in kernels/fftconv_kernel.cu kernels/fftconv_kernel.h kernels/cuda_elem.cuh bench/fftconv_probe.cu; do
#     mkdir -p .gpu/ab-base/$(dirname $f); git show main:$f > .gpu/ab-base/$f; done
#   and carried (.gpu is ignored by git). LENGTHS default 1024,4096,8192,16384.
set -euo pipefail
out=${1:?OUT_DIR}; base=${2:?BASE_DIR}; lens=${3:-1024,4096,8192,16384}
mkdir -p "$out" /tmp/kab
nv="nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v"
$nv -I"$base" "$base/bench/fftconv_probe.cu" "$base/kernels/fftconv_kernel.cu" -o /tmp/kab/p_base > "$out/ptxas_base.txt" 2>&1 &
$nv -I. bench/fftconv_probe.cu kernels/fftconv_kernel.cu -o /tmp/kab/p_new > "$out/ptxas_new.txt" 2>&1 &
wait
for rep in 1 2; do for v in base new; do for b in 0 1; do
  /tmp/kab/p_$v --seq-len "$lens" --backward $b | grep -E "^\| [0-9]" | sed "s/^/$v bwd=$b $rep /"
done; done; done | tee "$out/kernel_ab.txt"
for d in bf16 fp16 fp32; do for o in none all; do
  /tmp/kab/p_new --batch 3 --channels 111 --seq-len 1,2,31,1000,1023,1024,1025,4096,8192,16384 --dtype $d --options $o \
    --iters 20 | grep -E "within|ERROR" | sed "s/^/$d $o: /"
done; done | tee "$out/kernel_check.txt"
