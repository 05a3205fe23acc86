"""Two-rank GPU test of fully_sharded fused_moe_lora with torch.distributed's
collectives injected through moelora.set_tensor_parallel (issue #14).

One process per rank (subprocesses of this file, torch.distributed with a
file:// rendezvous). Each rank holds its shard of a layer's LoRA weights as
vLLM's fully_sharded MoE-LoRA does and runs moelora.fused_moe_lora(...,
fully_sharded=True); the result is checked against the unsharded call on
one GPU (moelora.fused_moe_lora with the full weights) and a float64
reference:

  column  (W13, all-gather): lora_a split along R, lora_b along N at the
          full rank, 2 slices; the rank's own output, offset 0;
  row     (W2, all-reduce): x and lora_a split along K, lora_b along N,
          mul_routed_weight, 1 slice; the full-width output at column offset
          rank*N/2 (the columns of the other rank stay untouched);

each in bf16 and fp16, with sorted (moe_lora_align_block_size) and naive
metadata. Then the sharded call is captured in a CUDA graph (on the stream
it was warmed on) and replayed twice onto a fresh output: it must match the
eager result.

Backends: with two GPUs or more, NCCL (rank r on GPU r), and the
collectives run inside the graph. With one GPU both processes share it and
use gloo (NCCL refuses two ranks on one GPU): the collectives stage the
intermediate through the host, and gloo cannot run inside a CUDA graph, so
during capture the collective is a capturable stand-in that puts this
rank's live intermediate together with the other ranks' pieces from the
eager call just before (same inputs): the graph still holds the shrink,
the collective's device work on the shrink's output and the expand on the
collective's result. MOELORA_TP_BACKEND=gloo|nccl overrides the choice.

Skips without torch, CUDA or torch.distributed. Runs under pytest (one test
per variant, one two-process run for all) or standalone
`python3 test/python/test_tp_two_rank.py` (77: skipped). With
libmoelora_rt.so (no JIT) the kernel cache must hold the variants (see
prepare_dropin_cache.py); libmoelora.so generates them.
MOELORA_TEST_INSTALLED=1 tests the moelora found on sys.path.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
SKIP = 77
WORLD = 2
TOL = 1e-2       # relative L2 vs float64 and vs the unsharded call
GRAPH_TOL = 1e-3  # graph replay vs the eager sharded call (normally bit-equal)

VARIANTS = [f"{par}-{dt}-{meta}" for par in ("column", "row")
            for dt in ("bf16", "fp16") for meta in ("sorted", "naive")]

# Triton tiling arguments vLLM passes (ignored by moelora).
CFG = (64, 32, 8, 4, 3, 1)


# ---------------------------------------------------------------------------
# Parent: skip, launch the ranks, collect
# ---------------------------------------------------------------------------

def _skip_reason():
    try:
        import torch
    except ImportError:
        return "no torch"
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import torch.distributed as dist
    except ImportError:
        return "no torch.distributed"
    if not dist.is_available():
        return "torch.distributed is not available in this torch"
    if _backend(torch, dist) == "gloo" and not dist.is_gloo_available():
        return "one GPU and no gloo backend"
    return None


def _backend(torch, dist):
    want = os.environ.get("MOELORA_TP_BACKEND")
    if want:
        return want
    if torch.cuda.device_count() >= WORLD and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def _launch():
    """Runs the ranks; returns (backend, {rank: results}, log) or raises."""
    import torch
    import torch.distributed as dist
    backend = _backend(torch, dist)
    tmp = tempfile.mkdtemp(prefix="moelora-tp2-")
    init = "file://" + os.path.join(tmp, "rendezvous")
    env = dict(os.environ)
    env.setdefault("MOELORA_CACHE_DIR", os.path.join(tmp, "cache"))
    env["PYTHONUNBUFFERED"] = "1"
    if backend == "gloo":
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one host
    timeout = float(os.environ.get("MOELORA_TP_TIMEOUT", "480"))
    procs, logs = [], []
    for rank in range(WORLD):
        log = open(os.path.join(tmp, f"rank{rank}.log"), "w+")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--rank", str(rank), "--world",
             str(WORLD), "--backend", backend, "--init", init, "--out", tmp],
            env=env, stdout=log, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + timeout
    codes = [None] * WORLD
    while any(c is None for c in codes):
        for i, p in enumerate(procs):
            codes[i] = p.poll()
        if any(c not in (None, 0) for c in codes) or time.monotonic() > deadline:
            # One rank failed (the other may wait in a collective) or time ran out.
            time.sleep(5 if time.monotonic() <= deadline else 0)
            for p in procs:
                if p.poll() is None:
                    p.kill()
            codes = [p.wait() for p in procs]
            break
        time.sleep(0.2)
    text = []
    for rank, log in enumerate(logs):
        log.seek(0)
        text.append(f"--- rank {rank} (exit {codes[rank]}) ---\n{log.read()}")
        log.close()
    text = "\n".join(text)
    if any(c != 0 for c in codes):
        raise RuntimeError(f"the ranks failed ({backend}, exits {codes}):\n{text}")
    results = {}
    for rank in range(WORLD):
        with open(os.path.join(tmp, f"rank{rank}.json")) as f:
            results[rank] = json.load(f)
    return backend, results, text


_RUN = None


def _run_once():
    global _RUN
    if _RUN is None:
        try:
            _RUN = _launch()
        except Exception as e:  # noqa: BLE001 - every variant reports it
            _RUN = e
    if isinstance(_RUN, Exception):
        raise _RUN
    return _RUN


def _variant_failures(variant):
    backend, results, _ = _run_once()
    out = []
    for rank, res in sorted(results.items()):
        r = res.get(variant)
        if r is None:
            out.append(f"rank {rank}: no result")
            continue
        out += [f"rank {rank} ({backend}): {f}" for f in r["failures"]]
    return out


def _check(variant):
    reason = _skip_reason()
    if reason:
        import pytest
        pytest.skip(reason)
    failures = _variant_failures(variant)
    assert not failures, "\n".join(failures)


def test_column_bf16_sorted():
    _check("column-bf16-sorted")


def test_column_bf16_naive():
    _check("column-bf16-naive")


def test_column_fp16_sorted():
    _check("column-fp16-sorted")


def test_column_fp16_naive():
    _check("column-fp16-naive")


def test_row_bf16_sorted():
    _check("row-bf16-sorted")


def test_row_bf16_naive():
    _check("row-bf16-naive")


def test_row_fp16_sorted():
    _check("row-fp16-sorted")


def test_row_fp16_naive():
    _check("row-fp16-naive")


# ---------------------------------------------------------------------------
# A rank
# ---------------------------------------------------------------------------

class NcclCollectives:
    """torch.distributed over NCCL: capturable in a CUDA graph."""

    def __init__(self, torch, dist, rank, world):
        self.torch, self.dist, self.rank, self.world = torch, dist, rank, world
        self.calls = {"all_reduce": 0, "all_gather": 0}

    def all_reduce(self, t):
        self.calls["all_reduce"] += 1
        self.dist.all_reduce(t)  # in place
        return t

    def all_gather(self, t):
        self.calls["all_gather"] += 1
        t = t.contiguous()
        buf = self.torch.empty((self.world,) + tuple(t.shape), dtype=t.dtype,
                               device=t.device)
        self.dist.all_gather_into_tensor(buf, t)
        # (world, ..., R) -> (..., world*R): each rank's R columns in rank
        # order, as vLLM's tensor_model_parallel_all_gather(dim=-1).
        return buf.movedim(0, -2).reshape(*t.shape[:-1], self.world * t.shape[-1])


class GlooCollectives:
    """torch.distributed over gloo, through the host (two ranks may share one
    GPU). gloo cannot run inside a CUDA graph: while the stream captures,
    the other ranks' pieces of the last eager call stand in for theirs."""

    def __init__(self, torch, dist, rank, world):
        self.torch, self.dist, self.rank, self.world = torch, dist, rank, world
        self.calls = {"all_reduce": 0, "all_gather": 0}
        self.last = None

    def _pieces(self, t):
        torch = self.torch
        if torch.cuda.is_current_stream_capturing():
            if self.last is None or tuple(self.last[0].shape) != tuple(t.shape):
                raise RuntimeError("gloo stand-in: no eager call of this shape before "
                                   "the capture")
            pieces = list(self.last)
        else:
            host = t.contiguous().cpu()  # waits for the shrink on this stream
            raw = host.view(torch.uint8)  # gloo moves the bytes, whatever the dtype
            bufs = [torch.empty_like(raw) for _ in range(self.world)]
            self.dist.all_gather(bufs, raw)
            self.last = [b.view(t.dtype).to(t.device) for b in bufs]
            pieces = list(self.last)
        pieces[self.rank] = t
        return pieces

    def all_reduce(self, t):
        self.calls["all_reduce"] += 1
        pieces = self._pieces(t)
        acc = pieces[0].float()
        for p in pieces[1:]:
            acc = acc + p.float()  # rank order: eager and graph sum alike
        return acc.to(t.dtype)

    def all_gather(self, t):
        self.calls["all_gather"] += 1
        return self.torch.cat(self._pieces(t), dim=-1)


def _problem(torch, moelora, dev, variant, seed):
    """The full (unsharded) layer, identical on every rank."""
    par, dt, meta = variant.split("-")
    T = {"bf16": torch.bfloat16, "fp16": torch.float16}[dt]
    g = torch.Generator().manual_seed(seed)
    p = type("Problem", (), {})()
    p.par, p.T, p.sorted = par, T, meta == "sorted"
    p.nt = 48 if p.sorted else 6
    p.k, p.E, p.ml, p.bm = 2, 8, 4, 16
    if par == "column":
        p.K, p.N, p.R, p.S, p.mrw = 256, 192, 32, 2, False
    else:
        p.K, p.N, p.R, p.S, p.mrw = 256, 192, 16, 1, True
    nt, k, E, ml = p.nt, p.k, p.E, p.ml
    ids = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(nt)])
    ids = ids.to(torch.int32)
    ids[1, 1] = -1  # a pair without an expert
    p.topk_ids = ids.to(dev)
    # Adapters -1, 0, 1, 2 (disabled), 3 in turn.
    p.mapping = torch.tensor([(t % 5) - 1 for t in range(nt)], dtype=torch.int32,
                             device=dev)
    rows = nt * k if p.mrw else nt
    p.x = (torch.rand(rows, p.K, generator=g) * 2 - 1).to(T).to(dev)
    p.A = [((torch.rand(ml, E, p.R, p.K, generator=g) * 2 - 1) / math.sqrt(p.K))
           .to(T).to(dev) for _ in range(p.S)]
    p.B = [((torch.rand(ml, E, p.N, p.R, generator=g) * 2 - 1) / math.sqrt(p.R))
           .to(T).to(dev) for _ in range(p.S)]
    p.topk_weights = torch.rand(nt, k, generator=g).to(dev)
    en = torch.ones(ml + 1, dtype=torch.int32)
    en[2] = 0
    en[ml] = 0
    p.enabled = en.to(dev)
    p.lora_ids = torch.tensor(list(range(ml)) + [-1], dtype=torch.int32, device=dev)
    p.num_active = torch.tensor([ml], dtype=torch.int32)  # CPU, as vLLM
    p.base = (torch.rand(nt, k, p.S * p.N, generator=g) * 2 - 1).to(T).to(dev)
    if p.sorted:
        cap = moelora.align_capacity(nt, k, E, p.bm)
        st = torch.empty(ml * cap, dtype=torch.int32, device=dev)
        ex = torch.empty(ml * (cap // p.bm), dtype=torch.int32, device=dev)
        p.ntpp = torch.empty(ml, dtype=torch.int32, device=dev)
        moelora.moe_lora_align_block_size(p.topk_ids, p.mapping, E, p.bm, ml, cap,
                                          cap // p.bm, st, ex, p.ntpp, p.enabled,
                                          p.lora_ids)
        p.st, p.ex = st.view(ml, -1), ex.view(ml, -1)
    else:
        p.st, p.ntpp = None, None
        p.ex = p.topk_ids.reshape(-1)
    return p


def _reference(torch, p):
    """float64 delta (S, pairs, N) of the full layer, and the valid pairs."""
    P = p.nt * p.k
    dev = p.x.device
    pair = torch.arange(P, device=dev)
    lora = p.mapping.long()[pair // p.k]
    expert = p.topk_ids.reshape(-1).long()
    ok = (lora >= 0) & (lora < p.ml) & (expert >= 0)
    ok &= p.enabled.long()[lora.clamp(0, p.ml - 1)] != 0
    l_, e_ = lora.clamp(0, p.ml - 1), expert.clamp(min=0)
    xr = p.x.double()[pair // (1 if p.mrw else p.k)]
    out = []
    for s in range(p.S):
        r = torch.einsum("pk,prk->pr", xr, p.A[s].double()[l_, e_])
        y = torch.einsum("pr,pnr->pn", r, p.B[s].double()[l_, e_])
        if p.mrw:
            y = y * p.topk_weights.reshape(-1).double()[:, None]
        out.append(y)
    return torch.stack(out), ok


def _call(moelora, p, out, x, A, B, max_lora_rank, fully_sharded, offset):
    moelora.fused_moe_lora(out, x, A, B, p.topk_weights, p.st, p.ex, p.ntpp, p.mapping,
                           max_lora_rank, p.k, p.lora_ids, p.num_active, p.enabled,
                           p.bm, *CFG, p.bm, *CFG, p.mrw, fully_sharded, offset, True)


def _rel(got, ref):
    return float((got.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def _run_variant(torch, moelora, coll, rank, world, dev, variant, seed):
    failures, info = [], {}
    p = _problem(torch, moelora, dev, variant, seed)
    P, N, S = p.nt * p.k, p.N, p.S
    Nr = N // world
    # This rank's shards (contiguous, as an engine holds them).
    if p.par == "column":
        Rr = p.R // world
        x = p.x
        A = [a[:, :, rank * Rr:(rank + 1) * Rr, :].contiguous() for a in p.A]
        max_rank, offset = Rr, 0
        # The rank's own output: its N/2 columns of every slice.
        cols = [s * N + rank * Nr + n for s in range(S) for n in range(Nr)]
        expect_kind = "all_gather"
    else:
        Kr = p.K // world
        x = p.x[:, rank * Kr:(rank + 1) * Kr].contiguous()
        A = [a[..., rank * Kr:(rank + 1) * Kr].contiguous() for a in p.A]
        max_rank, offset = p.R, rank * Nr
        cols = list(range(N))  # the full width; this rank writes its N/2
        expect_kind = "all_reduce"
    B = [b[:, :, rank * Nr:(rank + 1) * Nr, :].contiguous() for b in p.B]
    col_idx = torch.tensor(cols, device=dev)
    base = p.base.view(P, -1)[:, col_idx].contiguous().view(p.nt, p.k, len(cols))

    # The unsharded call on one GPU, and the float64 reference.
    full = p.base.clone()
    _call(moelora, p, full, p.x, p.A, p.B, p.R, False, 0)
    delta, ok = _reference(torch, p)
    ref_full = p.base.double().view(P, -1).clone()
    ref_full[ok] += delta.permute(1, 0, 2).reshape(P, S * N)[ok]
    written = (torch.arange(len(cols), device=dev) >= offset) & \
        (torch.arange(len(cols), device=dev) < offset + S * Nr)

    def check(out, what):
        o = out.view(P, -1)
        b = base.view(P, -1)
        if not torch.equal(o[~ok], b[~ok]):
            failures.append(f"{what}: skipped pairs changed")
        if not torch.equal(o[:, ~written], b[:, ~written]):
            failures.append(f"{what}: columns outside [offset, offset + S*N/2) changed")
        got = o[ok][:, written]
        want_cols = col_idx[written]
        e_ref = _rel(got, ref_full[ok][:, want_cols])
        e_full = _rel(got, full.view(P, -1)[ok][:, want_cols].double())
        info[f"{what} vs float64"] = e_ref
        info[f"{what} vs unsharded"] = e_full
        if not e_ref < TOL:
            failures.append(f"{what}: rel L2 vs float64 {e_ref:.3e} >= {TOL}")
        if not e_full < TOL:
            failures.append(f"{what}: rel L2 vs the unsharded call {e_full:.3e} >= {TOL}")

    # Eager, on a side stream (the capture's: its workspace is warm then).
    eager = base.clone()
    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    before = dict(coll.calls)
    with torch.cuda.stream(side):
        _call(moelora, p, eager, x, A, B, max_rank, True, offset)
    side.synchronize()
    used = {k_: coll.calls[k_] - before[k_] for k_ in coll.calls}
    other = "all_reduce" if expect_kind == "all_gather" else "all_gather"
    if used[expect_kind] != 1 or used[other] != 0:
        failures.append(f"eager: collectives called {used}; want one {expect_kind}")
    check(eager, "eager")

    # The sharded call captured in a CUDA graph, replayed onto fresh outputs.
    out = base.clone()
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize(dev)
    with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
        _call(moelora, p, out, x, A, B, max_rank, True, offset)
    torch.cuda.synchronize(dev)
    if not torch.equal(out, base):
        failures.append("graph: capturing changed the output")
    for i in range(2):
        out.copy_(base)
        torch.cuda.synchronize(dev)
        graph.replay()
        torch.cuda.synchronize(dev)
        e = _rel(out.view(P, -1)[ok], eager.view(P, -1)[ok].double())
        info[f"graph replay {i} vs eager"] = e
        info[f"graph replay {i} bit-equal"] = bool(torch.equal(out, eager))
        if not e < GRAPH_TOL:
            failures.append(f"graph replay {i}: rel L2 vs eager {e:.3e} >= {GRAPH_TOL}")
    check(out, "graph")
    del graph
    return {"failures": failures, "info": info}


def _rank_main(rank, world, backend, init, out_dir):
    from datetime import timedelta

    if os.environ.get("MOELORA_TEST_INSTALLED") != "1":
        sys.path.insert(0, os.path.join(REPO, "python"))
    import torch
    import torch.distributed as dist

    import moelora

    dev = torch.device("cuda", rank % torch.cuda.device_count())
    torch.cuda.set_device(dev)
    kwargs = dict(backend=backend, init_method=init, rank=rank, world_size=world,
                  timeout=timedelta(seconds=120))
    if backend == "nccl":
        try:
            dist.init_process_group(device_id=dev, **kwargs)
        except TypeError:  # torch without device_id
            dist.init_process_group(**kwargs)
    else:
        dist.init_process_group(**kwargs)
    cls = NcclCollectives if backend == "nccl" else GlooCollectives
    coll = cls(torch, dist, rank, world)
    moelora.set_tensor_parallel(world, all_reduce=coll.all_reduce,
                                all_gather=coll.all_gather,
                                name=f"torch.distributed {backend}")
    print(f"rank {rank}/{world} on {dev} ({torch.cuda.get_device_name(dev)}), "
          f"{backend}, torch {torch.__version__}, moelora {moelora.library_path()}",
          flush=True)
    results = {}
    for i, variant in enumerate(VARIANTS):
        t0 = time.monotonic()
        try:
            results[variant] = _run_variant(torch, moelora, coll, rank, world, dev,
                                            variant, seed=100 + i)
        except Exception:  # noqa: BLE001 - reported per variant
            results[variant] = {"failures": [traceback.format_exc()], "info": {}}
        r = results[variant]
        print(f"rank {rank} {variant}: {'ok' if not r['failures'] else 'FAIL'} "
              f"({time.monotonic() - t0:.1f} s) "
              + " ".join(f"{k}={v:.2e}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in r["info"].items()), flush=True)
        for f in r["failures"]:
            print(f"  {f}", flush=True)
        dist.barrier()  # the ranks stay in step
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f, indent=1)
    dist.destroy_process_group()


def _main():
    reason = _skip_reason()
    if reason:
        print(f"SKIP {reason}")
        return SKIP
    try:
        backend, results, log = _run_once()
    except Exception as e:  # noqa: BLE001
        print(f"FAIL {e}")
        return 1
    print(log)
    failed = 0
    for variant in VARIANTS:
        fails = _variant_failures(variant)
        failed += bool(fails)
        print(f"{'FAIL' if fails else 'PASS'} {variant} ({backend})")
        for f in fails:
            print(f"  {f}")
    print(f"{len(VARIANTS) - failed} passed, {failed} failed ({backend}, {WORLD} ranks)")
    return 1 if failed else 0


if __name__ == "__main__":
    if "--rank" in sys.argv:
        a = sys.argv
        _rank_main(int(a[a.index("--rank") + 1]), int(a[a.index("--world") + 1]),
                   a[a.index("--backend") + 1], a[a.index("--init") + 1],
                   a[a.index("--out") + 1])
    else:
        sys.exit(_main())
