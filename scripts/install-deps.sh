#!/usr/bin/env bash
# Installs hippo's build and run dependencies from Debian 12's packages (apt-get). Idempotent: a package that
# is already there is left alone. Used by the README's two commands and by .ci/run.
# Usage: scripts/install-deps.sh [--with-notebooks]
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache git pkg-config
  libtorch-dev libopenblas0-pthread
  libboost-program-options-dev libabsl-dev
  libsqlite3-dev sqlite3 libsqlitecpp-dev bc procps clang libclang-rt-14-dev
  libeigen3-dev libgtest-dev libgmock-dev
  libyaml-cpp-dev nlohmann-json3-dev libsentencepiece-dev
)
if [[ "${1:-}" == "--with-notebooks" ]]; then
  packages+=(python3 jupyter-nbconvert python3-ipykernel python3-pandas python3-matplotlib python3-nbformat)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "install-deps: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "install-deps: all ${#packages[@]} packages present" >&2
