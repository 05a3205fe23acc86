"""CPU smoke test of the moelora Python package: library loading, ABI version,
runtime creation without a GPU, planning with fake pointers, and invalid
arguments raising ValueError with the argument's name.

Runs under pytest or standalone: `python3 test/python/test_smoke_cpu.py`.
Set MOELORA_LIB to the library (libmoelora.so or libmoelora_rt.so); without it
the build directory's is used, and the tests skip when none is found.
"""

import ctypes
import os
import subprocess
import sys
import tempfile

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "python"))

# Planning may generate kernels (JIT library): keep them out of the user's cache.
os.environ.setdefault("MOELORA_CACHE_DIR", tempfile.mkdtemp(prefix="moelora-smoke-"))

try:
    import pytest
except ImportError:  # standalone run
    pytest = None


class _Skip(Exception):
    pass


def _skip(msg):
    if pytest is not None:
        pytest.skip(msg)
    raise _Skip(msg)


def _raises(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as e:
        return e
    raise AssertionError(f"{fn.__name__} did not raise {exc_type.__name__}")


def _L():
    from moelora import _lib
    try:
        _lib.load_library()
    except OSError as e:
        _skip(f"libmoelora not available: {e}")
    return _lib


DECODE = dict(num_tokens=4, top_k=2, num_experts=8, K=256, N=512, rank=16,
              num_slices=2, max_loras=4)


def test_import_without_torch():
    code = ("import sys; sys.modules['torch'] = None; "
            f"sys.path.insert(0, {os.path.join(REPO, 'python')!r}); "
            "import moelora; assert callable(moelora.fused_moe_lora); "
            "assert moelora.ABI_VERSION == 1")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_library_loads():
    L = _L()
    path = L.library_path()
    assert os.path.basename(path).startswith("libmoelora"), path


def test_abi_version():
    L = _L()
    assert L.abi_version() == 1
    import moelora
    assert moelora.abi_version() == 1


def test_struct_layout_lp64():
    from moelora import _lib as L
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        _skip("layout numbers are for LP64")
    # sizeof() of the C structs on x86-64/aarch64 Linux (moelora.h, ABI 1).
    assert ctypes.sizeof(L.moelora_runtime_options) == 48
    assert ctypes.sizeof(L.moelora_fused_args) == 280
    assert L.moelora_fused_args.workspace.offset == 264
    # Appended after the first release (a smaller struct_size reads NULL).
    assert L.moelora_fused_args.lora_a_host_ptrs.offset == 272
    assert ctypes.sizeof(L.moelora_kernel_launch) == 436
    assert ctypes.sizeof(L.moelora_plan) == 904
    assert L.moelora_plan.workspace_bytes.offset == 888
    assert ctypes.sizeof(L.moelora_stats) == 56
    assert ctypes.sizeof(L.moelora_align_args) == 72


def test_runtime_without_gpu():
    L = _L()
    rt = L.get_runtime()
    assert rt  # non-NULL handle, with or without a GPU
    assert L.get_runtime() is rt  # process-wide
    s = L.stats()
    assert set(s) >= {"memory_hits", "disk_hits", "bundle_hits", "jit_generations",
                      "misses", "jit_ms_total", "launches"}


def test_align_capacity():
    L = _L()
    # round_up(num_tokens*top_k + E*(BM-1), BM)
    assert L.align_capacity(5, 2, 8, 16) == 144
    assert L.align_capacity(100, 6, 64, 16) == 1568


def test_plan_paths():
    L = _L()
    p = L.plan(**DECODE)
    assert p["path"] == "small_batch", p
    assert p["num_launches"] == 1 and p["launches"][0]["cache_key"].startswith("small_batch;")
    assert p["tiles_per_item"] >= 1
    p = L.plan(**dict(DECODE, num_tokens=512), sorted=True, block_size_m=64)
    assert p["path"] == "one_shot", p
    assert p["launches"][0]["grid"][2] == DECODE["max_loras"]
    p = L.plan(**dict(DECODE, rank=256), sorted=True)
    assert p["path"] == "two_kernel", p
    assert p["num_launches"] == 2
    assert p["workspace_bytes"] == 2 * 4 * 2 * 256 * 2  # slices*pairs*R*sizeof(T)
    p = L.plan(**DECODE, fully_sharded=True)
    assert p["path"] == "two_kernel", p
    p = L.plan(**dict(DECODE, num_tokens=0))
    assert p["path"] == "none" and p["num_launches"] == 0


def test_empty_work_plans_nothing():
    L = _L()
    # No tokens on every path; no active adapter on the sorted one; NULL
    # tensors throughout (an empty torch tensor's data_ptr() is 0).
    for over, kw in ((dict(num_tokens=0), {}),
                     (dict(num_tokens=0), dict(sorted=True, block_size_m=16)),
                     (dict(num_tokens=0, rank=256), dict(sorted=True)),
                     (dict(num_tokens=0), dict(fully_sharded=True)),
                     (dict(num_active_loras=0), dict(sorted=True)),
                     (dict(num_active_loras=0, rank=256), {})):
        a = L.shape_args(**dict(DECODE, **over), **kw)
        a.x = a.lora_a_ptrs = a.lora_b_ptrs = a.output = None
        a.topk_ids = a.token_lora_mapping = a.lora_ids = a.adapter_enabled = None
        p = L.plan_args(a)
        assert p["path"] == "none" and p["num_launches"] == 0, (over, kw, p)
        assert L.workspace_bytes(a) == 0, (over, kw)
        assert L.last_error() == "", L.last_error()
        L.warmup([a])


def test_degenerate_shapes_plan():
    L = _L()
    for over in (dict(max_loras=1, num_active_loras=1), dict(top_k=1), dict(K=16),
                 dict(N=8), dict(num_experts=1), dict(num_slices=1, N=2),
                 dict(max_loras=1, num_active_loras=2, top_k=1, K=8, N=8,
                      num_experts=1, num_slices=1, rank=2)):
        for kw in ({}, dict(sorted=True, block_size_m=16), dict(fully_sharded=True),
                   dict(num_tokens=256, sorted=True, block_size_m=64)):
            shape = dict(DECODE, **over)
            shape.update(kw)
            p = L.plan(**shape)
            assert p["path"] != "none" and p["num_launches"] >= 1, (shape, p)


def test_align_capacity_overflow_is_zero():
    L = _L()
    assert L.align_capacity(300000000, 8, 64, 16) == 0
    assert L.align_capacity(0, 8, 64, 16) == 64 * 15


def test_workspace_bytes():
    L = _L()
    a = L.shape_args(**dict(DECODE, rank=256))
    assert L.workspace_bytes(a) == 2 * 8 * 256 * 2


def test_invalid_argument_raises_value_error():
    L = _L()
    e = _raises(ValueError, L.plan, **DECODE, sorted=True, block_size_m=24)
    assert "block_size_m" in str(e), e
    e = _raises(ValueError, L.plan, **dict(DECODE, K=255))
    assert "K = 255" in str(e), e
    e = _raises(ValueError, L.plan, **dict(DECODE, rank=0))
    assert "rank" in str(e), e
    a = L.shape_args(**DECODE)
    a.x = None
    e = _raises(ValueError, L.plan_args, a)
    assert str(e).endswith("x: NULL pointer"), e
    a = L.shape_args(**DECODE)
    a.output_stride[0] = 7
    e = _raises(ValueError, L.plan_args, a)
    assert "output_stride" in str(e), e
    e = _raises(ValueError, L.dtype_code, "fp32")
    assert "dtype" in str(e)


def test_warmup_rejects_bad_shape():
    L = _L()
    e = _raises(ValueError, L.warmup, [dict(DECODE, num_experts=0)])
    assert "calls[0]" in str(e) and "num_experts" in str(e), e


if __name__ == "__main__":
    failed = 0
    for name, fn in sorted(globals().items()):
        if not name.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
            print(f"PASS {name}")
        except _Skip as e:
            print(f"SKIP {name}: {e}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    sys.exit(1 if failed else 0)
