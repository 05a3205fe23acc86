#!/usr/bin/env python3
"""Merges several moelora-bench runs of one build into one CSV: per case, the
run with the median time (its row kept whole, so floor and config stay
consistent). Runs taken alternately with another build's (run-build-ab.sh)
then compare on medians rather than on one run's noise.

Usage: median_rounds.py RUN1.csv [RUN2.csv ...] --out MERGED.csv
"""
import argparse
import csv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows, fields = {}, None
    for path in args.runs:
        with open(path) as f:
            reader = csv.DictReader(f)
            fields = fields or reader.fieldnames
            for r in reader:
                rows.setdefault(r["case"], []).append(r)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for case, rs in rows.items():
            rs.sort(key=lambda r: float(r["us"]))
            w.writerow(rs[(len(rs) - 1) // 2])


if __name__ == "__main__":
    main()
