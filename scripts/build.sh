#!/usr/bin/env bash
# Installs missing packages, configures and builds moelora (shared by the
# README's two commands). BUILD and JOBS override the build dir and jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j "$JOBS"
