#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through CTest: the GoogleTest cases two at a time,
# then the real-process tests (faults, load, fuzzing, Slurm) and the notebooks (scripts/run-notebooks.sh) alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh --with-notebooks
scripts/build.sh build
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
