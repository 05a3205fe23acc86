#!/usr/bin/env bash
# On the GPU machine (no LLVM), repository root, .carry carried
# (scripts/ship-prepare.sh): the empty/degenerate shapes (issue 12), the
# tensor-parallel paths on one GPU (issue 14: the two-process gloo test, the
# drop-in sharded cases, the C ABI halves example), then compute-sanitizer over
# the Python GPU tests (scripts/device/run-sanitizers.sh, moelora's kernels
# instrumented). Everything from the wheel, kernels generated there.
set -uo pipefail
# shellcheck source=user-env.sh
source "$(dirname "$0")/user-env.sh"
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
