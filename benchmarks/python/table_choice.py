#!/usr/bin/env python3
"""Chooses, bucket by bucket, between two tuned tables measured on one card.

Usage: table_choice.py TABLE_A TABLE_B A.csv B.csv [--out OUT]
                       [--margin 0.97] [--case-limit 1.03]

A.csv and B.csv are moelora-bench runs of the same cases on the same card
with TABLE_A and TABLE_B (scripts/device/run-build-ab.sh with sides
.carry:TABLE_A and .carry:TABLE_B, their per-case medians). The tables must
hold the same buckets (one is derived from the other: the H100 table from
the H200's). A bucket is (dtype, rank, K, N, slices, sorted, max_pairs) with
all of its entries (one_shot, two_kernel, fused, small_batch): the path
choice lives there too, so a bucket is taken whole. The output is TABLE_A
with B's entries in the buckets whose cases together took less than MARGIN
times A's time and none more than CASE_LIMIT times its own (the tuner's
rule); buckets without measured cases keep A's entries.
"""
import argparse
import json
import re
import sys

from bench_csv import load_cases
from bucket_flag_choice import TOP_K, first_key_fields, write_table


def bucket_key(e):
    return (e["dtype"], e["rank"], e["K"], e["N"], e.get("num_slices", 1),
            e.get("sorted", False), e["max_pairs"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table_a")
    ap.add_argument("table_b")
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--out")
    ap.add_argument("--margin", type=float, default=0.97)
    ap.add_argument("--case-limit", type=float, default=1.03)
    args = ap.parse_args()
    ta, tb = json.load(open(args.table_a)), json.load(open(args.table_b))
    keys_a = {bucket_key(e) for e in ta["entries"]}
    paths_a = {(e["path"], bucket_key(e)) for e in ta["entries"]}
    paths_b = {(e["path"], bucket_key(e)) for e in tb["entries"]}
    if paths_a != paths_b:
        sys.exit("the tables hold different entries: "
                 f"{sorted(paths_a ^ paths_b)[:4]} ...")
    ca, cb = load_cases(args.a), load_cases(args.b)
    sums = {}  # bucket -> [A us, B us, cases, worst B/A]
    for case, u in ca.items():
        v = cb.get(case)
        m = re.match(r"([a-z0-9_]+?)_(?:w13|w2)_\w+?_M(\d+)", case)
        if not v or not m:
            continue
        _, dtype, k = first_key_fields(u["config"])
        pairs = int(m.group(2)) * TOP_K[m.group(1)]
        # N is not in the cache key; (K, slices) tell the bench's presets
        # apart, and a tie would be caught here.
        cands = sorted({key for key in keys_a
                        if key[0] == dtype and key[1] == int(k["R"])
                        and key[2] == int(k["K"])
                        and key[4] == int(k["slices"])
                        and key[5] == (k["sorted"] == "1")
                        and key[6] >= pairs}, key=lambda key: key[6])
        if not cands:
            print(f"{case}: no bucket in the tables", file=sys.stderr)
            continue
        if len({key[3] for key in cands if key[6] == cands[0][6]}) > 1:
            sys.exit(f"{case}: buckets of several N match")
        s = sums.setdefault(cands[0], [0.0, 0.0, [], 0.0])
        s[0] += float(u["us"])
        s[1] += float(v["us"])
        s[2].append(case)
        s[3] = max(s[3], float(v["us"]) / float(u["us"]))
    take = set()
    for key, (t_a, t_b, cases, worst) in sorted(sums.items()):
        choose = t_b < args.margin * t_a and worst <= args.case_limit
        if choose:
            take.add(key)
        print(f"{key[0]} R={key[1]:<3d} K={key[2]:<5d} N={key[3]:<5d} "
              f"slices={key[4]} sorted={int(key[5])} max_pairs={key[6]:<6d} "
              f"A {t_a:8.1f} us B {t_b:8.1f} us ({t_b / t_a:.3f}, worst case "
              f"{worst:.3f}) -> {'B' if choose else 'A'}  [{', '.join(cases)}]")
    out = dict(ta)
    by_path_b = {(e["path"], bucket_key(e)): e for e in tb["entries"]}
    out["entries"] = [
        by_path_b[(e["path"], bucket_key(e))] if bucket_key(e) in take else e
        for e in ta["entries"]]
    print(f"{len(take)} of {len(sums)} measured buckets take B's entries",
          file=sys.stderr)
    write_table(out, args.out)


if __name__ == "__main__":
    main()
