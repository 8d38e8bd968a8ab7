#!/usr/bin/env bash
# Load test: four worker processes on one database for a sweep of 48 very short runs, plus one more worker
# started by hand while the sweep runs. No 'database is locked' failure, no lost or repeated run.
# Usage: many_workers.sh HIPPO_BINARY
set -euo pipefail
hippo=$(realpath "$1")
dir=$(mktemp -d)
trap 'pkill -9 -f "$dir/" 2>/dev/null || true; rm -rf "$dir"' EXIT
cd "$dir"
cat > many.yaml <<'YAML'
name: many
fixed:
  task: associative_recall
  d_model: 8
  max_steps: 2
  associative_recall: {num_train: 32, num_test: 8}
grid:
  layer: [attention, s4d, shift_ssm]
  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
YAML
start=$(date +%s.%N)
"$hippo" sweep many.yaml --db "$dir/m.db" --workers "${WORKERS:-4}" --threads 1 --quiet > sweep.log 2>&1 &
sweep=$!
sleep 1
"$hippo" worker --db "$dir/m.db" --threads 1 --quiet > worker.log 2>&1 || true
wait "$sweep" || { cat sweep.log; exit 1; }
end=$(date +%s.%N)
if grep -i -q "locked" sweep.log worker.log; then echo "FAIL: database is locked"; cat sweep.log worker.log; exit 1; fi
finished=$(sqlite3 m.db "SELECT count(*) FROM runs WHERE status = 'finished'")
attempts=$(sqlite3 m.db "SELECT sum(attempts) FROM runs")
echo "many_workers: $finished of 48 runs finished with $attempts attempts in $(echo "$end - $start" | bc) s"
[[ "$finished" == 48 && "$attempts" == 48 ]] || { echo "FAIL: lost or repeated runs"; exit 1; }
echo "1 passed, 0 failed"
