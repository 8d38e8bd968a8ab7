#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through CTest (two tests at a time).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/install-deps.sh
scripts/build.sh build
cd build
ctest --output-on-failure -j "$(nproc)" "$@"
