"""Drop-in replacements for vLLM's MoE-LoRA ops, running moelora's kernels.

Matched against vLLM's vllm/lora/ops/triton_ops/fused_moe_lora_op.py, 2026
version: the one with `_fused_moe_lora_one_shot_kernel` and
`_fused_moe_lora_small_batch_kernel` (the fast path of `_fused_moe_lora` for
fully_sharded=False), `num_active_loras` as a CPU tensor and the
`add_inputs` flag; and vllm/_custom_ops.py's `moe_lora_align_block_size`
(with `expert_map`). The argument names, order and defaults are vLLM's:

  fused_moe_lora(output, qcurr_hidden_states, lora_a_stacked, lora_b_stacked,
      topk_weights, sorted_token_ids, expert_ids, num_tokens_post_padded,
      token_lora_mapping, max_lora_rank, top_k_num, lora_ids, num_active_loras,
      adapter_enabled, shrink_block_size_m, shrink_block_size_n,
      shrink_block_size_k, shrink_group_size_m, shrink_num_warps,
      shrink_num_stages, shrink_split_k, expand_block_size_m,
      expand_block_size_n, expand_block_size_k, expand_group_size_m,
      expand_num_warps, expand_num_stages, expand_split_k,
      mul_routed_weight=False, fully_sharded=False, offset=0, add_inputs=True)
  fused_moe_lora_shrink(a_intermediate_cache1, qcurr_hidden_states,
      lora_a_stacked, topk_weights, sorted_token_ids, expert_ids,
      num_tokens_post_padded, token_lora_mapping, top_k_num, lora_ids,
      adapter_enabled, device, N, M, EM, K, num_tokens, num_experts,
      num_slices, block_size_m, block_size_n, block_size_k, group_size_m,
      num_warps, num_stages, split_k, num_active_loras,
      mul_routed_weight=False, use_gdc=False, use_tma=False)
  fused_moe_lora_expand(output, a_intermediate_cache1, lora_b_stacked,
      topk_weights, sorted_token_ids, expert_ids, num_tokens_post_padded,
      token_lora_mapping, top_k_num, lora_ids, adapter_enabled, device, N, M,
      EM, K, num_tokens, num_experts, num_slices, max_lora_rank,
      w1_output_dim_size, block_size_m, block_size_n, block_size_k,
      group_size_m, num_warps, num_stages, split_k, num_active_loras,
      mul_routed_weight=False, offset=0, use_gdc=False, use_tma=False)
  moe_lora_align_block_size(topk_ids, token_lora_mapping, num_experts,
      block_size, max_loras, max_num_tokens_padded, max_num_m_blocks,
      sorted_token_ids, experts_ids, num_tokens_post_pad, adapter_enabled,
      lora_ids, expert_map=None)

Differences from vLLM, by design:
  * Triton tiling arguments (block sizes other than the sorted metadata's
    BLOCK_M, group sizes, warps, stages, split_k, use_gdc, use_tma) are
    accepted and ignored: moelora's dispatcher picks its own variants.
  * R > 128 runs the two-kernel path instead of failing an assertion.
  * moe_lora_align_block_size fills every adapter row (lora_ids and
    adapter_enabled are accepted but not needed: the fused kernels skip
    inactive/disabled adapters themselves).
  * The intermediate of fused_moe_lora_shrink/expand must be the contiguous
    (num_slices, num_tokens, top_k, R) cache of vLLM's non-TMA path.

Empty work (no tokens, no active adapter, no slices) is a no-op: the fused
ops return without a launch, as vLLM's kernels do.

fully_sharded=True (tensor parallelism) runs shrink, a collective on the
intermediate and expand at column `offset`, as vLLM's _fused_moe_lora does:
all-gather along R when lora_b_stacked's rank is lora_a_stacked's times the
group's size (column-parallel W13), all-reduce when the ranks are equal
(row-parallel W2). The collectives are the engine's: set_tensor_parallel()
(process-wide) or `with tensor_parallel(...)` (this thread) give them (see
TensorParallel); moelora's vLLM plugin sets vLLM's. moelora imports no
collective library itself: without a setting a fully_sharded call is one
rank (equal ranks: no collective; different ranks: ValueError), and it
raises instead when vLLM's TP group has more than one rank in the process.
Mismatched ranks, offsets past the output and a collective returning the
wrong shape, dtype or device raise ValueError naming them; all but the
last before anything is launched (after a bad collective the shrink has
written moelora's workspace, the output is untouched).

Every op runs on torch.cuda.current_stream(); nothing synchronises, and after
one call with given tensors (which fills the slice-pointer tables and the
workspace caches) the same call allocates nothing and can be captured in a
CUDA graph. torch is imported lazily, so `import moelora` works without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _lib as L

__all__ = [
    "fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand",
    "moe_lora_align_block_size", "plan_fused_moe_lora", "warmup",
    "TensorParallel", "set_tensor_parallel", "get_tensor_parallel", "tensor_parallel",
]


# Host time per call is mostly Python attribute traffic (each tensor read is
# ~0.1 us, a torch.cuda helper several), so the hot path reads every tensor
# attribute once, checks with plain comparisons and builds error messages
# only when a check fails. What it needs from torch is looked up once here.
_TORCH = None
_I32 = _F32 = None
_DTYPE_CODES: Dict[Any, int] = {}
_raw_stream = None      # device index -> cudaStream_t of torch's current stream
_current_device = None  # () -> current CUDA device index


def _torch():
    global _TORCH, _I32, _F32, _raw_stream, _current_device
    if _TORCH is not None:
        return _TORCH
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("moelora.ops needs torch") from e
    _I32, _F32 = torch.int32, torch.float32
    _DTYPE_CODES.clear()
    _DTYPE_CODES.update({torch.bfloat16: L.MOELORA_DTYPE_BF16,
                         torch.float16: L.MOELORA_DTYPE_FP16})
    tc = getattr(torch, "_C", None)
    # torch.cuda.current_stream() builds a Stream object through several
    # Python layers (a few us); CUDA builds of torch export the raw handle
    # of the same stream as one C call (what Triton and Inductor use).
    raw = getattr(tc, "_cuda_getCurrentRawStream", None)
    _raw_stream = raw if raw is not None else (
        lambda index: torch.cuda.current_stream(index).cuda_stream)
    # torch.cuda.current_device() is _lazy_init() + this C call; the tensors
    # of any call we get are CUDA tensors, so CUDA is initialised already.
    getdev = getattr(tc, "_cuda_getDevice", None)
    _current_device = getdev if getdev is not None else torch.cuda.current_device
    _TORCH = torch
    return torch


# ---------------------------------------------------------------------------
# Validation helpers (only what the C layer cannot see: devices, dtypes)
# ---------------------------------------------------------------------------

def _dtype_code(torch, t, name):
    code = _DTYPE_CODES.get(t.dtype)
    if code is None:
        raise ValueError(f"{name}: dtype {t.dtype}; must be torch.float16 or "
                         "torch.bfloat16")
    return code


def _check_dev(t, name, dev):
    # dev is a CUDA device (qcurr_hidden_states' or output's, checked to be
    # CUDA), so equality alone proves both conditions below.
    if getattr(t, "device", None) == dev:
        return
    if not getattr(t, "is_cuda", False):
        where = getattr(t, "device", type(t).__name__)
        raise ValueError(f"{name}: on {where}; must be a CUDA tensor")
    if t.device != dev:
        raise ValueError(f"{name}: on {t.device}; must be on {dev} like "
                         "qcurr_hidden_states")


def _check_i32(torch, t, name, dev):
    if getattr(t, "device", None) == dev and t.dtype == _I32:
        return
    _check_dev(t, name, dev)
    raise ValueError(f"{name}: dtype {t.dtype}; must be torch.int32")


def _check_same_dtype(t, name, dtype, dev, like="qcurr_hidden_states"):
    if getattr(t, "device", None) == dev and t.dtype == dtype:
        return
    _check_dev(t, name, dev)
    raise ValueError(f"{name}: dtype {t.dtype}; must be {dtype} like {like}")


def _check_contiguous(t, name):
    if not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous (strides {tuple(t.stride())})")


def _as_int(torch, v, name):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{name}: a tensor of {v.numel()} elements; must "
                             "hold one integer")
        return int(v.item())  # vLLM passes a CPU tensor: no device sync
    return int(v)


def _pow2_at_least_16(v):
    return v >= 16 and (v & (v - 1)) == 0


def _call_on(torch, index, fn, *args):
    """fn(runtime, stream, *args) with device `index` current (the C runtime
    launches in the current CUDA context) and torch's current stream of that
    device. A plain comparison, not a context manager, in the common case."""
    if _current_device() != index:
        with torch.cuda.device(index):
            return fn(_runtime(torch, index), _raw_stream(index), *args)
    return fn(_runtime(torch, index), _raw_stream(index), *args)


# ---------------------------------------------------------------------------
# Caches: runtimes, slice-pointer tables, workspaces, metadata scratch
# ---------------------------------------------------------------------------

_cache_lock = threading.Lock()
_PTR_TABLES: Dict[Tuple[int, Tuple[int, ...]], Any] = {}  # -> (table, its address, host copy)
_HOST_PTRS: Dict[int, Any] = {}  # table address -> host copy (ctypes array)
# Device buffers in power-of-two size classes per (device, stream, use):
# never freed or resized, so captured graphs keep valid addresses, and a
# server whose batch sizes vary allocates a few classes (at most twice the
# largest request in all) instead of one buffer per size. Per stream,
# because calls on one stream run in order and calls on two may overlap.
_POOL: Dict[Tuple, Any] = {}  # (device, stream, use, class) -> buffer
_SCRATCH_VIEWS: Dict[Tuple, Any] = {}  # exact shapes over pool buffers


def _size_class(n: int) -> int:
    return max(256, 1 << (max(int(n), 1) - 1).bit_length())


def _runtime(torch, index: int):
    rt = L._runtimes.get(index)
    if rt is not None:
        return rt
    with torch.cuda.device(index):
        # The C runtime takes the calling thread's current context: make the
        # device's primary context (PyTorch's) current first.
        if not torch.cuda.is_current_stream_capturing():
            torch.cuda.synchronize(index)
        return L.get_runtime(index)


def _ptr_table(torch, tensors, name, dtype, dev, like="qcurr_hidden_states"):
    """(address, shape, strides) of the device int64 array of the slices'
    base pointers, and of the slices; the array is cached by the tuple of
    pointers (as vLLM's _get_ptr does), so repeated calls allocate nothing.
    One pass reads each slice's attributes once."""
    if isinstance(tensors, torch.Tensor):
        raise ValueError(f"{name}: must be a list of tensors (one per slice)")
    if len(tensors) == 0:
        raise ValueError(f"{name}: empty; needs one tensor per slice")
    shape0 = stride0 = None
    ptrs = []
    for i, t in enumerate(tensors):
        if not (getattr(t, "device", None) == dev and t.dtype == dtype):
            _check_same_dtype(t, f"{name}[{i}]", dtype, dev, like)
        shape, stride = t.shape, t.stride()
        if i == 0:
            if len(shape) != 4:
                raise ValueError(f"{name}[0]: {t.dim()}-D; must be 4-D")
            shape0, stride0 = shape, stride
        elif shape != shape0 or stride != stride0:
            if len(shape) != 4:
                raise ValueError(f"{name}[{i}]: {t.dim()}-D; must be 4-D")
            t0 = tensors[0]
            raise ValueError(f"{name}[{i}]: shape {tuple(t.shape)} strides "
                             f"{tuple(t.stride())}; every slice must match "
                             f"{name}[0] ({tuple(t0.shape)}, {tuple(t0.stride())})")
        ptrs.append(t.data_ptr())
    key = (dev.index, tuple(ptrs))
    entry = _PTR_TABLES.get(key)
    if entry is None:
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                f"{name}: first call with these weights inside CUDA graph "
                "capture; call the op once before capturing (it builds the "
                "device table of slice pointers)")
        table = torch.tensor(ptrs, dtype=torch.int64, device=dev)
        # The same pointers on the host, for the C ABI's lora_a_host_ptrs
        # (tensor-map kernels encode their maps from them).
        host = (ctypes.c_void_p * len(ptrs))(*ptrs)
        entry = (table, table.data_ptr(), host)
        with _cache_lock:
            # The host copy first: readers find the entry without the lock.
            _HOST_PTRS[entry[1]] = host
            _PTR_TABLES[key] = entry
    return entry[1], shape0, stride0


def _host_ptrs(table_addr: int) -> int:
    """Address of the host copy of the device pointer table at table_addr
    (made by _ptr_table), for moelora_fused_args.lora_a_host_ptrs."""
    return ctypes.addressof(_HOST_PTRS[table_addr])


def _pooled(torch, dev, stream: int, tag, n: int, dtype):
    """The buffer of n's size class (>= n elements of dtype) for `tag` on
    (device, stream)."""
    key = (dev.index, stream, tag, _size_class(n))
    buf = _POOL.get(key)
    if buf is None:
        buf = torch.empty(key[3], dtype=dtype, device=dev)
        with _cache_lock:
            buf = _POOL.setdefault(key, buf)
    return buf


def _workspace(torch, dev, nbytes: int, stream: int):
    """A uint8 device buffer of at least nbytes for calls on `stream`."""
    return _pooled(torch, dev, stream, "workspace", nbytes, torch.uint8)


def _scratch_i32(torch, dev, tag, shape):
    """A contiguous int32 tensor of `shape` for calls on the device's current
    stream: a view (cached per shape) of its size class's buffer."""
    stream = _raw_stream(dev.index)
    key = (dev.index, stream, tag) + tuple(shape)
    t = _SCRATCH_VIEWS.get(key)
    if t is None:
        n = 1
        for d in shape:
            n *= int(d)
        t = _pooled(torch, dev, stream, tag, n, torch.int32)[:n].view(*shape)
        with _cache_lock:
            _SCRATCH_VIEWS[key] = t
    return t


# ---------------------------------------------------------------------------
# Argument building
# ---------------------------------------------------------------------------

def _set_metadata(torch, a, dev, sorted_token_ids, expert_ids,
                  num_tokens_post_padded, block_size_m, block_name,
                  max_loras, num_pairs, keep) -> bool:
    """Fills the naive or sorted metadata of `a`. False: the call has
    nothing to do (sorted capacity below one block)."""
    if sorted_token_ids is None:
        _check_i32(torch, expert_ids, "expert_ids", dev)
        if expert_ids.numel() != num_pairs:
            raise ValueError(f"expert_ids: {expert_ids.numel()} elements; the naive "
                             f"metadata is topk_ids flattened (num_tokens*top_k = "
                             f"{num_pairs})")
        _check_contiguous(expert_ids, "expert_ids")
        a.topk_ids = expert_ids.data_ptr()
        a.EM = 0
        a.block_size_m = int(block_size_m) if block_size_m else 16
        return True

    bm = int(block_size_m)
    if not _pow2_at_least_16(bm):
        raise ValueError(f"{block_name} = {bm}: must be a power of two >= 16 "
                         "(the BLOCK_M the sorted metadata was aligned to)")
    _check_i32(torch, sorted_token_ids, "sorted_token_ids", dev)
    _check_i32(torch, expert_ids, "expert_ids", dev)
    if num_tokens_post_padded is None:
        raise ValueError("num_tokens_post_padded: None with sorted_token_ids given")
    _check_i32(torch, num_tokens_post_padded, "num_tokens_post_padded", dev)
    st, ex = sorted_token_ids, expert_ids
    if st.dim() == 1:
        st = st.view(max_loras, -1)
    if ex.dim() == 1:
        ex = ex.view(max_loras, -1)
    st_shape, ex_shape = st.shape, ex.shape
    if len(st_shape) != 2 or len(ex_shape) != 2:
        raise ValueError("sorted_token_ids / expert_ids: must be 2-D (max_loras, ...)")
    if st_shape[0] < max_loras or ex_shape[0] < max_loras:
        raise ValueError(f"sorted_token_ids / expert_ids: {st_shape[0]} / "
                         f"{ex_shape[0]} rows; need max_loras = {max_loras}")
    if num_tokens_post_padded.numel() < max_loras or not num_tokens_post_padded.is_contiguous():
        raise ValueError("num_tokens_post_padded: must be contiguous with max_loras "
                         f"= {max_loras} elements")
    em_caller, ex_cols = int(st_shape[1]), int(ex_shape[1])
    st_stride, ex_stride = st.stride(), ex.stride()
    direct = (em_caller % bm == 0 and ex_cols == em_caller // bm
              and (st_stride[1] == 1 or em_caller == 1) and st_stride[0] == em_caller
              and (ex_stride[1] == 1 or ex_cols == 1)
              and ex_stride[0] == ex_cols)
    if direct:
        em = em_caller
        a.sorted_token_ids = st.data_ptr()
        a.expert_ids = ex.data_ptr()
    else:
        # The C ABI takes (max_loras, EM) / (max_loras, EM/BLOCK_M) with EM a
        # multiple of BLOCK_M and no row strides; vLLM sizes the rows
        # numel + E*(BLOCK_M-1) (not rounded). Blocks past floor(EM/BLOCK_M)
        # never hold work (num_tokens_post_padded is a multiple of BLOCK_M
        # and <= EM), so copy the usable prefix into packed scratch.
        nb = min(em_caller // bm, ex_cols)
        em = nb * bm
        if em == 0:
            return False
        rows = int(st_shape[0])
        s2 = _scratch_i32(torch, dev, "sorted", (rows, em))
        e2 = _scratch_i32(torch, dev, "experts", (rows, nb))
        # Whole rows need no slicing (a view costs about a us on the host).
        s2.copy_(st if em == em_caller else st[:, :em])
        e2.copy_(ex if nb == ex_cols else ex[:, :nb])
        keep += [s2, e2]
        a.sorted_token_ids = s2.data_ptr()
        a.expert_ids = e2.data_ptr()
    a.num_tokens_post_padded = num_tokens_post_padded.data_ptr()
    a.EM = em
    a.block_size_m = bm
    return True


def _set_common(torch, a, dev, *, topk_weights, token_lora_mapping, lora_ids,
                adapter_enabled, num_tokens, top_k, num_active_loras, max_loras,
                mul_routed_weight, sorted_meta):
    _check_dev(topk_weights, "topk_weights", dev)
    tw_shape = topk_weights.shape
    if len(tw_shape) != 2 or tw_shape[1] != top_k:
        raise ValueError(f"topk_weights: shape {tuple(tw_shape)}; must be "
                         f"(num_tokens, top_k_num = {top_k})")
    tw_f32 = topk_weights.dtype == _F32
    if mul_routed_weight:
        if not tw_f32:
            raise ValueError(f"topk_weights: dtype {topk_weights.dtype}; must be "
                             "torch.float32 with mul_routed_weight")
        _check_contiguous(topk_weights, "topk_weights")
    if tw_f32 and topk_weights.is_contiguous():
        a.topk_weights = topk_weights.data_ptr()
    _check_i32(torch, token_lora_mapping, "token_lora_mapping", dev)
    if token_lora_mapping.numel() < num_tokens or not token_lora_mapping.is_contiguous():
        raise ValueError(f"token_lora_mapping: {token_lora_mapping.numel()} elements; "
                         f"must be contiguous with at least num_tokens = {num_tokens}")
    _check_i32(torch, lora_ids, "lora_ids", dev)
    _check_i32(torch, adapter_enabled, "adapter_enabled", dev)
    if adapter_enabled.numel() < max_loras:
        raise ValueError(f"adapter_enabled: {adapter_enabled.numel()} elements; "
                         f"needs max_loras = {max_loras}")
    n_active = _as_int(torch, num_active_loras, "num_active_loras")
    if sorted_meta:
        if lora_ids.numel() < n_active:
            raise ValueError(f"lora_ids: {lora_ids.numel()} elements; fewer than "
                             f"num_active_loras = {n_active}")
    else:
        # Naive metadata: the adapter comes from token_lora_mapping and vLLM
        # launches one grid slice whatever num_active_loras says.
        n_active = max(1, n_active)
    a.token_lora_mapping = token_lora_mapping.data_ptr()
    a.lora_ids = lora_ids.data_ptr()
    a.adapter_enabled = adapter_enabled.data_ptr()
    a.num_tokens = num_tokens
    a.top_k = top_k
    a.max_loras = max_loras
    a.num_active_loras = n_active
    a.mul_routed_weight = 1 if mul_routed_weight else 0


def _set_output(torch, a, output, dev, dtype, num_tokens, top_k, cols_needed):
    _check_same_dtype(output, "output", dtype, dev)
    shape = output.shape
    if len(shape) != 3 or shape[0] != num_tokens or shape[1] != top_k:
        raise ValueError(f"output: shape {tuple(shape)}; must be (num_tokens = "
                         f"{num_tokens}, top_k = {top_k}, num_slices*N)")
    if shape[2] < cols_needed:
        raise ValueError(f"output: {shape[2]} columns; needs {cols_needed}")
    a.output = output.data_ptr()
    a.output_stride[:] = output.stride()


def _prepare_fused(torch, output, x, lora_a_stacked, lora_b_stacked, topk_weights,
                   sorted_token_ids, expert_ids, num_tokens_post_padded,
                   token_lora_mapping, top_k_num, lora_ids, num_active_loras,
                   adapter_enabled, shrink_block_size_m, mul_routed_weight,
                   add_inputs, fully_sharded, keep):
    """The moelora_fused_args of a fused_moe_lora call, or None when there is
    nothing to do."""
    if not getattr(x, "is_cuda", False):
        raise ValueError(f"qcurr_hidden_states: on {getattr(x, 'device', None)}; must "
                         "be a CUDA tensor")
    dev = x.device
    a = L.new_fused_args()
    a.dtype = _dtype_code(torch, x, "qcurr_hidden_states")
    x_dtype, x_shape = x.dtype, x.shape
    if len(x_shape) != 2:
        raise ValueError(f"qcurr_hidden_states: {x.dim()}-D; must be (rows, K)")
    if len(lora_a_stacked) != len(lora_b_stacked):
        raise ValueError(f"lora_a_stacked / lora_b_stacked: {len(lora_a_stacked)} vs "
                         f"{len(lora_b_stacked)} slices; must match")
    a_ptrs, a_shape, a_stride = _ptr_table(torch, lora_a_stacked, "lora_a_stacked",
                                           x_dtype, dev)
    b_ptrs, b_shape, b_stride = _ptr_table(torch, lora_b_stacked, "lora_b_stacked",
                                           x_dtype, dev)
    max_loras, num_experts, rank, K = a_shape  # torch.Size: ints already
    N = int(b_shape[2])
    if int(b_shape[0]) != max_loras or int(b_shape[1]) != num_experts:
        raise ValueError(f"lora_b_stacked[0]: shape {tuple(b_shape)}; must be "
                         f"(max_loras = {max_loras}, num_experts = {num_experts}, N, R)")
    if int(b_shape[3]) != rank:
        raise ValueError(f"lora_b_stacked[0]: rank {int(b_shape[3])}; must equal "
                         f"lora_a_stacked's {rank}")
    if int(x_shape[1]) != K:
        raise ValueError(f"qcurr_hidden_states: K = {int(x_shape[1])}; "
                         f"lora_a_stacked has K = {K}")
    num_tokens = int(topk_weights.shape[0])
    top_k = int(top_k_num)
    x_rows = num_tokens * top_k if mul_routed_weight else num_tokens
    if int(x_shape[0]) < x_rows:
        raise ValueError(f"qcurr_hidden_states: {int(x_shape[0])} rows; needs "
                         f"{x_rows} ({'num_tokens*top_k' if mul_routed_weight else 'num_tokens'})")
    num_slices = len(lora_a_stacked)
    _set_output(torch, a, output, dev, x_dtype, num_tokens, top_k, num_slices * N)
    sorted_meta = sorted_token_ids is not None
    _set_common(torch, a, dev, topk_weights=topk_weights,
                token_lora_mapping=token_lora_mapping, lora_ids=lora_ids,
                adapter_enabled=adapter_enabled, num_tokens=num_tokens, top_k=top_k,
                num_active_loras=num_active_loras, max_loras=max_loras,
                mul_routed_weight=mul_routed_weight, sorted_meta=sorted_meta)
    if not _set_metadata(torch, a, dev, sorted_token_ids, expert_ids,
                         num_tokens_post_padded, shrink_block_size_m,
                         "shrink_block_size_m", max_loras, num_tokens * top_k, keep):
        return None, dev
    a.x = x.data_ptr()
    a.x_stride[:] = x.stride()
    a.lora_a_ptrs = a_ptrs
    a.lora_a_host_ptrs = _host_ptrs(a_ptrs)
    a.lora_a_stride[:] = a_stride
    a.lora_b_ptrs = b_ptrs
    a.lora_b_stride[:] = b_stride
    a.num_experts = num_experts
    a.K, a.N, a.rank, a.num_slices = K, N, rank, num_slices
    a.add_inputs = 1 if add_inputs else 0
    a.fully_sharded = 1 if fully_sharded else 0
    return a, dev


# ---------------------------------------------------------------------------
# Tensor parallelism: the collective of fully_sharded calls
# ---------------------------------------------------------------------------

class TensorParallel:
    """A tensor-parallel group's collectives, as fully_sharded calls use them
    between the shrink and the expand (vLLM's fully_sharded MoE-LoRA):

      world_size  the group's size: an int >= 1, or a callable returning
                  one, read at every fully_sharded call (vLLM's group only
                  exists once its workers are up).
      all_reduce  all_reduce(t) -> the elementwise sum of every rank's t:
                  same shape, dtype and device; reducing t in place and
                  returning t or None is fine (torch.distributed.all_reduce
                  can be passed as it is). Row-parallel layers (W2: lora_a
                  sharded along K, every rank's intermediate a partial sum).
      all_gather  all_gather(t) -> every rank's t concatenated along the
                  last dimension in rank order: t.shape[:-1] + (world_size *
                  t.shape[-1],), t's dtype and device (vLLM's
                  tensor_model_parallel_all_gather(t), dim=-1). Column-
                  parallel layers (W13: lora_a sharded along R, lora_b of
                  the full rank).
      name        names the group in messages.

    t is the intermediate (num_slices, num_tokens, top_k, R) of this rank,
    a contiguous view of moelora's workspace on the op's stream (torch's
    current stream); a collective that returns a non-contiguous tensor gets
    it copied. Both may be called inside CUDA-graph capture (when the op
    is captured), so they must be capturable then (NCCL is, gloo is not).
    """

    __slots__ = ("world_size", "all_reduce", "all_gather", "name")

    def __init__(self, world_size, all_reduce=None, all_gather=None, name=None):
        if isinstance(world_size, bool) or not (
                isinstance(world_size, int) or callable(world_size)):
            raise ValueError(f"world_size: {world_size!r}; must be an int >= 1 or a "
                             "callable returning one")
        if isinstance(world_size, int) and world_size < 1:
            raise ValueError(f"world_size = {world_size}: must be >= 1")
        for what, fn in (("all_reduce", all_reduce), ("all_gather", all_gather)):
            if fn is not None and not callable(fn):
                raise ValueError(f"{what}: {type(fn).__name__} is not callable")
        if isinstance(world_size, int) and world_size > 1 and \
                all_reduce is None and all_gather is None:
            raise ValueError(f"all_reduce / all_gather: world_size {world_size} needs "
                             "at least one of them")
        self.world_size = world_size
        self.all_reduce = all_reduce
        self.all_gather = all_gather
        self.name = str(name) if name else "the tensor-parallel setting"

    def size(self) -> int:
        """The group's size now (world_size, called when it is callable)."""
        w = self.world_size() if callable(self.world_size) else self.world_size
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            try:
                w = int(w)  # numpy/torch integers
            except (TypeError, ValueError):
                w = None
            if w is None or w < 1:
                raise ValueError(f"world_size: {self.name}'s world_size() returned "
                                 f"{w!r}; must be an int >= 1")
        return w

    def __repr__(self):
        def fn(f):
            return None if f is None else getattr(f, "__qualname__", repr(f))
        world = fn(self.world_size) if callable(self.world_size) else self.world_size
        return (f"TensorParallel(name={self.name!r}, world_size={world}, "
                f"all_reduce={fn(self.all_reduce)}, all_gather={fn(self.all_gather)})")


_TP_DEFAULT: Optional[TensorParallel] = None  # set_tensor_parallel's
_TP_UNSET = object()
# tensor_parallel()'s override: per thread (a new thread starts without one)
# and per asyncio task.
_TP_OVERRIDE = contextvars.ContextVar("moelora_tensor_parallel", default=_TP_UNSET)


def _as_tensor_parallel(world_size, all_reduce, all_gather, name):
    if isinstance(world_size, TensorParallel):
        if all_reduce is not None or all_gather is not None or name is not None:
            raise ValueError("all_reduce / all_gather / name: given with a "
                             "TensorParallel (which has its own)")
        return world_size
    if world_size is None:
        if all_reduce is not None or all_gather is not None:
            raise ValueError("world_size: None (no tensor parallelism) with "
                             "collectives given")
        return None
    return TensorParallel(world_size, all_reduce, all_gather, name)


def set_tensor_parallel(world_size=None, all_reduce=None, all_gather=None, *,
                        name=None) -> Optional[TensorParallel]:
    """Sets the process-wide collectives of fully_sharded calls (see
    TensorParallel for the arguments) and returns the previous setting.
    set_tensor_parallel(prev) with a TensorParallel (or the None a first
    call returned) puts a setting back; None clears it. moelora's vLLM
    plugin sets vLLM's (vllm.distributed's tensor_model_parallel_*).
    Importing nothing and loading no library: call it at start-up."""
    global _TP_DEFAULT
    tp = _as_tensor_parallel(world_size, all_reduce, all_gather, name)
    with _cache_lock:
        prev, _TP_DEFAULT = _TP_DEFAULT, tp
    return prev


def get_tensor_parallel() -> Optional[TensorParallel]:
    """The setting fully_sharded calls of this thread use now: the innermost
    tensor_parallel() block's, else set_tensor_parallel()'s, else None."""
    tp = _TP_OVERRIDE.get()
    return _TP_DEFAULT if tp is _TP_UNSET else tp


@contextlib.contextmanager
def tensor_parallel(world_size=None, all_reduce=None, all_gather=None, *, name=None):
    """with moelora.tensor_parallel(2, all_reduce=..., all_gather=...): the
    fully_sharded calls of this thread (and asyncio task) inside the block
    use these collectives instead of the process-wide ones; world_size None
    (or 1) means one rank inside the block. Yields the TensorParallel."""
    tp = _as_tensor_parallel(world_size, all_reduce, all_gather, name)
    token = _TP_OVERRIDE.set(tp)
    try:
        yield tp
    finally:
        _TP_OVERRIDE.reset(token)


def _vllm_world_unconfigured() -> int:
    """The size of vLLM's tensor-parallel group when vLLM has one up in this
    process (without importing anything), else 1."""
    ps = sys.modules.get("vllm.distributed.parallel_state")
    if ps is None:
        return 1
    try:
        if not ps.model_parallel_is_initialized():
            return 1
        return int(ps.get_tensor_model_parallel_world_size())
    except Exception:  # noqa: BLE001 - not vLLM's module as we know it
        return 1


def _tp_collectives():
    """(world_size, TensorParallel) for this fully_sharded call: (1, None)
    without a setting. With no setting in a process where vLLM's TP group
    has more than one rank (moelora called without the plugin), raises
    rather than skip the collective (the delta would be wrong)."""
    tp = get_tensor_parallel()
    if tp is None:
        world = _vllm_world_unconfigured()
        if world > 1:
            raise RuntimeError(
                f"fully_sharded: vLLM's tensor-parallel group has {world} ranks but "
                "moelora has no collectives for it; register moelora's vLLM plugin "
                "(moelora.vllm_plugin.register(), which supplies vLLM's) or call "
                "moelora.set_tensor_parallel(...)")
        return 1, None
    return tp.size(), tp


def _stacked_dim(stacked, dim):
    """stacked[0].shape[dim] when stacked is a non-empty list of 4-D
    tensors, else None (the argument checks then say what is wrong)."""
    try:
        shape = stacked[0].shape
        return int(shape[dim]) if len(shape) == 4 else None
    except Exception:  # noqa: BLE001
        return None


def _intermediate_view(torch, ws, dtype, shape):
    n = 1
    for s in shape:
        n *= int(s)
    return ws.view(dtype)[:n].view(*shape)


def _check_collective(torch, t, what, tp, want, dtype, dev):
    """The intermediate a collective returned, checked against what the
    expand reads: a contiguous (num_slices, num_tokens, top_k, R) tensor of
    the op's dtype on its device."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{what}: {tp.name}'s {what} returned {type(t).__name__}; "
                         "must return a tensor")
    if tuple(int(s) for s in t.shape) != tuple(want):
        raise ValueError(
            f"{what}: {tp.name}'s {what} returned shape {tuple(t.shape)}; must be "
            f"{tuple(want)}" + (
                " (the intermediate gathered along its last dimension, R)"
                if what == "all_gather" else " (the intermediate's shape)"))
    if t.dtype != dtype:
        raise ValueError(f"{what}: {tp.name}'s {what} returned dtype {t.dtype}; must "
                         f"be {dtype} like the intermediate")
    if getattr(t, "device", None) != dev:
        raise ValueError(f"{what}: {tp.name}'s {what} returned a tensor on "
                         f"{getattr(t, 'device', None)}; must be on {dev}")
    return t if t.is_contiguous() else t.contiguous()


def _fused_call(rt, stream, torch, a, dev):
    """moelora_fused_moe_lora, giving it a workspace when its plan needs one."""
    if a.rank > L.MAX_ONE_SHOT_RANK or a.fully_sharded:
        a.workspace = _workspace(torch, dev, L.workspace_bytes(a), stream).data_ptr()
    lib = L.lib()
    status = lib.moelora_fused_moe_lora(rt, ctypes.byref(a), stream)
    if (status == L.MOELORA_ERROR_INVALID_ARGUMENT and not a.workspace
            and L.last_error().startswith("workspace:")):
        a.workspace = _workspace(torch, dev, L.workspace_bytes(a), stream).data_ptr()
        status = lib.moelora_fused_moe_lora(rt, ctypes.byref(a), stream)
    L.check(status, "fused_moe_lora")


# ---------------------------------------------------------------------------
# The drop-in ops
# ---------------------------------------------------------------------------

def fused_moe_lora(
    output,  # (num_tokens, top_k_num, N*len(lora_a_stacked),)
    qcurr_hidden_states,  # (num_tokens, K,)
    lora_a_stacked,  # [(max_loras, num_experts, max_lora_rank, K,),...]
    lora_b_stacked,  # [(max_loras, num_experts, N, max_lora_rank,),...]
    topk_weights,  # (num_tokens, top_k_num)
    sorted_token_ids,  # (max_loras, _) or None (naive)
    expert_ids,  # (max_loras, _ ,) or (num_tokens * top_k,)
    num_tokens_post_padded,  # (max_loras, ) or None
    token_lora_mapping,
    max_lora_rank: int,
    top_k_num: int,
    lora_ids,
    num_active_loras,  # CPU tensor [1] (or int), number of active LoRAs
    adapter_enabled,
    shrink_block_size_m: int,
    shrink_block_size_n: int,
    shrink_block_size_k: int,
    shrink_group_size_m: int,
    shrink_num_warps: int,
    shrink_num_stages: int,
    shrink_split_k: int,
    expand_block_size_m: int,
    expand_block_size_n: int,
    expand_block_size_k: int,
    expand_group_size_m: int,
    expand_num_warps: int,
    expand_num_stages: int,
    expand_split_k: int,
    mul_routed_weight: bool = False,
    fully_sharded: bool = False,
    offset: int = 0,
    add_inputs: bool = True,
) -> None:
    """vLLM's fused_moe_lora on moelora's kernels; adds the LoRA delta into
    `output` in place (see the module docstring for the matched version).
    fully_sharded runs shrink, the tensor-parallel collective (see
    set_tensor_parallel: all-gather when lora_b_stacked's rank is larger
    than lora_a_stacked's, else all-reduce; none with one rank) and expand
    at column `offset`; otherwise `offset` is ignored, as in vLLM's fast
    path."""
    torch = _torch()
    if fully_sharded and not add_inputs:
        raise ValueError("add_inputs: fused_moe_lora(add_inputs=False) is only "
                         "supported with fully_sharded=False (as in vLLM)")
    keep: List[Any] = []
    if fully_sharded:
        # After an all-gather the intermediate has the full rank, which is
        # lora_b_stacked's; the shrink half uses lora_a_stacked's rank.
        return _fused_sharded(torch, output, qcurr_hidden_states, lora_a_stacked,
                              lora_b_stacked, topk_weights, sorted_token_ids,
                              expert_ids, num_tokens_post_padded,
                              token_lora_mapping, max_lora_rank, top_k_num,
                              lora_ids, num_active_loras, adapter_enabled,
                              shrink_block_size_m, mul_routed_weight, offset)
    a, dev = _prepare_fused(torch, output, qcurr_hidden_states, lora_a_stacked,
                            lora_b_stacked, topk_weights, sorted_token_ids,
                            expert_ids, num_tokens_post_padded, token_lora_mapping,
                            top_k_num, lora_ids, num_active_loras, adapter_enabled,
                            shrink_block_size_m, mul_routed_weight, add_inputs,
                            False, keep)
    if a is None:
        return
    _call_on(torch, dev.index, _fused_call, torch, a, dev)


def _fused_sharded(torch, output, x, lora_a_stacked, lora_b_stacked, topk_weights,
                   sorted_token_ids, expert_ids, num_tokens_post_padded,
                   token_lora_mapping, max_lora_rank, top_k_num, lora_ids,
                   num_active_loras, adapter_enabled, block_size_m,
                   mul_routed_weight, offset):
    """fully_sharded as vLLM's _fused_moe_lora runs it: shrink; all-gather
    of the intermediate when lora_b_stacked's rank differs from
    lora_a_stacked's (column-parallel: A split along R, the gathered rank is
    B's), else all-reduce (row-parallel: A split along K); expand at column
    `offset`. Every argument, the collective included, is checked before
    the shrink; what the collective returns is checked before the expand."""
    keep: List[Any] = []
    world, tp = _tp_collectives()
    a_rank = _stacked_dim(lora_a_stacked, 2)
    b_rank = _stacked_dim(lora_b_stacked, 3)
    gather = a_rank is not None and b_rank is not None and a_rank != b_rank
    if gather:
        if world == 1 or tp.all_gather is None:
            why = ("no tensor-parallel collectives are set (moelora.set_tensor_parallel; "
                   "under vLLM, moelora's vLLM plugin sets vLLM's)" if tp is None else
                   f"{tp.name} has world size 1" if world == 1 else
                   f"{tp.name} has no all_gather")
            raise ValueError(
                f"lora_b_stacked: rank {b_rank} differs from lora_a_stacked's {a_rank}; "
                "a column-parallel fully_sharded call all-gathers the intermediate "
                f"over the tensor-parallel group, but {why}")
        if a_rank * world != b_rank:
            raise ValueError(
                f"lora_b_stacked: rank {b_rank}; the all-gather of lora_a_stacked's "
                f"rank {a_rank} over world_size {world} ({tp.name}) gives "
                f"{a_rank * world}")
    elif world > 1 and tp.all_reduce is None:
        raise ValueError(
            f"all_reduce: {tp.name} (world size {world}) has none; a row-parallel "
            f"fully_sharded call (lora_a_stacked and lora_b_stacked of rank {a_rank}) "
            "all-reduces the intermediate")
    try:
        offset = int(offset)
    except (TypeError, ValueError):
        raise ValueError(f"offset = {offset!r}: must be an integer >= 0") from None
    if offset < 0:
        raise ValueError(f"offset = {offset}: must be >= 0")
    prep_b = lora_b_stacked
    if gather:
        # Validate and build the shrink with a rank-consistent view of B; the
        # expand below uses the real B with the gathered rank.
        prep_b = [t[..., :a_rank] for t in lora_b_stacked]
    a, dev = _prepare_fused(torch, output, x, lora_a_stacked, prep_b, topk_weights,
                            sorted_token_ids, expert_ids, num_tokens_post_padded,
                            token_lora_mapping, top_k_num, lora_ids, num_active_loras,
                            adapter_enabled, block_size_m, mul_routed_weight, True,
                            True, keep)
    if a is None:
        return
    cols = int(output.shape[2])
    if cols < offset + a.num_slices * a.N:
        raise ValueError(f"offset = {offset}: past output's {cols} columns (offset + "
                         f"num_slices*N = {offset + a.num_slices * a.N})")
    if gather:
        # The expand's B (full rank), checked now so that nothing runs when
        # it is wrong (the cached table makes this free in the halves).
        _ptr_table(torch, lora_b_stacked, "lora_b_stacked", x.dtype, dev)
    if world == 1 and offset == 0:
        _call_on(torch, dev.index, _fused_call, torch, a, dev)  # shrink + expand, one call
        return
    _call_on(torch, dev.index, _sharded_halves, torch, a, dev, x.dtype,
             lora_b_stacked, tp if world > 1 else None, world, gather, offset)


def _sharded_halves(rt, stream, torch, a, dev, dtype, lora_b_stacked, tp, world,
                    gather, offset):
    """fully_sharded as shrink, the collective (tp None: none) and expand at
    column `offset`."""
    ws = _workspace(torch, dev, L.workspace_bytes(a), stream)
    # The intermediate (num_slices, num_tokens, top_k, rank) starts the
    # workspace; its tensor view (a few host us) only for the collective.
    a.workspace = ws.data_ptr()
    L.check(L.lib().moelora_shrink(rt, ctypes.byref(a), stream),
            "fused_moe_lora (shrink)")
    if tp is not None:
        shape = (a.num_slices, a.num_tokens, a.top_k, a.rank)
        inter = _intermediate_view(torch, ws, dtype, shape)
        if gather:
            got = _check_collective(torch, tp.all_gather(inter), "all_gather", tp,
                                    shape[:3] + (a.rank * world,), dtype, dev)
            b_ptrs, _, b_stride = _ptr_table(torch, lora_b_stacked, "lora_b_stacked",
                                             dtype, dev)
            a.lora_b_ptrs = b_ptrs
            a.lora_b_stride[:] = b_stride
            a.rank = int(got.shape[-1])
        else:
            got = tp.all_reduce(inter)
            # None: reduced in place, as torch.distributed.all_reduce does.
            got = _check_collective(torch, inter if got is None else got, "all_reduce",
                                    tp, shape, dtype, dev)
        a.workspace = got.data_ptr()
    L.check(L.lib().moelora_expand(rt, ctypes.byref(a), offset, stream),
            "fused_moe_lora (expand)")


def _check_intermediate(torch, inter, dev, dtype, shape,
                        like="qcurr_hidden_states"):
    _check_same_dtype(inter, "a_intermediate_cache1", dtype, dev, like)
    if tuple(int(s) for s in inter.shape) != tuple(shape):
        raise ValueError(f"a_intermediate_cache1: shape {tuple(inter.shape)}; must be "
                         f"(num_slices, num_tokens, top_k, R) = {tuple(shape)} "
                         "(vLLM's non-TMA layout)")
    _check_contiguous(inter, "a_intermediate_cache1")


def fused_moe_lora_shrink(
    a_intermediate_cache1,  # (num_slices, num_tokens, top_k_num, max_lora_rank)
    qcurr_hidden_states,  # (num_tokens, K,)
    lora_a_stacked,  # [(max_loras, num_experts, max_lora_rank, K,),...]
    topk_weights,  # (num_tokens, top_k_num)
    sorted_token_ids,  # (max_loras, _) or None
    expert_ids,  # (max_loras, _ ,) or (num_tokens * top_k,)
    num_tokens_post_padded,  # (max_loras, ) or None
    token_lora_mapping,
    top_k_num: int,
    lora_ids,
    adapter_enabled,
    ## adding for kernel
    device,
    N: int,
    M: int,
    EM: int,
    K: int,
    num_tokens: int,
    num_experts: int,
    num_slices: int,
    block_size_m: int,
    block_size_n: int,
    block_size_k: int,
    group_size_m: int,
    num_warps: int,
    num_stages: int,
    split_k: int,
    num_active_loras,  # CPU tensor [1] (or int)
    mul_routed_weight: bool = False,
    use_gdc: bool = False,
    use_tma: bool = False,
) -> None:
    """vLLM's fused_moe_lora_shrink: writes x @ A^T (rounded to T) into
    a_intermediate_cache1, which moelora zeroes first. Tiling arguments,
    N (vLLM passes the rank), M, EM, K, num_tokens, device, use_gdc and
    use_tma are taken from the tensors or ignored."""
    torch = _torch()
    x = qcurr_hidden_states
    if not getattr(x, "is_cuda", False):
        raise ValueError("qcurr_hidden_states: must be a CUDA tensor")
    dev = x.device
    keep: List[Any] = []
    a = L.new_fused_args()
    a.dtype = _dtype_code(torch, x, "qcurr_hidden_states")
    a_ptrs, a_shape, a_stride = _ptr_table(torch, lora_a_stacked, "lora_a_stacked",
                                           x.dtype, dev)
    max_loras, n_exp, rank, k_dim = a_shape
    if int(x.shape[1]) != k_dim:
        raise ValueError(f"qcurr_hidden_states: K = {int(x.shape[1])}; lora_a_stacked "
                         f"has K = {k_dim}")
    ntok = int(topk_weights.shape[0])
    top_k = int(top_k_num)
    slices = len(lora_a_stacked)
    _check_intermediate(torch, a_intermediate_cache1, dev, x.dtype,
                        (slices, ntok, top_k, rank))
    sorted_meta = sorted_token_ids is not None
    _set_common(torch, a, dev, topk_weights=topk_weights,
                token_lora_mapping=token_lora_mapping, lora_ids=lora_ids,
                adapter_enabled=adapter_enabled, num_tokens=ntok, top_k=top_k,
                num_active_loras=num_active_loras, max_loras=max_loras,
                mul_routed_weight=mul_routed_weight, sorted_meta=sorted_meta)
    if not _set_metadata(torch, a, dev, sorted_token_ids, expert_ids,
                         num_tokens_post_padded, block_size_m, "block_size_m",
                         max_loras, ntok * top_k, keep):
        a_intermediate_cache1.zero_()
        return
    inter = a_intermediate_cache1
    a.x = x.data_ptr()
    a.x_stride[:] = x.stride()
    a.lora_a_ptrs = a_ptrs
    a.lora_a_host_ptrs = _host_ptrs(a_ptrs)
    a.lora_a_stride[:] = a_stride
    # Shrink reads neither B nor the output; the C ABI still wants them
    # non-NULL and well-formed: point them at the intermediate.
    a.lora_b_ptrs = a_ptrs
    a.lora_b_stride[:] = [n_exp * rank, rank, rank, 1]
    a.output = inter.data_ptr()
    a.output_stride[:] = [top_k * rank, rank, 1]
    a.num_experts = n_exp
    a.K, a.N, a.rank, a.num_slices = k_dim, rank, rank, slices
    a.add_inputs = 0
    a.fully_sharded = 1
    a.workspace = inter.data_ptr()
    _call_on(torch, dev.index, _shrink_call, a)


def _shrink_call(rt, stream, a):
    L.check(L.lib().moelora_shrink(rt, ctypes.byref(a), stream), "fused_moe_lora_shrink")


def fused_moe_lora_expand(
    output,  # (num_tokens, top_k_num, N*len(lora_a_stacked),)
    a_intermediate_cache1,  # (num_slices, M, top_k_num, max_lora_rank)
    lora_b_stacked,  # [(max_loras, num_experts, N, max_lora_rank,),...]
    topk_weights,  # (num_tokens, top_k_num)
    sorted_token_ids,  # (max_loras, _) or None
    expert_ids,  # (max_loras, _ ,) or (num_tokens * top_k,)
    num_tokens_post_padded,  # (max_loras, ) or None
    token_lora_mapping,
    top_k_num: int,
    lora_ids,
    adapter_enabled,
    ## adding for kernel
    device,
    N: int,
    M: int,
    EM: int,
    K: int,
    num_tokens: int,
    num_experts: int,
    num_slices: int,
    max_lora_rank: int,
    w1_output_dim_size: int,
    block_size_m: int,
    block_size_n: int,
    block_size_k: int,
    group_size_m: int,
    num_warps: int,
    num_stages: int,
    split_k: int,
    num_active_loras,  # CPU tensor [1] (or int)
    mul_routed_weight: bool = False,
    offset: int = 0,
    use_gdc: bool = False,
    use_tma: bool = False,
) -> None:
    """vLLM's fused_moe_lora_expand: output[:, :, offset + s*N : offset +
    (s+1)*N] += intermediate[s] @ B_s^T (times topk_weights with
    mul_routed_weight). The rank is max_lora_rank (the full rank after an
    all-gather); N is w1_output_dim_size."""
    torch = _torch()
    inter = a_intermediate_cache1
    if not getattr(output, "is_cuda", False):
        raise ValueError("output: must be a CUDA tensor")
    dev = output.device
    keep: List[Any] = []
    a = L.new_fused_args()
    a.dtype = _dtype_code(torch, output, "output")
    # The expand has no qcurr_hidden_states: output sets the dtype.
    b_ptrs, b_shape, b_stride = _ptr_table(torch, lora_b_stacked, "lora_b_stacked",
                                           output.dtype, dev, like="output")
    max_loras, n_exp, n_dim, b_rank = b_shape
    rank = int(max_lora_rank)
    if b_rank < rank:
        raise ValueError(f"lora_b_stacked[0]: rank {b_rank}; smaller than "
                         f"max_lora_rank = {rank}")
    if int(w1_output_dim_size) != n_dim:
        raise ValueError(f"w1_output_dim_size = {w1_output_dim_size}: lora_b_stacked "
                         f"has N = {n_dim}")
    ntok = int(topk_weights.shape[0])
    top_k = int(top_k_num)
    slices = len(lora_b_stacked)
    _check_intermediate(torch, inter, dev, output.dtype, (slices, ntok, top_k, rank),
                        like="output")
    if offset < 0:
        raise ValueError(f"offset = {offset}: must be >= 0")
    _set_output(torch, a, output, dev, output.dtype, ntok, top_k,
                int(offset) + slices * n_dim)
    sorted_meta = sorted_token_ids is not None
    _set_common(torch, a, dev, topk_weights=topk_weights,
                token_lora_mapping=token_lora_mapping, lora_ids=lora_ids,
                adapter_enabled=adapter_enabled, num_tokens=ntok, top_k=top_k,
                num_active_loras=num_active_loras, max_loras=max_loras,
                mul_routed_weight=mul_routed_weight, sorted_meta=sorted_meta)
    if not _set_metadata(torch, a, dev, sorted_token_ids, expert_ids,
                         num_tokens_post_padded, block_size_m, "block_size_m",
                         max_loras, ntok * top_k, keep):
        return
    # Expand reads neither x nor A; the C ABI still wants them non-NULL and
    # well-formed (K only selects the tuned-table entry). Point them at the
    # pointer table (a fresh, aligned allocation).
    k_dim = int(K) if int(K) > 0 and int(K) % 2 == 0 else 8
    a.x = b_ptrs
    a.x_stride[:] = [k_dim, 1]
    a.lora_a_ptrs = b_ptrs
    a.lora_a_stride[:] = [n_exp * rank * k_dim, rank * k_dim, k_dim, 1]
    a.lora_b_ptrs = b_ptrs
    a.lora_b_stride[:] = b_stride
    a.num_experts = n_exp
    a.K, a.N, a.rank, a.num_slices = k_dim, n_dim, rank, slices
    a.add_inputs = 1
    a.fully_sharded = 1
    a.workspace = inter.data_ptr()
    _call_on(torch, dev.index, _expand_call, a, int(offset))


def _expand_call(rt, stream, a, offset):
    L.check(L.lib().moelora_expand(rt, ctypes.byref(a), offset, stream),
            "fused_moe_lora_expand")


def moe_lora_align_block_size(
    topk_ids,
    token_lora_mapping,
    num_experts: int,
    block_size: int,
    max_loras: int,
    max_num_tokens_padded: int,
    max_num_m_blocks: int,
    sorted_token_ids,
    experts_ids,
    num_tokens_post_pad,
    adapter_enabled,
    lora_ids,
    expert_map=None,
) -> None:
    """vLLM's ops.moe_lora_align_block_size on moelora's align kernel: for
    each adapter l < max_loras, the flat pair indices of its tokens grouped
    by expert (ascending, stable), each group padded to a multiple of
    block_size with num_tokens*top_k; experts_ids[l][b] the expert of block b
    (-1 unused, mapped through expert_map when given); num_tokens_post_pad[l]
    the padded length. Rows of max_num_tokens_padded entries (any value >=
    the padded lengths vLLM computes works; moelora's own capacity is
    moelora.align_capacity()). Without tokens (empty topk_ids and
    token_lora_mapping, whose data_ptr() is 0) nothing is read and the
    outputs are still written: padding 0, expert ids -1, lengths 0."""
    torch = _torch()
    if not getattr(topk_ids, "is_cuda", False):
        raise ValueError("topk_ids: must be a CUDA tensor")
    dev = topk_ids.device
    for name, t in (("topk_ids", topk_ids), ("token_lora_mapping", token_lora_mapping),
                    ("sorted_token_ids", sorted_token_ids), ("experts_ids", experts_ids),
                    ("num_tokens_post_pad", num_tokens_post_pad),
                    ("adapter_enabled", adapter_enabled), ("lora_ids", lora_ids)):
        _check_i32(torch, t, name, dev)
    if expert_map is not None:
        _check_dev(expert_map, "expert_map", dev)
    bm = int(block_size)
    if not _pow2_at_least_16(bm):
        raise ValueError(f"block_size = {bm}: must be a power of two >= 16")
    max_loras = int(max_loras)
    if max_loras < 1:
        raise ValueError(f"max_loras = {max_loras}: must be >= 1")
    _check_contiguous(topk_ids, "topk_ids")
    num_tokens = int(topk_ids.shape[0]) if topk_ids.dim() else 0
    top_k = int(topk_ids.shape[1]) if topk_ids.dim() == 2 else 1
    if token_lora_mapping.numel() < num_tokens or not token_lora_mapping.is_contiguous():
        raise ValueError(f"token_lora_mapping: must be contiguous with at least "
                         f"num_tokens = {num_tokens} elements")
    mntp, mnb = int(max_num_tokens_padded), int(max_num_m_blocks)
    for name, t, need in (("sorted_token_ids", sorted_token_ids, max_loras * mntp),
                          ("experts_ids", experts_ids, max_loras * mnb),
                          ("num_tokens_post_pad", num_tokens_post_pad, max_loras)):
        _check_contiguous(t, name)
        if t.numel() < need:
            raise ValueError(f"{name}: {t.numel()} elements; needs {need}")
    cap = L.align_capacity(num_tokens, top_k, int(num_experts), bm)
    direct = mntp == cap and mnb == cap // bm
    args = L.new_align_args()
    args.topk_ids = topk_ids.data_ptr()
    args.token_lora_mapping = token_lora_mapping.data_ptr()
    if direct:
        s_out, e_out = sorted_token_ids, experts_ids
    else:
        s_out = _scratch_i32(torch, dev, "align_sorted", (max_loras, cap))
        e_out = _scratch_i32(torch, dev, "align_experts", (max_loras, cap // bm))
    args.sorted_token_ids = s_out.data_ptr()
    args.expert_ids = e_out.data_ptr()
    args.num_tokens_post_padded = num_tokens_post_pad.data_ptr()
    args.num_tokens, args.top_k = num_tokens, top_k
    args.num_experts, args.max_loras = int(num_experts), max_loras
    args.block_size_m, args.EM = bm, cap
    _call_on(torch, dev.index, _align_call, args)
    if direct and expert_map is None:
        return
    experts_view = _rows(experts_ids, max_loras, mnb)
    if not direct:
        # Padded lengths never exceed vLLM's row sizes (num_tokens*top_k +
        # E*(BLOCK_M-1), or num_tokens*top_k*BLOCK_M when that is smaller), so
        # a row prefix carries everything; pad the rest. (Whole rows are used
        # as they are: each view costs about a us on the host.)
        sorted_view = _rows(sorted_token_ids, max_loras, mntp)
        m = min(mntp, cap)
        _cols(sorted_view, m, mntp).copy_(_cols(s_out, m, cap))
        if mntp > m:
            sorted_view[:, m:].fill_(num_tokens * top_k)
        mb = min(mnb, cap // bm)
        _cols(experts_view, mb, mnb).copy_(_cols(e_out, mb, cap // bm))
        if mnb > mb:
            experts_view[:, mb:].fill_(-1)
    if expert_map is not None:
        valid = experts_view >= 0
        mapped = expert_map.to(torch.int32)[experts_view.clamp(min=0).long()]
        experts_view.copy_(torch.where(valid, mapped, torch.full_like(mapped, -1)))


def _align_call(rt, stream, args):
    L.check(L.lib().moelora_align_block_size(rt, ctypes.byref(args), stream),
            "moe_lora_align_block_size")


def _rows(t, rows, cols):
    """The first rows*cols elements of contiguous t as (rows, cols)."""
    if t.numel() == rows * cols:
        return t.view(rows, cols)
    return t.view(-1)[:rows * cols].view(rows, cols)


def _cols(t, n, cols):
    """t[:, :n] of a (rows, cols) t, without a view when n == cols."""
    return t if n == cols else t[:, :n]


# ---------------------------------------------------------------------------
# Extras
# ---------------------------------------------------------------------------

def plan_fused_moe_lora(*args, **kwargs) -> Dict[str, Any]:
    """The plan fused_moe_lora would execute for these arguments (same
    signature), without launching: path, launches (cache_key, entry, grid,
    block, shared_bytes), npid, tiles_per_item, workspace_bytes."""
    torch = _torch()
    import inspect
    bound = inspect.signature(fused_moe_lora).bind(*args, **kwargs)
    bound.apply_defaults()
    p = bound.arguments
    keep: List[Any] = []
    sharded = bool(p["fully_sharded"])
    lora_b = p["lora_b_stacked"]
    a_rank = int(p["lora_a_stacked"][0].shape[2])
    if sharded and int(lora_b[0].shape[3]) != a_rank:
        lora_b = [t[..., :a_rank] for t in lora_b]
    a, dev = _prepare_fused(torch, p["output"], p["qcurr_hidden_states"],
                            p["lora_a_stacked"], lora_b, p["topk_weights"],
                            p["sorted_token_ids"], p["expert_ids"],
                            p["num_tokens_post_padded"], p["token_lora_mapping"],
                            p["top_k_num"], p["lora_ids"], p["num_active_loras"],
                            p["adapter_enabled"], p["shrink_block_size_m"],
                            p["mul_routed_weight"], p["add_inputs"], sharded, keep)
    if a is None:
        return {"path": "none", "num_launches": 0, "launches": [], "npid": 0,
                "tiles_per_item": 0, "workspace_bytes": 0, "from_tuned_table": False}
    # _call_on creates the runtime with the device current.
    return _call_on(torch, dev.index, lambda rt, stream: L.plan_args(a, dev.index))


def warmup(shapes, device: Optional[int] = None) -> None:
    """moelora.warmup for torch users: makes the device's context current
    first, then loads every variant these call shapes need (see
    moelora._lib.shape_args for the keywords)."""
    try:
        torch = _torch()
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        index = torch.cuda.current_device() if device is None else int(device)
        _runtime(torch, index)
        return L.warmup(shapes, index)
    return L.warmup(shapes, device)
