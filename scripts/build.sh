#!/usr/bin/env bash
# Configures and builds hippo (Release-like, ccache, Ninja, the shared LibTorch precompiled header) into BUILD_DIR
# (default: build). Extra arguments go to CMake's configure step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
shift || true
# The precompiled header is only reusable by ccache when these differences are ignored.
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
