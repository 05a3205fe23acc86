"""ctypes bindings of moelora's C ABI (include/moelora/moelora.h, ABI version 1).

Nothing here imports torch: library loading, the ABI version, runtime creation,
planning with fake pointers, warm-up and statistics work on a machine without
torch or a GPU.

Library lookup order:
  1. $MOELORA_LIB (a path to libmoelora.so or libmoelora_rt.so);
  2. inside the package (the wheel): moelora/lib/libmoelora.so;
  3. a checkout's build: <repo>/build/runtime/libmoelora.so, then libmoelora_rt.so;
  4. ctypes.util.find_library("moelora"), then find_library("moelora_rt").

Runtime options come from the environment when the runtime is created:
  MOELORA_BUNDLE       bundle directories (moelora-gen output), os.pathsep-separated
  MOELORA_CACHE_DIR    on-disk kernel cache directory
  MOELORA_JIT          0/1: generate missing variants in-process (libmoelora.so only)
  MOELORA_TUNED_TABLE  JSON tuned table ("" for none: vLLM's rules)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from typing import Any, Dict, Iterable, List, Optional, Sequence

ABI_VERSION = 1

# moelora_status
MOELORA_OK = 0
MOELORA_ERROR_INVALID_ARGUMENT = 1
MOELORA_ERROR_UNSUPPORTED = 2
MOELORA_ERROR_NO_DEVICE = 3
MOELORA_ERROR_CUDA = 4
MOELORA_ERROR_NOT_FOUND = 5
MOELORA_ERROR_INTERNAL = 6

STATUS_NAMES = {
    MOELORA_OK: "MOELORA_OK",
    MOELORA_ERROR_INVALID_ARGUMENT: "MOELORA_ERROR_INVALID_ARGUMENT",
    MOELORA_ERROR_UNSUPPORTED: "MOELORA_ERROR_UNSUPPORTED",
    MOELORA_ERROR_NO_DEVICE: "MOELORA_ERROR_NO_DEVICE",
    MOELORA_ERROR_CUDA: "MOELORA_ERROR_CUDA",
    MOELORA_ERROR_NOT_FOUND: "MOELORA_ERROR_NOT_FOUND",
    MOELORA_ERROR_INTERNAL: "MOELORA_ERROR_INTERNAL",
}

# moelora_dtype
MOELORA_DTYPE_FP16 = 0
MOELORA_DTYPE_BF16 = 1

# moelora_path
PATH_NAMES = {0: "none", 1: "small_batch", 2: "one_shot", 3: "two_kernel"}

# Dispatcher limits (include/moelora/Spec/KernelSpec.h): the contract's
# "R > 128 goes to two-kernel".
MAX_ONE_SHOT_RANK = 128
MAX_SMALL_BATCH_RANK = 64


# ---------------------------------------------------------------------------
# Structures, field for field as in moelora.h
# ---------------------------------------------------------------------------

_i32 = ctypes.c_int32
_u32 = ctypes.c_uint32
_i64 = ctypes.c_int64
_u64 = ctypes.c_uint64
_vp = ctypes.c_void_p
_enum = ctypes.c_int  # C enums are int-sized on every ABI we target


class moelora_runtime_options(ctypes.Structure):
    _fields_ = [
        ("struct_size", _u32),
        ("cache_dir", ctypes.c_char_p),
        ("enable_jit", _i32),
        ("enable_disk_cache", _i32),
        ("bundle_paths", ctypes.POINTER(ctypes.c_char_p)),
        ("num_bundle_paths", _i32),
        ("tuned_table_path", ctypes.c_char_p),
    ]


class moelora_fused_args(ctypes.Structure):
    _fields_ = [
        ("struct_size", _u32),
        ("dtype", _enum),
        ("x", _vp),
        ("x_stride", _i64 * 2),
        ("lora_a_ptrs", _vp),
        ("lora_a_stride", _i64 * 4),
        ("lora_b_ptrs", _vp),
        ("lora_b_stride", _i64 * 4),
        ("output", _vp),
        ("output_stride", _i64 * 3),
        ("topk_weights", _vp),
        ("topk_ids", _vp),
        ("sorted_token_ids", _vp),
        ("expert_ids", _vp),
        ("num_tokens_post_padded", _vp),
        ("token_lora_mapping", _vp),
        ("lora_ids", _vp),
        ("adapter_enabled", _vp),
        ("num_tokens", _i32),
        ("top_k", _i32),
        ("num_experts", _i32),
        ("K", _i32),
        ("N", _i32),
        ("rank", _i32),
        ("num_slices", _i32),
        ("max_loras", _i32),
        ("num_active_loras", _i32),
        ("EM", _i32),
        ("block_size_m", _i32),
        ("mul_routed_weight", _i32),
        ("add_inputs", _i32),
        ("fully_sharded", _i32),
        ("workspace", _vp),
        # Host array of the slices' lora_a base pointers (or None).
        ("lora_a_host_ptrs", _vp),
    ]


class moelora_kernel_launch(ctypes.Structure):
    _fields_ = [
        ("cache_key", ctypes.c_char * 256),
        ("entry", ctypes.c_char * 160),
        ("grid", _u32 * 3),
        ("block", _u32),
        ("shared_bytes", _u32),
    ]


class moelora_plan(ctypes.Structure):
    _fields_ = [
        ("path", _enum),
        ("num_launches", _i32),
        ("launches", moelora_kernel_launch * 2),
        ("npid", _i32),
        ("tiles_per_item", _i32),
        ("workspace_bytes", ctypes.c_size_t),
        ("from_tuned_table", _i32),
    ]


class moelora_stats(ctypes.Structure):
    _fields_ = [
        ("memory_hits", _u64),
        ("disk_hits", _u64),
        ("bundle_hits", _u64),
        ("jit_generations", _u64),
        ("misses", _u64),
        ("jit_ms_total", ctypes.c_double),
        ("launches", _u64),
    ]


class moelora_align_args(ctypes.Structure):
    _fields_ = [
        ("struct_size", _u32),
        ("topk_ids", _vp),
        ("token_lora_mapping", _vp),
        ("sorted_token_ids", _vp),
        ("expert_ids", _vp),
        ("num_tokens_post_padded", _vp),
        ("num_tokens", _i32),
        ("top_k", _i32),
        ("num_experts", _i32),
        ("max_loras", _i32),
        ("block_size_m", _i32),
        ("EM", _i32),
    ]


class moelora_library_info(ctypes.Structure):
    _fields_ = [
        ("struct_size", _u32),
        ("abi_version", _u32),
        ("version", ctypes.c_char_p),
        ("generator_stamp", ctypes.c_char_p),
        ("has_jit", _i32),
        ("library_path", ctypes.c_char_p),
        ("tuned_dirs", ctypes.c_char_p),
        ("default_cache_dir", ctypes.c_char_p),
    ]


class moelora_runtime_info(ctypes.Structure):
    _fields_ = [
        ("struct_size", _u32),
        ("has_device", _i32),
        ("compute_capability", _i32),
        ("num_sms", _i32),
        ("jit_enabled", _i32),
        ("disk_cache_enabled", _i32),
        ("device_name", ctypes.c_char * 256),
        ("driver_error", ctypes.c_char * 256),
        ("tuned_table", ctypes.c_char * 1024),
        ("cache_dir", ctypes.c_char * 1024),
    ]


class moelora_runtime(ctypes.Structure):
    pass  # opaque


_rt_p = ctypes.POINTER(moelora_runtime)


# ---------------------------------------------------------------------------
# Library loading
# ---------------------------------------------------------------------------

_lib_lock = threading.RLock()
_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None


def _candidate_paths() -> List[str]:
    paths = []
    env = os.environ.get("MOELORA_LIB")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    paths.append(os.path.join(here, "lib", "libmoelora.so"))
    build = os.path.normpath(os.path.join(here, "..", "..", "build", "runtime"))
    for name in ("libmoelora.so", "libmoelora_rt.so"):
        paths.append(os.path.join(build, name))
    for name in ("moelora", "moelora_rt"):
        found = ctypes.util.find_library(name)
        if found:
            paths.append(found)
    return paths


def _declare(lib: ctypes.CDLL) -> None:
    P = ctypes.POINTER
    sigs = {
        "moelora_abi_version": (_u32, []),
        "moelora_last_error": (ctypes.c_char_p, []),
        "moelora_runtime_options_init": (None, [P(moelora_runtime_options)]),
        "moelora_fused_args_init": (None, [P(moelora_fused_args)]),
        "moelora_align_args_init": (None, [P(moelora_align_args)]),
        "moelora_runtime_create": (_enum, [P(moelora_runtime_options), P(_rt_p)]),
        "moelora_runtime_destroy": (None, [_rt_p]),
        "moelora_plan_fused": (_enum, [_rt_p, P(moelora_fused_args), P(moelora_plan)]),
        "moelora_workspace_bytes": (ctypes.c_size_t, [P(moelora_fused_args)]),
        "moelora_warmup": (_enum, [_rt_p, P(moelora_fused_args), _i32]),
        "moelora_fused_moe_lora": (_enum, [_rt_p, P(moelora_fused_args), _vp]),
        "moelora_shrink": (_enum, [_rt_p, P(moelora_fused_args), _vp]),
        "moelora_expand": (_enum, [_rt_p, P(moelora_fused_args), _i32, _vp]),
        "moelora_align_capacity": (_i32, [_i32, _i32, _i32, _i32]),
        "moelora_align_block_size": (_enum, [_rt_p, P(moelora_align_args), _vp]),
        "moelora_get_stats": (_enum, [_rt_p, P(moelora_stats)]),
        "moelora_get_library_info": (None, [P(moelora_library_info)]),
        "moelora_get_runtime_info": (_enum, [_rt_p, P(moelora_runtime_info)]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def load_library(path: Optional[str] = None) -> ctypes.CDLL:
    """Loads (once) and returns the moelora shared library."""
    global _lib, _lib_path
    with _lib_lock:
        if _lib is not None and path is None:
            return _lib
        candidates = [path] if path else _candidate_paths()
        errors = []
        for cand in candidates:
            if not cand:
                continue
            if os.path.sep in cand and not os.path.exists(cand):
                errors.append(f"{cand}: no such file")
                continue
            try:
                lib = ctypes.CDLL(cand)
            except OSError as e:
                errors.append(f"{cand}: {e}")
                continue
            _declare(lib)
            version = lib.moelora_abi_version()
            if version != ABI_VERSION:
                raise RuntimeError(
                    f"{cand}: moelora ABI version {version}, these bindings "
                    f"need {ABI_VERSION}")
            _lib, _lib_path = lib, cand
            _ARGS_TEMPLATES.clear()  # initialised by the library now loaded
            return lib
        tried = "; ".join(errors) if errors else "nothing found"
        raise OSError(
            "moelora: cannot load libmoelora (set MOELORA_LIB to the path of "
            f"libmoelora.so or libmoelora_rt.so); tried: {tried}")


def library_path() -> str:
    load_library()
    assert _lib_path is not None
    return _lib_path


def lib() -> ctypes.CDLL:
    return _lib if _lib is not None else load_library()


def abi_version() -> int:
    return int(lib().moelora_abi_version())


def last_error() -> str:
    msg = lib().moelora_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def check(status: int, what: str = "") -> None:
    """Raises for a non-zero moelora_status: ValueError for an invalid
    argument (the message names it), RuntimeError otherwise."""
    if status == MOELORA_OK:
        return
    msg = last_error()
    prefix = f"{what}: " if what else ""
    if status == MOELORA_ERROR_INVALID_ARGUMENT:
        raise ValueError(f"{prefix}{msg}")
    name = STATUS_NAMES.get(int(status), f"status {int(status)}")
    raise RuntimeError(f"{prefix}{name}: {msg}")


def align_capacity(num_tokens: int, top_k: int, num_experts: int,
                   block_size_m: int) -> int:
    """EM = round_up(num_tokens*top_k + num_experts*(block_size_m-1), block_size_m)."""
    return int(lib().moelora_align_capacity(num_tokens, top_k, num_experts,
                                             block_size_m))


# ---------------------------------------------------------------------------
# Runtimes (one per CUDA device, created lazily)
# ---------------------------------------------------------------------------

_rt_lock = threading.Lock()
_runtimes: Dict[int, Any] = {}


def _env_options():
    """moelora_runtime_options from the environment, plus what keeps its
    strings alive until moelora_runtime_create returns."""
    o = moelora_runtime_options()
    lib().moelora_runtime_options_init(ctypes.byref(o))
    o.struct_size = ctypes.sizeof(moelora_runtime_options)
    keep = []
    cache_dir = os.environ.get("MOELORA_CACHE_DIR")
    if cache_dir:
        b = cache_dir.encode()
        keep.append(b)
        o.cache_dir = b
    jit = os.environ.get("MOELORA_JIT")
    if jit is not None and jit.strip() != "":
        o.enable_jit = 0 if jit.strip().lower() in ("0", "false", "no", "off") else 1
    bundles = [p for p in os.environ.get("MOELORA_BUNDLE", "").split(os.pathsep) if p]
    if bundles:
        arr = (ctypes.c_char_p * len(bundles))(*[p.encode() for p in bundles])
        keep.append(arr)
        o.bundle_paths = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        o.num_bundle_paths = len(bundles)
    if "MOELORA_TUNED_TABLE" in os.environ:
        b = os.environ["MOELORA_TUNED_TABLE"].encode()
        keep.append(b)
        o.tuned_table_path = b  # "" means no tuned table
    return o, keep


def _default_device() -> int:
    """The device a runtime with no explicit device is for: torch's current
    device when torch already initialised CUDA, else 0 (the C runtime then
    uses device 0's primary context)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                return int(torch.cuda.current_device())
        except Exception:
            pass
    return 0


def create_runtime():
    """A new runtime handle (caller owns it; see destroy_runtime)."""
    o, keep = _env_options()
    rt = _rt_p()
    status = lib().moelora_runtime_create(ctypes.byref(o), ctypes.byref(rt))
    del keep
    check(status, "moelora_runtime_create")
    return rt


def destroy_runtime(rt) -> None:
    if rt:
        lib().moelora_runtime_destroy(rt)


def get_runtime(device: Optional[int] = None):
    """The process-wide runtime for a CUDA device index (created on first use,
    with the options of the environment). The C runtime takes its device from
    the calling thread's current CUDA context at creation; torch callers go
    through moelora.ops, which makes the tensors' device current first."""
    key = _default_device() if device is None else int(device)
    rt = _runtimes.get(key)
    if rt is not None:
        return rt
    with _rt_lock:
        rt = _runtimes.get(key)
        if rt is None:
            rt = create_runtime()
            _runtimes[key] = rt
        return rt


def has_runtime(device: int) -> bool:
    return int(device) in _runtimes


def reset_runtimes() -> None:
    """Destroys every cached runtime (tests; nothing may be in flight)."""
    with _rt_lock:
        for rt in _runtimes.values():
            destroy_runtime(rt)
        _runtimes.clear()


# ---------------------------------------------------------------------------
# Shape-level helpers (no torch): planning, warm-up, statistics
# ---------------------------------------------------------------------------

_DTYPE_CODES = {
    "fp16": MOELORA_DTYPE_FP16, "float16": MOELORA_DTYPE_FP16, "half": MOELORA_DTYPE_FP16,
    "bf16": MOELORA_DTYPE_BF16, "bfloat16": MOELORA_DTYPE_BF16,
}


def dtype_code(dtype) -> int:
    """fp16/bf16 (a string, a torch dtype or a moelora_dtype int) -> moelora_dtype."""
    if isinstance(dtype, int):
        if dtype in (MOELORA_DTYPE_FP16, MOELORA_DTYPE_BF16):
            return dtype
    else:
        name = str(dtype)
        if name.startswith("torch."):
            name = name[len("torch."):]
        code = _DTYPE_CODES.get(name.lower())
        if code is not None:
            return code
    raise ValueError(f"dtype = {dtype!r}: must be fp16 or bf16")


# The *_args_init defaults are fixed by the ABI version, so each struct is
# initialised through the library once and later ones copy its bytes (one C
# copy instead of a ctypes call, its argument conversion and a field set).
_ARGS_TEMPLATES: Dict[type, bytes] = {}


def _new_args(cls, init_name: str):
    template = _ARGS_TEMPLATES.get(cls)
    if template is None:
        a = cls()
        getattr(lib(), init_name)(ctypes.byref(a))
        a.struct_size = ctypes.sizeof(cls)
        template = _ARGS_TEMPLATES[cls] = bytes(a)
    return cls.from_buffer_copy(template)


def new_fused_args() -> moelora_fused_args:
    return _new_args(moelora_fused_args, "moelora_fused_args_init")


def new_align_args() -> moelora_align_args:
    return _new_args(moelora_align_args, "moelora_align_args_init")


# Fake device addresses for planning without tensors: non-NULL and aligned.
_FAKE_BASE = 1 << 40
# One aligned placeholder per slice (num_slices <= 8) for lora_a_host_ptrs.
_FAKE_HOST_BASES = (ctypes.c_void_p * 8)(*[_FAKE_BASE + ((16 + i) << 32)
                                           for i in range(8)])


def shape_args(*, num_tokens: int, top_k: int, num_experts: int, K: int, N: int,
               rank: int, num_slices: int = 1, max_loras: int = 1,
               num_active_loras: Optional[int] = None, dtype="bf16",
               sorted: bool = False, EM: Optional[int] = None,
               block_size_m: int = 16, mul_routed_weight: bool = False,
               add_inputs: bool = True, fully_sharded: bool = False,
               fake_pointers: bool = True) -> moelora_fused_args:
    """A moelora_fused_args for a call's shapes, with contiguous strides and
    (by default) fake non-NULL pointers, for moelora_plan_fused /
    moelora_warmup / moelora_workspace_bytes. sorted=True with EM None uses
    moelora_align_capacity (what moe_lora_align_block_size produces)."""
    a = new_fused_args()
    a.dtype = dtype_code(dtype)
    a.num_tokens, a.top_k, a.num_experts = num_tokens, top_k, num_experts
    a.K, a.N, a.rank, a.num_slices = K, N, rank, num_slices
    a.max_loras = max_loras
    a.num_active_loras = max_loras if num_active_loras is None else num_active_loras
    if sorted and EM is None:
        EM = align_capacity(num_tokens, top_k, num_experts, block_size_m)
    a.EM = int(EM or 0) if sorted else 0
    a.block_size_m = block_size_m
    a.mul_routed_weight = int(bool(mul_routed_weight))
    a.add_inputs = int(bool(add_inputs))
    a.fully_sharded = int(bool(fully_sharded))
    a.x_stride[:] = [K, 1]
    a.lora_a_stride[:] = [num_experts * rank * K, rank * K, K, 1]
    a.lora_b_stride[:] = [num_experts * N * rank, N * rank, rank, 1]
    cols = num_slices * N
    a.output_stride[:] = [top_k * cols, cols, 1]
    if fake_pointers:
        names = ["x", "lora_a_ptrs", "lora_b_ptrs", "output", "topk_weights",
                 "topk_ids", "token_lora_mapping", "lora_ids", "adapter_enabled"]
        if sorted:
            names += ["sorted_token_ids", "expert_ids", "num_tokens_post_padded"]
        for i, name in enumerate(names):
            setattr(a, name, _FAKE_BASE + (i << 32))
        # The ops pass lora_a's host base pointers, which admit tensor-map
        # kernels: plan and warm up as they will run.
        a.lora_a_host_ptrs = ctypes.addressof(_FAKE_HOST_BASES)
    return a


def _as_args(call) -> moelora_fused_args:
    if isinstance(call, moelora_fused_args):
        return call
    if isinstance(call, dict):
        return shape_args(**call)
    raise TypeError("a call is a moelora_fused_args or a dict of shape_args() "
                    f"keywords, not {type(call).__name__}")


def plan_args(args: moelora_fused_args, device: Optional[int] = None) -> Dict[str, Any]:
    """moelora_plan_fused as a dict: path, num_launches, launches (cache_key,
    entry, grid, block, shared_bytes), npid, tiles_per_item, workspace_bytes,
    from_tuned_table."""
    p = moelora_plan()
    check(lib().moelora_plan_fused(get_runtime(device), ctypes.byref(args),
                                   ctypes.byref(p)), "moelora_plan_fused")
    launches = []
    for i in range(max(0, min(int(p.num_launches), 2))):
        l = p.launches[i]
        launches.append({
            "cache_key": l.cache_key.decode("utf-8", "replace"),
            "entry": l.entry.decode("utf-8", "replace"),
            "grid": tuple(int(g) for g in l.grid),
            "block": int(l.block),
            "shared_bytes": int(l.shared_bytes),
        })
    return {
        "path": PATH_NAMES.get(int(p.path), str(int(p.path))),
        "num_launches": int(p.num_launches),
        "launches": launches,
        "npid": int(p.npid),
        "tiles_per_item": int(p.tiles_per_item),
        "workspace_bytes": int(p.workspace_bytes),
        "from_tuned_table": bool(p.from_tuned_table),
    }


def plan(device: Optional[int] = None, **shape) -> Dict[str, Any]:
    """The plan moelora would execute for a call of these shapes (see
    shape_args for the keywords); needs no GPU and no tensors."""
    return plan_args(shape_args(**shape), device)


def workspace_bytes(args: moelora_fused_args) -> int:
    return int(lib().moelora_workspace_bytes(ctypes.byref(args)))


def warmup(shapes: Iterable, device: Optional[int] = None) -> None:
    """Loads (or generates, with JIT) every kernel variant that calls of these
    shapes will use, so no first request pays for it. Each element is a dict
    of shape_args() keywords or a moelora_fused_args."""
    calls = [_as_args(c) for c in shapes]
    if not calls:
        return
    arr = (moelora_fused_args * len(calls))(*calls)
    check(lib().moelora_warmup(get_runtime(device), arr, len(calls)),
          "moelora_warmup")


def stats(device: Optional[int] = None) -> Dict[str, Any]:
    """Module-cache and launch counters of the runtime."""
    s = moelora_stats()
    check(lib().moelora_get_stats(get_runtime(device), ctypes.byref(s)),
          "moelora_get_stats")
    return {name: getattr(s, name) for name, _ in moelora_stats._fields_}


def _text(v) -> str:
    return v.decode("utf-8", "replace") if v else ""


def library_info() -> Dict[str, Any]:
    """What the loaded library is (no runtime, driver or GPU needed): version,
    abi_version, generator_stamp, has_jit, library_path, tuned_dirs (list),
    default_cache_dir."""
    i = moelora_library_info()
    i.struct_size = ctypes.sizeof(moelora_library_info)
    lib().moelora_get_library_info(ctypes.byref(i))
    return {
        "version": _text(i.version),
        "abi_version": int(i.abi_version),
        "generator_stamp": _text(i.generator_stamp),
        "has_jit": bool(i.has_jit),
        "library_path": _text(i.library_path) or library_path(),
        "tuned_dirs": [d for d in _text(i.tuned_dirs).split(":") if d],
        "default_cache_dir": _text(i.default_cache_dir),
    }


def runtime_info(device: Optional[int] = None) -> Dict[str, Any]:
    """What the device's runtime was created with and found (works without a
    GPU: has_device False and driver_error say why)."""
    i = moelora_runtime_info()
    i.struct_size = ctypes.sizeof(moelora_runtime_info)
    check(lib().moelora_get_runtime_info(get_runtime(device), ctypes.byref(i)),
          "moelora_get_runtime_info")
    out = {name: getattr(i, name) for name, _ in moelora_runtime_info._fields_
           if name != "struct_size"}
    for name in ("device_name", "driver_error", "tuned_table", "cache_dir"):
        out[name] = _text(out[name])
    for name in ("has_device", "jit_enabled", "disk_cache_enabled"):
        out[name] = bool(out[name])
    return out


__all__ = [
    "ABI_VERSION", "load_library", "library_path", "abi_version", "last_error",
    "check", "align_capacity", "get_runtime", "create_runtime", "destroy_runtime",
    "reset_runtimes", "shape_args", "plan", "plan_args", "workspace_bytes",
    "warmup", "stats", "library_info", "runtime_info", "dtype_code",
    "new_fused_args", "new_align_args", "moelora_library_info",
    "moelora_runtime_info",
    "moelora_runtime_options", "moelora_fused_args", "moelora_kernel_launch",
    "moelora_plan", "moelora_stats", "moelora_align_args",
]
