"""moelora: vLLM's MoE-LoRA ops (fused_moe_lora, its shrink/expand halves and
moe_lora_align_block_size) on moelora's generated kernels, through the C ABI
of include/moelora/moelora.h.

`import moelora` needs neither torch nor a GPU: the library-level helpers
(abi_version, plan, warmup, stats, align_capacity) work without them. The ops
import torch when first called. See moelora.ops for the vLLM version matched.
"""

from ._lib import (  # noqa: F401
    ABI_VERSION,
    abi_version,
    align_capacity,
    last_error,
    library_info,
    library_path,
    load_library,
    plan,
    runtime_info,
    shape_args,
    stats,
)
from .ops import (  # noqa: F401
    TensorParallel,
    fused_moe_lora,
    fused_moe_lora_expand,
    fused_moe_lora_shrink,
    get_tensor_parallel,
    moe_lora_align_block_size,
    plan_fused_moe_lora,
    set_tensor_parallel,
    tensor_parallel,
    warmup,
)

__all__ = [
    "ABI_VERSION", "abi_version", "align_capacity", "last_error", "library_info",
    "library_path", "load_library", "plan", "runtime_info", "shape_args",
    "stats", "warmup",
    "fused_moe_lora", "fused_moe_lora_shrink", "fused_moe_lora_expand",
    "moe_lora_align_block_size", "plan_fused_moe_lora",
    "TensorParallel", "set_tensor_parallel", "get_tensor_parallel", "tensor_parallel",
]
