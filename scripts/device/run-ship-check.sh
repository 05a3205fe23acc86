#!/usr/bin/env bash
# On the GPU machine (no LLVM), from the repository root with .carry carried
# (scripts/ship-prepare.sh, and scripts/gpu-prepare.sh for the GPU suite):
# what a user gets from the wheel. pip install --target into an empty folder,
# an empty MOELORA_CACHE_DIR, no LD_LIBRARY_PATH or MOELORA_LIB: every kernel
# is generated there by the wheel's libmoelora.so.
set -uo pipefail
ROOT=$PWD
# shellcheck source=user-env.sh
source "$(dirname "$0")/user-env.sh"
ldd --version | head -1
step "pip install --target (empty folder)"
check python3 -m pip install --no-index --no-deps --no-compile --target "$site" .carry/ship/moelora-*.whl
export PYTHONPATH=$site MOELORA_TEST_INSTALLED=1
step "ldd / nm -D of the shipped library"
lib=$site/moelora/lib/libmoelora.so
ls -la "$lib"; ldd "$lib"
echo "exported: $(nm -D --defined-only "$lib" | awk '{print $3}' | tr '\n' ' ')"
step "python3 -m moelora info"
check python3 -m moelora info
step "drop-in GPU suite (kernels generated here, from an empty cache)"
check python3 -m pytest -q -rfE -p no:cacheprovider test/python/test_dropin.py
step "drop-in GPU suite through the vLLM plugin's patched entry points"
check env MOELORA_DROPIN_VIA=vllm python3 -m pytest -q -rfE -p no:cacheprovider test/python/test_dropin.py
step "plugin CPU tests against the installed package"
check python3 test/python/test_vllm_plugin.py
step "bitwise reproducibility: repeated calls, 8 streams, another process (every path)"
check python3 -m pytest -q -s -rfE -p no:cacheprovider test/python/test_determinism.py
step "a tuned table's path choice (fused entry -> two-kernel path)"
check python3 -m pytest -q -s -rfE -p no:cacheprovider test/python/test_path_choice.py
step "wgmma kernels (sm_90a) through a tuned table, generated here"
check python3 -m pytest -q -s -rfE -p no:cacheprovider test/python/test_wgmma.py
step "empty batches and degenerate shapes"
check python3 -m pytest -q -rfE -p no:cacheprovider test/python/test_degenerate.py
step "Triton, then moelora's JIT, then Triton, in one process"
check python3 -m pytest -q -s -p no:cacheprovider test/python/test_coexist_triton.py
step "cold start: first call per variant, whole-model warm-up"
check python3 benchmarks/python/cold_start.py --json "$OUT/cold_start.json"
step "python3 -m moelora info (after)"
python3 -m moelora info
step "C++ engine example (find_package(moelora)) on the wheel's library"
englib=$(mktemp -d)
ln -s "$lib" "$englib/libmoelora.so.1"
check env LD_LIBRARY_PATH="$englib" MOELORA_CACHE_DIR="$(mktemp -d)" .carry/ship/engine_example
if [ -x .carry/bin/moelora_gpu_tests ]; then
  step "moelora_gpu_tests"
  OUT=/tmp/suite bash scripts/device/run-gpu-suite.sh > "$OUT/suite.txt" 2>&1
  tail -3 "$OUT/suite.txt"
  grep -q "exit: 0" "$OUT/suite.txt" || status=1
fi
echo; echo "ship check exit: $status"
exit $status
