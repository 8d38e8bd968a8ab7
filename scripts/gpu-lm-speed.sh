#!/usr/bin/env bash
# On the CUDA host: training speed of the five table3-mini models (runner/reproduce_lm.cc: Transformer, H3, hybrid
# H3, S4D, GSS at 6 layers, d_model 384, context 256, batch 64) in fp32 and in bf16 (train.precision). Each is
# trained for 40 steps by `hippo train` (two epochs of 20 steps: the evaluation at step 20 ends the warm-up, and
# the trainer's train/step_ms and train/tokens_per_second at step 40 time steps 21 to 40 alone). Writes the runs to
# OUT_DIR/lm-speed.db and a Markdown table to OUT_DIR/lm-speed.md. Measured: 60 s on an H200 (2026-11-30).
# Assumes hippo is built in build-gpu and `source build-gpu/gpu-env.sh` was done.
# Usage: scripts/gpu-lm-speed.sh OUT_DIR [CORPUS]   (CORPUS: ../shared/data/tinyshakespeare/input.txt)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-lm-speed.sh OUT_DIR [CORPUS]}
corpus=${2:-../shared/data/tinyshakespeare/input.txt}
hippo=build-gpu/apps/hippo
[[ -x $hippo ]] || { echo "no $hippo: build hippo in build-gpu first" >&2; exit 2; }
[[ -r $corpus ]] || { echo "cannot read the corpus $corpus" >&2; exit 2; }
mkdir -p "$out"
db=$out/lm-speed.db
rm -f "$db" "$db-wal" "$db-shm" "$out/lm-speed.md"

# The table3-mini paper schedule, cut to 40 steps; 64 validation windows keep the evaluations short.
common=(--task lm --d-model 384 --batch-size 64 --epochs 2 --max-steps 40 --lr 1e-3 --weight-decay 0.1
        --set "lm.path=$corpus" --set lm.seq_len=256 --set lm.num_train=1280 --set lm.max_test_windows=64
        --set beta2=0.99 --set warmup_fraction=0.02 --set embed_dropout=0.2 --set resid_dropout=0.2
        --set attention.n_heads=6 --set attention.pos_emb=true --set attention.dropout=0.2
        --device cuda --db "$db" --quiet)
models=("Transformer:attention,attention,attention,attention,attention,attention"
        "H3:h3,h3,h3,h3,h3,h3"
        "H3 hybrid:h3,attention,h3,h3,attention,h3"
        "S4D:s4d,s4d,s4d,s4d,s4d,s4d"
        "GSS:gss,gss,gss,gss,gss,gss")

# The value of metric $1 at step 40 of the newest run.
metric() {
  "$hippo" results query --db "$db" \
    "SELECT printf('%.6g', value) FROM metrics WHERE run_id = (SELECT max(id) FROM runs) AND step = 40 AND name = '$1'" |
    grep -E '^[0-9.e+-]+$' | head -n 1 || true
}
fmt() { awk -v x="$1" 'BEGIN { if (x + 0 > 0) printf "%.1f", x; else print (x == "" ? "-" : x) }'; }
tok() { awk -v x="$1" 'BEGIN { if (x + 0 > 0) printf "%.0f", x; else print (x == "" ? "-" : x) }'; }

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || echo "unknown GPU")
start=$(date +%s)
declare -A ms tps
i=0
for entry in "${models[@]}"; do
  name=${entry%%:*}
  layers=${entry#*:}
  for precision in fp32 bf16; do
    i=$((i + 1))
    t0=$(date +%s)
    if ! timeout 120 "$hippo" train --layers "$layers" "${common[@]}" --set "precision=$precision" \
        > "$out/run-$i.log" 2>&1; then
      echo "[$i/10] $name $precision: FAILED (see $out/run-$i.log)"; tail -n 5 "$out/run-$i.log"
      ms[$name/$precision]=failed; tps[$name/$precision]=-
      continue
    fi
    ms[$name/$precision]=$(metric step_ms)
    tps[$name/$precision]=$(metric tokens_per_second)
    echo "[$i/10] $name $precision: ${ms[$name/$precision]} ms/step, ${tps[$name/$precision]} tokens/s" \
         "($(( $(date +%s) - t0 )) s, $(( $(date +%s) - start )) s in all)"
  done
done

{
  echo "# Training speed of the table3-mini models, fp32 against bf16"
  echo
  echo "$gpu; $(date -u +%Y-%m-%d); hippo $(git rev-parse --short HEAD 2>/dev/null || echo '?'). 6 layers, d_model 384,"
  echo "context 256, batch 64 (16,384 tokens per step), byte tokens on $(basename "$corpus"); the mean of steps 21 to 40"
  echo "of \`hippo train\` (train/step_ms, train/tokens_per_second: wall time, evaluation excluded). bf16: CUDA autocast"
  echo "with the SSM parameters, kernels and states in float32. Made by scripts/gpu-lm-speed.sh in $(( $(date +%s) - start )) s."
  echo
  echo "| model | fp32 ms/step | bf16 ms/step | fp32 / bf16 | fp32 tokens/s | bf16 tokens/s |"
  echo "|---|---|---|---|---|---|"
  for entry in "${models[@]}"; do
    name=${entry%%:*}
    a=${ms[$name/fp32]:-}; b=${ms[$name/bf16]:-}
    ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2fx", a / b; else print "-" }')
    echo "| $name | $(fmt "$a") | $(fmt "$b") | $ratio | $(tok "${tps[$name/fp32]:-}") | $(tok "${tps[$name/bf16]:-}") |"
  done
} > "$out/lm-speed.md"
cat "$out/lm-speed.md"
echo "wrote $out/lm-speed.md in $(( $(date +%s) - start )) s"
