#!/usr/bin/env bash
# The main job on a fresh machine: installs missing Debian packages, builds
# moelora, and generates the default kernel set (specs/default) into
# build/bundle with a summary table (ptxas statistics when ptxas is present).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j "$JOBS"
"$BUILD"/tools/moelora-gen/moelora-gen specs/default -o "$BUILD"/bundle \
  --ptxas -j "$JOBS"
