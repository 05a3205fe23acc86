"""Empty work and degenerate shapes through vLLM's entry points (GPU; torch +
CUDA): what engines send in padding and dummy runs must be a no-op or right.

  * num_tokens 0 (empty tensors, data_ptr() NULL): fused_moe_lora on the
    naive, sorted and two-kernel paths, its shrink/expand halves and
    moe_lora_align_block_size return without error (the align reports zero
    tokens per adapter);
  * no work: num_active_loras 0, every adapter disabled, every lora id -1:
    output bit-for-bit unchanged;
  * small shapes: max_loras 1, top_k 1, K and N smaller than one tile, a
    single expert: against the float64 reference.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import dropin_cases as DC  # noqa: E402
import test_dropin as D  # noqa: E402

DEV, OPS = D.DEV, D.OPS

SMALL = {
    "deg_one_lora_naive": dict(num_tokens=24, rank=16, sorted=False, max_loras=1),
    "deg_one_lora_sorted": dict(num_tokens=96, rank=16, sorted=True, block_size_m=16,
                                max_loras=1),
    "deg_top1": dict(num_tokens=40, rank=32, sorted=True, block_size_m=16, top_k=1),
    "deg_top1_decode": dict(num_tokens=3, rank=16, sorted=False, top_k=1),
    "deg_tiny_kn": dict(num_tokens=48, rank=16, sorted=True, block_size_m=16, K=32, N=16),
    "deg_tiny_kn_decode": dict(num_tokens=2, rank=16, sorted=False, K=32, N=16),
    "deg_tiny_kn_sharded": dict(num_tokens=20, rank=16, sorted=True, block_size_m=16,
                                K=32, N=16, fully_sharded=True),
    "deg_one_expert": dict(num_tokens=33, rank=16, sorted=True, block_size_m=16,
                           num_experts=1, top_k=1),
    "deg_one_expert_decode": dict(num_tokens=5, rank=16, sorted=False, num_experts=1,
                                  top_k=1),
    # Two row blocks: the one-shot gets NPID 8 and K < 256 gives BLOCK_K 64,
    # which eight warps along N could not split into k16 steps (r came out 0).
    "deg_small_k_few_blocks": dict(num_tokens=8, rank=16, sorted=True, block_size_m=16,
                                   K=128, N=1024, num_experts=1, top_k=1, max_loras=1),
}
DC.CASES.update(SMALL)


@pytest.mark.parametrize("name", list(SMALL))
def test_small_shapes(name):
    p = D.make_problem(name, "bf16", mul_routed_weight=False, seed=5)
    c = p.c
    out, out0, ref, ok = D.fused_against_reference(p)
    P = c["num_tokens"] * c["top_k"]
    o, o0 = out.view(P, -1), out0.view(P, -1)
    assert torch.equal(o[~ok], o0[~ok]), "skipped pairs changed"
    if ok.any():
        err = D.rel_l2(o[ok], ref[ok])
        assert err < D.TOL, f"relative L2 error {err:.3e}"


@pytest.mark.parametrize("what", ["no_active_loras", "all_disabled", "all_ids_minus1"])
@pytest.mark.parametrize("name", ["decode", "prefill", "sharded", "r256"])
def test_no_work_is_a_no_op(name, what):
    p = D.make_problem(name, "bf16", seed=9)
    if what == "no_active_loras" and not p.c["sorted"]:
        pytest.skip("naive metadata: vLLM takes the adapter from token_lora_mapping "
                    "and ignores num_active_loras")
    if what == "no_active_loras":
        p.num_active_loras = torch.tensor([0], dtype=torch.int32)
    elif what == "all_disabled":
        p.adapter_enabled.zero_()
    else:
        p.token_lora_mapping.fill_(-1)
        if p.c["sorted"]:  # the metadata of a batch without adapters
            p.sorted_token_ids, p.expert_ids, p.num_tokens_post_padded, _ = D.align(p)
    out0 = D.poison(p, p.c["num_slices"] * p.c["N"])
    out = out0.clone()
    D.call_fused(p, out)
    torch.cuda.synchronize()
    assert torch.equal(out, out0)


def _empty(sorted_, sharded=False, K=512, N=320, R=16, E=8, top_k=2, ml=4, S=2, bm=16):
    T = torch.bfloat16
    e = dict(
        x=torch.empty(0, K, dtype=T, device=DEV),
        lora_a=[torch.randn(ml, E, R, K, device=DEV).to(T) for _ in range(S)],
        lora_b=[torch.randn(ml, E, N, R, device=DEV).to(T) for _ in range(S)],
        topk_ids=torch.empty(0, top_k, dtype=torch.int32, device=DEV),
        topk_weights=torch.empty(0, top_k, dtype=torch.float32, device=DEV),
        mapping=torch.empty(0, dtype=torch.int32, device=DEV),
        lora_ids=torch.tensor(list(range(ml)) + [-1], dtype=torch.int32, device=DEV),
        enabled=torch.ones(ml + 1, dtype=torch.int32, device=DEV),
        active=torch.tensor([ml], dtype=torch.int32),
        out=torch.empty(0, top_k, S * N, dtype=T, device=DEV),
        K=K, N=N, R=R, E=E, top_k=top_k, ml=ml, S=S, bm=bm)
    if sorted_:
        cap = DC.round_up(E * (bm - 1), bm)  # capacity for zero pairs
        st = torch.full((ml * cap,), -7, dtype=torch.int32, device=DEV)
        ex = torch.full((ml * (cap // bm),), 77, dtype=torch.int32, device=DEV)
        nt = torch.full((ml,), -5, dtype=torch.int32, device=DEV)
        OPS.moe_lora_align_block_size(e["topk_ids"], e["mapping"], E, bm, ml, cap,
                                      cap // bm, st, ex, nt, e["enabled"], e["lora_ids"])
        torch.cuda.synchronize()
        assert bool((nt == 0).all()), f"num_tokens_post_pad {nt.tolist()} for zero tokens"
        e.update(st=st.view(ml, -1), ex=ex.view(ml, -1), nt=nt)
    else:
        e.update(st=None, ex=e["topk_ids"].reshape(-1), nt=None)
    return e


@pytest.mark.parametrize("path", ["naive", "sorted", "sharded", "sharded_naive", "r256"])
def test_empty_batch_fused(path):
    sorted_ = path in ("sorted", "sharded", "r256")
    e = _empty(sorted_, R=256 if path == "r256" else 16)
    cfg = (e["bm"], 64, 32, 8, 4, 3, 1)
    OPS.fused_moe_lora(e["out"], e["x"], e["lora_a"], e["lora_b"], e["topk_weights"],
                       e["st"], e["ex"], e["nt"], e["mapping"], e["R"], e["top_k"],
                       e["lora_ids"], e["active"], e["enabled"], *cfg, *cfg,
                       False, path.startswith("sharded"), 0, True)
    torch.cuda.synchronize()


@pytest.mark.parametrize("sorted_", [False, True])
def test_empty_batch_halves(sorted_):
    e = _empty(sorted_)
    S, R, N, top_k, bm = e["S"], e["R"], e["N"], e["top_k"], e["bm"]
    EM = e["st"].shape[1] if sorted_ else 0
    inter = torch.empty(S, 0, top_k, R, dtype=torch.bfloat16, device=DEV)
    OPS.fused_moe_lora_shrink(
        inter, e["x"], e["lora_a"], e["topk_weights"], e["st"], e["ex"], e["nt"],
        e["mapping"], top_k, e["lora_ids"], e["enabled"], DEV, R, 0, EM, e["K"], 0,
        e["E"], S, bm, 64, 32, 8, 4, 3, 1, e["active"], False)
    OPS.fused_moe_lora_expand(
        e["out"], inter, e["lora_b"], e["topk_weights"], e["st"], e["ex"], e["nt"],
        e["mapping"], top_k, e["lora_ids"], e["enabled"], DEV, R, 0, EM, e["K"], 0,
        e["E"], S, R, N, bm, 64, 32, 8, 4, 3, 1, e["active"], False, 0)
    torch.cuda.synchronize()
