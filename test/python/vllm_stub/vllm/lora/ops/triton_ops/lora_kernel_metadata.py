"""LoRAKernelMeta reduced to meta_args(): vLLM's 7-tuple (token_lora_mapping,
token_indices_sorted_by_lora_ids, num_tokens_per_lora, lora_token_start_loc,
active_lora_ids, no_lora_flag_cpu, num_active_loras_cpu). The stand-in's
prepare_tensors takes the mapping, the active ids and their count as given."""


class LoRAKernelMeta:
    @staticmethod
    def make(max_loras, max_num_tokens, device, captured_lora_counts=None):
        m = LoRAKernelMeta()
        m.max_loras, m.max_num_tokens, m.device = max_loras, max_num_tokens, device
        m.token_lora_mapping = m.active_lora_ids = m.num_active_loras_cpu = None
        return m

    def prepare_tensors(self, token_lora_mapping, active_lora_ids=None,
                        num_active_loras_cpu=None):
        self.token_lora_mapping = token_lora_mapping
        self.active_lora_ids = active_lora_ids
        self.num_active_loras_cpu = num_active_loras_cpu

    def meta_args(self, token_nums, specialize_active_lora=False):
        return (self.token_lora_mapping[:token_nums], None, None, None,
                self.active_lora_ids, None, self.num_active_loras_cpu)
