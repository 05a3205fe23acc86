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
import math
import re
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/python")
from bench_csv import load_cases  # noqa: E402

CASE = re.compile(r"^.+?_(?:w13|w2)_(?P<kind>decode|prefill|two_kernel)"
                  r"_M(?P<m>\d+)_R\d+(?P<sparse>_sparse)?$")


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def floor_share(at_least):
    """Met when the time is within `at_least` of the floor."""
    return lambda us, floor: floor / us >= at_least


def time_within(us_cap, floor_plus=None, floor_over=None):
    """Met at most max(us_cap, floor + floor_plus or floor / floor_over)."""
    def met(us, floor):
        bound = floor + floor_plus if floor_plus is not None else floor / floor_over
        return us <= max(us_cap, bound)
    return met


# Per issue: (label, case kind, its M values (None: any), dense cases only,
# met(us, floor_us)).
TARGETS = {
    "13": [
        ("decode M=1 <= max(6 us, floor + 3 us)", "decode", (1,), False,
         time_within(6.0, floor_plus=3.0)),
        ("decode M=16 >= 0.8 of the floor or <= 8 us", "decode", (16,), False,
         lambda us, fl: floor_share(0.8)(us, fl) or us <= 8.0),
        ("one-shot M=64 >= 0.5 of the floor", "prefill", (64,), False,
         floor_share(0.5)),
        ("one-shot M=512/4096 >= 0.8 of the floor", "prefill", (512, 4096),
         False, floor_share(0.8)),
        ("two-kernel M=4096 >= 0.75 of the floor", "two_kernel", (4096,),
         False, floor_share(0.75)),
    ],
    "4": [
        ("decode M=1 <= max(8 us, floor + 4 us)", "decode", (1,), False,
         time_within(8.0, floor_plus=4.0)),
        ("decode M=16 <= max(8 us, floor / 0.8)", "decode", (16,), False,
         time_within(8.0, floor_over=0.8)),
        ("one-shot M>=512 (dense) >= 0.8 of the floor", "prefill", (512, 4096),
         True, floor_share(0.8)),
        ("two-kernel >= 0.6 of the floor", "two_kernel", None, False,
         floor_share(0.6)),
    ],
}
# Issue 13's geomean targets over Triton, per path.
TRITON_GOAL = {"decode": 6.0, "prefill": 2.5, "two_kernel": 5.0}


def targets(rows, issue, verbose):
    speedups = {}
    for label, kind, ms, dense_only, met in TARGETS[issue]:
        cases = []
        for name, r in sorted(rows.items()):
            c = CASE.match(name)
            if (not c or c["kind"] != kind or (ms and int(c["m"]) not in ms)
                    or (dense_only and c["sparse"])):
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
    after = load_cases(args.run)
    targets(after, args.issue, args.verbose)
    if args.before:
        compare(after, load_cases(args.before))


if __name__ == "__main__":
    main()
