"""Cold-start cost of moelora's in-process JIT on a GPU host (torch + CUDA,
libmoelora.so with the generator, e.g. from the wheel).

1. Per variant: in one process with an empty kernel cache, the first call of
   each case (kernel generation + module load + launch, synchronised) against
   the median of its later calls; the difference is what a request that
   meets a new shape pays.
2. Whole model: `python3 -m moelora warmup --preset <model>` in a fresh
   process with an empty cache (every rank x batch size x W13/W2 call of the
   model), its in-process warm-up time and the process's wall time; then the
   same with the cache warm (from disk).

  python3 benchmarks/python/cold_start.py [--model qwen3moe] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _cases(model):
    from moelora import presets
    hidden, inter, experts, top_k = presets.MODELS[model]
    # (label, W13?, tokens, rank, sorted, fully_sharded)
    return [
        ("decode M1 R16 W13 (small_batch)", True, 1, 16, False, False),
        ("decode M16 R64 W2 (one_shot naive)", False, 16, 64, False, False),
        ("prefill M64 R16 W13 (align + one_shot)", True, 64, 16, True, False),
        ("prefill M512 R64 W2 (one_shot)", False, 512, 64, True, False),
        ("prefill M4096 R16 W13 (one_shot)", True, 4096, 16, True, False),
        ("sharded M64 R16 W2 (shrink + expand)", False, 64, 16, True, True),
        ("prefill M256 R256 W13 (two-kernel, R > 128)", True, 256, 256, True, False),
    ], (hidden, inter, experts, top_k)


def per_variant(model, repeats_warm=20):
    import torch

    import moelora
    from moelora import _lib as L

    dev = torch.device("cuda", torch.cuda.current_device())
    cases, (hidden, inter, E, top_k) = _cases(model)
    g = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    torch.cuda.synchronize()
    for label, w13, M, R, sorted_, sharded in cases:
        K, N, S = (hidden, inter, 2) if w13 else (inter, hidden, 1)
        mrw = not w13
        ml, T = 4, torch.bfloat16
        ids = torch.stack([torch.randperm(E, generator=g)[:top_k] for _ in range(M)])
        ids = ids.to(torch.int32).to(dev)
        mapping = (torch.arange(M, dtype=torch.int32) % ml).to(dev)
        x = (torch.randn(M * top_k if mrw else M, K, generator=g) * 0.1).to(T).to(dev)
        la = [(torch.randn(ml, E, R, K, generator=g) * 0.02).to(T).to(dev) for _ in range(S)]
        lb = [(torch.randn(ml, E, N, R, generator=g) * 0.05).to(T).to(dev) for _ in range(S)]
        w = torch.rand(M, top_k, generator=g).to(dev)
        enabled = torch.ones(ml + 1, dtype=torch.int32, device=dev)
        lora_ids = torch.tensor(list(range(ml)) + [-1], dtype=torch.int32, device=dev)
        active = torch.tensor([ml], dtype=torch.int32)
        out = torch.zeros(M, top_k, S * N, dtype=T, device=dev)
        bm = 64 if M >= 256 else 16

        def call():
            if sorted_:
                numel = M * top_k
                mntp = (numel + E * (bm - 1) + bm - 1) // bm * bm
                st = torch.empty(ml * mntp, dtype=torch.int32, device=dev)
                ex = torch.empty(ml * (mntp // bm), dtype=torch.int32, device=dev)
                nt = torch.empty(ml, dtype=torch.int32, device=dev)
                moelora.moe_lora_align_block_size(ids, mapping, E, bm, ml, mntp, mntp // bm,
                                                  st, ex, nt, enabled, lora_ids)
                meta = (st.view(ml, -1), ex.view(ml, -1), nt)
            else:
                meta = (None, ids.reshape(-1), None)
            cfg = (bm, 64, 32, 8, 4, 3, 1)
            moelora.fused_moe_lora(out, x, la, lb, w, meta[0], meta[1], meta[2], mapping,
                                   R, top_k, lora_ids, active, enabled, *cfg, *cfg,
                                   mrw, sharded, 0, True)

        s0 = L.stats()
        t0 = time.perf_counter()
        call()
        torch.cuda.synchronize()
        cold = time.perf_counter() - t0
        s1 = L.stats()
        warm = []
        for _ in range(repeats_warm):
            t0 = time.perf_counter()
            call()
            torch.cuda.synchronize()
            warm.append(time.perf_counter() - t0)
        steady = statistics.median(warm)
        gen = s1["jit_generations"] - s0["jit_generations"]
        rows.append(dict(case=label, kernels_generated=gen,
                         generation_ms=s1["jit_ms_total"] - s0["jit_ms_total"],
                         first_call_ms=cold * 1e3, steady_call_ms=steady * 1e3,
                         cold_overhead_ms=(cold - steady) * 1e3,
                         per_kernel_ms=(cold - steady) * 1e3 / max(gen, 1)))
    return rows


def whole_model(model, repeats):
    runs = []
    for warm_cache in (False, True):
        for _ in range(repeats if not warm_cache else 1):
            cache = tempfile.mkdtemp(prefix="moelora-cold-")
            env = dict(os.environ, MOELORA_CACHE_DIR=cache)
            cmd = [sys.executable, "-m", "moelora", "warmup", "--preset", model]
            procs = [cmd] * (2 if warm_cache else 1)
            for i, c in enumerate(procs):
                t0 = time.perf_counter()
                p = subprocess.run(c, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if p.returncode != 0:
                    raise RuntimeError(p.stderr)
                if warm_cache and i == 0:
                    continue  # fills the cache
                row = [l.split() for l in p.stdout.splitlines() if l.startswith(model)][0]
                startup = [float(l.split()[-2]) for l in p.stdout.splitlines()
                           if l.startswith("start-up")][0]
                runs.append(dict(cache="warm (disk)" if warm_cache else "empty",
                                 calls=int(row[1]), generated=int(row[2]),
                                 from_disk=int(row[3]), generation_ms=float(row[5]),
                                 warmup_s=float(row[6]), startup_s=startup,
                                 process_wall_s=wall))
    return runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3moe")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["MOELORA_CACHE_DIR"] = tempfile.mkdtemp(prefix="moelora-cold-")
    import torch
    from moelora import _lib as L
    torch.cuda.init()
    info = L.library_info()
    rt = L.runtime_info()
    print(f"{rt['device_name']} ({os.cpu_count()} CPUs), {info['library_path']}")
    rows = per_variant(args.model)
    print(f"{'case':<46} {'gen':>4} {'gen ms':>8} {'first ms':>9} {'steady ms':>10} "
          f"{'cold ms':>8} {'ms/kernel':>9}")
    for r in rows:
        print(f"{r['case']:<46} {r['kernels_generated']:>4} {r['generation_ms']:>8.1f} "
              f"{r['first_call_ms']:>9.1f} {r['steady_call_ms']:>10.3f} "
              f"{r['cold_overhead_ms']:>8.1f} {r['per_kernel_ms']:>9.1f}")
    model = whole_model(args.model, args.repeats)
    print(f"\n{args.model} whole-model warm-up (python3 -m moelora warmup, fresh process):")
    for m in model:
        print(f"  cache {m['cache']:<12} {m['calls']} calls, {m['generated']} generated, "
              f"{m['from_disk']} from disk: warm-up {m['warmup_s']:.2f} s "
              f"(generation {m['generation_ms']:.0f} ms summed over threads); "
              f"start-up {m['startup_s']:.2f} s, process {m['process_wall_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=rt["device_name"], cpus=os.cpu_count(),
                           library=info["library_path"], per_variant=rows,
                           whole_model=model), f, indent=1)


if __name__ == "__main__":
    main()
