"""The MoE shapes of the benchmark's models, as warm-up calls.

Each model has two MoE-LoRA calls per layer: W13 (gate and up projections:
K = hidden, N = intermediate, two slices) and W2 (down: K = intermediate,
N = hidden, one slice, routed weights multiplied in). Which metadata vLLM
hands over depends on the batch: naive (no sort) where the small-batch
kernel applies (rank <= 64 and tokens*top_k*rank <= 1024), else the sorted
metadata of moe_lora_align_block_size.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

# hidden size, intermediate size, experts, top_k (benchmarks/BenchCases.h)
MODELS: Dict[str, Tuple[int, int, int, int]] = {
    "qwen3moe": (2048, 1408, 64, 8),
    "mixtral": (4096, 7168, 8, 2),
    "glm5_1": (6144, 2048, 256, 8),
}

DEFAULT_BATCH_SIZES = [1 << i for i in range(14)]  # 1 .. 8192
SORTED_BLOCK_SIZE_M = 64  # the sorted metadata's BLOCK_SIZE_M
SMALL_BATCH_MAX_RANK = 64
SMALL_BATCH_MAX_WORK = 1024  # tokens * top_k * rank


def uses_naive_metadata(num_tokens: int, top_k: int, rank: int) -> bool:
    return (rank <= SMALL_BATCH_MAX_RANK
            and num_tokens * top_k * rank <= SMALL_BATCH_MAX_WORK)


def layer_calls(model: str, num_tokens: int, rank: int, *, max_loras: int = 4,
                dtype: str = "bf16", fully_sharded: bool = False
                ) -> List[Dict[str, Any]]:
    """The W13 and W2 calls of one MoE layer for a batch (shape_args
    keywords)."""
    if model not in MODELS:
        raise ValueError(f"model = {model!r}: must be one of "
                         f"{', '.join(sorted(MODELS))}")
    hidden, inter, experts, top_k = MODELS[model]
    naive = uses_naive_metadata(num_tokens, top_k, rank) and not fully_sharded
    common = dict(num_tokens=num_tokens, top_k=top_k, num_experts=experts,
                  rank=rank, max_loras=max_loras, dtype=dtype,
                  sorted=not naive, fully_sharded=fully_sharded)
    if not naive:
        common["block_size_m"] = SORTED_BLOCK_SIZE_M
    return [
        dict(common, K=hidden, N=inter, num_slices=2, mul_routed_weight=False),
        dict(common, K=inter, N=hidden, num_slices=1, mul_routed_weight=True),
    ]


def model_calls(model: str, *, ranks: Sequence[int] = (16, 64),
                batch_sizes: Sequence[int] = tuple(DEFAULT_BATCH_SIZES),
                max_loras: int = 4, dtype: str = "bf16",
                fully_sharded: bool = False
                ) -> Iterator[Tuple[str, List[Dict[str, Any]]]]:
    """(label, calls) per batch size: every rank's W13 and W2 calls, plus the
    two-kernel (fully_sharded) ones when asked."""
    for m in batch_sizes:
        calls: List[Dict[str, Any]] = []
        for r in ranks:
            calls += layer_calls(model, m, r, max_loras=max_loras, dtype=dtype)
            if fully_sharded:
                calls += layer_calls(model, m, r, max_loras=max_loras,
                                     dtype=dtype, fully_sharded=True)
        yield f"M={m}", calls
