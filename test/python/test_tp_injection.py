"""CPU tests of the injectable tensor-parallel collectives of fully_sharded
calls (moelora.set_tensor_parallel / moelora.tensor_parallel /
moelora.TensorParallel; issue #14):

- the sharded path calls them between the halves: shrink, then all_gather
  (lora_b_stacked's rank = lora_a_stacked's times world_size: column-
  parallel) or all_reduce (equal ranks: row-parallel) on the shrink's
  intermediate, then expand with what the collective returned, at the
  column offset; sorted and naive metadata; world size 1 or no setting: no
  collective; per-thread overrides; a callable world size read per call;
- moelora's vLLM plugin supplies vLLM's (vllm.distributed's
  tensor_model_parallel_all_reduce/_all_gather and world size) through that
  API, and unregister() puts the previous setting back; without
  vllm.distributed the ops are still replaced and run as one rank;
- bad input: mismatched ranks without an all-gather, a rank that the
  gather cannot give, a missing collective, offsets past the output,
  collectives returning the wrong shape, dtype, device or no tensor: each a
  ValueError naming it, nothing launched (the collective's result is only
  known after the shrink: then the expand is not launched).

moelora.ops runs on fake_torch tensors (fake addresses, no data) through the
real C library, which validates every argument of every launch; a stand-in
for the library object records the launches (shrink, expand, fused) and
turns the C layer's MOELORA_ERROR_NO_DEVICE into success, so the sequence
can be checked without a GPU. The plugin part runs against the stand-in
vLLM of vllm_stub/ plus an in-memory vllm.distributed.

No torch, no GPU. Each case runs in a child process (fresh modules and
settings). Runs under pytest or standalone:
`python3 test/python/test_tp_injection.py` (MOELORA_LIB selects the library).
"""

import ctypes
import os
import subprocess
import sys
import tempfile
import threading
import types

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
STUB = os.path.join(HERE, "vllm_stub")
SKIP = 77

CASES = ("column_parallel", "row_parallel", "no_collective", "overrides",
         "bad_input", "bad_collective", "vllm_guard", "plugin_supplies_vllm",
         "plugin_without_distributed")


def _child(case, **env):
    e = {k: v for k, v in os.environ.items()
         if k not in ("MOELORA_VLLM", "VLLM_PLUGINS", "VLLM_STUB_SIGNATURES",
                      "VLLM_STUB_PLATFORM")}
    e.setdefault("MOELORA_CACHE_DIR", tempfile.mkdtemp(prefix="moelora-tp-"))
    e.update(env)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", case],
                       env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
    return r.returncode, r.stdout


def _run(case, **env):
    rc, out = _child(case, **env)
    if rc == SKIP:
        import pytest
        pytest.skip((out.strip().splitlines() or ["skipped"])[-1])
    assert rc == 0, f"case {case}: exit {rc}\n{out}"


def test_column_parallel_all_gather():
    _run("column_parallel")


def test_row_parallel_all_reduce():
    _run("row_parallel")


def test_no_collective_with_one_rank():
    _run("no_collective")


def test_process_default_and_overrides():
    _run("overrides")


def test_bad_input_launches_nothing():
    _run("bad_input")


def test_bad_collective_result():
    _run("bad_collective")


def test_vllm_without_plugin_raises():
    _run("vllm_guard")


def test_plugin_supplies_vllm_collectives():
    _run("plugin_supplies_vllm")


def test_plugin_without_vllm_distributed():
    _run("plugin_without_distributed")


# ---------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------

def _has_cuda_driver():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


class Env:
    """fake torch, the library with recorded launches, problem builders."""

    def __init__(self, stub=False):
        sys.path.insert(0, os.path.join(REPO, "python"))
        sys.path.insert(0, HERE)
        if stub:
            sys.path.insert(0, STUB)
        import fake_torch as FT
        sys.modules["torch"] = FT
        _data_ptr = FT.Tensor.data_ptr
        FT.Tensor.data_ptr = lambda t: 0 if t.numel() == 0 else _data_ptr(t)
        from moelora import _lib as L
        try:
            L.load_library()
        except OSError as e:
            print(f"SKIP libmoelora not available: {e}")
            sys.exit(SKIP)
        if _has_cuda_driver():
            # The recorded launches would reach the GPU with fake addresses.
            print("SKIP a CUDA driver is present: fake-address launches would run")
            sys.exit(SKIP)
        import moelora
        from moelora import ops as O
        self.FT, self.L, self.M, self.O = FT, L, moelora, O
        self.events = []
        real = L.lib()
        env = self

        class Lib:
            """The real library; the launches are recorded, and the C layer's
            NO_DEVICE (after it validated everything) counts as success."""

            def __getattr__(self, name):
                return getattr(real, name)

            def _launch(self, kind, fn, args_ref, *rest):
                status = fn(*rest[:1], args_ref, *rest[1:])
                a = args_ref._obj
                ev = dict(kind=kind, rank=a.rank, workspace=a.workspace,
                          lora_b_ptrs=a.lora_b_ptrs, lora_b_stride=tuple(a.lora_b_stride),
                          N=a.N, num_slices=a.num_slices, status=status)
                if kind == "expand":
                    ev["offset"] = rest[1]
                env.events.append(ev)
                return L.MOELORA_OK if status == L.MOELORA_ERROR_NO_DEVICE else status

            def moelora_shrink(self, rt, args, stream):
                return self._launch("shrink", real.moelora_shrink, args, rt, stream)

            def moelora_expand(self, rt, args, offset, stream):
                return self._launch("expand", real.moelora_expand, args, rt, offset, stream)

            def moelora_fused_moe_lora(self, rt, args, stream):
                return self._launch("fused", real.moelora_fused_moe_lora, args, rt, stream)

        L.lib = lambda: Lib()
        self.failures = []

    # -- problems --
    def problem(self, sorted_=True, a_rank=16, b_rank=16, K=512, N=320, S=2,
                mrw=False, dtype=None, out_cols=None, shard_k=None):
        FT = self.FT
        T = dtype or FT.bfloat16
        nt = 64 if sorted_ else 6
        k, E, ml, bm = 2, 8, 4, 16
        p = types.SimpleNamespace(nt=nt, k=k, E=E, ml=ml, bm=bm, K=K, N=N, S=S, T=T,
                                  a_rank=a_rank, b_rank=b_rank, mrw=mrw)
        kx = shard_k or K
        p.x = FT.empty(nt * k if mrw else nt, kx, dtype=T, device="cuda")
        p.lora_a = [FT.empty(ml, E, a_rank, kx, dtype=T, device="cuda") for _ in range(S)]
        p.lora_b = [FT.empty(ml, E, N, b_rank, dtype=T, device="cuda") for _ in range(S)]
        p.topk_weights = FT.empty(nt, k, dtype=FT.float32, device="cuda")
        p.tlm = FT.empty(nt, dtype=FT.int32, device="cuda")
        p.lora_ids = FT.tensor(list(range(ml)) + [-1], dtype=FT.int32, device="cuda")
        p.enabled = FT.empty(ml + 1, dtype=FT.int32, device="cuda")
        p.num_active = FT.tensor([ml], dtype=FT.int32, device="cpu")
        if sorted_:
            em = self.L.align_capacity(nt, k, E, bm)
            p.st = FT.empty(ml, em, dtype=FT.int32, device="cuda")
            p.ex = FT.empty(ml, em // bm, dtype=FT.int32, device="cuda")
            p.ntpp = FT.empty(ml, dtype=FT.int32, device="cuda")
        else:
            p.st = p.ntpp = None
            p.ex = FT.empty(nt * k, dtype=FT.int32, device="cuda")
        p.out = FT.empty(nt, k, out_cols or S * N, dtype=T, device="cuda")
        return p

    def fused_kwargs(self, p, offset=0, **over):
        kw = dict(output=p.out, qcurr_hidden_states=p.x, lora_a_stacked=p.lora_a,
                  lora_b_stacked=p.lora_b, topk_weights=p.topk_weights,
                  sorted_token_ids=p.st, expert_ids=p.ex, num_tokens_post_padded=p.ntpp,
                  token_lora_mapping=p.tlm, max_lora_rank=p.a_rank, top_k_num=p.k,
                  lora_ids=p.lora_ids, num_active_loras=p.num_active,
                  adapter_enabled=p.enabled, shrink_block_size_m=p.bm,
                  shrink_block_size_n=64, shrink_block_size_k=32, shrink_group_size_m=8,
                  shrink_num_warps=4, shrink_num_stages=3, shrink_split_k=1,
                  expand_block_size_m=p.bm, expand_block_size_n=64,
                  expand_block_size_k=32, expand_group_size_m=8, expand_num_warps=4,
                  expand_num_stages=3, expand_split_k=1, mul_routed_weight=p.mrw,
                  fully_sharded=True, offset=offset, add_inputs=True)
        kw.update(over)
        return kw

    def call(self, p, offset=0, **over):
        self.events.clear()
        self.M.fused_moe_lora(**self.fused_kwargs(p, offset, **over))
        return list(self.events)

    # -- collectives that record --
    def gather(self, world, result=None, tag="all_gather"):
        FT, env = self.FT, self

        def all_gather(t):
            env.events.append(dict(kind=tag, shape=tuple(t.shape), dtype=t.dtype,
                                   ptr=t.data_ptr(), contiguous=t.is_contiguous()))
            if result is not None:
                out = result(t)
            else:
                out = FT.empty(*t.shape[:-1], world * t.shape[-1], dtype=t.dtype,
                               device=t.device)
            env.events[-1]["returned"] = out
            return out
        return all_gather

    def reduce(self, result="new", tag="all_reduce"):
        FT, env = self.FT, self

        def all_reduce(t):
            env.events.append(dict(kind=tag, shape=tuple(t.shape), dtype=t.dtype,
                                   ptr=t.data_ptr(), contiguous=t.is_contiguous(),
                                   input=t))
            if result == "new":
                out = FT.empty(*t.shape, dtype=t.dtype, device=t.device)
            elif result == "same":
                out = t
            elif callable(result):
                out = result(t)
            else:
                out = result
            env.events[-1]["returned"] = out
            return out
        return all_reduce

    # -- checks --
    def check(self, what, cond, detail=""):
        if not cond:
            self.failures.append(f"{what}{': ' + str(detail) if detail else ''}")

    def kinds(self, events):
        return [e["kind"] for e in events]

    def expect_error(self, what, exc, needles, fn, *args, launched=(), **kwargs):
        self.events.clear()
        try:
            fn(*args, **kwargs)
        except exc as e:
            for n in needles:
                self.check(f"{what}: message lacks {n!r}", n in str(e), str(e))
            # A launch the C layer refused (INVALID_ARGUMENT) launched nothing.
            ran = [e["kind"] for e in self.events
                   if e.get("status") in (None, self.L.MOELORA_ERROR_NO_DEVICE)]
            self.check(f"{what}: launched {ran}", ran == list(launched), self.events)
            return str(e)
        except Exception as e:  # noqa: BLE001
            self.failures.append(f"{what}: {type(e).__name__}: {e}")
            return None
        self.failures.append(f"{what}: no {exc.__name__}")
        return None

    def finish(self, case):
        for f in self.failures:
            print("FAIL", f)
        print(f"{case}: {len(self.failures)} failures")
        sys.exit(1 if self.failures else 0)


def _check_halves(env, what, ev, p, *, coll, world, offset, inter_rank):
    """shrink (lora_a's rank) -> coll on the shrink's intermediate -> expand
    (the collective's tensor, its rank, lora_b's strides, the offset)."""
    kinds = env.kinds(ev)
    env.check(f"{what}: sequence {kinds}", kinds == ["shrink", coll, "expand"], ev)
    if kinds != ["shrink", coll, "expand"]:
        return
    sh, c, ex = ev
    env.check(f"{what}: shrink status", sh["status"] == env.L.MOELORA_ERROR_NO_DEVICE, sh)
    env.check(f"{what}: expand status", ex["status"] == env.L.MOELORA_ERROR_NO_DEVICE, ex)
    env.check(f"{what}: shrink rank", sh["rank"] == p.a_rank, sh["rank"])
    env.check(f"{what}: collective input is the shrink's intermediate",
              c["ptr"] == sh["workspace"] and c["contiguous"], (c, sh["workspace"]))
    want = (p.S, p.nt, p.k, p.a_rank)
    env.check(f"{what}: collective input shape", c["shape"] == want, (c["shape"], want))
    env.check(f"{what}: collective input dtype", c["dtype"] is p.T, c["dtype"])
    got = c["returned"]
    if got is None or got is c.get("input"):
        env.check(f"{what}: expand reads the in-place result",
                  ex["workspace"] == sh["workspace"], ex)
    elif got.is_contiguous():
        env.check(f"{what}: expand reads the collective's tensor",
                  ex["workspace"] == got.data_ptr(), (ex["workspace"], got.data_ptr()))
    env.check(f"{what}: expand rank", ex["rank"] == inter_rank, (ex["rank"], inter_rank))
    env.check(f"{what}: expand offset", ex["offset"] == offset, ex["offset"])
    b_stride = tuple(p.lora_b[0].stride())
    env.check(f"{what}: expand B strides", ex["lora_b_stride"] == b_stride,
              (ex["lora_b_stride"], b_stride))
    env.check(f"{what}: N, slices", (ex["N"], ex["num_slices"]) == (p.N, p.S),
              (ex["N"], ex["num_slices"]))


def case_column_parallel():
    """W13: lora_a split along R (rank 8 of 16 on 2 ranks, 4 of 16 on 4),
    lora_b of the full rank 16: shrink, all_gather, expand with rank 16."""
    env = Env()
    M = env.M
    for sorted_ in (True, False):
        for world in (2, 4):
            for offset in (0, 64):
                what = f"column sorted={sorted_} world={world} offset={offset}"
                p = env.problem(sorted_, a_rank=16 // world, b_rank=16,
                                out_cols=offset + 2 * 320)
                reduce_ = env.reduce()
                M.set_tensor_parallel(world, all_reduce=reduce_,
                                      all_gather=env.gather(world), name="test group")
                ev = env.call(p, offset)
                _check_halves(env, what, ev, p, coll="all_gather", world=world,
                              offset=offset, inter_rank=16)
    # A non-contiguous result is copied before the expand reads it.
    p = env.problem(True, a_rank=8, b_rank=16)

    def strided(t):
        full = env.FT.empty(*t.shape[:-1], 32, dtype=t.dtype, device=t.device)
        return full[..., :16]
    M.set_tensor_parallel(2, all_gather=env.gather(2, result=strided))
    ev = env.call(p)
    env.check("strided gather: sequence", env.kinds(ev) == ["shrink", "all_gather", "expand"],
              ev)
    if len(ev) == 3:
        env.check("strided gather: expand reads a copy",
                  ev[2]["workspace"] != ev[1]["returned"].data_ptr() and ev[2]["rank"] == 16,
                  ev[2])
    # mul_routed_weight (x of num_tokens*top_k rows), fp16.
    p = env.problem(True, a_rank=8, b_rank=16, mrw=True, dtype=env.FT.float16)
    M.set_tensor_parallel(2, all_gather=env.gather(2))
    _check_halves(env, "column mrw fp16", env.call(p), p, coll="all_gather", world=2,
                  offset=0, inter_rank=16)
    env.finish("column_parallel")


def case_row_parallel():
    """W2: lora_a split along K (x holds this rank's K columns), equal ranks:
    shrink, all_reduce, expand at this rank's column offset; the all_reduce
    may return a new tensor, its input (in place) or None (in place, as
    torch.distributed.all_reduce)."""
    env = Env()
    M = env.M
    N = 160
    for sorted_ in (True, False):
        for result in ("new", "same", None):
            for rank_id in (0, 1):
                what = f"row sorted={sorted_} result={result} rank={rank_id}"
                p = env.problem(sorted_, a_rank=16, b_rank=16, K=1024, shard_k=512,
                                N=N, S=1, mrw=True, out_cols=2 * N)
                M.set_tensor_parallel(2, all_reduce=env.reduce(result),
                                      all_gather=env.gather(2))
                ev = env.call(p, offset=rank_id * N)
                _check_halves(env, what, ev, p, coll="all_reduce", world=2,
                              offset=rank_id * N, inter_rank=16)
    # The world size is read at every call (vLLM's group comes up later).
    sizes = iter([1, 2, 2])
    calls = []

    def world():
        calls.append(1)
        return next(sizes)
    p = env.problem(True, a_rank=16, b_rank=16)
    M.set_tensor_parallel(world, all_reduce=env.reduce())
    env.check("callable world 1: one fused launch", env.kinds(env.call(p)) == ["fused"])
    env.check("callable world 2: halves",
              env.kinds(env.call(p)) == ["shrink", "all_reduce", "expand"])
    env.check("callable world 2 again: halves",
              env.kinds(env.call(p)) == ["shrink", "all_reduce", "expand"])
    env.check("world_size read once per call", len(calls) == 3, len(calls))
    env.finish("row_parallel")


def case_no_collective():
    """No setting, or world size 1 (collectives given or not): equal ranks
    run as one rank (one fused launch; the halves with an offset); the
    collectives are never called."""
    env = Env()
    M = env.M
    env.check("no setting by default", M.get_tensor_parallel() is None)
    for label, setting in (("none", None), ("world 1", 1),
                           ("world 1 + collectives", "with")):
        if setting == "with":
            M.set_tensor_parallel(1, all_reduce=env.reduce(), all_gather=env.gather(1))
        else:
            M.set_tensor_parallel(setting)
        for sorted_ in (True, False):
            p = env.problem(sorted_, out_cols=32 + 2 * 320)
            ev = env.call(p)
            env.check(f"{label} sorted={sorted_}: one fused launch",
                      env.kinds(ev) == ["fused"], env.kinds(ev))
            ev = env.call(p, offset=32)
            env.check(f"{label} sorted={sorted_} offset: shrink + expand",
                      env.kinds(ev) == ["shrink", "expand"], env.kinds(ev))
            if len(ev) == 2:
                env.check(f"{label}: expand reads the shrink's workspace",
                          ev[1]["workspace"] == ev[0]["workspace"] and ev[1]["offset"] == 32,
                          ev)
    env.finish("no_collective")


def case_overrides():
    """set_tensor_parallel returns the previous setting (restorable, None
    clears); `with tensor_parallel(...)` overrides it in this thread only,
    nests, and ends with the block."""
    env = Env()
    M = env.M
    ga, gb = env.gather(2, tag="gather A"), env.gather(2, tag="gather B")
    prev = M.set_tensor_parallel(2, all_gather=ga, name="A")
    env.check("first set returns None", prev is None, prev)
    tp_a = M.get_tensor_parallel()
    env.check("get returns the setting", isinstance(tp_a, M.TensorParallel)
              and tp_a.all_gather is ga and tp_a.size() == 2 and tp_a.name == "A", tp_a)
    p = env.problem(True, a_rank=8, b_rank=16)
    env.check("default A", "gather A" in env.kinds(env.call(p)))
    seen = {}
    with M.tensor_parallel(2, all_gather=gb, name="B") as tp_b:
        env.check("override yields its setting", M.get_tensor_parallel() is tp_b)
        env.check("override B", "gather B" in env.kinds(env.call(p)))
        t = threading.Thread(target=lambda: seen.update(tp=M.get_tensor_parallel()))
        t.start()
        t.join()
        with M.tensor_parallel(None):
            env.check("nested None: no setting", M.get_tensor_parallel() is None)
            q = env.problem(True)
            env.check("nested None: one rank", env.kinds(env.call(q)) == ["fused"])
            env.expect_error("nested None: ranks differ", ValueError,
                             ["lora_b_stacked", "no tensor-parallel collectives"],
                             M.fused_moe_lora, **env.fused_kwargs(p))
        env.check("back to B", M.get_tensor_parallel() is tp_b)
    env.check("another thread sees the process default", seen.get("tp") is tp_a, seen)
    env.check("after the block: A", M.get_tensor_parallel() is tp_a)
    env.check("A again", "gather A" in env.kinds(env.call(p)))
    old = M.set_tensor_parallel(None)
    env.check("clear returns A", old is tp_a)
    env.check("cleared", M.get_tensor_parallel() is None)
    M.set_tensor_parallel(old)
    env.check("restored", M.get_tensor_parallel() is tp_a)
    # The setting neither imports torch nor loads anything: a repr works.
    env.check("repr", "name='A'" in repr(tp_a) and "world_size=2" in repr(tp_a), repr(tp_a))
    env.finish("overrides")


def case_bad_input():
    """Each a ValueError naming the argument, before anything is launched
    and before any collective runs."""
    env = Env()
    M, FT = env.M, env.FT
    fk, err = env.fused_kwargs, env.expect_error
    p = env.problem(True, a_rank=8, b_rank=16)
    M.set_tensor_parallel(None)
    err("ranks differ, no setting", ValueError,
        ["lora_b_stacked", "rank 16", "lora_a_stacked's 8", "set_tensor_parallel"],
        M.fused_moe_lora, **fk(p))
    M.set_tensor_parallel(1, all_gather=env.gather(1), name="single")
    err("ranks differ, world size 1", ValueError,
        ["lora_b_stacked", "single has world size 1"], M.fused_moe_lora, **fk(p))
    M.set_tensor_parallel(2, all_reduce=env.reduce(), name="reduce-only")
    err("ranks differ, no all_gather", ValueError,
        ["lora_b_stacked", "reduce-only has no all_gather"], M.fused_moe_lora, **fk(p))
    M.set_tensor_parallel(4, all_gather=env.gather(4))
    err("gather gives 32, B has 16", ValueError,
        ["lora_b_stacked", "rank 16", "world_size 4", "gives 32"], M.fused_moe_lora, **fk(p))
    q = env.problem(True, a_rank=16, b_rank=16)
    M.set_tensor_parallel(2, all_gather=env.gather(2), name="gather-only")
    err("equal ranks, no all_reduce", ValueError, ["all_reduce", "gather-only"],
        M.fused_moe_lora, **fk(q))
    M.set_tensor_parallel(2, all_reduce=env.reduce(), all_gather=env.gather(2))
    for label, r in (("column", p), ("row", q)):
        err(f"{label}: offset past the output", ValueError,
            ["offset = 8", "output", "648"], M.fused_moe_lora, **fk(r, offset=8))
        err(f"{label}: negative offset", ValueError, ["offset = -16"],
            M.fused_moe_lora, **fk(r, offset=-16))
        err(f"{label}: offset not an integer", ValueError, ["offset"],
            M.fused_moe_lora, **fk(r, offset="left"))
    # The expand's B (full rank) is checked before the shrink too.
    bad_b = [p.lora_b[0], p.lora_b[1].to(FT.float16)]
    err("column: B slice of another dtype", ValueError, ["lora_b_stacked[1]"],
        M.fused_moe_lora, **fk(p, lora_b_stacked=bad_b))
    # What the argument checks said before still holds (C layer included).
    err("x fp32", ValueError, ["qcurr_hidden_states"], M.fused_moe_lora,
        **fk(p, qcurr_hidden_states=p.x.float()))
    err("x strided (C check)", ValueError, ["x_stride[1]"], M.fused_moe_lora,
        **fk(q, qcurr_hidden_states=q.x.t().contiguous().t()))
    # The setting itself.
    for label, args, kwargs, needles in (
            ("world 0", (0,), {}, ["world_size = 0"]),
            ("world str", ("2",), {}, ["world_size"]),
            ("world bool", (True,), {}, ["world_size"]),
            ("world 2 without collectives", (2,), {}, ["all_reduce / all_gather"]),
            ("all_reduce not callable", (2,), dict(all_reduce=3), ["all_reduce"]),
            ("all_gather not callable", (2,), dict(all_gather="x"), ["all_gather"]),
            ("None with collectives", (None,), dict(all_reduce=print), ["world_size"])):
        err(f"setting: {label}", ValueError, needles, M.set_tensor_parallel, *args,
            **kwargs)
        err(f"TensorParallel/tensor_parallel: {label}", ValueError, needles,
            lambda *a, **k: M.tensor_parallel(*a, **k).__enter__(), *args, **kwargs)
    M.set_tensor_parallel(lambda: 0, all_reduce=env.reduce(), name="zero")
    err("world_size() returns 0", ValueError, ["world_size", "zero", "returned 0"],
        M.fused_moe_lora, **fk(q))
    env.finish("bad_input")


def case_bad_collective():
    """A collective returning the wrong shape, dtype, device or no tensor:
    ValueError naming it after the shrink; the expand is not launched."""
    env = Env()
    M, FT = env.M, env.FT
    fk, err = env.fused_kwargs, env.expect_error
    p = env.problem(True, a_rank=8, b_rank=16)     # column: all_gather
    q = env.problem(False, a_rank=16, b_rank=16)   # row: all_reduce

    def like(t, shape=None, dtype=None, device=None):
        return FT.empty(*(shape or t.shape), dtype=dtype or t.dtype,
                        device=device or t.device)
    cases = (
        ("gather: concatenated along R but one rank short", p, "gather",
         lambda t: like(t, t.shape), ["all_gather", "returned shape (2, 64, 2, 8)",
                                      "(2, 64, 2, 16)"]),
        ("gather: stacked along a new dim 0 (not R)", p, "gather",
         lambda t: like(t, (2,) + tuple(t.shape)), ["all_gather", "returned shape"]),
        ("gather: fp16", p, "gather",
         lambda t: like(t, tuple(t.shape[:-1]) + (16,), dtype=FT.float16),
         ["all_gather", "dtype torch.float16", "torch.bfloat16"]),
        ("gather: float32", p, "gather",
         lambda t: like(t, tuple(t.shape[:-1]) + (16,), dtype=FT.float32),
         ["all_gather", "dtype torch.float32"]),
        ("gather: on the CPU", p, "gather",
         lambda t: like(t, tuple(t.shape[:-1]) + (16,), device="cpu"),
         ["all_gather", "cpu", "cuda:0"]),
        ("gather: None", p, "gather", lambda t: None, ["all_gather", "NoneType",
                                                       "must return a tensor"]),
        ("gather: a list of tensors", p, "gather", lambda t: [t, t],
         ["all_gather", "list"]),
        ("reduce: wrong shape", q, "reduce",
         lambda t: like(t, tuple(t.shape[:-1]) + (32,)), ["all_reduce", "returned shape"]),
        ("reduce: wrong dtype", q, "reduce", lambda t: like(t, dtype=FT.float16),
         ["all_reduce", "dtype torch.float16"]),
        ("reduce: another GPU", q, "reduce", lambda t: like(t, device="cuda:1"),
         ["all_reduce", "cuda:1"]),
        ("reduce: a number", q, "reduce", lambda t: 0, ["all_reduce", "int"]),
    )
    for label, prob, kind, result, needles in cases:
        if kind == "gather":
            M.set_tensor_parallel(2, all_gather=env.gather(2, result=result))
            launched = ["shrink", "all_gather"]
        else:
            M.set_tensor_parallel(2, all_reduce=env.reduce(result))
            launched = ["shrink", "all_reduce"]
        err(label, ValueError, needles, M.fused_moe_lora, launched=launched, **fk(prob))
    env.finish("bad_collective")


def case_vllm_guard():
    """No setting in a process where vLLM's TP group has 2 ranks (moelora
    called without its plugin): RuntimeError instead of a delta without
    its collective; an explicit one-rank setting, or vLLM's groups not up,
    runs as one rank. Nothing is imported to find out."""
    env = Env()
    M = env.M
    ps = types.ModuleType("vllm.distributed.parallel_state")
    ps.up, ps.world = True, 2
    ps.model_parallel_is_initialized = lambda: ps.up
    ps.get_tensor_model_parallel_world_size = lambda: ps.world
    sys.modules["vllm.distributed.parallel_state"] = ps
    q = env.problem(True)
    env.expect_error("vLLM TP 2, no setting", RuntimeError,
                     ["2 ranks", "vllm_plugin.register()", "set_tensor_parallel"],
                     M.fused_moe_lora, **env.fused_kwargs(q))
    M.set_tensor_parallel(1)
    env.check("explicit one rank", env.kinds(env.call(q)) == ["fused"])
    M.set_tensor_parallel(None)
    ps.up = False
    env.check("vLLM groups not up", env.kinds(env.call(q)) == ["fused"])
    ps.up, ps.world = True, 1
    env.check("vLLM TP 1", env.kinds(env.call(q)) == ["fused"])
    env.finish("vllm_guard")


def _fake_vllm_distributed(env):
    """vllm.distributed as moelora's plugin uses it: the TP world size
    (asserting before the groups exist, as vLLM's) and the collectives,
    recording their calls."""
    dist = types.ModuleType("vllm.distributed")
    dist.up, dist.world = False, 2

    def get_tensor_model_parallel_world_size():
        assert dist.up, "tensor model parallel group is not initialized"
        return dist.world

    def tensor_model_parallel_all_reduce(input_):
        env.events.append(dict(kind="vllm all_reduce", shape=tuple(input_.shape),
                               dtype=input_.dtype, ptr=input_.data_ptr(),
                               contiguous=input_.is_contiguous(), returned=input_))
        return input_

    def tensor_model_parallel_all_gather(input_, dim=-1):
        assert dim == -1
        out = env.FT.empty(*input_.shape[:-1], dist.world * input_.shape[-1],
                           dtype=input_.dtype, device=input_.device)
        env.events.append(dict(kind="vllm all_gather", shape=tuple(input_.shape),
                               dtype=input_.dtype, ptr=input_.data_ptr(),
                               contiguous=input_.is_contiguous(), returned=out))
        return out

    dist.get_tensor_model_parallel_world_size = get_tensor_model_parallel_world_size
    dist.model_parallel_is_initialized = lambda: dist.up
    dist.tensor_model_parallel_all_reduce = tensor_model_parallel_all_reduce
    dist.tensor_model_parallel_all_gather = tensor_model_parallel_all_gather
    return dist


def case_plugin_supplies_vllm():
    env = Env(stub=True)
    M = env.M
    import vllm
    assert getattr(vllm, "MOELORA_STUB", False), vllm.__file__
    dist = _fake_vllm_distributed(env)
    sys.modules["vllm.distributed"] = dist
    vllm.distributed = dist
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    from moelora import vllm_plugin as VP
    engine = M.TensorParallel(2, all_gather=env.gather(2, tag="engine gather"),
                              name="engine")
    M.set_tensor_parallel(engine)
    st = VP.register()
    env.check("replaced", st["state"] == "replaced", st)
    env.check("status names vllm.distributed", st["tensor_parallel"] == "vllm.distributed", st)
    env.check("log line names vllm.distributed", "vllm.distributed" in st["message"],
              st["message"])
    tp = M.get_tensor_parallel()
    env.check("setting is vLLM's", tp is not engine and tp.name == "vllm.distributed"
              and tp.all_reduce is dist.tensor_model_parallel_all_reduce
              and tp.all_gather is dist.tensor_model_parallel_all_gather, tp)
    env.check("world size 1 before vLLM's groups exist", tp.size() == 1, tp.size())
    dist.up = True
    env.check("vLLM's world size once up", tp.size() == 2)
    # Through vLLM's binding, as vLLM's LoRA layers call it.
    env.check("vLLM's binding is moelora's", F.fused_moe_lora is M.fused_moe_lora)
    p = env.problem(True, a_rank=8, b_rank=16)
    env.events.clear()
    F.fused_moe_lora(**env.fused_kwargs(p))
    _check_halves(env, "plugin column", list(env.events), p, coll="vllm all_gather",
                  world=2, offset=0, inter_rank=16)
    q = env.problem(False, a_rank=16, b_rank=16, N=160, S=1, mrw=True, out_cols=320)
    env.events.clear()
    F.fused_moe_lora(**env.fused_kwargs(q, offset=160))
    _check_halves(env, "plugin row", list(env.events), q, coll="vllm all_reduce",
                  world=2, offset=160, inter_rank=16)
    dist.up = False
    env.expect_error("plugin, vLLM groups not up, ranks differ", ValueError,
                     ["lora_b_stacked", "vllm.distributed has world size 1"],
                     F.fused_moe_lora, **env.fused_kwargs(p))
    # An engine's own collectives for one block still win.
    dist.up = True
    with M.tensor_parallel(2, all_gather=env.gather(2, tag="block gather")):
        env.events.clear()
        F.fused_moe_lora(**env.fused_kwargs(p))
        env.check("block override under the plugin", "block gather" in env.kinds(env.events),
                  env.kinds(env.events))
    # Registration is idempotent; unregister() puts the engine's back.
    env.check("register again: same status", VP.register() == st)
    VP.unregister()
    env.check("unregister restores the previous setting", M.get_tensor_parallel() is engine)
    env.check("unregistered status", VP.status()["tensor_parallel"] is None, VP.status())
    # Registered again, then the setting replaced by someone else: unregister
    # leaves theirs.
    VP.register()
    mine = M.TensorParallel(1, name="later")
    M.set_tensor_parallel(mine)
    VP.unregister()
    env.check("unregister keeps a later setting", M.get_tensor_parallel() is mine)
    # MOELORA_VLLM=0: nothing replaced, nothing set.
    M.set_tensor_parallel(None)
    os.environ["MOELORA_VLLM"] = "0"
    st = VP.register()
    env.check("disabled: no setting", st["state"] == "disabled"
              and st["tensor_parallel"] is None and M.get_tensor_parallel() is None, st)
    env.finish("plugin_supplies_vllm")


def case_plugin_without_distributed():
    """The stand-in vLLM has no vllm.distributed: the ops are replaced, the
    log line says fully_sharded runs as one rank, no setting is made."""
    env = Env(stub=True)
    M = env.M
    from moelora import vllm_plugin as VP
    st = VP.register()
    env.check("replaced", st["state"] == "replaced", st)
    env.check("no collectives", st["tensor_parallel"] is None, st)
    env.check("log line says one rank", "run as one rank" in st["message"]
              and "vllm.distributed" in st["message"], st["message"])
    env.check("no setting", M.get_tensor_parallel() is None)
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    q = env.problem(True)
    env.events.clear()
    F.fused_moe_lora(**env.fused_kwargs(q))
    env.check("one rank: one fused launch", env.kinds(env.events) == ["fused"],
              env.kinds(env.events))
    VP.unregister()
    env.check("still no setting", M.get_tensor_parallel() is None)
    env.finish("plugin_without_distributed")


if __name__ == "__main__":
    if "--child" in sys.argv:
        globals()["case_" + sys.argv[sys.argv.index("--child") + 1]]()
    else:
        counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        for case in CASES:
            rc, out = _child(case)
            verdict = "PASS" if rc == 0 else "SKIP" if rc == SKIP else "FAIL"
            counts[verdict] += 1
            if verdict != "PASS":
                print(out.rstrip())
            print(f"{verdict} {case}")
        print(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped")
        sys.exit(1 if counts["FAIL"] else SKIP if not counts["PASS"] else 0)
