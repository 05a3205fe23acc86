"""vllm/_custom_ops.py's moe_lora_align_block_size (vLLM: a call of
torch.ops._moe_C.moe_lora_align_block_size; here a placeholder kernel)."""

from vllm._stub import SIGNATURES, kernel

if SIGNATURES == "align_no_expert_map":
    def moe_lora_align_block_size(
        topk_ids, token_lora_mapping, num_experts: int, block_size: int,
        max_loras: int, max_num_tokens_padded: int, max_num_m_blocks: int,
        sorted_token_ids, experts_ids, num_tokens_post_pad, adapter_enabled,
        lora_ids,
    ) -> None:
        kernel("moe_lora_align_block_size")
else:
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
        kernel("moe_lora_align_block_size")
