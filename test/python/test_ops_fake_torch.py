"""The drop-in's argument building, checked on a CPU machine: moelora.ops runs
on fake_torch tensors (fake addresses, no data) through the real C library.
Calls whose arguments pass the C layer's validation then stop at
MOELORA_ERROR_NO_DEVICE (no driver here); bad ones raise ValueError naming the
argument. Also checks that each test_dropin.py call plans the same kernel
variants as its shape in dropin_cases.py (what prepare_dropin_cache.py warms).

Runs in a child process (fake torch must not meet a real one): under pytest,
or standalone `python3 test/python/test_ops_fake_torch.py`.
"""

import ctypes
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))


def _has_cuda_driver():
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_ops_with_fake_torch():
    env = dict(os.environ)
    env.setdefault("MOELORA_CACHE_DIR", tempfile.mkdtemp(prefix="moelora-fake-"))
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout)
    if r.returncode == 77:
        try:
            import pytest
            pytest.skip(r.stdout.strip().splitlines()[-1])
        except ImportError:
            return
    assert r.returncode == 0, r.stdout


# ---------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------

def _child():
    sys.path.insert(0, os.path.join(REPO, "python"))
    sys.path.insert(0, HERE)
    import fake_torch as FT
    sys.modules["torch"] = FT
    # As in torch, an empty tensor has no storage: data_ptr() is 0.
    _data_ptr = FT.Tensor.data_ptr
    FT.Tensor.data_ptr = lambda self: 0 if self.numel() == 0 else _data_ptr(self)
    from moelora import _lib as L
    try:
        L.load_library()
    except OSError as e:
        print(f"SKIP libmoelora not available: {e}")
        sys.exit(77)
    import moelora
    import dropin_cases as DC

    launches = not _has_cuda_driver()  # with a driver, fake pointers must not launch
    failures = []
    DT = {"bf16": FT.bfloat16, "fp16": FT.float16}
    CFG = (64, 32, 8, 4, 3, 1)

    class P:
        pass

    def problem(name, dtype="bf16", mrw=False, num_active=None, **over):
        c = DC.case(name)
        c.update(over)
        T = DT[dtype]
        nt, k, E, K, N, R = (c[n] for n in ("num_tokens", "top_k", "num_experts", "K", "N", "rank"))
        ml, S = c["max_loras"], c["num_slices"]
        p = P()
        p.c, p.T, p.mrw = c, T, mrw
        p.x = FT.empty(nt * k if mrw else nt, K, dtype=T, device="cuda")
        p.lora_a = [FT.empty(ml, E, R, K, dtype=T, device="cuda") for _ in range(S)]
        p.lora_b = [FT.empty(ml, E, N, R, dtype=T, device="cuda") for _ in range(S)]
        p.topk_weights = FT.empty(nt, k, dtype=FT.float32, device="cuda")
        p.topk_ids = FT.empty(nt, k, dtype=FT.int32, device="cuda")
        p.tlm = FT.empty(nt, dtype=FT.int32, device="cuda")
        p.lora_ids = FT.tensor(list(range(ml)) + [-1], dtype=FT.int32, device="cuda")
        p.enabled = FT.empty(ml + 1, dtype=FT.int32, device="cuda")
        if num_active is None:
            num_active = min(DC.NUM_ACTIVE_LORAS, ml)
        p.num_active = FT.tensor([num_active], dtype=FT.int32, device="cpu")
        if c["sorted"]:
            p.mntp, p.mnb = DC.align_sizes(c)
            p.st = FT.empty(ml * p.mntp, dtype=FT.int32, device="cuda").view(ml, -1)
            p.ex = FT.empty(ml * p.mnb, dtype=FT.int32, device="cuda").view(ml, -1)
            p.ntpp = FT.empty(ml, dtype=FT.int32, device="cuda")
        else:
            p.st, p.ntpp = None, None
            p.ex = p.topk_ids.reshape(-1)
        p.out = FT.empty(nt, k, S * N, dtype=T, device="cuda")
        return p

    def fused_args(p, add=True, offset=0, **over):
        c = p.c
        bm = c["block_size_m"]
        a = dict(output=p.out, qcurr_hidden_states=p.x, lora_a_stacked=p.lora_a,
                 lora_b_stacked=p.lora_b, topk_weights=p.topk_weights,
                 sorted_token_ids=p.st, expert_ids=p.ex, num_tokens_post_padded=p.ntpp,
                 token_lora_mapping=p.tlm, max_lora_rank=c["rank"], top_k_num=c["top_k"],
                 lora_ids=p.lora_ids, num_active_loras=p.num_active,
                 adapter_enabled=p.enabled, shrink_block_size_m=bm,
                 shrink_block_size_n=64, shrink_block_size_k=32, shrink_group_size_m=8,
                 shrink_num_warps=4, shrink_num_stages=3, shrink_split_k=1,
                 expand_block_size_m=bm, expand_block_size_n=64, expand_block_size_k=32,
                 expand_group_size_m=8, expand_num_warps=4, expand_num_stages=3,
                 expand_split_k=1, mul_routed_weight=p.mrw,
                 fully_sharded=c["fully_sharded"], offset=offset, add_inputs=add)
        a.update(over)
        return a

    def expect(what, exc, needle, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except exc as e:
            if needle in str(e):
                return
            failures.append(f"{what}: {exc.__name__} without {needle!r}: {e}")
            return
        except Exception as e:  # noqa: BLE001
            failures.append(f"{what}: {type(e).__name__}: {e}")
            return
        failures.append(f"{what}: no {exc.__name__}")

    def expect_no_device(what, fn, *args, **kwargs):
        if launches:
            expect(what, RuntimeError, "MOELORA_ERROR_NO_DEVICE", fn, *args, **kwargs)

    n_calls = 0
    for name in DC.CASES:
        for dtype in DC.DTYPES:
            for mrw, add in DC.flags_for(name):
                p = problem(name, dtype, mrw)
                what = f"{name}/{dtype}/mrw{int(mrw)}/add{int(add)}"
                try:
                    plan = moelora.plan_fused_moe_lora(**fused_args(p, add))
                    shape = L.plan(**DC.shape_call(name, dtype, mrw, add))
                    if plan["path"] != p.c["path"]:
                        failures.append(f"{what}: path {plan['path']}, want {p.c['path']}")
                    keys = [x["cache_key"] for x in plan["launches"]]
                    if keys != [x["cache_key"] for x in shape["launches"]]:
                        failures.append(f"{what}: plan {keys} differs from the shape's")
                except Exception as e:  # noqa: BLE001
                    failures.append(f"{what}: plan: {type(e).__name__}: {e}")
                expect_no_device(what, moelora.fused_moe_lora, **fused_args(p, add))
                n_calls += 1

    # fully_sharded with an offset: shrink + expand halves.
    for name in ("sharded", "sharded_naive"):
        p = problem(name)
        c = p.c
        p.out = FT.empty(c["num_tokens"], c["top_k"], 32 + c["num_slices"] * c["N"],
                         dtype=p.T, device="cuda")
        expect_no_device(f"{name} offset", moelora.fused_moe_lora, **fused_args(p, offset=32))
        expect(f"{name} offset too wide", ValueError, "output", moelora.fused_moe_lora,
               **fused_args(p, offset=64))
        # The halves, with vLLM's arguments.
        nt, k, R, N, S = c["num_tokens"], c["top_k"], c["rank"], c["N"], c["num_slices"]
        inter = FT.empty(S, nt, k, R, dtype=p.T, device="cuda")
        bm = c["block_size_m"]
        EM = p.st.shape[1] if c["sorted"] else nt * k * bm
        expect_no_device(f"{name} shrink", moelora.fused_moe_lora_shrink,
                         inter, p.x, p.lora_a, p.topk_weights, p.st, p.ex, p.ntpp, p.tlm, k,
                         p.lora_ids, p.enabled, "cuda:0", R, nt, EM, c["K"], nt * k,
                         c["num_experts"], S, bm, *CFG, p.num_active, False)
        expect_no_device(f"{name} expand", moelora.fused_moe_lora_expand,
                         p.out, inter, p.lora_b, p.topk_weights, p.st, p.ex, p.ntpp, p.tlm,
                         k, p.lora_ids, p.enabled, "cuda:0", R, nt, EM, c["K"], nt * k,
                         c["num_experts"], S, R, N, bm, *CFG, p.num_active, False, 32)
        # The expand's dtype comes from output (it has no x): errors say so.
        other = FT.float16 if p.T is FT.bfloat16 else FT.bfloat16
        expect(f"{name} expand B dtype", ValueError, "like output",
               moelora.fused_moe_lora_expand,
               p.out, inter, [b.to(other) for b in p.lora_b], p.topk_weights, p.st,
               p.ex, p.ntpp, p.tlm, k, p.lora_ids, p.enabled, "cuda:0", R, nt, EM,
               c["K"], nt * k, c["num_experts"], S, R, N, bm, *CFG, p.num_active,
               False, 32)
        bad = FT.empty(S, nt, k, R + 2, dtype=p.T, device="cuda")
        expect(f"{name} shrink bad intermediate", ValueError, "a_intermediate_cache1",
               moelora.fused_moe_lora_shrink, bad, p.x, p.lora_a, p.topk_weights, p.st,
               p.ex, p.ntpp, p.tlm, k, p.lora_ids, p.enabled, "cuda:0", R, nt, EM,
               c["K"], nt * k, c["num_experts"], S, bm, *CFG, p.num_active, False)

    # Align, with capacity-sized and vLLM-sized buffers.
    for name in ("prefill", "prefill_b64", "r256", "sharded"):
        p = problem(name)
        c = p.c
        expect_no_device(f"{name} align", moelora.moe_lora_align_block_size,
                         p.topk_ids, p.tlm, c["num_experts"], c["block_size_m"],
                         c["max_loras"], p.mntp, p.mnb, p.st, p.ex, p.ntpp, p.enabled,
                         p.lora_ids)
    p = problem("prefill")
    c = p.c
    expect("align block 24", ValueError, "block_size = 24", moelora.moe_lora_align_block_size,
           p.topk_ids, p.tlm, c["num_experts"], 24, c["max_loras"], p.mntp, p.mnb, p.st,
           p.ex, p.ntpp, p.enabled, p.lora_ids)
    expect("align int64 ids", ValueError, "topk_ids", moelora.moe_lora_align_block_size,
           p.topk_ids.long(), p.tlm, c["num_experts"], 16, c["max_loras"], p.mntp, p.mnb,
           p.st, p.ex, p.ntpp, p.enabled, p.lora_ids)
    expect("align small buffer", ValueError, "sorted_token_ids",
           moelora.moe_lora_align_block_size, p.topk_ids, p.tlm, c["num_experts"], 16,
           c["max_loras"], p.mntp + 16, p.mnb + 1, p.st, p.ex, p.ntpp, p.enabled,
           p.lora_ids)

    # Errors of fused_moe_lora.
    p = problem("prefill")
    fa = fused_args
    expect("block 24", ValueError, "shrink_block_size_m = 24", moelora.fused_moe_lora,
           **fa(p, shrink_block_size_m=24))
    expect("x fp32", ValueError, "qcurr_hidden_states", moelora.fused_moe_lora,
           **fa(p, qcurr_hidden_states=p.x.float()))
    expect("A fp16", ValueError, "lora_a_stacked[1]", moelora.fused_moe_lora,
           **fa(p, lora_a_stacked=[p.lora_a[0], p.lora_a[1].half()]))
    expect("out fp16", ValueError, "output", moelora.fused_moe_lora,
           **fa(p, output=p.out.half()))
    expect("mapping int64", ValueError, "token_lora_mapping", moelora.fused_moe_lora,
           **fa(p, token_lora_mapping=p.tlm.long()))
    expect("weights cpu", ValueError, "topk_weights", moelora.fused_moe_lora,
           **fa(p, topk_weights=p.topk_weights.cpu()))
    expect("x cpu", ValueError, "qcurr_hidden_states", moelora.fused_moe_lora,
           **fa(p, qcurr_hidden_states=p.x.cpu()))
    expect("ids other gpu", ValueError, "lora_ids", moelora.fused_moe_lora,
           **fa(p, lora_ids=p.lora_ids.to("cuda:1")))
    expect("sorted int64", ValueError, "sorted_token_ids", moelora.fused_moe_lora,
           **fa(p, sorted_token_ids=p.st.long()))
    expect("x strided (C check)", ValueError, "x_stride[1]", moelora.fused_moe_lora,
           **fa(p, qcurr_hidden_states=p.x.t().contiguous().t()))
    expect("output strides (C check)", ValueError, "output_stride", moelora.fused_moe_lora,
           **fa(p, output=p.out.transpose(0, 1).contiguous().transpose(0, 1)))
    expect("B rank", ValueError, "lora_b_stacked[0]", moelora.fused_moe_lora,
           **fa(p, lora_b_stacked=[FT.empty(4, 8, 320, 32, dtype=p.T, device="cuda")] * 2))
    q = problem("sharded")
    expect("sharded add_inputs=False", ValueError, "add_inputs", moelora.fused_moe_lora,
           **fused_args(q, add=False))
    q = problem("decode", mrw=True)
    expect("mrw weights fp16", ValueError, "topk_weights", moelora.fused_moe_lora,
           **fused_args(q, topk_weights=q.topk_weights.half()))
    q = problem("decode")
    expect("mrw x rows", ValueError, "qcurr_hidden_states", moelora.fused_moe_lora,
           **fused_args(q, mul_routed_weight=True))
    # A first call with new weights inside graph capture cannot build the table.
    FT.cuda._capturing = True
    q = problem("decode")
    expect("capture first call", RuntimeError, "CUDA graph capture", moelora.fused_moe_lora,
           **fused_args(q))
    FT.cuda._capturing = False

    # Empty work (issue #12): no tokens, or no active adapter. Every tensor
    # of a call without tokens is empty (data_ptr() 0, as in torch); the ops
    # return without a launch (no MOELORA_ERROR_NO_DEVICE here), and the
    # align still writes its outputs (so it reaches the device).
    def halves(p, offset=0):
        c = p.c
        nt, k, R, N, S = c["num_tokens"], c["top_k"], c["rank"], c["N"], c["num_slices"]
        inter = FT.empty(S, nt, k, R, dtype=p.T, device="cuda")
        bm = c["block_size_m"]
        EM = p.st.shape[1] if c["sorted"] else nt * k * bm
        moelora.fused_moe_lora_shrink(
            inter, p.x, p.lora_a, p.topk_weights, p.st, p.ex, p.ntpp, p.tlm, k,
            p.lora_ids, p.enabled, "cuda:0", R, nt, EM, c["K"], nt * k,
            c["num_experts"], S, bm, *CFG, p.num_active, p.mrw)
        moelora.fused_moe_lora_expand(
            p.out, inter, p.lora_b, p.topk_weights, p.st, p.ex, p.ntpp, p.tlm, k,
            p.lora_ids, p.enabled, "cuda:0", R, nt, EM, c["K"], nt * k,
            c["num_experts"], S, R, N, bm, *CFG, p.num_active, p.mrw, offset)

    def expect_no_op(what, fn, *args, **kwargs):
        try:
            fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{what}: {type(e).__name__}: {e}")

    def expect_plan(what, p, want, **over):
        try:
            got = moelora.plan_fused_moe_lora(**fused_args(p, **over))
        except Exception as e:  # noqa: BLE001
            failures.append(f"{what}: plan: {type(e).__name__}: {e}")
            return None
        if want is not None and got["path"] != want:
            failures.append(f"{what}: path {got['path']}, want {want}")
        return got

    n_empty = 0
    for name in DC.CASES:
        for mrw, add in DC.flags_for(name):
            for label, kw in (("num_tokens 0", dict(num_tokens=0)),
                              ("num_active_loras 0", dict(num_active=0))):
                if label.startswith("num_active") and not DC.case(name)["sorted"]:
                    continue  # naive metadata: vLLM launches one slice anyway
                p = problem(name, mrw=mrw, **kw)
                what = f"empty {name}/{label}/mrw{int(mrw)}/add{int(add)}"
                expect_plan(what, p, "none", add=add)
                expect_no_op(what, moelora.fused_moe_lora, **fused_args(p, add))
                if p.c["fully_sharded"]:
                    out = FT.empty(p.c["num_tokens"], p.c["top_k"],
                                   32 + p.c["num_slices"] * p.c["N"], dtype=p.T,
                                   device="cuda")
                    expect_no_op(f"{what} offset", moelora.fused_moe_lora,
                                 **fused_args(p, add, offset=32, output=out))
                    expect_no_op(f"{what} halves", halves, p)
                n_empty += 1
        p = problem(name, num_tokens=0)
        if p.c["sorted"]:
            # vLLM's buffers for no tokens (em_mode "vllm": empty rows) or
            # moelora's capacity: the outputs are written, the inputs unread.
            expect_no_device(f"empty {name} align", moelora.moe_lora_align_block_size,
                             p.topk_ids, p.tlm, p.c["num_experts"], p.c["block_size_m"],
                             p.c["max_loras"], p.mntp, p.mnb, p.st, p.ex, p.ntpp,
                             p.enabled, p.lora_ids)
    # The C layer still validates what empty work cannot excuse.
    p = problem("prefill", num_tokens=0)
    expect("empty align block 24", ValueError, "block_size = 24",
           moelora.moe_lora_align_block_size, p.topk_ids, p.tlm, 8, 24, 4, p.mntp,
           p.mnb, p.st, p.ex, p.ntpp, p.enabled, p.lora_ids)

    # Degenerate shapes that are real work: each plans like its shape does
    # through moelora._lib (no tensors), and passes validation.
    DEGENERATE = (("max_loras 1", dict(max_loras=1)),
                  ("top_k 1", dict(top_k=1)),
                  ("K 16", dict(K=16)),
                  ("N 8", dict(N=8)),
                  ("one expert", dict(num_experts=1)),
                  ("one slice", dict(num_slices=1)),
                  ("all minimal", dict(max_loras=1, top_k=1, K=8, N=8, num_experts=1,
                                       num_slices=1)))
    n_degenerate = 0
    for name in ("decode", "naive_oneshot", "prefill", "prefill_b64", "r256", "sharded",
                 "sharded_naive"):
        for label, over in DEGENERATE:
            for mrw in (False, True):
                p = problem(name, mrw=mrw, **over)
                c = p.c
                what = f"degenerate {name}/{label}/mrw{int(mrw)}"
                shape = dict(num_tokens=c["num_tokens"], top_k=c["top_k"],
                             num_experts=c["num_experts"], K=c["K"], N=c["N"],
                             rank=c["rank"], num_slices=c["num_slices"],
                             max_loras=c["max_loras"],
                             num_active_loras=int(p.num_active.item()), dtype="bf16",
                             sorted=c["sorted"], EM=DC.fused_em(c),
                             block_size_m=c["block_size_m"], mul_routed_weight=mrw,
                             add_inputs=True, fully_sharded=c["fully_sharded"])
                try:
                    want = L.plan(**shape)
                except Exception as e:  # noqa: BLE001
                    failures.append(f"{what}: shape plan: {type(e).__name__}: {e}")
                    continue
                got = expect_plan(what, p, want["path"])
                if got is not None:
                    if got["path"] == "none":
                        failures.append(f"{what}: planned no work")
                    keys = [x["cache_key"] for x in got["launches"]]
                    if keys != [x["cache_key"] for x in want["launches"]]:
                        failures.append(f"{what}: plan {keys} differs from the shape's")
                expect_no_device(what, moelora.fused_moe_lora, **fused_args(p))
                if c["fully_sharded"]:
                    expect_no_device(f"{what} halves", halves, p)
                if c["sorted"]:
                    expect_no_device(f"{what} align", moelora.moe_lora_align_block_size,
                                     p.topk_ids, p.tlm, c["num_experts"],
                                     c["block_size_m"], c["max_loras"], p.mntp, p.mnb,
                                     p.st, p.ex, p.ntpp, p.enabled, p.lora_ids)
                n_degenerate += 1

    # Workspaces and metadata scratch come in power-of-two size classes per
    # stream: a server's varying sizes reuse a few buffers, never freed.
    from moelora import ops as O
    dev = FT.device("cuda:0")
    def pooled(tag):
        return sum(1 for k in O._POOL if k[2] == tag)
    n_ws, n_scratch = pooled("workspace"), pooled("sorted")
    for n in range(1000, 200000, 997):
        ws = O._workspace(FT, dev, n, 0)
        if ws.numel() < n:
            failures.append(f"workspace of {ws.numel()} bytes for {n}")
    if pooled("workspace") - n_ws > 9:  # 1 KiB .. 256 KiB
        failures.append(f"{pooled('workspace') - n_ws} workspaces for 1 KB..200 KB")
    if O._workspace(FT, dev, 5000, 0) is O._workspace(FT, dev, 5000, 7):
        failures.append("two streams share a workspace")
    for em in range(64, 20000, 64):
        t = O._scratch_i32(FT, dev, "sorted", (4, em))
        if tuple(t.shape) != (4, em) or not t.is_contiguous():
            failures.append(f"scratch {tuple(t.shape)} for (4, {em})")
            break
    if pooled("sorted") - n_scratch > 9:  # 256 .. 128 Ki elements
        failures.append(f"{pooled('sorted') - n_scratch} scratch buffers for 312 shapes")

    # lora_a_host_ptrs: the host copy of the device pointer table, the same
    # pointers in slice order (tensor-map kernels encode from them).
    import ctypes
    p = problem(next(iter(DC.CASES)))
    addr, _, _ = O._ptr_table(FT, p.lora_a, "lora_a_stacked", p.x.dtype, dev)
    host = ctypes.cast(O._host_ptrs(addr), ctypes.POINTER(ctypes.c_void_p))
    want = [t.data_ptr() for t in p.lora_a]
    if [host[i] for i in range(len(want))] != want:
        failures.append(f"lora_a_host_ptrs {[host[i] for i in range(len(want))]}, "
                        f"want {want}")

    for f in failures:
        print("FAIL", f)
    print(f"{n_calls} fused calls planned{' and validated' if launches else ''}, "
          f"{n_empty} empty calls, {n_degenerate} degenerate shapes; "
          f"{len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        os.environ.setdefault("MOELORA_CACHE_DIR", tempfile.mkdtemp(prefix="moelora-fake-"))
        test_ops_with_fake_torch()
        print("PASS test_ops_with_fake_torch")
