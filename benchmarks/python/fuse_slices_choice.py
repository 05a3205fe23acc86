#!/usr/bin/env python3
"""Writes each bucket's fuse_slices choice into a tuned table.

Usage: fuse_slices_choice.py TABLE UNFUSED.csv FUSED.csv [--out OUT] [--margin 0.97]

UNFUSED.csv and FUSED.csv are moelora-bench runs of the same cases with
every W13 two_kernel (or one_shot) entry of TABLE forced to "fuse_slices":
false and true (scripts/device/run-fuse-slices-check.sh). An entry gets true
where its cases (dense and sparse routing, and one-shot cases the table
routes to the two-kernel path, summed) took less than MARGIN times the
unfused time, false otherwise; entries without measured cases keep the
dispatcher's rule.
"""
import argparse
import csv
import json
import re
import sys

# moelora-bench's presets (benchmarks/BenchCases.h): top_k per preset.
TOP_K = {"qwen3moe": 8, "mixtral": 2, "glm5_1": 8}


def shrink_key_fields(config):
    """Fields of the first kernel's cache key (a two-kernel plan's shrink)."""
    shrink = config.split(" + ")[0]
    fields = dict(f.split("=", 1) for f in shrink.split(";") if "=" in f)
    parts = shrink.split(";")
    return parts[0], parts[1], fields


def load(path):
    return {r["case"]: r for r in csv.DictReader(open(path))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("unfused")
    ap.add_argument("fused")
    ap.add_argument("--out")
    ap.add_argument("--margin", type=float, default=0.97)
    a = ap.parse_args()
    table = json.load(open(a.table))
    unfused, fused = load(a.unfused), load(a.fused)
    sums = {}  # entry index -> [unfused us, fused us, cases]
    for case, u in unfused.items():
        f = fused.get(case)
        path = u["path"]
        # A case counts where only the forced table made the difference.
        if (not f or f["path"] != path or "fs=1" in u["config"]
                or "fs=1" not in f["config"]):
            continue
        family, dtype, k = shrink_key_fields(u["config"])
        m = re.match(r"([a-z0-9_]+?)_w13_\w+?_M(\d+)_", case)
        if family not in ("shrink", "one_shot") or not m:
            continue
        pairs = int(m.group(2)) * TOP_K[m.group(1)]
        matches = [
            (e["max_pairs"], i)
            for i, e in enumerate(table["entries"])
            if e["path"] == path and e["dtype"] == dtype
            and e["rank"] == int(k["R"]) and e["K"] == int(k["K"])
            and e.get("num_slices", 1) == int(k["slices"])
            and e.get("sorted", False) == (k["sorted"] == "1")
            and e["max_pairs"] >= pairs
        ]
        if not matches:
            print(f"{case}: no {path} entry in the table", file=sys.stderr)
            continue
        s = sums.setdefault(min(matches)[1], [0.0, 0.0, []])
        s[0] += float(u["us"])
        s[1] += float(f["us"])
        s[2].append(case)
    for i, (tu, tf, cases) in sorted(sums.items()):
        fuse = tf < a.margin * tu
        table["entries"][i]["config"]["fuse_slices"] = fuse
        print(f"entry {i:3d} {table['entries'][i]['path']:10s} R={table['entries'][i]['rank']:<3d} "
              f"K={table['entries'][i]['K']:<5d} "
              f"max_pairs={table['entries'][i]['max_pairs']:<6d} unfused "
              f"{tu:8.1f} us fused {tf:8.1f} us ({tf / tu:.3f}) -> "
              f"{'fused' if fuse else 'unfused'}  [{', '.join(cases)}]")
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if a.out:
        open(a.out, "w").write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
