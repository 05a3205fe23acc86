#!/usr/bin/env python3
"""Writes each bucket's choice of a boolean kernel flag into a tuned table.

Usage: bucket_flag_choice.py TABLE OFF.csv ON.csv --flag FLAG --token TOKEN
                             [--out OUT] [--margin 0.97] [--case-limit 1.03]
                             [--w13-only]

OFF.csv and ON.csv are moelora-bench runs of the same cases with the flag
forced off and on in TABLE's entries (scripts/device/run-fuse-slices-check.sh
for fuse_slices, scripts/device/run-wgmma-check.sh for wgmma). TOKEN is what
the first kernel's cache key holds when the flag is on (fs=1, mma=wgmma). An
entry gets true where its cases (summed over dense and sparse routing, and
one-shot cases the table routes to the two-kernel path) took less than MARGIN
times the OFF time and none of them more than CASE_LIMIT times its own OFF
time (the tuner's rule too: a bucket sum must not trade one case for another),
false otherwise; entries without measured cases are left as they are.

  fuse_slices: --flag fuse_slices --token fs=1 --w13-only
  wgmma:       --flag wgmma --token mma=wgmma
"""
import argparse
import json
import re
import sys

from bench_csv import load_cases

# moelora-bench's presets (benchmarks/BenchCases.h): top_k per preset.
TOP_K = {"qwen3moe": 8, "mixtral": 2, "glm5_1": 8}


def first_key_fields(config):
    """Family, dtype and fields of the first kernel's cache key (a two-kernel
    plan's shrink)."""
    first = config.split(" + ")[0]
    fields = dict(f.split("=", 1) for f in first.split(";") if "=" in f)
    parts = first.split(";")
    return parts[0], parts[1], fields


def entry_index(entries, path, dtype, k, pairs, case):
    """The index of the entry the dispatcher reads for a call of `pairs`
    pairs on `path` whose first kernel's key fields are `k` (dtype, R, K,
    slices, sorted): the smallest max_pairs holding them, per path. N is not
    in the key; the bench's presets differ in (K, slices), and a tie of
    several N is an error. None when no entry holds the call."""
    matches = [
        (e["max_pairs"], i, e["N"]) for i, e in enumerate(entries)
        if e["path"] == path and e["dtype"] == dtype
        and e["rank"] == int(k["R"]) and e["K"] == int(k["K"])
        and e.get("num_slices", 1) == int(k["slices"])
        and e.get("sorted", False) == (k["sorted"] == "1")
        and e["max_pairs"] >= pairs
    ]
    if not matches:
        return None
    first = min(matches)
    if len({n for mp, _, n in matches if mp == first[0]}) > 1:
        sys.exit(f"{case}: {path} entries of several N match")
    return first[1]


def write_table(table, path):
    """A tuned table as committed (sorted keys, one-space indent), to PATH or
    standard output."""
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    if path:
        open(path, "w").write(text)
    else:
        sys.stdout.write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("off")
    ap.add_argument("on")
    ap.add_argument("--flag", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--out")
    ap.add_argument("--margin", type=float, default=0.97)
    ap.add_argument("--case-limit", type=float, default=1.03)
    ap.add_argument("--w13-only", action="store_true")
    a = ap.parse_args()
    table = json.load(open(a.table))
    off, on = load_cases(a.off), load_cases(a.on)
    sums = {}  # entry index -> [off us, on us, cases, worst on/off]
    for case, u in off.items():
        f = on.get(case)
        path = u["path"]
        # A case counts where only the forced table made the difference.
        if (not f or f["path"] != path or a.token in u["config"]
                or a.token not in f["config"]):
            continue
        family, dtype, k = first_key_fields(u["config"])
        proj = "w13" if a.w13_only else "w13|w2"
        m = re.match(rf"([a-z0-9_]+?)_(?:{proj})_\w+?_M(\d+)_", case)
        if family not in ("shrink", "one_shot") or not m:
            continue
        pairs = int(m.group(2)) * TOP_K[m.group(1)]
        i = entry_index(table["entries"], path, dtype, k, pairs, case)
        if i is None:
            print(f"{case}: no {path} entry in the table", file=sys.stderr)
            continue
        s = sums.setdefault(i, [0.0, 0.0, [], 0.0])
        s[0] += float(u["us"])
        s[1] += float(f["us"])
        s[2].append(case)
        s[3] = max(s[3], float(f["us"]) / float(u["us"]))
    for i, (t_off, t_on, cases, worst) in sorted(sums.items()):
        choose = t_on < a.margin * t_off and worst <= a.case_limit
        e = table["entries"][i]
        e["config"][a.flag] = choose
        print(f"entry {i:3d} {e['path']:10s} R={e['rank']:<3d} K={e['K']:<5d} "
              f"max_pairs={e['max_pairs']:<6d} off {t_off:8.1f} us on "
              f"{t_on:8.1f} us ({t_on / t_off:.3f}, worst case {worst:.3f}) -> {a.flag} "
              f"{str(choose).lower()}  [{', '.join(cases)}]", file=sys.stderr)
    write_table(table, a.out)


if __name__ == "__main__":
    main()
