# vllm/lora/ops/triton_ops/__init__.py re-exports the fused MoE-LoRA ops
# (the module-level bindings moelora's plugin must also reach).
from vllm.lora.ops.triton_ops.fused_moe_lora_op import (
    fused_moe_lora,
    fused_moe_lora_expand,
    fused_moe_lora_shrink,
)
from vllm.lora.ops.triton_ops.lora_kernel_metadata import LoRAKernelMeta

__all__ = [
    "LoRAKernelMeta",
    "fused_moe_lora",
    "fused_moe_lora_shrink",
    "fused_moe_lora_expand",
]
