"""A tuned table's path choice end to end on the GPU (issue 13, item 6).

A "fused" entry with "use": "two_kernel" gives its bucket's one-shot calls
to the two-kernel path. In a child process whose MOELORA_TUNED_TABLE holds
such an entry for the problem's bucket (on this GPU's name), the plan must
say two_kernel, the drop-in call (which then needs a workspace) must match
the float64 reference, and repeated calls must give the same bits; the same
call in this process (no entry) stays one_shot and agrees with it to the
rounding of the two paths.
"""

import os
import sys

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dropin_cases as DC  # noqa: E402
import test_dropin as D  # noqa: E402

CASES = {
    "pc_sorted_r64": dict(num_tokens=64, rank=64, sorted=True, block_size_m=16,
                          K=1024, N=768),
    "pc_naive_r32": dict(num_tokens=72, rank=32, sorted=False, K=1024, N=768),
}
DC.CASES.update(CASES)


def _run(name):
    return D.run_checked(name, seed=99)


def _table(name):
    c = DC.case(name)
    entry = {"path": "fused", "dtype": "bf16", "rank": c["rank"], "K": c["K"],
             "N": c["N"], "num_slices": c["num_slices"], "sorted": c["sorted"],
             "max_pairs": c["num_tokens"] * c["top_k"], "use": "two_kernel"}
    return {"format": "moelora-tuned", "version": 1,
            "gpu": torch.cuda.get_device_name(), "entries": [entry]}


@pytest.mark.parametrize("name", list(CASES))
def test_fused_entry_routes_to_two_kernel(name):
    plan, rows, _ = _run(name)
    assert plan["path"] == "one_shot", plan  # the rules, no entry
    D.run_child_with_table(__file__, _table(name), rows, [name])


def _child(d, name):
    plan, rows, err = _run(name)
    assert plan["path"] == "two_kernel", plan
    assert plan["from_tuned_table"], plan
    assert plan["workspace_bytes"] > 0, plan
    one_shot = D.child_baseline(d)
    diff = float((rows - one_shot).norm() / one_shot.norm())
    assert diff < 1e-2, f"one-shot and two-kernel disagree: rel L2 {diff:.2e}"
    print(f"{name}: two_kernel via the tuned table, rel L2 {err:.2e} to float64, "
          f"{diff:.2e} to one_shot")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
    else:
        sys.exit(pytest.main([__file__, "-q"]))
