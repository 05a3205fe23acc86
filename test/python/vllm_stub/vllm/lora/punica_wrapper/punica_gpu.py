"""vllm/lora/punica_wrapper/punica_gpu.py's MoE-LoRA part: the module-level
`from vllm.lora.ops.triton_ops import fused_moe_lora` binding and
`ops.moe_lora_align_block_size` through `from vllm import _custom_ops as
ops`, called as PunicaWrapperGPU does."""

from vllm import _custom_ops as ops
from vllm.lora.ops.triton_ops import LoRAKernelMeta, fused_moe_lora


def _cdiv(a, b):
    return -(a // -b)


class PunicaWrapperGPU:
    def __init__(self, max_num_batched_tokens, max_batches, device, **kwargs):
        self.max_loras = kwargs["max_loras"]
        self.device = device
        self.token_mapping_meta = LoRAKernelMeta.make(
            self.max_loras, max_num_batched_tokens, device=device)

    def update_metadata(self, token_lora_mapping, active_lora_ids, num_active_loras):
        """The stand-in's: the mapping and active adapters as given."""
        self.token_mapping_meta.prepare_tensors(
            token_lora_mapping, active_lora_ids, num_active_loras)

    def moe_lora_align_block_size(self, topk_ids, num_tokens, block_size, num_experts,
                                  max_loras, adapter_enabled, expert_map=None,
                                  pad_sorted_ids=False, naive_block_assignment=False):
        import torch

        (token_lora_mapping, _, _, _, lora_ids, _, _) = \
            self.token_mapping_meta.meta_args(num_tokens)
        if naive_block_assignment:
            return None, None, topk_ids.reshape(-1), None
        max_num_tokens_padded = topk_ids.numel() + num_experts * (block_size - 1)
        if pad_sorted_ids:
            max_num_tokens_padded = _cdiv(max_num_tokens_padded, block_size) * block_size
        sorted_ids = torch.empty((max_loras * max_num_tokens_padded,),
                                 dtype=torch.int32, device=topk_ids.device)
        max_num_m_blocks = _cdiv(max_num_tokens_padded, block_size)
        expert_ids = torch.empty((max_loras * max_num_m_blocks,),
                                 dtype=torch.int32, device=topk_ids.device)
        num_tokens_post_pad = torch.empty((max_loras), dtype=torch.int32,
                                          device=topk_ids.device)
        ops.moe_lora_align_block_size(
            topk_ids, token_lora_mapping, num_experts, block_size, max_loras,
            max_num_tokens_padded, max_num_m_blocks, sorted_ids, expert_ids,
            num_tokens_post_pad, adapter_enabled, lora_ids)
        if expert_map is not None:
            expert_ids = expert_map[expert_ids]
        return None, sorted_ids, expert_ids, num_tokens_post_pad

    def add_lora_fused_moe(self, y, x, lora_a_stacked, lora_b_stacked, topk_weights,
                           sorted_token_ids, expert_ids, num_tokens_post_padded,
                           max_lora_rank, top_k_num, shrink_config, expand_config,
                           adapter_enabled, mul_routed_weight=False,
                           fully_sharded=False, offset=0, token_lora_mapping=None):
        (token_lora_mapping_meta, _, _, _, lora_ids, _, num_active_loras) = \
            self.token_mapping_meta.meta_args(x.size(0))
        if token_lora_mapping is None:
            token_lora_mapping = token_lora_mapping_meta
        fused_moe_lora(
            y, x, lora_a_stacked, lora_b_stacked, topk_weights, sorted_token_ids,
            expert_ids, num_tokens_post_padded, token_lora_mapping, max_lora_rank,
            top_k_num, lora_ids, num_active_loras, adapter_enabled,
            shrink_config.get("BLOCK_SIZE_M", 64), shrink_config.get("BLOCK_SIZE_N", 64),
            shrink_config.get("BLOCK_SIZE_K", 32), shrink_config.get("GROUP_SIZE_M", 8),
            shrink_config.get("NUM_WARPS", 4), shrink_config.get("NUM_STAGES", 3),
            shrink_config.get("SPLIT_K", 1),
            expand_config.get("BLOCK_SIZE_M", 64), expand_config.get("BLOCK_SIZE_N", 64),
            expand_config.get("BLOCK_SIZE_K", 32), expand_config.get("GROUP_SIZE_M", 8),
            expand_config.get("NUM_WARPS", 4), expand_config.get("NUM_STAGES", 3),
            expand_config.get("SPLIT_K", 1),
            mul_routed_weight, fully_sharded, offset,
        )
