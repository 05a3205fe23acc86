"""The wgmma kernels end to end on the GPU, through a tuned table (issue 13).

In a child process whose MOELORA_TUNED_TABLE gives the problem's bucket a
one_shot entry with "wgmma": true (or routes it to the two-kernel path with a
two_kernel entry whose shrink is on wgmma), the plan's first kernel must be a
wgmma variant (cache key ";mma=wgmma;ptx=sm_90a"), generated here by the
library's JIT for sm_90a; the drop-in call must match the float64 reference
and repeated calls must give the same bits. The same call in this process (no
table entry: mma.sync) agrees with it to the rounding of fp32 accumulation in
another order. Skipped on GPUs other than sm_90 (wgmma is sm_90a only).
"""

import os
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)
if torch.cuda.get_device_capability() != (9, 0):
    pytest.skip("wgmma needs sm_90", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dropin_cases as DC  # noqa: E402
import test_dropin as D  # noqa: E402

# BLOCK_SIZE_M 64 (a warpgroup tile), K a multiple of 8, N with a masked tile.
CASES = {
    "wg_sorted_r16": dict(num_tokens=160, rank=16, sorted=True, block_size_m=64,
                          K=1024, N=776),
    "wg_sorted_r64_w2": dict(num_tokens=96, rank=64, sorted=True,
                             block_size_m=64, K=1536, N=1024, num_slices=1),
    "wg_two_kernel_r32": dict(num_tokens=96, rank=32, sorted=True,
                              block_size_m=64, K=1024, N=776),
}
DC.CASES.update(CASES)


def _run(name, mul_routed_weight):
    return D.run_checked(name, mul_routed_weight=mul_routed_weight, seed=7)


def _table(name):
    c = DC.case(name)
    bucket = {"dtype": "bf16", "rank": c["rank"], "K": c["K"], "N": c["N"],
              "num_slices": c["num_slices"], "sorted": True,
              "max_pairs": c["num_tokens"] * c["top_k"]}
    if "two_kernel" in name:
        entries = [dict(bucket, path="fused", use="two_kernel"),
                   dict(bucket, path="two_kernel", config={"wgmma": True})]
    else:
        entries = [dict(bucket, path="one_shot",
                        config={"wgmma": True, "num_warps": 4,
                                "BLOCK_SIZE_K": 64})]
    return {"format": "moelora-tuned", "version": 1,
            "gpu": torch.cuda.get_device_name(), "entries": entries}


@pytest.mark.parametrize("mul_routed_weight", [False, True])
@pytest.mark.parametrize("name", list(CASES))
def test_wgmma_through_the_tuned_table(name, mul_routed_weight):
    plan, rows, _ = _run(name, mul_routed_weight)
    assert "mma=wgmma" not in plan["launches"][0]["cache_key"], plan
    out = D.run_child_with_table(__file__, _table(name), rows,
                                 [name, int(mul_routed_weight)])
    print(out.strip())


def _child(d, name, mul_routed_weight):
    plan, rows, err = _run(name, mul_routed_weight)
    first = plan["launches"][0]["cache_key"]
    assert ";mma=wgmma;ptx=sm_90a" in first, plan
    assert plan["from_tuned_table"], plan
    want = "two_kernel" if "two_kernel" in name else "one_shot"
    assert plan["path"] == want, plan
    mma_sync = D.child_baseline(d)
    diff = float((rows - mma_sync).norm() / mma_sync.norm())
    assert diff < 1e-2, f"wgmma and mma.sync disagree: rel L2 {diff:.2e}"
    print(f"{name} mrw={int(mul_routed_weight)}: {plan['path']} on wgmma, "
          f"rel L2 {err:.2e} to float64, {diff:.2e} to mma.sync")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], bool(int(sys.argv[4])))
    else:
        sys.exit(pytest.main([__file__, "-q"]))
