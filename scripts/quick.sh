#!/usr/bin/env bash
# The main job on its built-in default: installs dependencies, builds, and runs the quick sweep (attention and
# S4D on induction head and associative recall, two seeds each, CPU) into results.db, printing its table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
scripts/build.sh build
exec build/apps/hippo sweep sweeps/quick.yaml --db "${HIPPO_DB:-results.db}" "$@"
