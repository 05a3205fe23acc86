#!/usr/bin/env bash
# On the GPU machine (no LLVM), repository root, .carry carried
# (scripts/ship-prepare.sh): the empty/degenerate shapes (issue 12), the
# tensor-parallel paths on one GPU (issue 14: the two-process gloo test, the
# drop-in sharded cases, the C ABI halves example), then compute-sanitizer over
# the Python GPU tests (scripts/device/run-sanitizers.sh, moelora's kernels
# instrumented). Everything from the wheel, kernels generated there.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
site=$(mktemp -d)/site
unset LD_LIBRARY_PATH MOELORA_LIB MOELORA_TUNED_DIR MOELORA_TUNED_TABLE MOELORA_BUNDLE
export MOELORA_CACHE_DIR=$(mktemp -d)/moelora-cache PYTHONUNBUFFERED=1
status=0
step() { echo; echo "=== $* ($(date +%T))"; }
check() { "$@" || { echo "FAILED ($?): $*"; status=1; }; }
step card
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .carry/ship/moelora-*.whl
export PYTHONPATH=$site MOELORA_TEST_INSTALLED=1
step "empty batches and degenerate shapes"
check python3 -m pytest -q -rfE -p no:cacheprovider test/python/test_degenerate.py
step "tensor parallel: two processes on one GPU (gloo)"
check python3 -m pytest -q -s -rfE -p no:cacheprovider test/python/test_tp_two_rank.py
step "tensor parallel: the drop-in suite's sharded cases"
check python3 -m pytest -q -rfE -p no:cacheprovider test/python/test_dropin.py -k "shard or fully or tp"
step "tensor parallel: the C ABI halves example (examples/tp)"
# The example links libmoelora.so.1 (the CMake package's soname); the wheel
# ships the library as libmoelora.so.
tplib=$(mktemp -d)
ln -s "$site/moelora/lib/libmoelora.so" "$tplib/libmoelora.so.1"
check env LD_LIBRARY_PATH="$tplib" MOELORA_CACHE_DIR="$(mktemp -d)" .carry/ship/tp_example
step "compute-sanitizer over the Python GPU tests"
unset PYTHONPATH MOELORA_TEST_INSTALLED
OUT=$OUT SUITES=python LIMIT=${CS_LIMIT:-300} bash scripts/device/run-sanitizers.sh || status=1
echo; echo "hardening check exit: $status"
exit $status
