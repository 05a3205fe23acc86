"""python3 -m moelora info | warmup

  info     what is installed and where: library, ABI, JIT, GPU, tuned table,
           kernel cache (works without a GPU or torch)
  warmup   generates (or loads) every kernel variant a model's MoE-LoRA calls
           will use, so no request pays for it: a preset of the benchmark's
           models or a JSON file of call shapes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

from . import _lib as L
from . import presets


def _dir_size(path: str):
    files, size = 0, 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                size += os.path.getsize(os.path.join(root, n))
            except OSError:
                continue
            if n.endswith(".ptx"):
                files += 1
    return files, size


def info_dict() -> Dict[str, Any]:
    lib = L.library_info()
    out: Dict[str, Any] = {"library": lib}
    try:
        out["runtime"] = L.runtime_info()
    except Exception as e:  # a bad tuned table or bundle: say so, go on
        out["runtime"] = {"error": str(e)}
    cache = out["runtime"].get("cache_dir") or lib["default_cache_dir"]
    kernels, size = _dir_size(cache) if os.path.isdir(cache) else (0, 0)
    out["cache"] = {"dir": cache, "exists": os.path.isdir(cache),
                    "kernels": kernels, "bytes": size}
    return out


def cmd_info(args) -> int:
    d = info_dict()
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    lib, rt, cache = d["library"], d["runtime"], d["cache"]
    rows = [
        ("moelora", f"{lib['version']} (C ABI {lib['abi_version']}, generator "
                    f"{lib['generator_stamp']})"),
        ("library", lib["library_path"]),
        ("JIT", "available (in-process generator)" if lib["has_jit"] else
         "not available (runtime-only library: bundles and the disk cache)"),
    ]
    if "error" in rt:
        rows.append(("runtime", f"cannot be created: {rt['error']}"))
    else:
        if rt["has_device"]:
            gpu = (f"{rt['device_name']}, sm_{rt['compute_capability']}, "
                   f"{rt['num_sms']} SMs")
        else:
            planned = (f"; planning for {rt['device_name']}"
                       if rt["device_name"] not in ("", "unknown") else "")
            gpu = f"none ({rt['driver_error']}){planned}"
        rows.append(("GPU", gpu))
        rows.append(("tuned table", rt["tuned_table"] or
                     "none (vLLM's dispatch rules); looked in: " +
                     ", ".join(lib["tuned_dirs"])))
        if lib["has_jit"]:
            rows.append(("JIT in use", "yes" if rt["jit_enabled"] else
                         "no (MOELORA_JIT=0)"))
    state = (f"{cache['kernels']} kernels, {cache['bytes'] / 1e6:.1f} MB"
             if cache["exists"] else "empty (not created yet)")
    rows.append(("cache", f"{cache['dir']} ({state})"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    return 0


class _Progress:
    """A live line on stderr while a warm-up runs: kernels ready so far and
    the time, read from the runtime's counters (the warm-up itself runs in
    the calling thread, on every core)."""

    def __init__(self, label: str):
        import threading
        self.label, self.t0 = label, time.perf_counter()
        self.base = L.stats()
        self.stop = threading.Event()
        self.live = sys.stderr.isatty()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _line(self) -> str:
        s = L.stats()
        ready = sum(s[k] - self.base[k]
                    for k in ("jit_generations", "disk_hits", "bundle_hits"))
        return (f"{self.label}: {ready} kernels ready "
                f"({time.perf_counter() - self.t0:.1f} s)")

    def _run(self):
        spin = "|/-\\"
        i = 0
        while not self.stop.wait(0.1):
            sys.stderr.write(f"\r{spin[i % 4]} {self._line()}   ")
            sys.stderr.flush()
            i += 1

    def __enter__(self):
        if self.live:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.live:
            self.thread.join()
        sys.stderr.write(("\r" if self.live else "") + f"* {self._line()}\n")
        sys.stderr.flush()


def _load_shapes(path: str) -> List[Dict[str, Any]]:
    with open(path) as f:
        data = json.load(f)
    calls = data.get("calls") if isinstance(data, dict) else data
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise SystemExit(f"{path}: expected a list of call shapes (or "
                         '{"calls": [...]}), each a dict of moelora.shape_args '
                         "keywords")
    return calls


def cmd_warmup(args) -> int:
    groups: List[tuple] = []  # (label, [calls])
    if args.shapes:
        groups.append((os.path.basename(args.shapes), _load_shapes(args.shapes)))
    for name in args.preset or ([] if args.shapes else ["qwen3moe"]):
        calls = [c for _, cs in presets.model_calls(
            name, ranks=args.ranks, batch_sizes=args.batch_sizes,
            max_loras=args.max_loras, dtype=args.dtype,
            fully_sharded=args.fully_sharded) for c in cs]
        groups.append((name, calls))
    from .ops import warmup  # makes torch's device current when torch is there
    t0 = time.perf_counter()
    warmup([])  # start-up apart: torch's import, the CUDA context, the library
    startup = time.perf_counter() - t0
    rows = []
    for label, calls in groups:
        before, t0 = L.stats(), time.perf_counter()
        with _Progress(label):
            warmup(calls)
        after = L.stats()
        d = {k: after[k] - before[k] for k in after}
        rows.append((label, len(calls), d["jit_generations"], d["disk_hits"],
                     d["bundle_hits"], d["jit_ms_total"],
                     time.perf_counter() - t0))
    head = ("workload", "calls", "generated", "from disk", "from bundle",
            "generation ms", "wall s")
    table = [head] + [(r[0], str(r[1]), str(r[2]), str(r[3]), str(r[4]),
                       f"{r[5]:.0f}", f"{r[6]:.2f}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths))))
    print(f"start-up (library, torch and CUDA context when present): "
          f"{startup:.2f} s")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m moelora",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pi = sub.add_parser("info", help="library, JIT, GPU, tuned table, cache")
    pi.add_argument("--json", action="store_true", help="machine-readable")
    pi.set_defaults(fn=cmd_info)
    pw = sub.add_parser("warmup", help="warm every kernel variant of a model")
    pw.add_argument("--preset", action="append", choices=sorted(presets.MODELS),
                    help="a model of the benchmark (repeatable; default "
                         "qwen3moe when no --shapes)")
    pw.add_argument("--shapes", help="JSON file: a list of call shapes "
                                     "(moelora.shape_args keywords)")
    pw.add_argument("--ranks", type=int, nargs="+", default=[16, 64])
    pw.add_argument("--batch-sizes", type=int, nargs="+",
                    default=presets.DEFAULT_BATCH_SIZES)
    pw.add_argument("--max-loras", type=int, default=4)
    pw.add_argument("--dtype", choices=["bf16", "fp16"], default="bf16")
    pw.add_argument("--fully-sharded", action="store_true",
                    help="also the two-kernel variants of tensor parallelism")
    pw.set_defaults(fn=cmd_warmup)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"moelora: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
