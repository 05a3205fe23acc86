#!/usr/bin/env bash
# On the GPU machine (repository root, .carry carried: scripts/gpu-prepare.sh
# and scripts/ship-prepare.sh): compute-sanitizer's memcheck, racecheck and
# synccheck over the moelora_gpu_tests suite and the Python GPU tests (the
# drop-in suite, empty/degenerate shapes, reproducibility, the two-process
# tensor-parallel test), each run bounded by LIMIT seconds.
#   SUITES="gpu-suite python" (default both), TOOLS="memcheck racecheck synccheck"
#   KERNELS=moelora: the Python runs instrument only kernels whose name holds
#     this (ours all start with moelora_); torch's own kernels run
#     uninstrumented, which is what makes the Python suites fit. KERNELS= checks all.
#   PARALLEL=1 runs the tool runs side by side (default), 0 one after another.
# Logs: $OUT/cs-<suite>-<tool>.txt.
set -uo pipefail
OUT=${OUT:-/tmp/out}
LIMIT=${LIMIT:-420}
SUITES=${SUITES:-gpu-suite python}
TOOLS=${TOOLS:-memcheck racecheck synccheck}
KERNELS=${KERNELS-moelora}
PARALLEL=${PARALLEL:-1}
PYTESTS=${PYTESTS:-test/python/test_dropin.py test/python/test_degenerate.py test/python/test_determinism.py test/python/test_tp_two_rank.py}
mkdir -p "$OUT"
ROOT=$PWD
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
[ -n "$CS" ] || { echo "compute-sanitizer not found"; exit 1; }
"$CS" --version | head -2
filter=()
[ -n "$KERNELS" ] && filter=(--kernel-name "kns=$KERNELS")
export MOELORA_GPU_BUNDLE=$ROOT/.carry/gpu-bundle MOELORA_CAPI_CACHE=$ROOT/.carry/capi-cache
site=$(mktemp -d)/site
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .carry/ship/moelora-*.whl
export MOELORA_CACHE_DIR=$(mktemp -d)/cache PYTHONUNBUFFERED=1
if [[ " $SUITES " == *" python "* ]]; then
  # Fill the kernel cache first, so the sanitized runs load rather than generate.
  # shellcheck disable=SC2086
  PYTHONPATH=$site MOELORA_TEST_INSTALLED=1 python3 -m pytest -q -p no:cacheprovider $PYTESTS \
    > "$OUT/prewarm.txt" 2>&1
  tail -1 "$OUT/prewarm.txt"
fi
run() { # suite tool command...
  local suite=$1 tool=$2; shift 2
  local t0=$SECONDS
  timeout "$LIMIT" "$CS" --tool "$tool" --error-exitcode 9 --target-processes all \
    --print-limit 200 "$@" > "$OUT/cs-$suite-$tool.txt" 2>&1
  echo "exit: $? after $((SECONDS - t0)) s" >> "$OUT/cs-$suite-$tool.txt"
}
for tool in $TOOLS; do
  for suite in $SUITES; do
    case $suite in
      gpu-suite) cmd=(env LD_LIBRARY_PATH="$ROOT/.carry/lib" .carry/bin/moelora_gpu_tests) ;;
      # shellcheck disable=SC2206
      python) cmd=("${filter[@]}" env PYTHONPATH="$site" MOELORA_TEST_INSTALLED=1 python3 -m pytest
                   -q -p no:cacheprovider $PYTESTS) ;;
    esac
    if [ "$PARALLEL" = 1 ]; then run "$suite" "$tool" "${cmd[@]}" & else run "$suite" "$tool" "${cmd[@]}"; fi
  done
done
wait
for f in "$OUT"/cs-*.txt; do
  echo "$(basename "$f"): $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -1) |" \
       "$(grep -E '^\[  (PASSED|FAILED)  \]|passed|failed' "$f" | tail -1) | $(tail -1 "$f")"
done
