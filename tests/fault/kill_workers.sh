#!/usr/bin/env bash
# Fault test with real processes: a sweep of short runs with two workers; worker processes and then the sweep
# process itself are killed with SIGKILL in the middle of runs, and the sweep is launched again. Afterwards every
# run must be finished exactly once, killed attempts visible (attempts > 1), and the metric rows identical to an
# uninterrupted reference sweep of the same file: nothing lost, nothing duplicated, resumed runs continuing
# exactly where their checkpoint left off.
# Usage: kill_workers.sh HIPPO_BINARY
set -euo pipefail
hippo=$(realpath "$1")
dir=$(mktemp -d)
cleanup() { pkill -9 -f "$dir/" 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
cd "$dir"
cat > faults.yaml <<'YAML'
name: faults
fixed:
  task: associative_recall
  epochs: 30
  d_model: 16
  eval_every: 3
  associative_recall: {num_train: 320, num_test: 32}
grid:
  layer: [attention, s4d]
  seed: [0, 1, 2, 3, 4]
YAML
common=(--threads 1 --lease 3 --checkpoint-every 25 --quiet)

# Reference: the same sweep, never interrupted.
"$hippo" sweep faults.yaml --db "$dir/ref.db" --workers 2 "${common[@]}" > /dev/null

"$hippo" sweep faults.yaml --db "$dir/f.db" --workers 2 "${common[@]}" > sweep1.log 2>&1 &
sweep=$!
kills=0
# The sweep's own child worker, then three more workers joined by hand, each killed in the middle of a run.
for i in 1 2 3 4; do
  sleep 1.2
  if (( i > 1 )); then "$hippo" worker --db "$dir/f.db" "${common[@]}" > /dev/null 2>&1 & sleep 1.2; fi
  pid=$(pgrep -f "worker --db $dir/f.db" | head -n 1 || true)
  if [[ -n "$pid" ]]; then kill -9 "$pid" && kills=$((kills + 1)); fi
done
sleep 1
kill -9 "$sweep" 2>/dev/null && kills=$((kills + 1)) || true
wait "$sweep" 2>/dev/null || true
pkill -9 -f "worker --db $dir/f.db" 2>/dev/null || true
echo "kill_workers: $kills processes killed with SIGKILL"
# Launch again: expired leases are taken over and resumed from their checkpoints.
"$hippo" sweep faults.yaml --db "$dir/f.db" --workers 2 "${common[@]}" > sweep2.log 2>&1 || { cat sweep2.log; exit 1; }

q() { sqlite3 "$1" "$2"; }
total=$(q f.db "SELECT count(*) FROM runs")
finished=$(q f.db "SELECT count(*) FROM runs WHERE status = 'finished'")
attempts=$(q f.db "SELECT sum(attempts) FROM runs")
echo "kill_workers: $finished of $total runs finished, $attempts attempts in all"
[[ "$total" == 10 && "$finished" == 10 ]] || { echo "FAIL: not every run finished exactly once"; exit 1; }
[[ "$kills" -ge 4 ]] || { echo "FAIL: the test killed fewer than 4 processes"; exit 1; }
(( attempts > total )) || { echo "FAIL: no killed attempt is visible (attempts == runs)"; exit 1; }
# The metric rows, keyed by config hash, must equal the reference's ('running_loss' averages over the steps since
# the last evaluation, which a resumed attempt only partly saw, so it is left out; so are the wall-clock throughput
# rows, tokens_per_second and step_ms).
dump='SELECT r.config_hash, m.step, m.split, m.name, printf("%.12g", m.value) FROM metrics m JOIN runs r ON r.id = m.run_id
      WHERE m.name NOT IN ("running_loss", "tokens_per_second", "step_ms") ORDER BY 1, 2, 3, 4'
q ref.db "$dump" > ref.txt
q f.db "$dump" > f.txt
if ! diff -q ref.txt f.txt > /dev/null; then
  echo "FAIL: metrics differ from the uninterrupted reference:"; diff ref.txt f.txt | head -n 20; exit 1
fi
echo "kill_workers: $(wc -l < f.txt) metric rows identical to the uninterrupted reference"
[[ -z "$(ls "$dir"/f.db.checkpoints 2>/dev/null)" ]] || { echo "FAIL: checkpoints left behind"; exit 1; }
echo "1 passed, 0 failed"
