"""vllm.platforms.current_platform, reduced to what custom-op registration
and moelora's plugin read."""

import os


class _Platform:
    def __init__(self, kind):
        self.device_name = self.device_type = kind
        self.dispatch_key = "CUDA" if kind == "cuda" else kind.upper()

    def is_cuda(self):
        return self.device_type == "cuda"

    def is_rocm(self):
        return False

    def is_cuda_alike(self):
        return self.is_cuda()

    def is_xpu(self):
        return False


current_platform = _Platform(os.environ.get("VLLM_STUB_PLATFORM", "cuda"))
