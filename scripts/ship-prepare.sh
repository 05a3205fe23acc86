#!/usr/bin/env bash
# Stages under .carry/ship/ what the device machine needs to check what users
# install: the wheel, and the C++ engine example built against the installed
# CMake package, and the tensor-parallel halves example (examples/tp), both
# with the CUDA runtime, so they launch there. Then, with
# carry [".carry"], run scripts/device/run-ship-check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BUILD="$BUILD" scripts/build-wheel.sh --no-build
rm -rf .carry/ship && mkdir -p .carry/ship
cp "$BUILD"/wheel/moelora-*.whl .carry/ship/
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$BUILD" --prefix "$tmp/prefix" >/dev/null
cmake -S examples/engine -B "$tmp/engine" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCUDAToolkit_ROOT=/usr/local/cuda >/dev/null
cmake --build "$tmp/engine" >/dev/null
cp "$tmp/engine/engine_example" .carry/ship/
cmake -S examples/tp -B "$tmp/tp" -G Ninja -DCMAKE_PREFIX_PATH="$tmp/prefix" \
  -DCUDAToolkit_ROOT=/usr/local/cuda >/dev/null
cmake --build "$tmp/tp" >/dev/null
cp "$tmp/tp/tp_example" .carry/ship/
strip .carry/ship/engine_example .carry/ship/tp_example
du -sh .carry/ship .carry
