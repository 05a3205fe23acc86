"""What the stand-in's kernels record (not part of vLLM)."""

import os

# Names of the placeholder kernels called, in order.
CALLS = []

SIGNATURES = os.environ.get("VLLM_STUB_SIGNATURES", "current")


class StubKernelCalled(RuntimeError):
    pass


def kernel(name):
    """The body of every placeholder kernel: record, then fail."""
    CALLS.append(name)
    raise StubKernelCalled(f"vLLM stub: vLLM's own kernel of {name} ran "
                           "(moelora's plugin did not replace it)")
