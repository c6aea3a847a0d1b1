#!/usr/bin/env bash
# Configure and build Tulpar into a build directory.
#   tools/build.sh [BUILD_DIR] [extra cmake arguments...]     (default BUILD_DIR: build)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
mkdir -p "$dir"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir/configure.log" 2>&1 || {
    cat "$dir/configure.log" >&2
    exit 1
}
cmake --build "$dir" -j "$(nproc)"
