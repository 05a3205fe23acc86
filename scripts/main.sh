#!/usr/bin/env bash
# The main job on a fresh machine: installs missing Debian packages, builds
# moelora, and generates the default kernel set (specs/default) into
# build/bundle with a summary table (ptxas statistics when ptxas is present).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
BUILD=${BUILD:-build}
"$BUILD"/tools/moelora-gen/moelora-gen specs/default -o "$BUILD"/bundle \
  --ptxas -j "${JOBS:-$(nproc)}"
