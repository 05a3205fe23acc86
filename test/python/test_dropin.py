"""GPU tests of moelora's vLLM drop-in (python/moelora): fused_moe_lora, its
shrink/expand halves and moe_lora_align_block_size, called with vLLM's
argument lists, against a float64 reference of the contract
(shared/notes/kernel-contract.md).

Skips without torch or CUDA. With libmoelora_rt.so (no JIT) the kernels come
from a cache warmed by prepare_dropin_cache.py (MOELORA_CACHE_DIR).

MOELORA_DROPIN_VIA=vllm runs the same tests through vLLM's entry points as
moelora's vLLM plugin patches them: the stand-in vLLM of vllm_stub/ (torch
custom ops torch.ops.vllm.fused_moe_lora/_shrink/_expand registered as vLLM
does, placeholder kernels that raise) is put first on sys.path,
moelora.vllm_plugin.register() is called, and the ops are called as
torch.ops.vllm.<op> and vllm._custom_ops.moe_lora_align_block_size (plus
the stand-in punica wrapper's calls). Default (unset or "moelora"): the
moelora functions directly.

MOELORA_TEST_INSTALLED=1 tests the moelora found on sys.path (an installed
wheel, with its own libmoelora.so) instead of this checkout's python/.
"""

import json
import math
import os
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if os.environ.get("MOELORA_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, HERE)

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import moelora  # noqa: E402
from moelora import _lib as L  # noqa: E402

import dropin_cases as DC  # noqa: E402

VIA = os.environ.get("MOELORA_DROPIN_VIA", "moelora")
if VIA not in ("moelora", "vllm"):
    raise ValueError(f"MOELORA_DROPIN_VIA={VIA!r}: must be moelora or vllm")


class _VllmEntryPoints:
    """The ops as vLLM reaches them once moelora's plugin has patched it,
    looked up at each call: torch.ops.vllm.<op> (the torch custom ops, whose
    CUDA kernels the plugin replaced) and vllm._custom_ops'
    moe_lora_align_block_size (rebound)."""

    def __getattr__(self, name):
        if name == "moe_lora_align_block_size":
            import vllm._custom_ops as vllm_ops
            return vllm_ops.moe_lora_align_block_size
        return getattr(torch.ops.vllm, name)


if VIA == "vllm":
    sys.path.insert(0, os.path.join(HERE, "vllm_stub"))
    import vllm  # noqa: E402

    if not getattr(vllm, "MOELORA_STUB", False):
        raise RuntimeError(f"MOELORA_DROPIN_VIA=vllm: imported {vllm.__file__}, not "
                           "test/python/vllm_stub's stand-in")
    import vllm.lora.punica_wrapper.punica_gpu  # noqa: E402,F401 - binds before register()
    from moelora import vllm_plugin  # noqa: E402

    PLUGIN_STATUS = vllm_plugin.register()
    if PLUGIN_STATUS["state"] != "replaced":
        raise RuntimeError(f"moelora.vllm_plugin.register(): {PLUGIN_STATUS}")
    # (A ValueError that moelora raises comes back through the dispatcher as
    # the same ValueError: the error tests run unchanged.)
    OPS = _VllmEntryPoints()
else:
    OPS = moelora

DEV = torch.device("cuda", torch.cuda.current_device())
TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DISABLED_ADAPTER = 2
TOL = 1e-2  # relative L2 vs the float64 reference, whichever path ran

# Triton tiling arguments vLLM passes (ignored by moelora).
SHRINK_CFG = (64, 32, 8, 4, 3, 1)  # block_n, block_k, group_m, warps, stages, split_k
EXPAND_CFG = (64, 32, 8, 4, 3, 1)


# ---------------------------------------------------------------------------
# Problems
# ---------------------------------------------------------------------------

class Problem:
    pass


def make_problem(name, dtype="bf16", mul_routed_weight=False, seed=0):
    c = DC.case(name)
    T = TORCH_DTYPES[dtype]
    g = torch.Generator().manual_seed(seed)
    nt, k, E, K, N, R = (c[n] for n in ("num_tokens", "top_k", "num_experts", "K", "N", "rank"))
    ml, S = c["max_loras"], c["num_slices"]
    p = Problem()
    p.c, p.name, p.T, p.mrw = c, name, T, mul_routed_weight
    # topk distinct experts per token, ~5% of pairs without an expert (-1).
    ids = torch.stack([torch.randperm(E, generator=g)[:k] for _ in range(nt)]).to(torch.int32)
    ids[torch.rand(nt, k, generator=g) < 0.05] = -1
    # Adapters per contiguous token sequences: -1, the disabled one, enabled
    # (those that exist: max_loras may be 1).
    order = [a for a in (0, 1, -1, DISABLED_ADAPTER, 3) if a < ml]
    mapping, i = [], 0
    while len(mapping) < nt:
        a = order[i] if i < len(order) else order[int(torch.randint(len(order), (1,), generator=g))]
        length = int(torch.randint(1, max(2, nt // 8), (1,), generator=g))
        mapping += [a] * length
        i += 1
    p.topk_ids = ids.to(DEV)
    p.token_lora_mapping = torch.tensor(mapping[:nt], dtype=torch.int32, device=DEV)
    rows = nt * k if mul_routed_weight else nt
    p.x = (torch.rand(rows, K, generator=g) * 2 - 1).to(T).to(DEV)
    p.lora_a = [((torch.rand(ml, E, R, K, generator=g) * 2 - 1) / math.sqrt(K)).to(T).to(DEV)
                for _ in range(S)]
    p.lora_b = [((torch.rand(ml, E, N, R, generator=g) * 2 - 1) / math.sqrt(R)).to(T).to(DEV)
                for _ in range(S)]
    p.topk_weights = torch.rand(nt, k, generator=g).to(DEV)
    en = torch.ones(ml + 1, dtype=torch.int32)
    if DISABLED_ADAPTER < ml:
        en[DISABLED_ADAPTER] = 0
    en[ml] = 0
    p.adapter_enabled = en.to(DEV)
    p.lora_ids = torch.tensor(list(range(ml)) + [-1], dtype=torch.int32, device=DEV)
    p.num_active_loras = torch.tensor([min(DC.NUM_ACTIVE_LORAS, ml)],
                                      dtype=torch.int32)  # CPU, as vLLM
    p.poison_gen = g
    if c["sorted"]:
        p.sorted_token_ids, p.expert_ids, p.num_tokens_post_padded, p.mntp = align(p)
    else:
        p.sorted_token_ids, p.num_tokens_post_padded = None, None
        p.expert_ids = p.topk_ids.reshape(-1)
    return p


def align(p, expert_map=None):
    c = p.c
    mntp, mnb = DC.align_sizes(c)
    ml = c["max_loras"]
    st = torch.full((ml * mntp,), -7, dtype=torch.int32, device=DEV)
    ex = torch.full((ml * mnb,), 77, dtype=torch.int32, device=DEV)
    ntpp = torch.full((ml,), -5, dtype=torch.int32, device=DEV)
    OPS.moe_lora_align_block_size(
        p.topk_ids, p.token_lora_mapping, c["num_experts"], c["block_size_m"], ml,
        mntp, mnb, st, ex, ntpp, p.adapter_enabled, p.lora_ids, expert_map)
    return st.view(ml, -1), ex.view(ml, -1), ntpp, mntp


def poison(p, cols):
    nt, k = p.c["num_tokens"], p.c["top_k"]
    return (torch.rand(nt, k, cols, generator=p.poison_gen) * 2 - 1).to(p.T).to(DEV)


def call_fused(p, out, add_inputs=True, offset=0, block_size_m=None):
    c = p.c
    bm = c["block_size_m"] if block_size_m is None else block_size_m
    OPS.fused_moe_lora(
        out, p.x, p.lora_a, p.lora_b, p.topk_weights, p.sorted_token_ids,
        p.expert_ids, p.num_tokens_post_padded, p.token_lora_mapping, c["rank"],
        c["top_k"], p.lora_ids, p.num_active_loras, p.adapter_enabled,
        bm, *SHRINK_CFG, bm, *EXPAND_CFG,
        p.mrw, c["fully_sharded"], offset, add_inputs)


# ---------------------------------------------------------------------------
# References (float64)
# ---------------------------------------------------------------------------

def valid_pairs(p):
    c = p.c
    k, ml = c["top_k"], c["max_loras"]
    P = c["num_tokens"] * k
    pair = torch.arange(P, device=DEV)
    lora = p.token_lora_mapping.long()[pair // k]
    expert = p.topk_ids.reshape(-1).long()
    ok = (lora >= 0) & (lora < ml) & (expert >= 0)
    ok &= p.adapter_enabled.long()[lora.clamp(0, ml - 1)] != 0
    return pair, lora, expert, ok


def reference_r(p):
    """r[s][pair] = x[pair / factor] @ A_s[l,e]^T (float64, zero when skipped)."""
    c = p.c
    k, R = c["top_k"], c["rank"]
    pair, lora, expert, ok = valid_pairs(p)
    factor = 1 if p.mrw else k
    xr = p.x.double()[pair // factor]
    r = torch.zeros(c["num_slices"], pair.numel(), R, dtype=torch.float64, device=DEV)
    for s in range(c["num_slices"]):
        for l_ in range(c["max_loras"]):
            for e_ in range(c["num_experts"]):
                idx = ok & (lora == l_) & (expert == e_)
                if idx.any():
                    r[s, idx] = xr[idx] @ p.lora_a[s][l_, e_].double().T
    return r, ok


def reference_expand(p, r, out0, add_inputs, offset=0):
    c = p.c
    N = c["N"]
    pair, lora, expert, ok = valid_pairs(p)
    ref = out0.double().clone().view(pair.numel(), -1)
    w = p.topk_weights.reshape(-1).double()
    for s in range(c["num_slices"]):
        cols = slice(offset + s * N, offset + (s + 1) * N)
        for l_ in range(c["max_loras"]):
            for e_ in range(c["num_experts"]):
                idx = ok & (lora == l_) & (expert == e_)
                if not idx.any():
                    continue
                y = r[s, idx] @ p.lora_b[s][l_, e_].double().T
                if p.mrw:
                    y = y * w[idx][:, None]
                base = ref[idx, cols] if add_inputs else 0
                ref[idx, cols] = base + y
    return ref, ok


def rel_l2(got, ref):
    return float((got.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def check_output(p, out, out0, ref, ok, offset=0):
    c = p.c
    P = c["num_tokens"] * c["top_k"]
    o, o0 = out.view(P, -1), out0.view(P, -1)
    cols = slice(offset, offset + c["num_slices"] * c["N"])
    assert ok.any() and (~ok).any(), "the problem must have active and skipped pairs"
    # Skipped pairs and columns outside the slices: bit-for-bit untouched.
    assert torch.equal(o[~ok], o0[~ok]), "skipped pairs changed"
    assert torch.equal(o[:, :offset], o0[:, :offset]), "columns before offset changed"
    assert torch.equal(o[:, cols.stop:], o0[:, cols.stop:]), "columns after the slices changed"
    err = rel_l2(o[ok][:, cols], ref[ok][:, cols])
    assert err < TOL, f"relative L2 error {err:.3e}"
    return err


def plan_fused(p, out, mul_routed_weight=False, add_inputs=True):
    """moelora.plan_fused_moe_lora for the problem's call onto `out`."""
    c = p.c
    return moelora.plan_fused_moe_lora(
        out, p.x, p.lora_a, p.lora_b, p.topk_weights, p.sorted_token_ids,
        p.expert_ids, p.num_tokens_post_padded, p.token_lora_mapping, c["rank"],
        c["top_k"], p.lora_ids, p.num_active_loras, p.adapter_enabled,
        c["block_size_m"], *SHRINK_CFG, c["block_size_m"], *EXPAND_CFG,
        mul_routed_weight, c["fully_sharded"], 0, add_inputs)


def run_checked(name, dtype="bf16", mul_routed_weight=False, seed=0):
    """One fused call of case `name` onto a poisoned output, checked against
    the float64 reference (check_output), its plan, and a repeated call that
    must give the same bits: (plan, the computed rows as float, rel L2)."""
    p = make_problem(name, dtype, mul_routed_weight=mul_routed_weight,
                     seed=seed)
    out, out0, ref, ok = fused_against_reference(p)
    err = check_output(p, out, out0, ref, ok)
    plan = plan_fused(p, out0, mul_routed_weight=mul_routed_weight)
    again = out0.clone()
    call_fused(p, again, add_inputs=True)
    torch.cuda.synchronize()
    assert torch.equal(out.view(torch.int16), again.view(torch.int16)), \
        "repeated calls differ"
    c = p.c
    rows = out.view(c["num_tokens"] * c["top_k"], -1)[ok].float()
    return plan, rows, err


def run_child_with_table(script, table, baseline, args):
    """Runs `script --child DIR ARGS...` in a child process whose tuned table
    (MOELORA_TUNED_TABLE) is `table` (a dict), with `baseline` (rows computed
    here without it) saved for the child's child_baseline(DIR); asserts that
    the child succeeds and returns its output."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "table.json")
        with open(path, "w") as f:
            json.dump(table, f)
        torch.save(baseline.cpu(), os.path.join(d, "baseline.pt"))
        env = dict(os.environ, MOELORA_TUNED_TABLE=path,
                   MOELORA_CACHE_DIR=os.environ.get("MOELORA_CACHE_DIR", d))
        proc = subprocess.run(
            [sys.executable, os.path.abspath(script), "--child", d,
             *map(str, args)],
            env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout


def child_baseline(d):
    """In the child of run_child_with_table: the parent's rows, on the GPU."""
    return torch.load(os.path.join(d, "baseline.pt")).cuda()


def fused_against_reference(p, add_inputs=True):
    """One fused call onto a poisoned output, and the float64 reference:
    (out, out0, ref, ok) for check_output or a test's own checks."""
    c = p.c
    out0 = poison(p, c["num_slices"] * c["N"])
    out = out0.clone()
    call_fused(p, out, add_inputs=add_inputs)
    torch.cuda.synchronize()
    r, _ = reference_r(p)
    ref, ok = reference_expand(p, r, out0, add_inputs)
    return out, out0, ref, ok


# ---------------------------------------------------------------------------
# fused_moe_lora: every case, both dtypes, mul_routed_weight/add_inputs
# ---------------------------------------------------------------------------

PARAMS = [(name, dtype, mrw, add) for name in DC.CASES for dtype in DC.DTYPES
          for mrw, add in DC.flags_for(name)]


@pytest.mark.parametrize("name,dtype,mrw,add", PARAMS,
                         ids=[f"{n}-{d}-mrw{int(m)}-add{int(a)}" for n, d, m, a in PARAMS])
def test_fused_moe_lora(name, dtype, mrw, add):
    p = make_problem(name, dtype, mrw, seed=PARAMS.index((name, dtype, mrw, add)))
    c = p.c
    plan = plan_fused(p, poison(p, c["num_slices"] * c["N"]), mrw, add)
    assert plan["path"] == c["path"], plan
    # The warmed cache holds what the shape-level plan names: same variants.
    shape_plan = L.plan(device=DEV.index, **DC.shape_call(name, dtype, mrw, add))
    assert [l["cache_key"] for l in plan["launches"]] == \
        [l["cache_key"] for l in shape_plan["launches"]]
    out, out0, ref, ok = fused_against_reference(p, add_inputs=add)
    check_output(p, out, out0, ref, ok)


@pytest.mark.parametrize("name", ["sharded", "sharded_naive"])
def test_fused_sharded_offset(name):
    """fully_sharded with a column offset: shrink and expand halves."""
    p = make_problem(name, "bf16", False, seed=7)
    c = p.c
    offset = 32
    out0 = poison(p, offset + c["num_slices"] * c["N"] + 16)
    out = out0.clone()
    call_fused(p, out, add_inputs=True, offset=offset)
    torch.cuda.synchronize()
    r, _ = reference_r(p)
    ref, ok = reference_expand(p, r, out0, True, offset)
    check_output(p, out, out0, ref, ok, offset)


def test_no_work_leaves_output_unchanged():
    p = make_problem("decode", "bf16")
    p.token_lora_mapping.fill_(-1)
    out0 = poison(p, p.c["num_slices"] * p.c["N"])
    out = out0.clone()
    call_fused(p, out)
    torch.cuda.synchronize()
    assert torch.equal(out, out0)


# ---------------------------------------------------------------------------
# fused_moe_lora_shrink / fused_moe_lora_expand (vLLM's two-kernel halves)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sharded", "sharded_naive"])
@pytest.mark.parametrize("mrw", [False, True])
def test_shrink_expand(name, mrw):
    p = make_problem(name, "bf16", mrw, seed=11)
    c = p.c
    nt, k, R, N, S = c["num_tokens"], c["top_k"], c["rank"], c["N"], c["num_slices"]
    bm = c["block_size_m"]
    EM = p.sorted_token_ids.shape[1] if c["sorted"] else nt * k * bm
    inter = torch.full((S, nt, k, R), 3.0, dtype=p.T, device=DEV)  # shrink zeroes it
    OPS.fused_moe_lora_shrink(
        inter, p.x, p.lora_a, p.topk_weights, p.sorted_token_ids, p.expert_ids,
        p.num_tokens_post_padded, p.token_lora_mapping, k, p.lora_ids,
        p.adapter_enabled, DEV, R, nt, EM, c["K"], nt * k, c["num_experts"], S,
        bm, *SHRINK_CFG, p.num_active_loras, mrw)
    torch.cuda.synchronize()
    r, ok = reference_r(p)
    got = inter.view(S, nt * k, R)
    assert torch.equal(got[:, ~ok], torch.zeros_like(got[:, ~ok])), "skipped pairs not zero"
    err = rel_l2(got[:, ok], r[:, ok])
    assert err < TOL, f"shrink relative L2 error {err:.3e}"
    offset = 64
    out0 = poison(p, offset + S * N + 8)
    out = out0.clone()
    OPS.fused_moe_lora_expand(
        out, inter, p.lora_b, p.topk_weights, p.sorted_token_ids, p.expert_ids,
        p.num_tokens_post_padded, p.token_lora_mapping, k, p.lora_ids,
        p.adapter_enabled, DEV, R, nt, EM, c["K"], nt * k, c["num_experts"], S,
        R, N, bm, *EXPAND_CFG, p.num_active_loras, mrw, offset)
    torch.cuda.synchronize()
    # The expand's input is the intermediate as stored (in T).
    ref, ok = reference_expand(p, inter.double().view(S, nt * k, R), out0, True, offset)
    check_output(p, out, out0, ref, ok, offset)


# ---------------------------------------------------------------------------
# moe_lora_align_block_size
# ---------------------------------------------------------------------------

def reference_align(p):
    c = p.c
    nt, k, E, bm, ml = (c[n] for n in ("num_tokens", "top_k", "num_experts", "block_size_m", "max_loras"))
    numel = nt * k
    cap = DC.round_up(numel + E * (bm - 1), bm)
    st = torch.full((ml, cap), numel, dtype=torch.int32)
    ex = torch.full((ml, cap // bm), -1, dtype=torch.int32)
    ntpp = torch.zeros(ml, dtype=torch.int32)
    ids = p.topk_ids.reshape(-1).tolist()
    lm = p.token_lora_mapping.tolist()
    for l_ in range(ml):
        off = 0
        for e_ in range(E):
            pairs = [q for q in range(numel) if lm[q // k] == l_ and ids[q] == e_]
            nb = (len(pairs) + bm - 1) // bm
            st[l_, off:off + len(pairs)] = torch.tensor(pairs, dtype=torch.int32)
            ex[l_, off // bm:off // bm + nb] = e_
            off += nb * bm
        ntpp[l_] = off
    return st, ex, ntpp


@pytest.mark.parametrize("name", ["prefill", "prefill_b64", "r256", "sharded"])
def test_align_block_size(name):
    p = make_problem(name, "bf16")
    c = p.c
    st, ex, ntpp = reference_align(p)
    mntp, mnb = DC.align_sizes(c)
    m, mb = min(mntp, st.shape[1]), min(mnb, ex.shape[1])
    got_st, got_ex = p.sorted_token_ids.cpu(), p.expert_ids.cpu()
    assert torch.equal(p.num_tokens_post_padded.cpu(), ntpp)
    assert int(ntpp.max()) <= m
    assert torch.equal(got_st[:, :m], st[:, :m])
    assert torch.equal(got_ex[:, :mb], ex[:, :mb])
    numel = c["num_tokens"] * c["top_k"]
    assert bool((got_st[:, m:] == numel).all()) and bool((got_ex[:, mb:] == -1).all())


def test_align_expert_map():
    p = make_problem("prefill", "bf16")
    E = p.c["num_experts"]
    # Expert parallelism: this rank owns the even experts, as local 0, 1, ...
    emap = torch.tensor([e // 2 if e % 2 == 0 else -1 for e in range(E)],
                        dtype=torch.int32, device=DEV)
    _, ex_mapped, ntpp, _ = align(p, expert_map=emap)
    _, ex, ntpp_ref = reference_align(p)
    mb = min(ex_mapped.shape[1], ex.shape[1])
    want = torch.where(ex >= 0, emap.cpu()[ex.clamp(min=0).long()], torch.full_like(ex, -1))
    assert torch.equal(ex_mapped.cpu()[:, :mb], want[:, :mb])
    assert torch.equal(ntpp.cpu(), ntpp_ref)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

def _fused_kwargs(p, **over):
    c = p.c
    kw = dict(output=poison(p, c["num_slices"] * c["N"]), qcurr_hidden_states=p.x,
              lora_a_stacked=p.lora_a, lora_b_stacked=p.lora_b,
              topk_weights=p.topk_weights, sorted_token_ids=p.sorted_token_ids,
              expert_ids=p.expert_ids, num_tokens_post_padded=p.num_tokens_post_padded,
              token_lora_mapping=p.token_lora_mapping, max_lora_rank=c["rank"],
              top_k_num=c["top_k"], lora_ids=p.lora_ids,
              num_active_loras=p.num_active_loras, adapter_enabled=p.adapter_enabled,
              shrink_block_size_m=c["block_size_m"], shrink_block_size_n=64,
              shrink_block_size_k=32, shrink_group_size_m=8, shrink_num_warps=4,
              shrink_num_stages=3, shrink_split_k=1,
              expand_block_size_m=c["block_size_m"], expand_block_size_n=64,
              expand_block_size_k=32, expand_group_size_m=8, expand_num_warps=4,
              expand_num_stages=3, expand_split_k=1)
    kw.update(over)
    return kw


def test_errors_dtype():
    p = make_problem("decode", "bf16")
    with pytest.raises(ValueError, match="qcurr_hidden_states"):
        OPS.fused_moe_lora(**_fused_kwargs(p, qcurr_hidden_states=p.x.float()))
    with pytest.raises(ValueError, match=r"lora_a_stacked\[1\]"):
        OPS.fused_moe_lora(**_fused_kwargs(
            p, lora_a_stacked=[p.lora_a[0], p.lora_a[1].half()]))
    with pytest.raises(ValueError, match="output"):
        OPS.fused_moe_lora(**_fused_kwargs(p, output=poison(p, 2 * p.c["N"]).half()))
    with pytest.raises(ValueError, match="token_lora_mapping"):
        OPS.fused_moe_lora(**_fused_kwargs(p, token_lora_mapping=p.token_lora_mapping.long()))
    q = make_problem("decode", "bf16", mul_routed_weight=True)
    with pytest.raises(ValueError, match="topk_weights"):
        OPS.fused_moe_lora(**_fused_kwargs(q, topk_weights=q.topk_weights.half()),
                           mul_routed_weight=True)


def test_errors_device():
    p = make_problem("decode", "bf16")
    with pytest.raises(ValueError, match="topk_weights"):
        OPS.fused_moe_lora(**_fused_kwargs(p, topk_weights=p.topk_weights.cpu()))
    with pytest.raises(ValueError, match="adapter_enabled"):
        OPS.fused_moe_lora(**_fused_kwargs(p, adapter_enabled=p.adapter_enabled.cpu()))
    with pytest.raises(ValueError, match="qcurr_hidden_states"):
        OPS.fused_moe_lora(**_fused_kwargs(p, qcurr_hidden_states=p.x.cpu()))
    if torch.cuda.device_count() > 1:
        other = torch.device("cuda", (DEV.index + 1) % torch.cuda.device_count())
        with pytest.raises(ValueError, match="lora_ids"):
            OPS.fused_moe_lora(**_fused_kwargs(p, lora_ids=p.lora_ids.to(other)))


def test_errors_block_size():
    p = make_problem("prefill", "bf16")
    with pytest.raises(ValueError, match="shrink_block_size_m"):
        OPS.fused_moe_lora(**_fused_kwargs(p, shrink_block_size_m=24,
                                           expand_block_size_m=24))
    c = p.c
    mntp, mnb = DC.align_sizes(c)
    ml = c["max_loras"]
    with pytest.raises(ValueError, match="block_size"):
        OPS.moe_lora_align_block_size(
            p.topk_ids, p.token_lora_mapping, c["num_experts"], 24, ml, mntp, mnb,
            torch.empty(ml * mntp, dtype=torch.int32, device=DEV),
            torch.empty(ml * mnb, dtype=torch.int32, device=DEV),
            torch.empty(ml, dtype=torch.int32, device=DEV), p.adapter_enabled, p.lora_ids)


def test_errors_from_c_layer():
    """What only the C layer checks comes back as ValueError naming it."""
    p = make_problem("decode", "bf16")
    x_cols = p.x.t().contiguous().t()  # stride(1) != 1
    with pytest.raises(ValueError, match=r"x_stride\[1\]"):
        OPS.fused_moe_lora(**_fused_kwargs(p, qcurr_hidden_states=x_cols))
    out = poison(p, 2 * p.c["N"]).transpose(0, 1).contiguous().transpose(0, 1)
    with pytest.raises(ValueError, match="output_stride"):
        OPS.fused_moe_lora(**_fused_kwargs(p, output=out))


# ---------------------------------------------------------------------------
# CUDA graphs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["decode", "prefill", "r256", "sharded"])
def test_cuda_graph(name):
    p = make_problem(name, "bf16", seed=5)
    c = p.c
    out0 = poison(p, c["num_slices"] * c["N"])
    eager = out0.clone()
    call_fused(p, eager)  # also fills the pointer/workspace/scratch caches
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        warm = out0.clone()
        call_fused(p, warm)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    out = out0.clone()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call_fused(p, out)
    for _ in range(2):
        out.copy_(out0)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, eager)
    r, _ = reference_r(p)
    ref, ok = reference_expand(p, r, out0, True)
    check_output(p, out, out0, ref, ok)


def test_stats_and_warmup():
    before = moelora.stats(DEV.index)
    moelora.warmup([DC.shape_call("decode", "bf16", False, True)], DEV.index)
    after = moelora.stats(DEV.index)
    assert after["launches"] >= before["launches"]
    assert after["misses"] == before["misses"]


# ---------------------------------------------------------------------------
# Through vLLM's punica wrapper (MOELORA_DROPIN_VIA=vllm only)
# ---------------------------------------------------------------------------

vllm_only = pytest.mark.skipif(VIA != "vllm", reason="MOELORA_DROPIN_VIA=vllm only")


@vllm_only
@pytest.mark.parametrize("name", ["decode", "prefill"])
def test_vllm_punica_wrapper(name):
    """PunicaWrapperGPU.moe_lora_align_block_size and add_lora_fused_moe as
    vLLM's fused MoE-LoRA layer calls them: its module-level fused_moe_lora
    binding (the torch op) and ops.moe_lora_align_block_size."""
    from vllm.lora.punica_wrapper.punica_gpu import PunicaWrapperGPU

    p = make_problem(name, "bf16", seed=13)
    c = p.c
    nt, k, E, bm, ml = (c[n] for n in ("num_tokens", "top_k", "num_experts",
                                       "block_size_m", "max_loras"))
    w = PunicaWrapperGPU(nt, 1, DEV, max_loras=ml)
    w.update_metadata(p.token_lora_mapping, p.lora_ids, p.num_active_loras)
    _, st, ex, ntpp = w.moe_lora_align_block_size(
        p.topk_ids, nt, bm, E, ml, p.adapter_enabled,
        naive_block_assignment=not c["sorted"])
    if c["sorted"]:
        st, ex = st.view(ml, -1), ex.view(ml, -1)
    out0 = poison(p, c["num_slices"] * c["N"])
    out = out0.clone()
    w.add_lora_fused_moe(out, p.x, p.lora_a, p.lora_b, p.topk_weights, st, ex, ntpp,
                         c["rank"], k, {"BLOCK_SIZE_M": bm}, {"BLOCK_SIZE_M": bm},
                         p.adapter_enabled)
    torch.cuda.synchronize()
    r, _ = reference_r(p)
    ref, ok = reference_expand(p, r, out0, True)
    check_output(p, out, out0, ref, ok)


@vllm_only
def test_vllm_plugin_status():
    import vllm._stub as S

    st = vllm_plugin.status()
    assert st["state"] == "replaced", st
    assert st["torch_ops"] == ["fused_moe_lora", "fused_moe_lora_shrink",
                               "fused_moe_lora_expand"], st
    assert "vllm._custom_ops.moe_lora_align_block_size" in st["bindings"], st
    assert "vllm.lora.punica_wrapper.punica_gpu.fused_moe_lora" in st["routed"], st
    assert vllm.lora.punica_wrapper.punica_gpu.fused_moe_lora is torch.ops.vllm.fused_moe_lora
    assert S.CALLS == [], f"vLLM's placeholder kernels ran: {S.CALLS}"
