#!/usr/bin/env bash
# The main job on a fresh machine: installs missing Debian packages, builds
# moelora, and generates the default kernel set (specs/default) into
# build/bundle with a summary table (ptxas statistics when ptxas is present),
# and packs the wheel (build/wheel) around the self-contained libmoelora.so.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
BUILD=${BUILD:-build}
"$BUILD"/tools/moelora-gen/moelora-gen specs/default -o "$BUILD"/bundle \
  --ptxas -j "${JOBS:-$(nproc)}"
BUILD="$BUILD" scripts/build-wheel.sh --no-build
