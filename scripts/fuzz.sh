#!/usr/bin/env bash
# Builds the libFuzzer targets (test/fuzz, clang-14, ASan + UBSan) in a
# separate build dir and runs each one: first over its committed corpus
# (test/fuzz/corpus/<target>: seeds and every regression input found so far),
# then fuzzing for N seconds from that corpus, the specs and tuned tables.
# Any crash, sanitizer report, timeout or out-of-memory fails the run and
# leaves the input in $FUZZ_BUILD/artifacts/.
#
#   scripts/fuzz.sh [--seconds N | --runs N] [target ...]
#
#   --seconds N  fuzz each target for N seconds (default 10: CI's short run)
#   --runs N     fuzz each target for N executions instead (the long run:
#                test/fuzz/RESULTS.md)
#   target       fuzz_spec_parser, fuzz_tuned_table, fuzz_bundle_manifest,
#                fuzz_capi (default: all)
#
# Environment: FUZZ_BUILD (default build-fuzz), JOBS (default nproc).
# Inputs the fuzzer finds go to $FUZZ_BUILD/corpus/<target> (not committed:
# copy the ones worth keeping into test/fuzz/corpus/<target>).
set -euo pipefail
cd "$(dirname "$0")/.."

limit=(-max_total_time=10)
seconds=10
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) limit=(-max_total_time="$2"); seconds=$2; shift 2 ;;
    --runs) limit=(-runs="$2"); seconds=""; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    fuzz_*) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] ||
  targets=(fuzz_spec_parser fuzz_tuned_table fuzz_bundle_manifest fuzz_capi)

scripts/install-deps.sh
# libFuzzer is clang's (the project builds with gcc otherwise).
if ! command -v clang++-14 >/dev/null ||
   ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a \
     >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q \
    --no-install-recommends clang-14 libclang-rt-14-dev
fi

BUILD=${FUZZ_BUILD:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
# Every library is instrumented for coverage (fuzzer-no-link) and checked;
# the targets link libFuzzer's main (test/fuzz/CMakeLists.txt).
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
start=$(date +%s)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link $SAN -O1" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $SAN -O1" \
  -DCMAKE_C_FLAGS_DEBUG=-g1 -DCMAKE_CXX_FLAGS_DEBUG=-g1 \
  -DCMAKE_EXE_LINKER_FLAGS="$SAN" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
  -DMOELORA_ENABLE_CODEGEN=OFF -DMOELORA_SELF_CONTAINED=OFF \
  -DMOELORA_BUILD_TESTS=OFF -DMOELORA_BUILD_FUZZERS=ON >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target "${targets[@]}"
built=$(date +%s)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p "$BUILD/artifacts"
summary=()
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  seeds=(test/fuzz/corpus/$name)
  case $name in
    spec_parser) seeds+=(specs/default specs/examples specs/tune) ;;
    tuned_table) seeds+=(specs/tuned) ;;
  esac
  work="$BUILD/corpus/$name"
  mkdir -p "$work"
  # YAML inputs stay short (a parse costs ~1 ms); JSON may hold a table.
  max_len=8192
  [ "$name" = spec_parser ] && max_len=2048
  opts=(-timeout=10 -rss_limit_mb=2048 -max_len=$max_len -print_final_stats=1
        -artifact_prefix="$BUILD/artifacts/$name-")
  [ -f "test/fuzz/dict/$name.dict" ] && opts+=(-dict="test/fuzz/dict/$name.dict")
  echo "== $t: the committed corpus"
  "$BUILD/test/fuzz/$t" "${opts[@]}" -runs=0 "${seeds[0]}"
  echo "== $t: fuzzing (${limit[*]})"
  log="$BUILD/$name.log"
  t0=$(date +%s)
  # libFuzzer's timeout handler can deadlock in ASan's allocator when the
  # alarm lands inside malloc (then no artifact is written): a time-limited
  # run is also killed from outside, well after its own limits.
  guard=()
  [ -n "$seconds" ] && guard=(timeout -s KILL $((seconds + 120)))
  rc=0
  "${guard[@]}" "$BUILD/test/fuzz/$t" "${opts[@]}" "${limit[@]}" "$work" \
    "${seeds[@]}" >"$log" 2>&1 || rc=$?
  if [ $rc -ne 0 ]; then
    tail -60 "$log"
    if [ $rc -eq 137 ]; then
      echo "fuzz.sh: $t hung and was killed (the log's last 'base unit' and" \
        "mutations lead to the input); log $log" >&2
    else
      echo "fuzz.sh: $t FAILED: the input is in $BUILD/artifacts/, log $log" >&2
    fi
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  summary+=("$t: $runs executions in $(( $(date +%s) - t0 )) s, corpus $(ls "$work" | wc -l) inputs, no findings")
done
printf '%s\n' "${summary[@]}"
echo "fuzz.sh: OK: build $((built - start)) s, fuzzing $(( $(date +%s) - built )) s"
