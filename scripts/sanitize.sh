#!/usr/bin/env bash
# The CPU suites under AddressSanitizer + UndefinedBehaviorSanitizer (gcc):
# configures a separate build dir, builds the unit suites and the runtime
# libraries with
#   -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# runs the unit suites with ctest, then the Python CPU tests against the
# sanitized libmoelora_rt.so with the ASan runtime preloaded into python3.
# Any finding fails the run (no recovery).
#
#   scripts/sanitize.sh [--codegen]
#
# Without --codegen the generator is not built (-DMOELORA_ENABLE_CODEGEN=OFF):
# the runtime, C ABI, spec parser, reference and tuner logic are checked in
# about 6 minutes on 2 cores from a clean dir. --codegen also builds the
# generator (on Debian's shared LLVM/MLIR, which is not instrumented) and
# runs its suite: about 3x as long, for the MLIR-building code (see
# test/fuzz/RESULTS.md for the measurements).
#
# Environment: ASAN_BUILD (build dir, default build-asan), JOBS (default
# nproc).
set -euo pipefail
cd "$(dirname "$0")/.."

codegen=OFF
for arg in "$@"; do
  case "$arg" in
    --codegen) codegen=ON ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
BUILD=${ASAN_BUILD:-build-asan}
JOBS=${JOBS:-$(nproc)}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
start=$(date +%s)

# -O1: ASan's usual level (fast enough to run, quicker to compile than -O2);
# -g1: line tables for the reports' stacks, not full debug info (half the
# compile time). Debug: assertions stay on.
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="$SAN -O1" -DCMAKE_CXX_FLAGS="$SAN -O1" \
  -DCMAKE_C_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
  -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
  -DMOELORA_ENABLE_CODEGEN=$codegen -DMOELORA_SELF_CONTAINED=OFF \
  -DMOELORA_BUILD_TESTS=ON >/dev/null

targets=(moelora_spec_tests moelora_reference_tests moelora_runtime_tests
         moelora_tools_tests moelora_rt)
if [ "$codegen" = ON ]; then
  targets+=(moelora_codegen_tests moelora-gen)
fi
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}"
built=$(date +%s)

# Leaks count too in the C++ suites (the sanitized binaries own their
# memory); halt on the first report of any kind, with symbolized frames.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Only the suites built here: the GPU suite, the packages and the Python
# tests (below, with the preload) are not part of this build.
ctest --test-dir "$BUILD" --output-on-failure -j "$JOBS" \
  -E '^(moelora_gpu_tests|package_|python_)'
tested=$(date +%s)

# Python loads the sanitized library into an uninstrumented interpreter:
# the ASan runtime must come first, and CPython's own allocations are not
# ours to report (no leak check).
libasan=$(gcc -print-file-name=libasan.so)
export MOELORA_LIB="$PWD/$BUILD/runtime/libmoelora_rt.so"
export PYTHONPATH="$PWD/python"
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
for t in test_smoke_cpu.py test_ops_fake_torch.py test_vllm_plugin.py; do
  echo "== $t (ASan/UBSan libmoelora_rt.so)"
  LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
    MOELORA_CACHE_DIR="$cache" python3 "test/python/$t"
done
done_at=$(date +%s)
echo "sanitize.sh: OK (codegen $codegen): build $((built - start)) s, unit suites" \
  "$((tested - built)) s, Python $((done_at - tested)) s"
