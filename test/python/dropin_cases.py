"""The drop-in test's call shapes, without torch: test_dropin.py builds its
tensors from these, and prepare_dropin_cache.py warms a kernel cache for
exactly the calls the test makes (for libmoelora_rt.so, which cannot JIT)."""

# Shared by every case: 2 slices (gate/up-like), N not a multiple of 128
# (masked n-tiles), 8 experts, 4 adapters (adapter 2 disabled).
BASE = dict(K=512, N=320, num_experts=8, max_loras=4, num_slices=2, top_k=2)

# path: what moelora's dispatcher must pick (the contract's rules).
# em_mode (sorted cases): "capacity" sizes the align buffers with
# moelora_align_capacity (no copy); "vllm" as vLLM's punica wrapper does
# (num_tokens*top_k + E*(BLOCK_M-1), not rounded: the drop-in packs it).
CASES = {
    "decode": dict(num_tokens=4, rank=16, sorted=False, path="small_batch"),
    "decode_r64": dict(num_tokens=8, rank=64, sorted=False, num_slices=1,
                       path="small_batch"),
    "naive_oneshot": dict(num_tokens=72, rank=32, sorted=False, path="one_shot"),
    "prefill": dict(num_tokens=160, rank=16, sorted=True, block_size_m=16,
                    em_mode="vllm", path="one_shot"),
    "prefill_b64": dict(num_tokens=160, rank=32, sorted=True, block_size_m=64,
                        em_mode="capacity", path="one_shot"),
    "r256": dict(num_tokens=40, rank=256, sorted=True, block_size_m=16,
                 em_mode="vllm", path="two_kernel"),
    "sharded": dict(num_tokens=64, rank=16, sorted=True, block_size_m=16,
                    em_mode="capacity", fully_sharded=True, path="two_kernel"),
    "sharded_naive": dict(num_tokens=6, rank=16, sorted=False, fully_sharded=True,
                          path="two_kernel"),
}

DTYPES = ("bf16", "fp16")
# (mul_routed_weight, add_inputs); fully_sharded needs add_inputs (as vLLM).
FLAGS = ((False, True), (True, True), (False, False), (True, False))

# Every sorted case's adapters all appear (segments cycle 0, 1, -1, 2, 3 first).
NUM_ACTIVE_LORAS = 4


def case(name):
    c = dict(BASE)
    c.update(CASES[name])
    c.setdefault("fully_sharded", False)
    c.setdefault("block_size_m", 16)
    return c


def flags_for(name):
    c = case(name)
    return [f for f in FLAGS if f[1] or not c["fully_sharded"]]


def round_up(v, m):
    return (v + m - 1) // m * m


def align_sizes(c):
    """(max_num_tokens_padded, max_num_m_blocks) of the align buffers."""
    numel = c["num_tokens"] * c["top_k"]
    bm, e = c["block_size_m"], c["num_experts"]
    cap = round_up(numel + e * (bm - 1), bm)
    if c.get("em_mode", "capacity") == "capacity":
        return cap, cap // bm
    mntp = numel + e * (bm - 1)
    if numel < e:
        mntp = numel * bm
    return mntp, (mntp + bm - 1) // bm


def fused_em(c):
    """The EM the drop-in hands the C ABI for this case."""
    if not c["sorted"]:
        return 0
    mntp, mnb = align_sizes(c)
    return min(mntp // c["block_size_m"], mnb) * c["block_size_m"]


def shape_call(name, dtype, mul_routed_weight, add_inputs):
    """moelora._lib.shape_args keywords of one fused call of the test."""
    c = case(name)
    return dict(num_tokens=c["num_tokens"], top_k=c["top_k"],
                num_experts=c["num_experts"], K=c["K"], N=c["N"], rank=c["rank"],
                num_slices=c["num_slices"], max_loras=c["max_loras"],
                num_active_loras=NUM_ACTIVE_LORAS, dtype=dtype, sorted=c["sorted"],
                EM=fused_em(c), block_size_m=c["block_size_m"],
                mul_routed_weight=mul_routed_weight, add_inputs=add_inputs,
                fully_sharded=c["fully_sharded"])


def all_shape_calls():
    calls = []
    for name in CASES:
        for dtype in DTYPES:
            for mrw, add in flags_for(name):
                calls.append(shape_call(name, dtype, mrw, add))
    return calls
