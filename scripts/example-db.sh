#!/usr/bin/env bash
# Builds the notebooks' example database, notebooks/example.db, from sweeps/example.yaml and sweeps/example-lm.yaml
# with the built hippo binary (about 2 minutes on two cores). Idempotent: launching again skips finished runs. If a
# sweep file or the text the LM runs read changed since the database was built, the database is rebuilt so that it
# never mixes two versions.
# Usage: scripts/example-db.sh [HIPPO_BINARY [SWEEP_FLAGS...]]   (default build/apps/hippo; e.g. --workers 4)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hippo="${1:-build/apps/hippo}"
sweep=sweeps/example.yaml
lm_sweep=sweeps/example-lm.yaml
lm_text=(docs/ARCHITECTURE.md docs/RESULTS.md)  # the corpus of sweeps/example-lm.yaml
db=notebooks/example.db
stamp="$db.sweep-sha256"
if [[ ! -x "$hippo" ]]; then
  echo "example-db: no hippo binary at '$hippo'; build it first (scripts/build.sh build) or pass its path" >&2
  exit 2
fi
sha=$(cat "$sweep" "$lm_sweep" "${lm_text[@]}" | sha256sum | cut -d' ' -f1)
if [[ -e "$db" && "$(cat "$stamp" 2>/dev/null)" != "$sha" ]]; then
  echo "example-db: $sweep, $lm_sweep or their text changed since $db was built; rebuilding it" >&2
  rm -rf "$db" "$db-wal" "$db-shm" "$db.checkpoints"
fi
echo "$sha" >"$stamp"  # before the sweep, so that an interrupted build resumes instead of starting again
"$hippo" sweep "$sweep" --db "$db" -q "${@:2}"
"$hippo" sweep "$lm_sweep" --db "$db" -q "${@:2}"
