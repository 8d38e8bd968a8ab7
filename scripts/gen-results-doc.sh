#!/usr/bin/env bash
# Regenerates docs/RESULTS.md from the schema compiled into hippo (results/schema.cc), so the document cannot
# drift from the database it describes. Usage: scripts/gen-results-doc.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hippo=${1:-build}/apps/hippo
{
  cat <<'HEAD'
# The results database

Every `hippo train`, `hippo sweep` and `hippo worker` writes to one SQLite file (`results.db` by default,
`--db PATH`), in WAL mode so that several worker processes can share it on one machine. Read it with
`hippo results ...`, with `sqlite3`, or with any SQLite binding (the notebooks open it read-only). `hippo results
export --format csv|json` gives the same data for other tools.

Conventions: times are ISO 8601 UTC text; accuracies and chance levels are fractions in [0, 1] (the command line
prints percentages); losses are nats per token; a run's final value of a metric is its row with the largest step.
The tables below are generated from the schema compiled into hippo (`hippo results schema`).

HEAD
  "$hippo" results schema
} > docs/RESULTS.md
echo "wrote docs/RESULTS.md" >&2
