"""Issue 4's targets, read off a moelora-bench CSV (bf16 cases).

    python3 benchmarks/targets.py RUN/bench.csv [BEFORE/bench.csv]

Prints how many cases meet each target and, with a second CSV, the
geometric mean of time(RUN) / time(BEFORE) per path and every case that got
more than 5% slower.
"""
import csv
import math
import sys


def read(path):
    return {r["case"]: r for r in csv.DictReader(open(path))}


def geomean(values):
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def targets(rows):
    dec1, dec16, big, two, m64 = [], [], [], [], []
    for name, r in rows.items():
        us, floor = float(r["us"]), float(r["floor_us"])
        triton = float(r["triton_us"] or 0)
        if "_decode_M1_" in name:
            dec1.append((name, us, us <= max(8.0, floor + 4.0)))
        elif "_decode_M16_" in name:
            dec16.append((name, us, us <= max(8.0, floor / 0.8)))
        elif "_prefill_" in name and "_sparse" not in name:
            if "_M64_" in name:
                if triton > 0:
                    m64.append(triton / us)
            else:
                big.append((name, floor / us, floor / us >= 0.8))
        elif "_two_kernel_" in name:
            two.append((name, floor / us, floor / us >= 0.6))

    def line(label, cases, fmt, higher_is_better):
        met = sum(1 for c in cases if c[2])
        # The closest miss: the slowest met case is not interesting.
        misses = [c for c in cases if not c[2]] or cases
        sign = 1 if higher_is_better else -1
        closest = max(misses, key=lambda c: sign * c[1])
        print(f"{label:44s} {met:2d}/{len(cases):2d}   closest miss {fmt(closest)}")

    line("decode M=1  <= max(8 us, floor + 4 us)", dec1,
         lambda c: f"{c[1]:.1f} us {c[0]}", False)
    line("decode M=16 <= max(8 us, floor / 0.8)", dec16,
         lambda c: f"{c[1]:.1f} us {c[0]}", False)
    line("one-shot M>=512 at >= 0.8 of the floor", big,
         lambda c: f"{c[1]:.2f} {c[0]}", True)
    line("two-kernel at >= 0.6 of the floor", two,
         lambda c: f"{c[1]:.2f} {c[0]}", True)
    print(f"{'one-shot M=64 vs Triton (geo-mean, >= 3x)':44s} {geomean(m64):.2f}x over {len(m64)} presets")


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
    after = read(sys.argv[1])
    targets(after)
    if len(sys.argv) > 2:
        compare(after, read(sys.argv[2]))


if __name__ == "__main__":
    main()
