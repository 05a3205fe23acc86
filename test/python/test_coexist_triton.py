"""moelora's JIT beside Triton in one process (GPU; torch, triton and a
libmoelora.so with the generator).

A vLLM process holds Triton's LLVM (libtriton) and torch's libraries; the
self-contained libmoelora.so carries its own LLVM and MLIR, all of it local
to the library. In a child process with an empty kernel cache:
  1. Triton compiles and runs a kernel;
  2. moelora generates its kernels in-process and runs a sorted fused call,
     checked against the float64 reference;
  3. Triton compiles and runs a new kernel.
Also: the library exports no LLVM/MLIR symbol, and both LLVMs are mapped.

Runs under pytest, or standalone (`python3 test_coexist_triton.py --child`
is the child). MOELORA_TEST_INSTALLED=1: the installed moelora.
"""

import json
import os
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _child():
    import ctypes

    import torch
    import triton
    import triton.language as tl

    @triton.jit
    def scale_add(x_ptr, y_ptr, out_ptr, n, alpha, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m)
        y = tl.load(y_ptr + offs, mask=m)
        tl.store(out_ptr + offs, x * alpha + y, mask=m)

    def run_triton(block):
        n = 100_003
        x = torch.randn(n, device="cuda")
        y = torch.randn(n, device="cuda")
        out = torch.empty_like(x)
        scale_add[(triton.cdiv(n, block),)](x, y, out, n, 0.5, BLOCK=block)
        torch.cuda.synchronize()
        err = float((out - (x * 0.5 + y)).abs().max())
        assert err < 1e-5, f"triton BLOCK={block}: max error {err}"
        return err

    result = {}
    result["triton_before"] = run_triton(128)

    sys.path.insert(0, HERE)
    import test_dropin as D  # noqa: E402 (the drop-in suite's problems/reference)
    from moelora import _lib as L

    before = L.stats()
    p = D.make_problem("prefill", "bf16", mul_routed_weight=False, seed=11)
    out, out0, ref, ok = D.fused_against_reference(p)
    result["moelora_rel_l2"] = D.check_output(p, out, out0, ref, ok)
    after = L.stats()
    result["moelora_kernels_generated"] = after["jit_generations"] - before["jit_generations"]
    assert result["moelora_kernels_generated"] > 0, "nothing was generated in-process"

    result["triton_after"] = run_triton(256)  # a new specialisation: a new compile

    lib = ctypes.CDLL(L.library_path())
    for sym in ("LLVMInitializeNVPTXTarget", "_ZN4llvm11LLVMContextC1Ev",
                "mlirContextCreate"):
        assert not hasattr(lib, sym), f"libmoelora exports {sym}"
    maps = open("/proc/self/maps").read()
    result["libtriton_mapped"] = "libtriton" in maps
    result["libmoelora_mapped"] = os.path.basename(L.library_path()).split(".so")[0] in maps
    result["library"] = L.library_path()
    print("COEXIST " + json.dumps(result))


def test_triton_then_moelora_then_triton():
    pytest.importorskip("triton")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    env = dict(os.environ)
    env["MOELORA_CACHE_DIR"] = tempfile.mkdtemp(prefix="moelora-coexist-")
    env.pop("MOELORA_JIT", None)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"],
                          env=env, capture_output=True, text=True, timeout=600)
    sys.stdout.write(proc.stdout[-4000:])
    sys.stderr.write(proc.stderr[-4000:])
    assert proc.returncode == 0, "child failed"
    line = [l for l in proc.stdout.splitlines() if l.startswith("COEXIST ")][-1]
    result = json.loads(line[len("COEXIST "):])
    assert result["libtriton_mapped"], result
    assert result["moelora_kernels_generated"] > 0, result


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child()
    else:
        sys.exit(pytest.main([__file__, "-q", "-s"]))
