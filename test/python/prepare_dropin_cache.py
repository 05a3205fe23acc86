"""Warms a moelora disk cache with every kernel variant test_dropin.py uses, so
the test runs with libmoelora_rt.so (no in-process generator) on a GPU
machine. Needs the JIT library (libmoelora.so), no GPU and no torch:

  MOELORA_LIB=build/runtime/libmoelora.so MOELORA_CACHE_DIR=<dir> \
  MOELORA_TARGET_GPU="NVIDIA H100 80GB HBM3" python3 test/python/prepare_dropin_cache.py

Run it from the repository root (the runtime finds specs/tuned/<GPU>.json
relative to it, as it will on the GPU machine), once per target GPU name.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))
sys.path.insert(0, HERE)

from moelora import _lib as L  # noqa: E402

import dropin_cases  # noqa: E402


def main():
    if not os.environ.get("MOELORA_CACHE_DIR"):
        sys.exit("set MOELORA_CACHE_DIR to the cache directory to fill")
    calls = dropin_cases.all_shape_calls()
    L.warmup(calls)
    s = L.stats()
    print(f"{os.environ.get('MOELORA_TARGET_GPU', '(this machine)')}: {len(calls)} "
          f"calls, {s['jit_generations']} kernels generated in "
          f"{s['jit_ms_total']:.0f} ms, {s['disk_hits']} from disk")


if __name__ == "__main__":
    main()
