#!/usr/bin/env bash
# On the GPU host (hippo built in build-gpu, `source build-gpu/gpu-env.sh` done): training steps per second of
# the Table 2 models (attention, h3, s4d, gss on induction head, the paper's config from `hippo reproduce table2
# --dry-run`, H3.md 6.4) with --cuda-graph, one run at a time against an ensemble of 9 runs (3 seeds x 3
# learning rates, --ensemble 9: one graph, each run a branch on its own stream), in one process, in the same call.
# Writes OUT_DIR/ensemble-speed.md (databases and logs beside it). Measured on an H200 (2026-11-30): 13 s of
# training for two layers at STEPS 500 (plus start-up); one run / ensemble of 9 steps/s: attention 1006 / 7012,
# h3 470 / 1803 (500 steps), s4d 599 / 6272, gss 408 / 1440 (300 steps).
#
# Method: as scripts/gpu-train-speed.sh: steps/s = runs * STEPS / (wall(20 + STEPS steps) - wall(20 steps)), walls
# from the runs table (an ensemble's members share one wall), so that start-up, evaluation, warm-up and capture
# cancel; a 21-step run (one run, or one ensemble) of each layer first absorbs CUDA initialisation and the layer's
# first-use costs (cuFFT plans). Before 2026-11-30 evening the ensemble sweep had no such run: the first layer's
# 20-step ensemble absorbed CUDA start-up and that layer's rate came out too high (attention 7012 and S4D 6272
# steps/s in the two calls where each was first).
# Usage: scripts/gpu-ensemble-speed.sh OUT_DIR [STEPS (default 1000)] [LAYERS (default attention,h3,s4d,gss)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:?usage: scripts/gpu-ensemble-speed.sh OUT_DIR [STEPS] [LAYERS]}
steps=${2:-1000}
layers=${3:-attention,h3,s4d,gss}
hippo=${HIPPO:-build-gpu/apps/hippo}
[[ -x $hippo ]] || { echo "no hippo binary at $hippo (build build-gpu first, or set HIPPO)" >&2; exit 2; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
start=$(date +%s)
say() { echo "[$(( $(date +%s) - start ))s] $*"; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,utilization.gpu --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
"$hippo" reproduce table2 --dry-run --seeds 1 --lrs 5e-4 > "$out/table2-dry-run.txt"

sweep() { python3 scripts/table2_sweep.py "$out/table2-dry-run.txt" "$layers" "$out/$1.yaml" "$1" "$2"; }
layer_list=$(python3 -c 'import json, sys; print(json.dumps(sys.argv[1].split(",")))' "$layers")
sweep single "{\"layer\": $layer_list, \"max_steps\": [21, 20, $((20 + steps))]}"
sweep ensemble "{\"layer\": $layer_list, \"max_steps\": [21, 20, $((20 + steps))], \"seed\": [0, 1, 2], \"lr\": [5e-4, 1e-3, 2e-3]}"

wall_of() {  # DB LAYER MAX_STEPS -> wall seconds of that run (the largest of the members')
  python3 -c "
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
walls = []
for layer, cfg, wall, status in db.execute('SELECT layer, config, wall_seconds, status FROM runs'):
    if layer == sys.argv[2] and json.loads(cfg)['train']['max_steps'] == int(sys.argv[3]):
        assert status == 'finished', f'{layer} {sys.argv[3]} steps: {status}'
        walls.append(wall)
print(max(walls))
" "$@"
}

say "one run at a time, --cuda-graph"
"$hippo" sweep "$out/single.yaml" --db "$out/single.db" --workers 1 --device cuda --checkpoint-every 0 -q --cuda-graph \
  > "$out/single.log" 2>&1 || { tail -5 "$out/single.log"; exit 1; }
say "ensembles of 9, --cuda-graph"
"$hippo" sweep "$out/ensemble.yaml" --db "$out/ensemble.db" --workers 1 --device cuda --checkpoint-every 0 --log-only \
  --cuda-graph --ensemble 9 > "$out/ensemble.log" 2>&1 || { tail -5 "$out/ensemble.log"; exit 1; }
grep -c "(ensemble of 9)" "$out/ensemble.log" | sed 's/^/lines naming an ensemble of 9: /'

rows=()
for layer in ${layers//,/ }; do
  s1=$(wall_of "$out/single.db" "$layer" 20); l1=$(wall_of "$out/single.db" "$layer" $((20 + steps)))
  s9=$(wall_of "$out/ensemble.db" "$layer" 20); l9=$(wall_of "$out/ensemble.db" "$layer" $((20 + steps)))
  rows+=("$layer $(python3 -c "print($steps / ($l1 - $s1), 9 * $steps / ($l9 - $s9))")")
done
python3 - "$out" "$steps" "${rows[@]}" <<'PY'
import sys
out, steps = sys.argv[1], int(sys.argv[2])
gpu = open(f"{out}/gpu.txt").read().strip()
L = ["# Table 2 models (H3.md 6.4, induction head), --cuda-graph: one run against an ensemble of 9", "",
     f"GPU: {gpu}. Steps/s of all runs together over {steps} steps each (start-up, evaluation, capture excluded).",
     "", "| layer | one run, steps/s | ensemble of 9, steps/s (all members) | ratio | ensemble step, ms |",
     "|---|---|---|---|---|"]
per_layer = 9 * 62800 + 9 * 31400
total_single = total_ens = 0
for row in sys.argv[3:]:
    layer, one, nine = row.split()
    one, nine = float(one), float(nine)
    total_single += per_layer / one
    total_ens += per_layer / nine
    L.append(f"| {layer} | {one:.0f} | {nine:.0f} | {nine / one:.1f}x | {9e3 / nine:.2f} |")
n = len(sys.argv) - 3
L += ["", f"The {n} layer(s) measured take {n * 18} of Table 2's 72 runs ({n * per_layer:,} steps; recall runs are "
      f"shorter sequences, so upper bounds; evaluation not included): {total_single / 60:.1f} min one run at a "
      f"time, {total_ens / 60:.1f} min in ensembles of 9, in one process at these rates."]
open(f"{out}/ensemble-speed.md", "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
say "done: $out/ensemble-speed.md"
