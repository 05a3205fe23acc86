"""moelora as a vLLM general plugin: vLLM's MoE-LoRA ops run on moelora.

vLLM calls every `vllm.general_plugins` entry point in each process it
starts (API server, engine core, every worker), possibly more than once;
`VLLM_PLUGINS` (comma-separated names) selects which ones. moelora's wheel
declares

    [project.entry-points."vllm.general_plugins"]
    moelora = "moelora.vllm_plugin:register"

`register()` then switches these entry points of vLLM to moelora:

  * the torch custom ops `torch.ops.vllm.fused_moe_lora`,
    `torch.ops.vllm.fused_moe_lora_shrink` and
    `torch.ops.vllm.fused_moe_lora_expand` (vLLM defines them in
    vllm/lora/ops/triton_ops/fused_moe_lora_op.py with
    vllm.utils.torch_utils.direct_register_custom_op, kernel on the
    platform's dispatch key "CUDA", plus a fake impl): moelora's functions
    become their CUDA kernels (a torch.library.Library("vllm", "IMPL")
    registration that this module keeps alive). vLLM's fake impls stay, so
    torch.compile'd graphs still trace the ops and now call moelora. The
    Python names vLLM binds them to (`fused_moe_lora_op.fused_moe_lora`, the
    re-exports of vllm.lora.ops.triton_ops, the `from ... import
    fused_moe_lora` of vllm/lora/punica_wrapper/punica_gpu.py and others)
    are these same op objects, so they reach moelora with nothing rebound;
  * where vLLM has no torch op for them (its `except AttributeError`
    fallback, or a torch without torch.library) those names are plain
    Python functions: every such binding in an imported `vllm` module is
    rebound to moelora's function (later `from ... import`s then get
    moelora's from the rebound modules);
  * `vllm._custom_ops.moe_lora_align_block_size` (punica_gpu calls it as
    `ops.moe_lora_align_block_size`) and any other `vllm` module binding of
    that function: rebound to moelora's;
  * the collectives of fully_sharded calls: moelora.set_tensor_parallel()
    gets vLLM's (`vllm.distributed`'s tensor_model_parallel_all_reduce and
    tensor_model_parallel_all_gather, and its tensor-parallel world size,
    read at each call: 1 until vLLM's model-parallel groups exist), as
    vLLM's own _fused_moe_lora calls them between its shrink and expand.
    Without `vllm.distributed` the ops are still replaced and fully_sharded
    calls run as one rank (the log line says so). A `with
    moelora.tensor_parallel(...)` block still overrides them.

Signatures are checked first with inspect.signature (the torch op's schema
where vLLM's Python function cannot be found): vLLM's parameter names, in
order, must be moelora's; moelora may accept extra trailing parameters that
have defaults, and a parameter with a default in vLLM must have the same
default in moelora. All or nothing: if any of the four differs, one warning
names each op that differs and how, and vLLM keeps all of its kernels
(fused_moe_lora_shrink/expand must change together anyway: they share the
intermediate's layout).

`MOELORA_VLLM=0` turns the plugin off (one info line). Each process logs
one line, on the logger "vllm.moelora" (a child of vLLM's "vllm" logger, so
vLLM's handler, format and VLLM_LOGGING_LEVEL apply), naming what was
replaced and the vLLM version, or why nothing was.

Importing this module imports neither torch nor vLLM and loads no library;
`register()` imports vLLM's LoRA op modules (which vLLM imports anyway when
LoRA is on) but neither initialises CUDA nor loads libmoelora: a missing
library or GPU shows up as an error at the first call of an op.
`status()` says what was replaced; `unregister()` puts vLLM's kernels,
bindings and the previous tensor-parallel setting back (tests).
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["register", "status", "unregister", "ENTRY_POINT", "LOGGER_NAME"]

ENTRY_POINT = 'moelora = "moelora.vllm_plugin:register"'
ENV_SWITCH = "MOELORA_VLLM"
LOGGER_NAME = "vllm.moelora"

TORCH_NAMESPACE = "vllm"
OP_MODULE = "vllm.lora.ops.triton_ops.fused_moe_lora_op"
OPS_PACKAGE = "vllm.lora.ops.triton_ops"
CUSTOM_OPS = "vllm._custom_ops"
TORCH_OPS = ("fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand")
ALIGN = "moe_lora_align_block_size"
TP_MODULE = "vllm.distributed"
TP_FUNCTIONS = ("get_tensor_model_parallel_world_size",
                "tensor_model_parallel_all_reduce", "tensor_model_parallel_all_gather")

_log = logging.getLogger(LOGGER_NAME)
_lock = threading.RLock()

_NO_DEFAULT = object()  # parameter without a default
_UNKNOWN = object()  # default not known (from a schema)


def _fresh_state() -> Dict[str, Any]:
    return {
        "state": "not registered",  # replaced | disabled | mismatch | unavailable | failed
        "vllm_version": None,
        "replaced": [],  # entry points that now run moelora
        "torch_ops": [],  # torch.ops.vllm.<op> whose kernel is moelora's
        "bindings": [],  # "module.attr" rebound to moelora's functions
        "routed": [],  # "module.attr" reaching moelora through a torch op
        "tensor_parallel": None,  # whose collectives fully_sharded calls use
        "message": "",
        # private: what unregister() restores
        "_library": None,
        "_claimed": [],  # torch.library._impls keys that were set before
        "_restore": [],  # (module, attr, original, replacement)
        "_tp_installed": None,  # the moelora.TensorParallel set by register()
        "_tp_previous": None,  # the setting it replaced
    }


_state = _fresh_state()


def status() -> Dict[str, Any]:
    """What register() did in this process: state ("not registered",
    "replaced", "disabled", "mismatch", "unavailable", "failed"),
    vllm_version, replaced (the entry points now running moelora),
    torch_ops, bindings (module attributes rebound), routed (module
    attributes reaching moelora through a torch op), tensor_parallel (the
    module whose collectives fully_sharded calls use, or None) and message
    (the log line)."""
    with _lock:
        return {k: (list(v) if isinstance(v, list) else v)
                for k, v in _state.items() if not k.startswith("_")}


def _disabled_by_env() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "no", "off")


def register() -> Dict[str, Any]:
    """vLLM's entry point (idempotent: the first call in a process decides,
    later calls return status()). Never raises: anything unexpected leaves
    vLLM's kernels in place with one warning."""
    with _lock:
        if _state["state"] != "not registered":
            return status()
        try:
            _register_locked()
        except Exception as e:  # noqa: BLE001 - a plugin must not stop vLLM
            _undo_locked()
            _finish("failed", logging.WARNING,
                    f"moelora: could not switch vLLM's MoE-LoRA ops to moelora "
                    f"({type(e).__name__}: {e}); vLLM keeps its own kernels")
        return status()


def unregister() -> None:
    """Puts vLLM's kernels and bindings back and forgets the registration
    (a later register() starts over). For tests."""
    with _lock:
        _undo_locked()
        _state.clear()
        _state.update(_fresh_state())


def _finish(state: str, level: int, message: str) -> None:
    _state["state"] = state
    _state["message"] = message
    _log.log(level, "%s", message)


# ---------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------

def _register_locked() -> None:
    if _disabled_by_env():
        _finish("disabled", logging.INFO,
                f"moelora: {ENV_SWITCH}=0: vLLM keeps its own MoE-LoRA kernels")
        return
    try:
        import vllm
    except Exception as e:  # noqa: BLE001
        _finish("unavailable", logging.WARNING,
                f"moelora: vLLM cannot be imported ({type(e).__name__}: {e}); "
                "nothing replaced")
        return
    version = str(getattr(vllm, "__version__", "unknown"))
    _state["vllm_version"] = version

    dispatch_key, platform_note = _cuda_dispatch_key()
    if dispatch_key is None:
        _finish("unavailable", logging.INFO,
                f"moelora: vLLM {version}: {platform_note}; vLLM keeps its own "
                "MoE-LoRA kernels")
        return

    import importlib
    try:
        importlib.import_module(OPS_PACKAGE)
        op_module = importlib.import_module(OP_MODULE)
        custom_ops = importlib.import_module(CUSTOM_OPS)
    except Exception as e:  # noqa: BLE001
        _finish("unavailable", logging.WARNING,
                f"moelora: vLLM {version}: its MoE-LoRA ops cannot be imported "
                f"({type(e).__name__}: {e}); nothing replaced")
        return

    from . import ops as M

    ours = {name: getattr(M, name) for name in TORCH_OPS + (ALIGN,)}
    # vLLM's objects: per op, the public binding, the torch op (or None) and
    # the Python function whose signature the schema was inferred from.
    targets = {}
    problems: List[str] = []
    for name in TORCH_OPS:
        public = op_module.__dict__.get(name)
        torch_op = _torch_op(name)
        pyfunc = op_module.__dict__.get("_" + name)
        if not _is_python_function(pyfunc):
            pyfunc = public if _is_python_function(public) else None
        if public is None and torch_op is None:
            problems.append(f"{name}: not found in {OP_MODULE}")
            continue
        theirs = _params(pyfunc) if pyfunc is not None else _schema_params(torch_op)
        diff = _difference(theirs, _params(ours[name]))
        if diff:
            problems.append(f"{name}: {diff}")
        targets[name] = (public, torch_op)
    align = custom_ops.__dict__.get(ALIGN)
    if align is None:
        problems.append(f"{ALIGN}: not found in {CUSTOM_OPS}")
    else:
        diff = _difference(_params(align) if callable(align) else None, _params(ours[ALIGN]))
        if diff:
            problems.append(f"{ALIGN}: {diff}")
    if problems:
        _finish("mismatch", logging.WARNING,
                f"moelora: vLLM {version}'s MoE-LoRA op signatures differ from "
                f"moelora's, so vLLM keeps its own kernels: {'; '.join(problems)}")
        return

    # 1. The torch custom ops' kernels.
    override = [(name, ours[name]) for name, (_, op) in targets.items() if op is not None]
    if override:
        _override_kernels(override, dispatch_key)
    # 2. Python bindings in imported vLLM modules.
    for name, (public, torch_op) in targets.items():
        if public is None:
            continue
        through_op = torch_op is not None and (public is torch_op or _is_torch_op(public))
        _rebind(name, public, ours[name], routed=through_op)
    _rebind(ALIGN, align, ours[ALIGN], routed=False)
    # 3. vLLM's tensor-parallel collectives for fully_sharded calls.
    tp_note = _install_tensor_parallel(M)

    _state["replaced"] = [f"torch.ops.{TORCH_NAMESPACE}.{n} ({dispatch_key} kernel)"
                          for n in _state["torch_ops"]] + list(_state["bindings"])
    parts = []
    if _state["torch_ops"]:
        routed = len(_state["routed"])
        parts.append(f"torch.ops.{TORCH_NAMESPACE}.{{{','.join(_state['torch_ops'])}}} "
                     f"({dispatch_key} kernels" +
                     (f"; {routed} vLLM bindings call them)" if routed else ")"))
    for name in TORCH_OPS + (ALIGN,):
        bound = [b for b in _state["bindings"] if b.rsplit(".", 1)[1] == name]
        if bound:
            home = f"{CUSTOM_OPS if name == ALIGN else OP_MODULE}.{name}"
            first = home if home in bound else bound[0]
            more = f" (+{len(bound) - 1} more)" if len(bound) > 1 else ""
            parts.append(first + more)
    _finish("replaced", logging.INFO,
            f"moelora: vLLM {version}: MoE-LoRA ops now run on moelora: "
            f"{', '.join(parts)}{tp_note}")


def _install_tensor_parallel(M) -> str:
    """vLLM's collectives become moelora's process-wide tensor-parallel
    setting; returns the log line's note."""
    import importlib
    try:
        dist = importlib.import_module(TP_MODULE)
        get_world, all_reduce, all_gather = (getattr(dist, n) for n in TP_FUNCTIONS)
    except Exception as e:  # noqa: BLE001
        return (f"; fully_sharded calls run as one rank (no tensor-parallel "
                f"collectives: {TP_MODULE}: {type(e).__name__}: {e})")
    tp = M.TensorParallel(_vllm_world_size(get_world,
                                           getattr(dist, "model_parallel_is_initialized",
                                                   None)),
                          all_reduce=all_reduce, all_gather=all_gather, name=TP_MODULE)
    _state["_tp_previous"] = M.set_tensor_parallel(tp)
    _state["_tp_installed"] = tp
    _state["tensor_parallel"] = TP_MODULE
    return f"; fully_sharded collectives: {TP_MODULE}'s"


def _vllm_world_size(get_world: Callable[[], int],
                     is_up: Optional[Callable[[], bool]]) -> Callable[[], int]:
    """vLLM's tensor-parallel world size, read at each call; 1 while vLLM's
    model-parallel groups do not exist (a process without them is one
    rank; vLLM's getter asserts then)."""
    def world_size() -> int:
        if is_up is not None:
            return get_world() if is_up() else 1
        try:
            return get_world()
        except AssertionError:
            return 1
    world_size.__qualname__ = f"{TP_MODULE}.get_tensor_model_parallel_world_size"
    return world_size


def _cuda_dispatch_key() -> Tuple[Optional[str], str]:
    """(vLLM's dispatch key for its custom ops, "") on an NVIDIA CUDA
    platform, else (None, why)."""
    try:
        from vllm.platforms import current_platform as p
    except Exception:  # noqa: BLE001 - cannot tell: assume CUDA
        return "CUDA", ""
    try:
        is_cuda = p.is_cuda() if callable(getattr(p, "is_cuda", None)) else True
    except Exception:  # noqa: BLE001
        is_cuda = True
    if not is_cuda:
        name = getattr(p, "device_name", None) or type(p).__name__
        return None, f"not a CUDA platform ({name})"
    return str(getattr(p, "dispatch_key", None) or "CUDA"), ""


def _torch_op(name: str):
    """torch.ops.vllm.<name> if torch is imported and vLLM defined it."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return getattr(getattr(torch.ops, TORCH_NAMESPACE), name)
    except Exception:  # noqa: BLE001 - not defined
        return None


def _is_torch_op(obj) -> bool:
    return type(obj).__name__ in ("OpOverloadPacket", "OpOverload")


def _is_python_function(obj) -> bool:
    return obj is not None and callable(obj) and not _is_torch_op(obj) and (
        inspect.isfunction(obj) or inspect.ismethod(obj) or hasattr(obj, "__wrapped__"))


# ---------------------------------------------------------------------------
# Signatures
# ---------------------------------------------------------------------------

def _params(fn) -> Optional[List[Tuple[str, Any]]]:
    """[(name, default or _NO_DEFAULT)], or None when fn has no plain
    signature (*args, **kwargs, or none at all)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return None
        out.append((p.name, _NO_DEFAULT if p.default is p.empty else p.default))
    return out


def _schema_params(op) -> Optional[List[Tuple[str, Any]]]:
    """Argument names of a torch op's (default overload's) schema."""
    try:
        overload = getattr(op, "default", op)
        return [(a.name, _UNKNOWN) for a in overload._schema.arguments]
    except Exception:  # noqa: BLE001
        return None


def _same_default(a, b) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # noqa: BLE001
        return False


def _difference(theirs, ours) -> Optional[str]:
    """None when moelora's parameters (ours) accept every call vLLM's
    (theirs) does with the same meaning, else the first difference."""
    if theirs is None:
        return "cannot read vLLM's signature"
    if ours is None:
        return "cannot read moelora's signature"
    for i, (name, default) in enumerate(theirs):
        if i >= len(ours):
            return (f"vLLM has {len(theirs)} parameters, moelora {len(ours)} "
                    f"(moelora lacks '{name}')")
        our_name, our_default = ours[i]
        if name != our_name:
            return f"parameter {i + 1} is '{name}' in vLLM, '{our_name}' in moelora"
        if default is _UNKNOWN or default is _NO_DEFAULT:
            continue
        if our_default is _NO_DEFAULT:
            return f"'{name}' defaults to {default!r} in vLLM, has no default in moelora"
        if not _same_default(default, our_default):
            return f"'{name}' defaults to {default!r} in vLLM, {our_default!r} in moelora"
    for name, default in ours[len(theirs):]:
        if default is _NO_DEFAULT:
            return f"moelora's extra parameter '{name}' has no default"
    return None


# ---------------------------------------------------------------------------
# Replacing
# ---------------------------------------------------------------------------

_OVERRIDE_WARNING = r"(?s).*Overriding a previously registered kernel"


def _override_kernels(ops: List[Tuple[str, Callable]], dispatch_key: str) -> None:
    """moelora's functions become the `dispatch_key` kernels of
    torch.ops.vllm.<name>, through one Library("vllm", "IMPL") kept in
    _state (its destruction restores vLLM's kernels)."""
    torch = sys.modules["torch"]
    library = torch.library
    lib = library.Library(TORCH_NAMESPACE, "IMPL")
    _state["_library"] = lib
    try:
        has_override = "allow_override" in inspect.signature(lib.impl).parameters
    except (TypeError, ValueError):
        has_override = False
    kwargs = {"allow_override": True} if has_override else {}
    impls = getattr(library, "_impls", None)
    for name, fn in ops:
        # vLLM's own registration came from Python, so torch.library refuses
        # a second one for the same key unless told (allow_override, or the
        # key dropped from its bookkeeping on a torch without that flag).
        key = f"{TORCH_NAMESPACE}/{name}/{dispatch_key}"
        claimed = isinstance(impls, set) and key in impls
        if claimed:
            _state["_claimed"].append(key)
            if not has_override:
                impls.discard(key)
        with warnings.catch_warnings():
            # The dispatcher's "Overriding a previously registered kernel"
            # is the point here.
            warnings.filterwarnings("ignore", message=_OVERRIDE_WARNING)
            lib.impl(name, fn, dispatch_key, **kwargs)
        _state["torch_ops"].append(name)


def _vllm_modules():
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "vllm" or mod_name.startswith("vllm.")):
            continue
        d = getattr(mod, "__dict__", None)
        if isinstance(d, dict):
            yield mod_name, mod, d


def _rebind(name: str, original, replacement, *, routed: bool) -> None:
    """Every imported vLLM module's attribute `name` bound to `original`:
    rebound to `replacement`, or (routed) recorded as reaching moelora
    through the overridden torch op. Module dicts are read directly, so
    lazy module __getattr__s import nothing."""
    if original is None:
        return
    for mod_name, mod, d in _vllm_modules():
        if d.get(name) is not original:
            continue
        where = f"{mod_name}.{name}"
        if routed:
            _state["routed"].append(where)
            continue
        setattr(mod, name, replacement)
        _state["_restore"].append((mod, name, original, replacement))
        _state["bindings"].append(where)


def _undo_locked() -> None:
    for mod, name, original, replacement in reversed(_state["_restore"]):
        if mod.__dict__.get(name) is replacement:
            setattr(mod, name, original)
    _state["_restore"] = []
    lib = _state["_library"]
    _state["_library"] = None
    if lib is not None:
        destroy = getattr(lib, "_destroy", None)
        if callable(destroy):
            destroy()
        torch = sys.modules.get("torch")
        impls = getattr(getattr(torch, "library", None), "_impls", None)
        if isinstance(impls, set):
            impls.update(_state["_claimed"])  # vLLM's registrations are still there
    _state["_claimed"] = []
    tp = _state["_tp_installed"]
    M = sys.modules.get("moelora.ops")
    if tp is not None and M is not None:
        now = M.set_tensor_parallel(_state["_tp_previous"])
        if now is not tp:  # set by someone else since: theirs stays
            M.set_tensor_parallel(now)
    _state["_tp_installed"] = _state["_tp_previous"] = None
    _state["tensor_parallel"] = None
    for key in ("replaced", "torch_ops", "bindings", "routed"):
        _state[key] = []
