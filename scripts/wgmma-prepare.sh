#!/usr/bin/env bash
# After scripts/gpu-prepare.sh and scripts/bench-prepare.sh: the inputs of
# scripts/device/run-wgmma-check.sh. .carry/wg/$NAME.json (default wg1) is
# $TABLE with every sorted entry of path $WG_PATH (default one_shot; or
# two_kernel: its shrink) on wgmma (the dispatcher keeps mma.sync where the
# tile does not allow it); its kernels join the bench cache; .carry/wg/sass/
# holds wgmma kernels of the GPU suite for ptxas and cuobjdump on the device.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MOELORA_GPU=${MOELORA_GPU:-NVIDIA H200}
TABLE=${TABLE:-specs/tuned/NVIDIA_H200.json}
WG_PATH=${WG_PATH:-one_shot}
NAME=${NAME:-wg1}
mkdir -p .carry/wg/sass
python3 - "$TABLE" ".carry/wg/$NAME.json" "$WG_PATH" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
n = 0
for e in t["entries"]:
    if e.get("path") == sys.argv[3] and e.get("sorted"):
        e.setdefault("config", {})["wgmma"] = True
        n += 1
json.dump(t, open(sys.argv[2], "w"), indent=1)
print(f"{sys.argv[2]}: {n} sorted {sys.argv[3]} entries on wgmma")
PY
MOELORA_TARGET_GPU="$MOELORA_GPU" "$BUILD"/benchmarks/moelora-bench-prepare \
  .carry/bench-cache --tuned-table ".carry/wg/$NAME.json"
for f in $(ls .carry/gpu-bundle/*one_shot*_wg_*.ptx | head -2) \
  $(ls .carry/gpu-bundle/*shrink*_wg_*.ptx | head -2); do
  cp "$f" .carry/wg/sass/
done
du -sh .carry
