"""vllm/lora/ops/triton_ops/fused_moe_lora_op.py with placeholder kernels:
the three ops with vLLM's names, argument lists (VLLM_STUB_SIGNATURES, see
../../../../README.md) and registration (direct_register_custom_op with
mutates_args and a fake impl, then `fused_moe_lora = torch.ops.vllm...`,
falling back to the Python functions)."""

import functools
from typing import List, Optional

from vllm._stub import SIGNATURES, kernel
from vllm.utils.torch_utils import direct_register_custom_op, torch

# Annotations torch.library.infer_schema reads (plain names without torch).
Tensor = torch.Tensor if torch is not None else "Tensor"
Device = torch.device if torch is not None else "Device"


if SIGNATURES == "2025":
    # Before the one-shot/small-batch kernels: no token_lora_mapping,
    # num_active_loras, add_inputs, use_gdc, use_tma.
    def _fused_moe_lora(
        output: Tensor, qcurr_hidden_states: Tensor, lora_a_stacked: List[Tensor],
        lora_b_stacked: List[Tensor], topk_weights: Tensor, sorted_token_ids: Tensor,
        expert_ids: Tensor, num_tokens_post_padded: Tensor, max_lora_rank: int,
        top_k_num: int, lora_ids: Tensor, adapter_enabled: Tensor,
        shrink_block_size_m: int, shrink_block_size_n: int, shrink_block_size_k: int,
        shrink_group_size_m: int, shrink_num_warps: int, shrink_num_stages: int,
        shrink_split_k: int, expand_block_size_m: int, expand_block_size_n: int,
        expand_block_size_k: int, expand_group_size_m: int, expand_num_warps: int,
        expand_num_stages: int, expand_split_k: int, mul_routed_weight: bool = False,
        fully_sharded: bool = False, offset: int = 0,
    ) -> None:
        kernel("fused_moe_lora")

    def _fused_moe_lora_shrink(
        a_intermediate_cache1: Tensor, qcurr_hidden_states: Tensor,
        lora_a_stacked: List[Tensor], topk_weights: Tensor, sorted_token_ids: Tensor,
        expert_ids: Tensor, num_tokens_post_padded: Tensor, top_k_num: int,
        lora_ids: Tensor, adapter_enabled: Tensor, device: Device, N: int, M: int,
        EM: int, K: int, num_tokens: int, num_experts: int, num_slices: int,
        block_size_m: int, block_size_n: int, block_size_k: int, group_size_m: int,
        num_warps: int, num_stages: int, split_k: int, num_active_loras: int,
        mul_routed_weight: bool = False,
    ) -> None:
        kernel("fused_moe_lora_shrink")

    def _fused_moe_lora_expand(
        output: Tensor, a_intermediate_cache1: Tensor, lora_b_stacked: List[Tensor],
        topk_weights: Tensor, sorted_token_ids: Tensor, expert_ids: Tensor,
        num_tokens_post_padded: Tensor, top_k_num: int, lora_ids: Tensor,
        adapter_enabled: Tensor, device: Device, N: int, M: int, EM: int, K: int,
        num_tokens: int, num_experts: int, num_slices: int, max_lora_rank: int,
        w1_output_dim_size: int, block_size_m: int, block_size_n: int,
        block_size_k: int, group_size_m: int, num_warps: int, num_stages: int,
        split_k: int, num_active_loras: int, mul_routed_weight: bool = False,
        offset: int = 0,
    ) -> None:
        kernel("fused_moe_lora_expand")

else:
    # The 2026 file (one-shot and small-batch kernels): what moelora matches.
    def _fused_moe_lora(
        output: Tensor,  # (num_tokens, top_k_num, N*len(lora_a_stacked),)
        qcurr_hidden_states: Tensor,  # (num_tokens, K,)
        lora_a_stacked: List[Tensor],  # [(max_loras, num_experts, max_lora_rank, K,),...]
        lora_b_stacked: List[Tensor],  # [(max_loras, num_experts, N, max_lora_rank,),...]
        topk_weights: Tensor,  # (num_tokens, top_k_num)
        sorted_token_ids: Optional[Tensor],  # (max_loras, _)
        expert_ids: Tensor,  # (max_loras, _ ,) or (num_tokens * top_k,)
        num_tokens_post_padded: Optional[Tensor],  # (max_loras, )
        token_lora_mapping: Tensor,
        max_lora_rank: int,
        top_k_num: int,
        lora_ids: Tensor,
        num_active_loras: Tensor,  # CPU tensor [1], number of active LoRAs
        adapter_enabled: Tensor,
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
        kernel("fused_moe_lora")

    def _fused_moe_lora_shrink(
        a_intermediate_cache1: Tensor,  # (num_slices, num_tokens, top_k_num, max_lora_rank)
        qcurr_hidden_states: Tensor,  # (num_tokens, K,)
        lora_a_stacked: List[Tensor],  # [(max_loras, num_experts, max_lora_rank, K,),...]
        topk_weights: Tensor,  # (num_tokens, top_k_num)
        sorted_token_ids: Optional[Tensor],  # (max_loras, _)
        expert_ids: Tensor,  # (max_loras, _ ,) or (num_tokens * top_k,)
        num_tokens_post_padded: Optional[Tensor],  # (max_loras, )
        token_lora_mapping: Tensor,
        top_k_num: int,
        lora_ids: Tensor,
        adapter_enabled: Tensor,
        device: Device,
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
        num_active_loras: Tensor,  # CPU tensor [1], number of active LoRAs
        mul_routed_weight: bool = False,
        use_gdc: bool = False,
        use_tma: bool = False,
    ) -> None:
        kernel("fused_moe_lora_shrink")

    if SIGNATURES == "expand_renamed":
        def _fused_moe_lora_expand(
            output: Tensor, a_intermediate_cache1: Tensor, lora_b_stacked: List[Tensor],
            topk_weights: Tensor, sorted_token_ids: Optional[Tensor], expert_ids: Tensor,
            num_tokens_post_padded: Optional[Tensor], token_lora_mapping: Tensor,
            top_k_num: int, lora_ids: Tensor, adapter_enabled: Tensor, device: Device,
            N: int, M: int, EM: int, K: int, num_tokens: int, num_experts: int,
            num_slices: int, max_lora_rank: int, w1_output_dim_size: int,
            block_size_m: int, block_size_n: int, block_size_k: int, group_size_m: int,
            num_warps: int, num_stages: int, split_k: int, num_active_loras: Tensor,
            mul_routed_weight: bool = False, output_offset: int = 0,
            use_gdc: bool = False, use_tma: bool = False,
        ) -> None:
            kernel("fused_moe_lora_expand")
    else:
        def _fused_moe_lora_expand(
            output: Tensor,  # (num_tokens, top_k_num, N*len(lora_a_stacked),)
            a_intermediate_cache1: Tensor,  # (num_slices, M, top_k_num, max_lora_rank)
            lora_b_stacked: List[Tensor],  # [(max_loras, num_experts, N, max_lora_rank,),...]
            topk_weights: Tensor,  # (num_tokens, top_k_num)
            sorted_token_ids: Optional[Tensor],  # (max_loras, _)
            expert_ids: Tensor,  # (max_loras, _ ,) or (num_tokens * top_k,)
            num_tokens_post_padded: Optional[Tensor],  # (max_loras, )
            token_lora_mapping: Tensor,
            top_k_num: int,
            lora_ids: Tensor,
            adapter_enabled: Tensor,
            device: Device,
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
            num_active_loras: Tensor,  # CPU tensor [1], number of active LoRAs
            mul_routed_weight: bool = False,
            offset: int = 0,
            use_gdc: bool = False,
            use_tma: bool = False,
        ) -> None:
            kernel("fused_moe_lora_expand")


# vLLM's fake impls: same signatures, nothing to compute (the ops mutate
# their outputs in place).
def _fake_of(op_func):
    @functools.wraps(op_func)
    def fake(*args, **kwargs) -> None:
        return

    return fake


_fused_moe_lora_fake = _fake_of(_fused_moe_lora)
_fused_moe_lora_shrink_fake = _fake_of(_fused_moe_lora_shrink)
_fused_moe_lora_expand_fake = _fake_of(_fused_moe_lora_expand)


direct_register_custom_op(
    op_name="fused_moe_lora",
    op_func=_fused_moe_lora,
    mutates_args=["output"],
    fake_impl=_fused_moe_lora_fake,
)
direct_register_custom_op(
    op_name="fused_moe_lora_shrink",
    op_func=_fused_moe_lora_shrink,
    mutates_args=["a_intermediate_cache1"],
    fake_impl=_fused_moe_lora_shrink_fake,
)
direct_register_custom_op(
    op_name="fused_moe_lora_expand",
    op_func=_fused_moe_lora_expand,
    mutates_args=["output"],
    fake_impl=_fused_moe_lora_expand_fake,
)

try:
    fused_moe_lora = torch.ops.vllm.fused_moe_lora
    fused_moe_lora_shrink = torch.ops.vllm.fused_moe_lora_shrink
    fused_moe_lora_expand = torch.ops.vllm.fused_moe_lora_expand
except AttributeError:
    fused_moe_lora = _fused_moe_lora
    fused_moe_lora_shrink = _fused_moe_lora_shrink
    fused_moe_lora_expand = _fused_moe_lora_expand
