#!/usr/bin/env bash
# Builds the moelora wheel from Debian packages only:
#   $BUILD/wheel/moelora-<version>-py3-none-manylinux_<glibc>_x86_64.whl
# It holds python/moelora, the self-contained libmoelora.so (LLVM and MLIR
# linked in, only the C ABI exported) and the tuned tables. Before packing,
# the library is checked: it must need no LLVM/MLIR/z3/icu/xml2 library and
# export only moelora_* symbols.
#
#   scripts/build-wheel.sh              installs missing packages and builds first
#   scripts/build-wheel.sh --no-build   packs what $BUILD already holds (tests)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ "${1:-}" != "--no-build" ]; then
  scripts/build.sh
fi
lib=$(readlink -f "$BUILD/runtime/libmoelora.so" || true)
[ -f "$lib" ] || { echo "build-wheel: $BUILD/runtime/libmoelora.so is missing" >&2; exit 1; }

# The shipped library must stand alone and show nothing but the C ABI.
deps=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
if echo "$deps" | grep -Eiq 'LLVM|MLIR|z3|icu|xml2|edit|ffi|fmt|yaml'; then
  echo "build-wheel: $lib is not self-contained (configure with" \
       "-DMOELORA_SELF_CONTAINED=ON); it needs:" $deps >&2
  exit 1
fi
extra=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^moelora_' | grep -v '^MOELORA_' || true)
if [ -n "$extra" ]; then
  echo "build-wheel: $lib exports more than the C ABI:" $extra >&2
  exit 1
fi

# The version: pyproject's must be CMake's.
cmake_version=$(sed -n 's/^project(moelora VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
py_version=$(sed -n 's/^version = "\([0-9.]*\)".*/\1/p' python/pyproject.toml)
if [ "$cmake_version" != "$py_version" ]; then
  echo "build-wheel: python/pyproject.toml version $py_version != CMakeLists.txt $cmake_version" >&2
  exit 1
fi

# The platform tag from the newest glibc symbol version the library uses.
glibc=$(objdump -T "$lib" | grep -o 'GLIBC_[0-9]*\.[0-9]*' | sed 's/GLIBC_//' | sort -V | tail -1)
platform="manylinux_${glibc%.*}_${glibc#*.}_$(uname -m)"

stage="$BUILD/wheel/stage"
rm -rf "$BUILD/wheel"
mkdir -p "$stage/moelora/lib" "$stage/moelora/share/moelora/tuned"
cp python/pyproject.toml python/setup.py python/README.md "$stage/"
cp python/moelora/*.py "$stage/moelora/"
cp "$lib" "$stage/moelora/lib/libmoelora.so"
cp specs/tuned/*.json "$stage/moelora/share/moelora/tuned/"

# Debian's interpreter has python3-build, -setuptools and -wheel; no index is
# reached (--no-isolation).
(cd "$stage" && MOELORA_WHEEL_PLATFORM="$platform" \
  /usr/bin/python3 -m build --wheel --no-isolation --outdir .. >build.log 2>&1) || {
  cat "$stage/build.log" >&2
  exit 1
}
wheel=$(ls "$BUILD"/wheel/moelora-*.whl)
echo "build-wheel: $wheel ($(du -h "$wheel" | cut -f1); libmoelora.so $(du -h "$lib" | cut -f1), glibc >= $glibc)"
