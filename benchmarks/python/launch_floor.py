"""The practical floor of a decode call on this GPU (issue 13, item 3).

A decode MoE-LoRA call is short enough that two costs no tiling removes set
its time: what a CUDA-graph-replayed kernel costs with nothing in it, and a
chain of dependent global loads from a cold L2 (the token's adapter and
expert ids, then that adapter/expert's A rows: each address needs the value
before it). This measures both the way moelora-bench measures a case: each
replay of a one-kernel graph preceded by a 256 MiB memset that flushes the
L2, timed alone with CUDA events, the median of many replays.

  empty 1x1 / 264x256  an empty kernel, one block of one warp / 2 blocks per SM
  chain D              one thread, D dependent 8-byte loads, each on its own
                       2 MiB page of a 1 GiB buffer (no L2 or TLB reuse)

The probe kernels are Triton's (the device machine has Triton and no LLVM of
ours; they measure the hardware, not moelora). With --bench bench.csv (a
moelora-bench run on the same machine) it prints each decode case against
max(memory floor, empty + chain 3).

Usage: python3 benchmarks/python/launch_floor.py [--iters N] [--bench CSV]
       [--json OUT]
"""

import argparse
import csv
import json
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--bench", help="moelora-bench's bench.csv from this machine")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def empty_kernel(p):
        pass

    @triton.jit
    def chain_kernel(p, out, DEPTH: tl.constexpr):
        i = tl.load(p)
        for _ in tl.static_range(DEPTH - 1):
            i = tl.load(p + i)
        tl.store(out, i)

    dev = torch.device("cuda")
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    # A pointer chase over 2 MiB pages: element index of hop h+1 stored at
    # hop h, pages in a scrambled order.
    page = (2 << 20) // 8
    pages = 512
    order = [(h * 167) % pages for h in range(pages)]
    table = torch.zeros(pages * page, dtype=torch.int64)
    for h in range(pages - 1):
        table[order[h] * page] = order[h + 1] * page
    table = table.to(dev)  # order[0] == 0: the chase starts at element 0
    out = torch.zeros(1, dtype=torch.int64, device=dev)

    def timed(launch):
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            launch()  # compile / warm outside the graph
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=s):
                launch()
            times = []
            for _ in range(args.iters):
                flush.zero_()
                a = torch.cuda.Event(enable_timing=True)
                b = torch.cuda.Event(enable_timing=True)
                a.record(s)
                g.replay()
                b.record(s)
                b.synchronize()
                times.append(a.elapsed_time(b) * 1000.0)
        return statistics.median(times)

    res = {}
    res["empty 1x1"] = timed(lambda: empty_kernel[(1,)](flush, num_warps=1))
    sms = torch.cuda.get_device_properties(dev).multi_processor_count
    res[f"empty {2 * sms}x256"] = timed(
        lambda: empty_kernel[(2 * sms,)](flush, num_warps=8))
    for depth in (1, 2, 3, 4, 6):
        res[f"chain {depth}"] = timed(
            lambda d=depth: chain_kernel[(1,)](table, out, DEPTH=d, num_warps=1))
    # The chain must have walked the table (a wrong chase would be cheap).
    want = 0
    for _ in range(6):
        want = int(table[want].item())
    assert int(out.item()) == want, (int(out.item()), want)

    card = torch.cuda.get_device_name(dev)
    print(f"launch floor on {card} (median of {args.iters} graph replays, L2 flushed)")
    for k, v in res.items():
        print(f"  {k:16s} {v:7.2f} us")
    per_load = (res["chain 6"] - res["chain 1"]) / 5
    print(f"  dependent load  {per_load:7.2f} us each (chain 6 - chain 1) / 5")
    floor3 = res["chain 3"]
    report = {"card": card, "iters": args.iters, "us": res,
              "dependent_load_us": per_load}
    if args.bench:
        rows = list(csv.DictReader(open(args.bench)))
        cases = []
        print(f"\ndecode cases against max(memory floor, chain 3 = {floor3:.2f} us):")
        for r in rows:
            if r.get("path") not in ("small_batch",) and "decode" not in r.get("case", ""):
                continue
            t = float(r["us"])
            mem = float(r.get("floor_us") or 0)
            practical = max(mem, floor3)
            cases.append({"case": r["case"], "us": t, "memory_floor_us": mem,
                          "practical_floor_us": practical})
            print(f"  {r['case']:40s} {t:7.2f} us  floor {mem:6.2f}  practical "
                  f"{practical:6.2f}  +{t - practical:5.2f} us")
        report["decode"] = cases
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
