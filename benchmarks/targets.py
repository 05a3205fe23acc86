"""The issues' speed targets, read off a moelora-bench CSV (bf16 cases).

    python3 benchmarks/targets.py RUN/bench.csv [BEFORE/bench.csv]
        [--issue 13|4] [--verbose]

Prints how many cases meet each target (issue 13's by default; issue 4's,
the earlier and looser set, with --issue 4), every unmet case (every case
with --verbose) and the geomean speed-up over the Triton times the bench
carries (the contract's, for the cases that have one). With a second CSV,
also the geometric mean of time(RUN) / time(BEFORE) per path and every case
that got more than 5% slower. The floor is the bench's: the bytes that must
move at the copy bandwidth measured on the card that ran it.
"""
import argparse
import csv
import math
import re

CASE = re.compile(r"^.+?_(?:w13|w2)_(?P<kind>decode|prefill|two_kernel)"
                  r"_M(?P<m>\d+)_R\d+(?P<sparse>_sparse)?$")


def read(path):
    return {r["case"]: r for r in csv.DictReader(open(path))}


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


# Per issue: (label, applies(kind, m, sparse), met(us, floor_us)).
TARGETS = {
    "13": [
        ("decode M=1 <= max(6 us, floor + 3 us)",
         lambda k, m, s: k == "decode" and m == 1,
         lambda us, fl: us <= max(6.0, fl + 3.0)),
        ("decode M=16 >= 0.8 of the floor or <= 8 us",
         lambda k, m, s: k == "decode" and m == 16,
         lambda us, fl: fl / us >= 0.8 or us <= 8.0),
        ("one-shot M=64 >= 0.5 of the floor",
         lambda k, m, s: k == "prefill" and m == 64,
         lambda us, fl: fl / us >= 0.5),
        ("one-shot M=512/4096 >= 0.8 of the floor",
         lambda k, m, s: k == "prefill" and m in (512, 4096),
         lambda us, fl: fl / us >= 0.8),
        ("two-kernel M=4096 >= 0.75 of the floor",
         lambda k, m, s: k == "two_kernel" and m == 4096,
         lambda us, fl: fl / us >= 0.75),
    ],
    "4": [
        ("decode M=1 <= max(8 us, floor + 4 us)",
         lambda k, m, s: k == "decode" and m == 1,
         lambda us, fl: us <= max(8.0, fl + 4.0)),
        ("decode M=16 <= max(8 us, floor / 0.8)",
         lambda k, m, s: k == "decode" and m == 16,
         lambda us, fl: us <= max(8.0, fl / 0.8)),
        ("one-shot M>=512 (dense) >= 0.8 of the floor",
         lambda k, m, s: k == "prefill" and m >= 512 and not s,
         lambda us, fl: fl / us >= 0.8),
        ("two-kernel >= 0.6 of the floor",
         lambda k, m, s: k == "two_kernel",
         lambda us, fl: fl / us >= 0.6),
    ],
}
# Issue 13's geomean targets over Triton, per path.
TRITON_GOAL = {"decode": 6.0, "prefill": 2.5, "two_kernel": 5.0}


def targets(rows, issue, verbose):
    speedups = {}
    for label, applies, met in TARGETS[issue]:
        cases = []
        for name, r in sorted(rows.items()):
            c = CASE.match(name)
            if not c or not applies(c["kind"], int(c["m"]), bool(c["sparse"])):
                continue
            us, floor = float(r["us"]), float(r["floor_us"])
            cases.append((name, us, floor / us, met(us, floor)))
        print(f"{label:46s} {sum(c[3] for c in cases):2d}/{len(cases):2d}")
        for name, us, fraction, ok in cases:
            if verbose or not ok:
                print(f"  {'met  ' if ok else 'unmet'} {name:44s} {us:9.2f} us"
                      f"  {fraction:.2f} of the floor")
    for name, r in rows.items():
        c = CASE.match(name)
        triton = float(r["triton_us"] or 0)
        if c and triton > 0:
            speedups.setdefault(c["kind"], []).append(triton / float(r["us"]))
    for kind, v in sorted(speedups.items()):
        print(f"vs Triton, {kind}: {geomean(v):.2f}x geomean over {len(v)} "
              f"cases with a Triton time (issue 13: {TRITON_GOAL[kind]}x)")


def compare(after, before):
    by_path = {}
    slower = []
    for name, r in after.items():
        if name not in before:
            continue
        ratio = float(r["us"]) / float(before[name]["us"])
        by_path.setdefault(r["path"], []).append(ratio)
        if ratio > 1.05:
            slower.append((ratio, name, before[name]["us"], r["us"]))
    everything = [x for v in by_path.values() for x in v]
    for path, v in sorted(by_path.items()):
        print(f"{path:12s} {len(v):3d} cases: {geomean(v):.3f}x of before")
    print(f"{'all':12s} {len(everything):3d} cases: {geomean(everything):.3f}x of before")
    for ratio, name, b, a in sorted(slower, reverse=True):
        print(f"  slower: {name} {float(b):.1f} -> {float(a):.1f} us ({ratio:.2f}x)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("before", nargs="?")
    ap.add_argument("--issue", choices=sorted(TARGETS), default="13")
    ap.add_argument("--verbose", action="store_true", help="list every case")
    args = ap.parse_args()
    after = read(args.run)
    targets(after, args.issue, args.verbose)
    if args.before:
        compare(after, read(args.before))


if __name__ == "__main__":
    main()
