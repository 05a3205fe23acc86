#!/usr/bin/env python3
"""Writes a variant of a tuned table with boolean kernel choices forced on.

Usage: table_variant.py TABLE --set FLAG [--set FLAG ...] [--path one_shot]
                        [--out OUT]

Every entry of PATH (default one_shot) gets each FLAG (a config key, e.g.
early_expand, reduce_scatter) set to true; the dispatcher keeps it only where
the final spec allows it. The variant is the B side of an A/B against TABLE
(scripts/device/run-table-variants.sh), whose per-bucket verdict
bucket_flag_choice.py writes back into TABLE. The table goes to OUT or
standard output.
"""
import argparse
import json
import sys

from bucket_flag_choice import write_table

PATHS = ("one_shot", "two_kernel", "small_batch")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--set", dest="flags", action="append", required=True,
                    metavar="FLAG", help="config key to set true (repeatable)")
    ap.add_argument("--path", default="one_shot", choices=PATHS)
    ap.add_argument("--out")
    args = ap.parse_args()
    table = json.load(open(args.table))
    changed = 0
    for entry in table["entries"]:
        if entry["path"] != args.path:
            continue
        for flag in args.flags:
            entry.setdefault("config", {})[flag] = True
        changed += 1
    if changed == 0:
        sys.exit(f"{args.table}: no {args.path} entry")
    print(f"{args.table}: {', '.join(args.flags)} on {changed} {args.path} "
          "entries", file=sys.stderr)
    write_table(table, args.out)


if __name__ == "__main__":
    main()
