#!/usr/bin/env bash
# After scripts/gpu-prepare.sh and scripts/bench-prepare.sh: the inputs of
# scripts/device/run-wgmma-check.sh. .carry/wg/wg1.json is the committed H200
# table with every sorted one_shot entry on wgmma (the dispatcher keeps
# mma.sync where the tile does not allow it); its kernels join the bench
# cache; .carry/wg/sass/ holds wgmma kernels of the GPU suite for ptxas and
# cuobjdump on the device.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MOELORA_GPU=${MOELORA_GPU:-NVIDIA H200}
TABLE=${TABLE:-specs/tuned/NVIDIA_H200.json}
mkdir -p .carry/wg/sass
python3 - "$TABLE" .carry/wg/wg1.json <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
n = 0
for e in t["entries"]:
    if e.get("path") == "one_shot" and e.get("sorted"):
        e.setdefault("config", {})["wgmma"] = True
        n += 1
json.dump(t, open(sys.argv[2], "w"), indent=1)
print(f"wg1: {n} sorted one_shot entries on wgmma")
PY
MOELORA_TARGET_GPU="$MOELORA_GPU" "$BUILD"/benchmarks/moelora-bench-prepare \
  .carry/bench-cache --tuned-table .carry/wg/wg1.json
for f in $(ls .carry/gpu-bundle/*_wg_*.ptx | head -3); do
  cp "$f" .carry/wg/sass/
done
du -sh .carry
