#!/usr/bin/env python3
"""Issue 13's targets, case by case, from a bench.csv (moelora-bench --out).

    python3 benchmarks/python/targets.py BENCH.csv [--verbose]

Targets (the issue's table): decode M 1 at most max(6 us, floor + 3 us);
decode M 16 at least 0.8 of the floor or at most 8 us; one-shot (prefill)
M 64 at least 0.5 of the floor, M 512 and 4096 at least 0.8; two-kernel
M 4096 at least 0.75; geomean speed-up over the Triton times the bench
carries (6x decode, 2.5x one-shot, 5x two-kernel). The floor is the bench's
(minimum bytes at the measured copy bandwidth of the card that ran it).
"""
import argparse
import math
import re
import sys

sys.path.insert(0, __file__.rsplit('/', 1)[0])
from bench_csv import load_cases  # noqa: E402

CASE = re.compile(r'^(?P<model>.+?)_(?P<w>w13|w2)_(?P<kind>decode|prefill|two_kernel)'
                  r'_M(?P<m>\d+)_R(?P<r>\d+)(?P<sparse>_sparse)?$')


def target(kind, m):
    """(label, check(us, floor_us, fraction)) of a case's target, or None."""
    if kind == 'decode' and m == 1:
        return ('<= max(6 us, floor + 3 us)',
                lambda us, fl, fr: us <= max(6.0, fl + 3.0))
    if kind == 'decode' and m == 16:
        return ('>= 0.8 of floor or <= 8 us',
                lambda us, fl, fr: fr >= 0.8 or us <= 8.0)
    if kind == 'prefill' and m == 64:
        return ('>= 0.5 of floor', lambda us, fl, fr: fr >= 0.5)
    if kind == 'prefill' and m in (512, 4096):
        return ('>= 0.8 of floor', lambda us, fl, fr: fr >= 0.8)
    if kind == 'two_kernel' and m == 4096:
        return ('>= 0.75 of floor', lambda us, fl, fr: fr >= 0.75)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('csv')
    ap.add_argument('--verbose', action='store_true', help='every case')
    args = ap.parse_args()
    groups = {}
    speedups = {'decode': [], 'prefill': [], 'two_kernel': []}
    for name, row in load_cases(args.csv).items():
        match = CASE.match(name)
        if not match:
            continue
        kind, m = match['kind'], int(match['m'])
        us, fl = float(row['us']), float(row['floor_us'])
        fr = fl / us if us > 0 else 0.0
        if float(row.get('triton_us') or 0) > 0:
            speedups[kind].append(float(row['triton_us']) / us)
        t = target(kind, m)
        if t is None:
            continue
        label, check = t
        ok = check(us, fl, fr)
        key = f'{kind} M {m} ({label})'
        groups.setdefault(key, []).append((name, ok, us, fr))
    for key, cases in groups.items():
        met = sum(ok for _, ok, _, _ in cases)
        print(f'{key}: {met} of {len(cases)} met')
        for name, ok, us, fr in sorted(cases):
            if args.verbose or not ok:
                print(f'  {"met  " if ok else "unmet"} {name:44s} {us:9.2f} us'
                      f'  {fr:.2f} of floor')
    goal = {'decode': 6.0, 'prefill': 2.5, 'two_kernel': 5.0}
    for kind, values in speedups.items():
        if values:
            g = math.exp(sum(map(math.log, values)) / len(values))
            print(f'geomean vs Triton, {kind}: {g:.2f}x over {len(values)} '
                  f'cases (target {goal[kind]}x)')


if __name__ == '__main__':
    main()
