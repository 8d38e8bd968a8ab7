#!/usr/bin/env bash
# Installs dependencies, builds, runs the whole test suite through CTest (two tests at a time), then executes the
# analysis notebooks headless on the example database (scripts/run-notebooks.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh --with-notebooks
scripts/build.sh build
(cd build && ctest --output-on-failure -j "$(nproc)" "$@")
scripts/run-notebooks.sh
