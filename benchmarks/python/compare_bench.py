#!/usr/bin/env python3
"""Compares two moelora-bench runs case by case (B against A).

Usage: compare_bench.py A.csv B.csv [--only TOKEN] [--label TOKEN]
                        [--min-change F] [--names A_NAME B_NAME]

--only TOKEN: only cases whose B config holds TOKEN (the cases a forced
table changed, e.g. mma=wgmma). --label TOKEN: mark the cases whose B config
holds it. --min-change F: list only cases that moved by more than F (0.02:
2%); the geomean, best and worst always cover every compared case.
"""
import argparse
import math

from bench_csv import load_cases


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--only")
    ap.add_argument("--label")
    ap.add_argument("--min-change", type=float, default=0.0)
    ap.add_argument("--names", nargs=2, default=("A", "B"))
    args = ap.parse_args()
    a, b = load_cases(args.a), load_cases(args.b)
    xs = []
    for case, r in a.items():
        if case not in b or (args.only and args.only not in b[case]["config"]):
            continue
        ua, ub = float(r["us"]), float(b[case]["us"])
        xs.append(ub / ua)
        if abs(ub / ua - 1) <= args.min_change:
            continue
        label = ""
        if args.label:
            label = args.label if args.label in b[case]["config"] else "-"
        print(f"{case:42s} {args.names[0]} {ua:8.2f} {args.names[1]} {ub:8.2f} "
              f"({ub / ua:.3f}) floor {float(r['floor_fraction']):.2f} -> "
              f"{float(b[case]['floor_fraction']):.2f} {label}")
    if xs:
        print(f"{args.names[1]}/{args.names[0]} geomean "
              f"{math.exp(sum(map(math.log, xs)) / len(xs)):.3f} over {len(xs)} "
              f"cases, best {min(xs):.3f}, worst {max(xs):.3f}")


if __name__ == "__main__":
    main()
