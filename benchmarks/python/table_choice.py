#!/usr/bin/env python3
"""Chooses, bucket by bucket, between two tuned tables measured on one card.

Usage: table_choice.py TABLE_A TABLE_B A.csv B.csv [--out OUT]
                       [--margin 0.97] [--case-limit 1.03]

A.csv and B.csv are moelora-bench runs of the same cases on the same card
with TABLE_A and TABLE_B (scripts/device/run-build-ab.sh with sides
.carry:TABLE_A and .carry:TABLE_B, their per-case medians). The tables must
hold the same entries (one is derived from the other: the H100 table from
the H200's). A case is credited to the entries the dispatcher reads for it
under either table: its path's entry (the smallest max_pairs holding its
pairs, per path) and, for a sorted call not forced onto the two-kernel path,
the "fused" entry that chose the path. Cases sharing an entry are judged
together; a group takes B's configs for all of its entries where its cases
together took less than MARGIN times A's time and none more than CASE_LIMIT
times its own (the tuner's rule). Other entries keep A's configs. The
report goes to standard error, the table to OUT or standard output.
"""
import argparse
import json
import re
import sys

from bench_csv import load_cases
from bucket_flag_choice import (TOP_K, entry_index, first_key_fields,
                                write_table)


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
    paths_a = {(e["path"], bucket_key(e)) for e in ta["entries"]}
    paths_b = {(e["path"], bucket_key(e)) for e in tb["entries"]}
    if paths_a != paths_b:
        sys.exit("the tables hold different entries: "
                 f"{sorted(paths_a ^ paths_b)[:4]} ...")
    ca, cb = load_cases(args.a), load_cases(args.b)

    def serving(case, path, dtype, k, pairs):
        """The entries a table's lookups read for this case: its path's and,
        for a sorted call not forced onto the two-kernel path, the "fused"
        entry that chose the path (the same entries in A and B)."""
        paths = [path]
        if k["sorted"] == "1" and "_two_kernel_" not in case:
            paths.append("fused")
        out = set()
        for p in paths:
            i = entry_index(ta["entries"], p, dtype, k, pairs, case)
            if i is not None:
                out.add((p, bucket_key(ta["entries"][i])))
        return out

    # Cases that read a common entry are judged together (union-find over
    # the entries each case read under A or under B).
    parent = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    judged = []  # (entries read, A us, B us, case)
    for case, u in ca.items():
        v = cb.get(case)
        m = re.match(r"([a-z0-9_]+?)_(?:w13|w2)_\w+?_M(\d+)", case)
        if not v or not m:
            continue
        _, dtype, k = first_key_fields(u["config"])
        pairs = int(m.group(2)) * TOP_K[m.group(1)]
        read = (serving(case, u["path"], dtype, k, pairs) |
                serving(case, v["path"], dtype, k, pairs))
        if not read:
            print(f"{case}: no entry in the tables", file=sys.stderr)
            continue
        first = next(iter(read))
        for e in read:
            parent[find(e)] = find(first)
        judged.append((read, float(u["us"]), float(v["us"]), case))
    sums = {}  # group root -> [A us, B us, cases, worst B/A, entries]
    for read, t_a, t_b, case in judged:
        s = sums.setdefault(find(next(iter(read))), [0.0, 0.0, [], 0.0, set()])
        s[0] += t_a
        s[1] += t_b
        s[2].append(case)
        s[3] = max(s[3], t_b / t_a)
        s[4] |= read
    take = set()
    for _, (t_a, t_b, cases, worst, read) in sorted(
            sums.items(), key=lambda kv: sorted(kv[1][4])):
        choose = t_b < args.margin * t_a and worst <= args.case_limit
        if choose:
            take |= read
        names = ", ".join(f"{p} max_pairs={key[6]}" for p, key in sorted(read))
        key = next(iter(read))[1]
        print(f"{key[0]} R={key[1]:<3d} K={key[2]:<5d} N={key[3]:<5d} "
              f"slices={key[4]} sorted={int(key[5])} ({names}): "
              f"A {t_a:8.1f} us B {t_b:8.1f} us ({t_b / t_a:.3f}, worst case "
              f"{worst:.3f}) -> {'B' if choose else 'A'}  [{', '.join(cases)}]",
              file=sys.stderr)
    out = dict(ta)
    by_path_b = {(e["path"], bucket_key(e)): e for e in tb["entries"]}
    out["entries"] = [
        by_path_b[(e["path"], bucket_key(e))]
        if (e["path"], bucket_key(e)) in take else e for e in ta["entries"]]
    print(f"{len(take)} entries of {len(sums)} measured groups take B's "
          "configs", file=sys.stderr)
    write_table(out, args.out)


if __name__ == "__main__":
    main()
