#!/usr/bin/env bash
# On the GPU host (hippo built in build-gpu, `source build-gpu/gpu-env.sh` done): training steps per second of
# the Table 2 models (attention, h3, s4d, gss on induction head with the paper's config from
# `hippo reproduce table2 --dry-run`, H3.md 6.4), eager against --cuda-graph, then the aggregate steps/s of K
# graphed worker processes on one GPU (--gpus 0,0,...) for K = 1, 4, 8, 16, and the projected wall time of the
# full table. Writes OUT_DIR/train-speed.md (and the databases and logs beside it). Measured on an H200
# (2026-11-30): the eager and graphed single-process parts took 172 s; the K sweep did not finish in the 209 s
# left of a 10-minute call, so give it a call of its own.
#
# Method: steps/s = STEPS / (wall(20 + STEPS steps) - wall(20 steps)), walls from the runs table, so that start-up,
# evaluation, warm-up and graph capture cancel; each process first trains a 21-step run that absorbs CUDA
# initialisation. For K processes: K * STEPS / (elapsed(K runs of 20 + STEPS) - elapsed(K runs of 20)).
# Usage: scripts/gpu-train-speed.sh OUT_DIR [STEPS (default 2000)] [LAYER for the K sweep (default gss)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-train-speed.sh OUT_DIR [STEPS] [LAYER]}
steps=${2:-2000}
klayer=${3:-gss}
hippo=${HIPPO:-build-gpu/apps/hippo}
[[ -x $hippo ]] || { echo "no hippo binary at $hippo (build build-gpu first, or set HIPPO)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)
say() { echo "[$(( $(date +%s) - start ))s] $*"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,utilization.gpu --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
"$hippo" reproduce table2 --dry-run --seeds 1 --lrs 5e-4 > "$out/table2-dry-run.txt"

# The sweep files: the paper's induction-head config per layer, with max_steps in the grid.
all=attention,h3,s4d,gss
python3 scripts/table2_sweep.py "$out/table2-dry-run.txt" $all "$out/speed.yaml" speed \
  '{"layer": ["attention", "h3", "s4d", "gss"], "max_steps": [21, 20, '$((20 + steps))']}'
for k in 1 4 8 16; do
  seeds=$(python3 -c "print(list(range($k)))")
  python3 scripts/table2_sweep.py "$out/table2-dry-run.txt" $all "$out/k$k-short.yaml" k$k-short "{\"seed\": $seeds}" \
    "{\"layer\": \"$klayer\", \"max_steps\": 20}"
  python3 scripts/table2_sweep.py "$out/table2-dry-run.txt" $all "$out/k$k-long.yaml" k$k-long "{\"seed\": $seeds}" \
    "{\"layer\": \"$klayer\", \"max_steps\": $((20 + steps))}"
done

wall_of() {  # DB LAYER MAX_STEPS -> wall seconds of that run
  python3 -c "
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
for layer, cfg, wall, status in db.execute('SELECT layer, config, wall_seconds, status FROM runs'):
    if layer == sys.argv[2] and json.loads(cfg)['train']['max_steps'] == int(sys.argv[3]):
        assert status == 'finished', f'{layer} {sys.argv[3]} steps: {status}'
        print(wall)
" "$@"
}

declare -A rate
for mode in eager graph; do
  flag=""
  [[ $mode == graph ]] && flag="--cuda-graph"
  say "single process, $mode: 4 layers x (21 + 20 + $((20 + steps))) steps"
  rm -f "$out/speed-$mode.db"
  "$hippo" sweep "$out/speed.yaml" --db "$out/speed-$mode.db" --workers 1 --device cuda --checkpoint-every 0 -q $flag \
    > "$out/speed-$mode.log" 2>&1 || { tail -5 "$out/speed-$mode.log"; exit 1; }
  for layer in attention h3 s4d gss; do
    short=$(wall_of "$out/speed-$mode.db" "$layer" 20)
    long=$(wall_of "$out/speed-$mode.db" "$layer" $((20 + steps)))
    rate[$mode,$layer]=$(python3 -c "print(f'{$steps / ($long - $short):.1f}')")
    say "  $layer $mode: ${rate[$mode,$layer]} steps/s"
  done
done

declare -A agg
for k in 1 4 8 16; do
  gpus=$(python3 -c "print(','.join(['0'] * $k))")
  for tag in short long; do
    rm -f "$out/k$k-$tag.db"
    t0=$(date +%s.%N)
    "$hippo" sweep "$out/k$k-$tag.yaml" --db "$out/k$k-$tag.db" --gpus "$gpus" --checkpoint-every 0 -q --cuda-graph \
      > "$out/k$k-$tag.log" 2>&1 || { tail -5 "$out/k$k-$tag.log"; exit 1; }
    t1=$(date +%s.%N)
    eval "el_$tag=$(python3 -c "print($t1 - $t0)")"
  done
  agg[$k]=$(python3 -c "print(f'{$k * $steps / ($el_long - $el_short):.1f}')")
  say "  $k graphed $klayer processes on one GPU: ${agg[$k]} steps/s in all"
done

# The table: 72 runs = 4 layers x 2 tasks x 3 seeds x 3 lrs; per layer 9 x 62,800 + 9 x 31,400 steps.
python3 - "$out" "$steps" "$klayer" \
  "${rate[eager,attention]}" "${rate[eager,h3]}" "${rate[eager,s4d]}" "${rate[eager,gss]}" \
  "${rate[graph,attention]}" "${rate[graph,h3]}" "${rate[graph,s4d]}" "${rate[graph,gss]}" \
  "${agg[1]}" "${agg[4]}" "${agg[8]}" "${agg[16]}" <<'PY'
import sys
out, steps, klayer = sys.argv[1], int(sys.argv[2]), sys.argv[3]
v = list(map(float, sys.argv[4:]))
layers = ["attention", "h3", "s4d", "gss"]
eager, graph, agg = dict(zip(layers, v[0:4])), dict(zip(layers, v[4:8])), dict(zip([1, 4, 8, 16], v[8:12]))
per_layer = 9 * 62800 + 9 * 31400
total = 4 * per_layer
def hms(s):
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"
gpu = open(f"{out}/gpu.txt").read().strip()
L = [f"# Training speed of the Table 2 models (H3.md 6.4), induction head, paper config", "",
     f"GPU: {gpu}. Steps/s measured over {steps} steps (start-up, evaluation and capture excluded).", "",
     "| layer | eager steps/s | --cuda-graph steps/s | speed-up |", "|---|---|---|---|"]
for l in layers:
    L.append(f"| {l} | {eager[l]:.0f} | {graph[l]:.0f} | {graph[l] / eager[l]:.1f}x |")
L += ["", f"K graphed `{klayer}` processes on one GPU (`--gpus 0,0,...`, `--cuda-graph`):", "",
      "| K | aggregate steps/s | per process |", "|---|---|---|"]
for k, a in agg.items():
    L.append(f"| {k} | {a:.0f} | {a / k:.0f} |")
bestk = max(agg, key=agg.get)
L += ["", f"Projected wall time of the full table (72 runs: 36 x 62,800 + 36 x 31,400 = {total:,} steps; "
      "recall runs are shorter sequences, so these are upper bounds; evaluation not included):", "",
      f"- one eager process: {hms(sum(per_layer / eager[l] for l in layers))}",
      f"- one --cuda-graph process: {hms(sum(per_layer / graph[l] for l in layers))}",
      f"- {bestk} --cuda-graph processes on one GPU, every run at {klayer}'s rate (the slowest layer): "
      f"{hms(total / agg[bestk])}"]
open(f"{out}/train-speed.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
say "done: $out/train-speed.md"
