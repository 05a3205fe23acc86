#!/usr/bin/env bash
# Runs the test suites (CPU; the GPU suite skips without a GPU). Builds
# first, installing missing packages, so it works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir "${BUILD:-build}" --output-on-failure -j "${JOBS:-$(nproc)}"
