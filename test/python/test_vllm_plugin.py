"""CPU tests of moelora's vLLM plugin (python/moelora/vllm_plugin.py) against
the stand-in vLLM of test/python/vllm_stub (vLLM's module paths, names and
signatures, placeholder kernels): registration replaces every entry point
(torch ops, module attributes, the punica wrapper's bindings,
vllm._custom_ops), logs one line, is idempotent and reversible;
MOELORA_VLLM=0, a changed signature or a non-CUDA platform leave vLLM alone
with one log line; the entry point loads through vLLM's plugin loader and
VLLM_PLUGINS; importing the plugin loads no library and needs no torch or
GPU. The torch.library path runs against a small model of torch's
operator registry (both the torch that has Library.impl(allow_override=)
and the one that has not); the real one runs in test_dropin.py with
MOELORA_DROPIN_VIA=vllm on a GPU.

No torch, no GPU, no libmoelora needed. Each case runs in a child process
(fresh modules, plugin state and environment). Runs under pytest or
standalone: `python3 test/python/test_vllm_plugin.py`. With
MOELORA_TEST_INSTALLED=1 it tests the moelora found on sys.path (an
installed wheel) instead of this checkout's python/.
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
STUB = os.path.join(HERE, "vllm_stub")
STUB_VERSION = "0.19.2.dev0+moelora.stub"

_ENV_KEYS = ("MOELORA_VLLM", "VLLM_PLUGINS", "VLLM_STUB_SIGNATURES", "VLLM_STUB_PLATFORM")


def _run(case, **env):
    e = {k: v for k, v in os.environ.items() if k not in _ENV_KEYS}
    e.update(env)
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", case],
                       env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=300)
    assert r.returncode == 0, f"case {case} ({env}): exit {r.returncode}\n{r.stdout}"
    return r.stdout


# ---------------------------------------------------------------------------
# Tests (parent side)
# ---------------------------------------------------------------------------

def test_import_loads_nothing():
    _run("import_loads_nothing")


def test_replaces_every_entry_point():
    _run("replaces_every_entry_point")


def test_bindings_imported_after_registration():
    _run("late_import")


def test_disabled_by_env():
    for value in ("0", "off"):
        _run("disabled", MOELORA_VLLM=value)


def test_changed_signatures_keep_vllm_kernels():
    _run("mismatch_2025", VLLM_STUB_SIGNATURES="2025")


def test_one_changed_op_keeps_all_vllm_kernels():
    _run("mismatch_one_op", VLLM_STUB_SIGNATURES="expand_renamed")


def test_extra_defaulted_parameter_is_compatible():
    _run("extra_param", VLLM_STUB_SIGNATURES="align_no_expert_map")


def test_not_cuda_platform():
    _run("cpu_platform", VLLM_STUB_PLATFORM="cpu")


def test_entry_point_through_vllm_plugin_loader():
    _run("entry_point", EXPECT="replaced")
    _run("entry_point", EXPECT="replaced", VLLM_PLUGINS="other,moelora")
    _run("entry_point", EXPECT="not registered", VLLM_PLUGINS="other")


def test_torch_library_override():
    _run("torch_library", FAKE_TORCH="allow_override")
    _run("torch_library", FAKE_TORCH="legacy")


def test_torch_library_failure_undoes_everything():
    _run("torch_library_failure", FAKE_TORCH="legacy")


# ---------------------------------------------------------------------------
# The child
# ---------------------------------------------------------------------------

INSTALLED = os.environ.get("MOELORA_TEST_INSTALLED") == "1"


def _setup(block_torch=True):
    sys.path.insert(0, STUB)
    if not INSTALLED:
        sys.path.insert(0, os.path.join(REPO, "python"))
    if block_torch:
        sys.modules["torch"] = None  # `import torch` raises ImportError


class _Records:
    """The plugin's log records, on its logger."""

    def __init__(self):
        import logging

        class H(logging.Handler):
            def emit(h, record):
                self.records.append(record)

        self.records = []
        self.logging = logging
        lg = logging.getLogger("vllm.moelora")
        lg.addHandler(H())
        lg.setLevel(logging.DEBUG)
        lg.propagate = False

    def at(self, level):
        return [r.getMessage() for r in self.records if r.levelno == getattr(self.logging, level)]

    def all(self):
        return [f"{r.levelname}: {r.getMessage()}" for r in self.records]


def _library_loaded():
    with open("/proc/self/maps") as f:
        if "libmoelora" in f.read():
            return True
    L = sys.modules.get("moelora._lib")
    return L is not None and L.__dict__.get("_lib") is not None


def _vllm_objects():
    """Every binding the plugin may change, as now bound."""
    import vllm._custom_ops as C
    import vllm.lora.ops.triton_ops as T
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    import vllm.lora.punica_wrapper.punica_gpu as P
    out = {}
    for name in ("fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand"):
        out[f"F.{name}"] = getattr(F, name)
        out[f"T.{name}"] = getattr(T, name)
    out["P.fused_moe_lora"] = P.fused_moe_lora
    out["C.moe_lora_align_block_size"] = C.moe_lora_align_block_size
    return out


def _call_through_punica():
    """add_lora_fused_moe of the stand-in PunicaWrapperGPU, with placeholder
    arguments: returns the exception it raised."""
    from vllm.lora.punica_wrapper.punica_gpu import PunicaWrapperGPU

    class X:
        def size(self, dim):
            return 4

    w = PunicaWrapperGPU(64, 8, "cuda:0", max_loras=4)
    w.update_metadata([0, 1, -1, 2], [0, 1, 2, -1], 3)
    try:
        w.add_lora_fused_moe(X(), X(), [X()], [X()], X(), None, X(), None, 16, 2, {}, {}, X())
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("add_lora_fused_moe returned")


def _check_untouched(before, rec, F):
    after = _vllm_objects()
    assert after == before, f"bindings changed: {after} vs {before}"
    assert F.fused_moe_lora is F._fused_moe_lora
    import vllm._stub as S
    if S.SIGNATURES == "current":
        e = _call_through_punica()
    else:  # the stand-in's punica wrapper calls with today's arguments
        import inspect

        import vllm.lora.punica_wrapper.punica_gpu as P
        params = inspect.signature(P.fused_moe_lora).parameters.values()
        try:
            P.fused_moe_lora(*[None for p in params if p.default is p.empty])
        except Exception as x:  # noqa: BLE001
            e = x
    assert isinstance(e, S.StubKernelCalled), repr(e)
    assert S.CALLS == ["fused_moe_lora"], S.CALLS


def case_import_loads_nothing():
    _setup()
    import moelora.vllm_plugin as VP
    source = os.path.normpath(os.path.join(REPO, "python"))
    assert VP.__file__.startswith(source) != INSTALLED, f"tested {VP.__file__}"
    assert "vllm" not in sys.modules, "importing the plugin imported vLLM"
    assert sys.modules.get("torch", 0) is None, "importing the plugin imported torch"
    assert not _library_loaded(), "importing the plugin loaded libmoelora"
    assert VP.status()["state"] == "not registered"
    st = VP.register()
    assert st["state"] == "replaced", st
    assert not _library_loaded(), "register() loaded libmoelora"
    assert sys.modules.get("torch", 0) is None


def case_replaces_every_entry_point():
    _setup()
    rec = _Records()
    import vllm.lora.punica_wrapper.punica_gpu as P  # binds before register()
    import moelora.ops as M
    import moelora.vllm_plugin as VP
    import vllm._custom_ops as C
    import vllm._stub as S
    import vllm.lora.ops.triton_ops as T
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    before = _vllm_objects()
    st = VP.register()
    assert st["state"] == "replaced", st
    assert st["vllm_version"] == STUB_VERSION, st
    for name in ("fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand"):
        ours = getattr(M, name)
        assert getattr(F, name) is ours, name
        assert getattr(T, name) is ours, name
        assert getattr(F, "_" + name) is not ours  # vLLM's own function stays
    assert P.fused_moe_lora is M.fused_moe_lora
    assert C.moe_lora_align_block_size is M.moe_lora_align_block_size
    assert P.ops.moe_lora_align_block_size is M.moe_lora_align_block_size
    want = {f"vllm.lora.ops.triton_ops.fused_moe_lora_op.{n}" for n in
            ("fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand")}
    want |= {f"vllm.lora.ops.triton_ops.{n}" for n in
             ("fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand")}
    want |= {"vllm.lora.punica_wrapper.punica_gpu.fused_moe_lora",
             "vllm._custom_ops.moe_lora_align_block_size"}
    assert set(st["bindings"]) == want, st["bindings"]
    assert set(st["replaced"]) == want and st["torch_ops"] == [] and st["routed"] == [], st
    # The punica wrapper's call now runs moelora's function (which wants
    # torch: none here), not vLLM's kernel.
    e = _call_through_punica()
    assert isinstance(e, ImportError) and "moelora.ops needs torch" in str(e), repr(e)
    assert S.CALLS == [], S.CALLS
    # One log line, naming what was replaced and the vLLM version.
    assert rec.at("WARNING") == [], rec.all()
    info = rec.at("INFO")
    assert len(info) == 1, rec.all()
    for word in (STUB_VERSION, "fused_moe_lora_op.fused_moe_lora",
                 "fused_moe_lora_shrink", "fused_moe_lora_expand",
                 "vllm._custom_ops.moe_lora_align_block_size"):
        assert word in info[0], (word, info[0])
    assert st["message"] == info[0]
    # Idempotent: a second call (vLLM may call plugins again) changes
    # nothing and logs nothing.
    now = _vllm_objects()
    st2 = VP.register()
    assert st2 == st, (st2, st)
    assert _vllm_objects() == now
    assert len(rec.records) == 1, rec.all()
    # unregister() puts vLLM's kernels back; register() works again.
    VP.unregister()
    assert VP.status()["state"] == "not registered"
    _check_untouched(before, rec, F)
    assert VP.register()["state"] == "replaced"
    assert P.fused_moe_lora is M.fused_moe_lora
    assert len(rec.at("INFO")) == 2


def case_late_import():
    _setup()
    import moelora.ops as M
    import moelora.vllm_plugin as VP
    assert VP.register()["state"] == "replaced"
    assert "vllm.lora.punica_wrapper.punica_gpu" not in sys.modules
    import vllm.lora.punica_wrapper.punica_gpu as P
    from vllm._custom_ops import moe_lora_align_block_size
    assert P.fused_moe_lora is M.fused_moe_lora
    assert P.ops.moe_lora_align_block_size is M.moe_lora_align_block_size
    assert moe_lora_align_block_size is M.moe_lora_align_block_size


def case_disabled():
    _setup()
    rec = _Records()
    import moelora.vllm_plugin as VP
    st = VP.register()
    assert st["state"] == "disabled", st
    assert "vllm.lora.ops.triton_ops" not in sys.modules, "disabled, yet imported vLLM's ops"
    VP.register()
    assert rec.at("WARNING") == [] and len(rec.at("INFO")) == 1, rec.all()
    assert "MOELORA_VLLM=0" in rec.at("INFO")[0]
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    before = _vllm_objects()
    assert before["F.fused_moe_lora"] is F._fused_moe_lora
    _check_untouched(before, rec, F)
    assert st["replaced"] == [] and st["bindings"] == []


def _mismatch(expect_in, expect_not_in=()):
    _setup()
    rec = _Records()
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    before = _vllm_objects()
    import moelora.vllm_plugin as VP
    st = VP.register()
    assert st["state"] == "mismatch", st
    VP.register()
    VP.register()
    warnings = rec.at("WARNING")
    assert len(warnings) == 1 and rec.at("INFO") == [], rec.all()
    for word in (STUB_VERSION,) + tuple(expect_in):
        assert word in warnings[0], (word, warnings[0])
    for word in expect_not_in:
        assert word not in warnings[0], (word, warnings[0])
    assert st["replaced"] == [] and st["bindings"] == [], st
    _check_untouched(before, rec, F)


def case_mismatch_2025():
    _mismatch(["fused_moe_lora:", "fused_moe_lora_shrink:", "fused_moe_lora_expand:",
               "token_lora_mapping"])


def case_mismatch_one_op():
    _mismatch(["fused_moe_lora_expand:", "'offset'", "'output_offset'"],
              ["fused_moe_lora:", "fused_moe_lora_shrink:", "moe_lora_align_block_size:"])


def case_extra_param():
    _setup()
    import inspect

    import moelora.ops as M
    import moelora.vllm_plugin as VP
    import vllm._custom_ops as C
    assert "expert_map" not in inspect.signature(C.moe_lora_align_block_size).parameters
    st = VP.register()
    assert st["state"] == "replaced", st
    assert C.moe_lora_align_block_size is M.moe_lora_align_block_size


def case_cpu_platform():
    _setup()
    rec = _Records()
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    before = _vllm_objects()
    import moelora.vllm_plugin as VP
    st = VP.register()
    VP.register()
    assert st["state"] == "unavailable", st
    assert len(rec.records) == 1 and "not a CUDA platform" in rec.all()[0], rec.all()
    _check_untouched(before, rec, F)


def case_entry_point():
    _setup()
    import moelora.vllm_plugin as VP
    # A distribution on sys.path declaring the entry point exactly as
    # moelora's pyproject does.
    site = tempfile.mkdtemp(prefix="moelora-ep-")
    info = os.path.join(site, "moelora_entry_point_test-0.0.0.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write("Metadata-Version: 2.1\nName: moelora-entry-point-test\nVersion: 0.0.0\n")
    with open(os.path.join(info, "entry_points.txt"), "w") as f:
        f.write("[vllm.general_plugins]\n" + VP.ENTRY_POINT.replace('"', "") + "\n")
    sys.path.insert(0, site)
    from vllm.plugins import load_general_plugins
    load_general_plugins()
    load_general_plugins()
    want = os.environ["EXPECT"]
    assert VP.status()["state"] == want, (VP.status(), want)


# -- a model of torch's operator registry ------------------------------------

def _fake_torch(variant):
    """torch, torch.library and torch.ops as far as vLLM's custom ops and the
    plugin use them: Library(ns, kind).define/impl/_register_fake/_destroy,
    torch.library._impls (the keys a Python registration claims; impl()
    refuses a claimed key unless allow_override=True, on the torch that has
    the flag), per-key kernel stacks (a later registration wins, with the
    dispatcher's "Overriding a previously registered kernel" warning; a
    destroyed library's kernels go), torch.ops.<ns>.<op> packets that call
    the CUDA kernel, infer_schema returning the parameter names."""
    import types
    import warnings

    torch = types.ModuleType("torch")
    library = types.ModuleType("torch.library")
    torch.library = library
    torch.Tensor = type("Tensor", (), {})
    torch.device = type("device", (), {})
    library._impls = set()
    kernels = {}  # "ns::op" -> {key: [fn, ...]}
    fakes = {}
    schemas = {}
    torch._kernels, torch._fakes = kernels, fakes

    class Arg:
        def __init__(self, name):
            self.name = name

    class OpOverload:
        def __init__(self, qualname):
            self._qualname = qualname
            self._schema = types.SimpleNamespace(
                name=qualname, overload_name="",
                arguments=[Arg(n) for n in schemas[qualname]])

        def __call__(self, *args, **kwargs):
            return kernels[self._qualname]["CUDA"][-1](*args, **kwargs)

    class OpOverloadPacket(OpOverload):
        def __init__(self, qualname):
            super().__init__(qualname)
            self.default = OpOverload(qualname)

    class Namespace:
        def __init__(self, ns):
            self._ns, self._packets = ns, {}

        def __getattr__(self, name):
            q = f"{self._ns}::{name}"
            if q not in schemas:
                raise AttributeError(f"'_OpNamespace' '{self._ns}' object has no attribute '{name}'")
            return self._packets.setdefault(name, OpOverloadPacket(q))

    class Ops:
        def __getattr__(self, ns):
            setattr(self, ns, Namespace(ns))
            return getattr(self, ns)

    torch.ops = Ops()

    def infer_schema(fn, mutates_args=()):
        import inspect
        return "(" + ", ".join(inspect.signature(fn).parameters) + ") -> ()"

    class Library:
        def __init__(self, ns, kind, dispatch_key=""):
            self.ns, self.kind = ns, kind
            self._op_impls, self._handles = set(), []

        def define(self, schema, alias_analysis="", *, tags=()):
            name, rest = schema.split("(", 1)
            schemas[f"{self.ns}::{name}"] = [a for a in rest.split(")")[0].split(", ") if a]
            return name

        def _impl(self, op_name, fn, dispatch_key="", *, with_keyset=False,
                  allow_override=False):
            key = f"{self.ns}/{op_name}/{dispatch_key}"
            if key in library._impls and not allow_override:
                raise RuntimeError(
                    "This is not allowed since there's already a kernel registered from "
                    f"python overriding {op_name}'s behavior for {dispatch_key} dispatch "
                    f"key and {self.ns} namespace.")
            if variant == "broken" and op_name == "fused_moe_lora_shrink" and self.kind == "IMPL":
                raise RuntimeError("registration refused")
            stack = kernels.setdefault(f"{self.ns}::{op_name}", {}).setdefault(dispatch_key, [])
            if stack:
                warnings.warn("Warning only once for all operators,  other operators may "
                              "also be overridden.\n  Overriding a previously registered "
                              "kernel for the same operator and the same dispatch key")
            stack.append(fn)
            self._handles.append((stack, fn))
            library._impls.add(key)
            self._op_impls.add(key)

        if variant == "allow_override":
            impl = _impl
        else:
            def impl(self, op_name, fn, dispatch_key="", *, with_keyset=False):
                return self._impl(op_name, fn, dispatch_key, with_keyset=with_keyset)

        def _register_fake(self, op_name, fn):
            fakes[f"{self.ns}::{op_name}"] = fn

        def _destroy(self):
            for stack, fn in self._handles:
                stack.remove(fn)
            self._handles = []
            library._impls.difference_update(self._op_impls)

    library.Library = Library
    library.infer_schema = infer_schema
    sys.modules["torch"] = torch
    sys.modules["torch.library"] = library
    return torch


OPS3 = ("fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand")


def case_torch_library():
    import warnings
    variant = os.environ["FAKE_TORCH"]
    _setup(block_torch=False)
    torch = _fake_torch("broken" if variant == "broken" else variant)
    rec = _Records()
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    import vllm.lora.punica_wrapper.punica_gpu as P
    import moelora.ops as M
    import moelora.vllm_plugin as VP
    import vllm._custom_ops as C
    import vllm.lora.ops.triton_ops as T
    K = torch._kernels
    for name in OPS3:
        assert getattr(F, name) is getattr(torch.ops.vllm, name), name  # vLLM binds the op
        assert K[f"vllm::{name}"]["CUDA"] == [getattr(F, "_" + name)]
    fakes = dict(torch._fakes)
    impls = set(torch.library._impls)
    before = _vllm_objects()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        st = VP.register()
    assert st["state"] == "replaced", st
    leaked = [str(w.message) for w in caught]
    assert not any("Overriding" in m for m in leaked), leaked
    assert st["torch_ops"] == list(OPS3), st
    for name in OPS3:
        assert K[f"vllm::{name}"]["CUDA"][-1] is getattr(M, name), name
        # The Python names are the ops themselves: untouched, and they now
        # reach moelora through the dispatcher.
        assert getattr(F, name) is getattr(torch.ops.vllm, name)
        assert getattr(T, name) is getattr(torch.ops.vllm, name)
    assert P.fused_moe_lora is torch.ops.vllm.fused_moe_lora
    assert torch._fakes == fakes, "vLLM's fake impls changed"
    assert C.moe_lora_align_block_size is M.moe_lora_align_block_size
    assert st["bindings"] == ["vllm._custom_ops.moe_lora_align_block_size"], st
    assert "vllm.lora.punica_wrapper.punica_gpu.fused_moe_lora" in st["routed"], st
    assert len(st["routed"]) == 7, st["routed"]
    info = rec.at("INFO")
    assert len(info) == 1 and rec.at("WARNING") == [], rec.all()
    assert "torch.ops.vllm.{fused_moe_lora,fused_moe_lora_shrink,fused_moe_lora_expand}" \
        in info[0] and "CUDA kernels" in info[0], info[0]
    assert VP.register() == st and len(rec.records) == 1
    VP.unregister()
    for name in OPS3:
        assert K[f"vllm::{name}"]["CUDA"] == [getattr(F, "_" + name)], name
    assert torch.library._impls == impls, (torch.library._impls, impls)
    assert _vllm_objects() == before
    assert VP.register()["state"] == "replaced"
    assert K["vllm::fused_moe_lora"]["CUDA"][-1] is M.fused_moe_lora


def case_torch_library_failure():
    _setup(block_torch=False)
    torch = _fake_torch("broken")
    rec = _Records()
    import vllm.lora.ops.triton_ops.fused_moe_lora_op as F
    import moelora.vllm_plugin as VP
    before = _vllm_objects()
    impls = set(torch.library._impls)
    st = VP.register()
    assert st["state"] == "failed", st
    assert VP.register()["state"] == "failed"
    warnings = rec.at("WARNING")
    assert len(warnings) == 1 and "registration refused" in warnings[0], rec.all()
    for name in OPS3:  # fused_moe_lora's override (done first) is undone
        assert torch._kernels[f"vllm::{name}"]["CUDA"] == [getattr(F, "_" + name)], name
    assert torch.library._impls == impls
    assert _vllm_objects() == before
    assert st["replaced"] == [] and st["torch_ops"] == [] and st["bindings"] == [], st


def _child(case):
    import traceback
    try:
        globals()["case_" + case]()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        sys.exit(1)
    print(f"ok {case}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        _child(sys.argv[sys.argv.index("--child") + 1])
        sys.exit(0)
    failed = 0
    for name, fn in sorted(globals().items()):
        if not name.startswith("test_") or not callable(fn):
            continue
        try:
            fn()
            print(f"PASS {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len([n for n in globals() if n.startswith('test_')]) - failed} passed, "
          f"{failed} failed")
    sys.exit(1 if failed else 0)
