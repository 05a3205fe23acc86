"""Host time per moelora.fused_moe_lora call from Python (issue 3).

Runs on the GPU machine with the drop-in's carry (test/python/prepare_gpu_carry.sh):
    export LD_LIBRARY_PATH=$PWD/build-pycarry/lib \
           MOELORA_LIB=$PWD/build-pycarry/lib/libmoelora_rt.so \
           MOELORA_CACHE_DIR=$PWD/build-pycarry/cache
    python3 benchmarks/python/host_time.py

Uses test_dropin.py's problems, whose kernels that carry's cache holds. For
each case: median over 7 batches of the wall time of 200 back-to-back calls
on torch's current stream, divided by 200 (the GPU work of these small
calls is shorter than the host time, so the queue never fills), next to the
time of the same number of empty torch ops as the floor of Python dispatch.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "test", "python"))

import torch  # noqa: E402

import test_dropin as T  # noqa: E402

CALLS = 200
BATCHES = 7


def per_call_us(fn):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    samples = []
    for _ in range(BATCHES):
        t0 = time.perf_counter()
        for _ in range(CALLS):
            fn()
        t1 = time.perf_counter()
        torch.cuda.synchronize()
        samples.append((t1 - t0) / CALLS * 1e6)
    return statistics.median(samples)


def main():
    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}")
    scratch = torch.empty(1, device="cuda")
    print(f"torch empty op (add_ of a 1-element tensor): {per_call_us(lambda: scratch.add_(1)):.2f} us")
    for name in ("decode", "prefill", "sharded"):
        p = T.make_problem(name)
        out = T.poison(p, p.c["num_slices"] * p.c["N"])
        us = per_call_us(lambda: T.call_fused(p, out))
        print(f"{name:8s} ({T.DC.case(name)['path']}): host time per fused_moe_lora call {us:.2f} us")


if __name__ == "__main__":
    main()
