#!/usr/bin/env python3
"""Where a kernel's warps wait, from ncu's per-SASS-instruction samples.

Input: `ncu --import R.ncu-rep --page source --print-source sass --csv`
(scripts/device/run-ncu-decode.sh writes it). Prints the stall reasons
summed over the kernel and the instructions with the most samples, each
with its reasons.

Usage: ncu_stalls.py SASS.csv [--top N]
"""
import argparse
import csv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    rows = list(csv.reader(open(args.csv)))
    # Row 0 names the kernel; row 1 is the header.
    header, data = rows[1], rows[2:]
    samples = header.index("Warp Stall Sampling (All Samples)")
    source = header.index("Source")
    reasons = [i for i, h in enumerate(header)
               if h.startswith("stall_") and "Not Issued" not in h]
    count = lambda r, i: int(r[i] or 0) if i < len(r) else 0
    total = sum(count(r, samples) for r in data) or 1
    print(f"{rows[0][1]}: {len(data)} instructions, {total} samples")
    sums = {header[i]: sum(count(r, i) for r in data) for i in reasons}
    print("  " + ", ".join(f"{k[6:]} {100 * v / total:.0f}%"
                           for k, v in sorted(sums.items(), key=lambda kv: -kv[1])
                           if v))
    ranked = sorted(range(len(data)), key=lambda n: -count(data[n], samples))
    for n in ranked[:args.top]:
        r = data[n]
        why = ", ".join(f"{header[i][6:]} {count(r, i)}" for i in reasons
                        if count(r, i))
        print(f"  {n:5d} {100 * count(r, samples) / total:5.1f}%  "
              f"{r[source].strip()[:48]:48s} {why}")


if __name__ == "__main__":
    main()
