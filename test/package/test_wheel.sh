#!/usr/bin/env bash
# The wheel as a user gets it: built by scripts/build-wheel.sh from this
# build, installed with pip --target into an empty folder, used from another
# directory with no MOELORA_LIB, LD_LIBRARY_PATH or source tree to lean on.
# Checks: the library is the packaged one and has the JIT; the packaged tuned
# table is found; warm-up generates, then serves from the disk cache; an
# unwritable cache warns once and still serves; the vLLM entry point is
# declared; the plugin's CPU tests pass against the installed package.
# Usage: test_wheel.sh <build dir>
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "$1" && pwd)
(cd "$ROOT" && BUILD="$BUILD" scripts/build-wheel.sh --no-build)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
whl=$(ls "$BUILD"/wheel/moelora-*.whl)
if python3 -m pip --version >/dev/null 2>&1; then
  python3 -m pip install --quiet --no-index --no-deps --no-compile \
    --target "$tmp/site" "$whl"
else # a wheel is a zip laid out as site-packages
  python3 -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" \
    "$whl" "$tmp/site"
fi
cd "$tmp"
run() {
  env -u MOELORA_LIB -u LD_LIBRARY_PATH -u MOELORA_TUNED_DIR -u MOELORA_TUNED_TABLE \
    PYTHONPATH="$tmp/site" MOELORA_TARGET_GPU="NVIDIA H200" "$@"
}
fail() { echo "FAIL: $*" >&2; exit 1; }

run MOELORA_CACHE_DIR="$tmp/cache" python3 -m moelora info | tee info.txt
grep -q "^library .*$tmp/site/moelora/lib/libmoelora.so" info.txt || fail "info: not the packaged library"
grep -q "^JIT .*available (in-process generator)" info.txt || fail "info: no JIT"
grep -q "^tuned table .*$tmp/site/moelora/share/moelora/tuned/NVIDIA_H200.json" info.txt ||
  fail "info: packaged tuned table not found"
run MOELORA_CACHE_DIR="$tmp/cache" python3 -m moelora info --json >info.json
python3 -c "import json,sys; d=json.load(open('info.json')); assert d['library']['abi_version']==1, d"

run MOELORA_CACHE_DIR="$tmp/cache" python3 -m moelora warmup --preset qwen3moe \
  --batch-sizes 1 64 --ranks 16 | tee warm1.txt
awk '$1=="qwen3moe" { exit !($3 > 0 && $4 == 0) }' warm1.txt || fail "cold warm-up generated nothing"
run MOELORA_CACHE_DIR="$tmp/cache" python3 -m moelora warmup --preset qwen3moe \
  --batch-sizes 1 64 --ranks 16 | tee warm2.txt
awk '$1=="qwen3moe" { exit !($3 == 0 && $4 > 0) }' warm2.txt || fail "warm-up did not use the disk cache"

touch notadir # a cache "directory" below a file cannot be created, even by root
run MOELORA_CACHE_DIR="$tmp/notadir/cache" python3 -m moelora warmup --preset qwen3moe \
  --batch-sizes 1 --ranks 16 >warm3.txt 2>warm3.err || fail "unwritable cache: warm-up failed"
[ "$(grep -c 'warning: cannot write the kernel cache' warm3.err)" = 1 ] ||
  { cat warm3.err; fail "unwritable cache: expected exactly one warning"; }

grep -A1 '^\[vllm.general_plugins\]' "$tmp"/site/moelora-*.dist-info/entry_points.txt |
  grep -q '^moelora = moelora.vllm_plugin:register' || fail "no vllm.general_plugins entry point"
if [ -f "$ROOT/test/python/test_vllm_plugin.py" ]; then
  run MOELORA_CACHE_DIR="$tmp/cache" MOELORA_TEST_INSTALLED=1 \
    python3 "$ROOT/test/python/test_vllm_plugin.py"
fi
echo "wheel OK: $(basename "$whl")"
