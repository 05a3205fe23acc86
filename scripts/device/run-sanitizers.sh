#!/usr/bin/env bash
# On the GPU machine (repository root, .carry carried: scripts/gpu-prepare.sh
# and scripts/ship-prepare.sh): compute-sanitizer's memcheck, racecheck and
# synccheck over the whole moelora_gpu_tests suite and the Python GPU tests
# (the drop-in suite, empty/degenerate shapes, reproducibility), the six runs
# side by side, each bounded by LIMIT seconds. Logs: $OUT/cs-<suite>-<tool>.txt.
set -uo pipefail
OUT=${OUT:-/tmp/out}
LIMIT=${LIMIT:-420}
mkdir -p "$OUT"
ROOT=$PWD
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$CS" ] || { echo "compute-sanitizer not found"; exit 1; }
"$CS" --version | head -2
export MOELORA_GPU_BUNDLE=$ROOT/.carry/gpu-bundle MOELORA_CAPI_CACHE=$ROOT/.carry/capi-cache
site=$(mktemp -d)/site
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .carry/ship/moelora-*.whl
export MOELORA_CACHE_DIR=$(mktemp -d)/cache PYTHONUNBUFFERED=1
# Fill the kernel cache first, so the sanitized runs load rather than generate.
PYTHONPATH=$site MOELORA_TEST_INSTALLED=1 python3 -m pytest -q -p no:cacheprovider \
  test/python/test_dropin.py test/python/test_degenerate.py test/python/test_determinism.py \
  > "$OUT/prewarm.txt" 2>&1
tail -1 "$OUT/prewarm.txt"
run() { # suite tool command...
  local suite=$1 tool=$2; shift 2
  ( timeout "$LIMIT" "$CS" --tool "$tool" --error-exitcode 9 --target-processes all \
      --print-limit 200 "$@" > "$OUT/cs-$suite-$tool.txt" 2>&1
    echo "exit: $?" >> "$OUT/cs-$suite-$tool.txt" ) &
}
for tool in memcheck racecheck synccheck; do
  run gpu-suite "$tool" env LD_LIBRARY_PATH="$ROOT/.carry/lib" .carry/bin/moelora_gpu_tests
  run python "$tool" env PYTHONPATH="$site" MOELORA_TEST_INSTALLED=1 python3 -m pytest -q \
    -p no:cacheprovider test/python/test_dropin.py test/python/test_degenerate.py \
    test/python/test_determinism.py
done
wait
for f in "$OUT"/cs-*.txt; do
  echo "$(basename "$f"): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -1) |" \
       "$(grep -E '^\[  (PASSED|FAILED)  \]|passed|failed' "$f" | tail -1) | $(tail -1 "$f")"
done
