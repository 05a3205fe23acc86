#!/usr/bin/env bash
# On the GPU machine, repository root, .carry carried (scripts/gpu-prepare.sh,
# scripts/bench-prepare.sh, then the forced tables' variants:
# moelora-bench-prepare .carry/bench-cache --tuned-table .carry/fs/fsN.json).
# The GPU suite (with the slice-fused cases), then the W13 benchmark cases
# once per table in TABLES (default: every W13 two_kernel bucket forced
# unfused (fs0), forced fused (fs1), and "rule": the committed table; for the
# one-shot, TABLES="ofs0 ofs1" with its one_shot entries forced). The first
# two are compared case by case. Everything lands in
# $OUT/fuse-slices.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/out}
W=$(mktemp -d)
echo "=== GPU suite ($(date +%T))"
OUT=$W/suite timeout ${SUITE_LIMIT:-240} bash scripts/device/run-gpu-suite.sh > "$W/suite.txt" 2>&1
grep -E "_fused|FAILED|PASSED|exit" "$W/suite.txt" | tail -40
FILTER=${FILTER:-w13}
read -r -a tables <<< "${TABLES:-fs0 fs1 rule}"
for t in "${tables[@]}"; do
  echo "=== bench $t ($(date +%T))"
  table=()
  [ "$t" != rule ] && table=(--tuned-table ".carry/fs/$t.json")
  OUT=$W/$t timeout ${BENCH_LIMIT:-150} bash scripts/device/run-bench.sh --filter "$FILTER" "${table[@]}" > /dev/null 2>&1
  echo "exit $?"; tail -2 "$W/$t/bench.txt"
done
A=${tables[0]} B=${tables[1]}
if [ -f "$W/$A/bench.csv" ] && [ -f "$W/$B/bench.csv" ]; then
  python3 - "$W/$A/bench.csv" "$W/$B/bench.csv" "$W/rule/bench.csv" <<'PY' | tee "$W/compare.txt"
import csv, math, os, sys
def load(p):
    return {r["case"]: r for r in csv.DictReader(open(p))} if os.path.exists(p) else {}
a, b, rule = (load(p) for p in sys.argv[1:4])
xs = []
for case, r in a.items():
    # Only cases the forced tables changed: unfused in a, fused (fs=1) in b.
    if (case not in b or r["path"] != b[case]["path"] or "fs=1" in r["config"]
            or "fs=1" not in b[case]["config"]):
        continue
    ua, ub = float(r["us"]), float(b[case]["us"])
    ur = float(rule[case]["us"]) if case in rule else float("nan")
    xs.append(ub / ua)
    rf = "fused" if case in rule and "fs=1" in rule[case]["config"] else "unfused"
    print(f"{case:45s} unfused {ua:8.2f} fused {ub:8.2f} ({ub/ua:.3f}) rule {ur:8.2f} ({rf})")
if xs:
    print(f"fused/unfused geomean {math.exp(sum(map(math.log, xs))/len(xs)):.3f} over {len(xs)} cases")
PY
fi
tar czf "$OUT/fuse-slices.tar.gz" -C "$W" .
echo "=== done ($(date +%T))"
