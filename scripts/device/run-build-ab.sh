#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried: an A/B on one machine.
# A side is DIR[:TABLE]: DIR holds bin/moelora-bench and bench-cache/ (this
# build's: .carry; an earlier build's, copied after its
# scripts/bench-prepare.sh: .carry/old), TABLE an optional --tuned-table.
# A (default .carry/old) and B (default .carry) are benched alternately,
# ROUNDS times each, and compared on the per-case median of their rounds.
# Optional further sides C, D and E are benched in the same rounds and
# compared with A as well (compare-C.txt, ...).
# A_ENV, B_ENV, ... (optional): VAR=value words set for that side's bench
# only (e.g. B_ENV=MOELORA_CLUSTER_POLICY=balance: same build and table,
# another launch setting).
# SUITE=1 runs the GPU suite first. Everything lands in $OUT/ab.tar.gz
# (or $OUT/$NAME.tar.gz).
set -uo pipefail
OUT=${OUT:-/tmp/out}
A=${A:-.carry/old} B=${B:-.carry}
ROUNDS=${ROUNDS:-2}
FILTER=${FILTER:-}
NAME=${NAME:-ab}
W=$(mktemp -d)
if [ -n "${SUITE:-}" ]; then
  echo "=== GPU suite ($(date +%T))"
  OUT=$W/suite timeout ${SUITE_LIMIT:-300} bash scripts/device/run-gpu-suite.sh > "$W/suite.txt" 2>&1
  echo "exit $?"
  grep -E "FAILED|PASSED|exit:" "$W/suite.txt" | tail -20
fi
filter=()
[ -n "$FILTER" ] && filter=(--filter "$FILTER")
C=${C:-} D=${D:-} E=${E:-}
sides=(A B)
for extra in C D E; do
  [ -n "${!extra}" ] && sides+=("$extra")
done
for r in $(seq 1 "$ROUNDS"); do
  for side in "${sides[@]}"; do
    dir=${!side%%:*} table=()
    [[ ${!side} == *:* ]] && table=(--tuned-table "${!side#*:}")
    envv=${side}_ENV
    sideenv=(${!envv:-})
    echo "=== bench $side (${!side} ${sideenv[*]}) round $r ($(date +%T))"
    env "${sideenv[@]}" OUT=$W/$side$r BENCH_DIR=$dir timeout ${BENCH_LIMIT:-200} \
      bash scripts/device/run-bench.sh "${filter[@]}" "${table[@]}" > /dev/null 2>&1
    echo "exit $?"
  done
done
python3 benchmarks/python/median_rounds.py "$W"/A*/bench.csv --out "$W/A.csv"
python3 benchmarks/python/median_rounds.py "$W"/B*/bench.csv --out "$W/B.csv"
python3 benchmarks/python/compare_bench.py "$W/A.csv" "$W/B.csv" --names A B \
  | tee "$W/compare.txt"
for side in "${sides[@]:2}"; do
  python3 benchmarks/python/median_rounds.py "$W"/$side[0-9]*/bench.csv --out "$W/$side.csv"
  python3 benchmarks/python/compare_bench.py "$W/A.csv" "$W/$side.csv" --names A $side \
    | tee "$W/compare-$side.txt"
done
tar czf "$OUT/$NAME.tar.gz" -C "$W" .
echo "=== done ($(date +%T))"
