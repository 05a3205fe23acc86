#!/usr/bin/env bash
# Stages what test_dropin.py needs on a GPU machine without LLVM under
# build-pycarry/ (ignored): libmoelora_rt.so + libfmt, and a kernel cache
# warmed (by the JIT library, no GPU needed) for every call of the test, for
# an H100 (with its tuned table) and for other cards (vLLM's rules). Then, on
# the device machine, with carry ["build-pycarry"]:
#   export LD_LIBRARY_PATH=$PWD/build-pycarry/lib MOELORA_LIB=$PWD/build-pycarry/lib/libmoelora_rt.so \
#          MOELORA_CACHE_DIR=$PWD/build-pycarry/cache
#   python3 -m pytest -q test/python
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
ninja -C "$BUILD" -j2 moelora moelora_rt >/dev/null
rm -rf build-pycarry && mkdir -p build-pycarry/lib
cp -L "$BUILD"/runtime/libmoelora_rt.so build-pycarry/lib/
cp -L /usr/lib/x86_64-linux-gnu/libfmt.so.9 build-pycarry/lib/
for gpu in "NVIDIA H100 80GB HBM3" "NVIDIA H200"; do
  MOELORA_LIB="$BUILD"/runtime/libmoelora.so MOELORA_CACHE_DIR="$PWD/build-pycarry/cache" \
    MOELORA_TARGET_GPU="$gpu" python3 test/python/prepare_dropin_cache.py
done
du -sh build-pycarry
