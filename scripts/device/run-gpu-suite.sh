#!/usr/bin/env bash
# Runs on the device machine (from the repository root, with .carry carried).
set -uo pipefail
export LD_LIBRARY_PATH="$PWD/.carry/lib:${LD_LIBRARY_PATH:-}"
export MOELORA_GPU_BUNDLE="$PWD/.carry/gpu-bundle"
export MOELORA_CAPI_CACHE="$PWD/.carry/capi-cache"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/card.txt"
.carry/bin/moelora_gpu_tests --gtest_output=xml:"$OUT/gpu_tests.xml" "$@" 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "^\[ (case|capi) \]|FAILED|PASSED|Failure|error|Expected|Which is|rel_l2" | awk 'NR <= 300'
status=${PIPESTATUS[0]}
echo "exit: $status"
# SASS: the tensor-core families must show HMMA.
CUOBJDUMP=$(command -v cuobjdump || ls /usr/local/cuda*/bin/cuobjdump 2>/dev/null | head -1)
if [ -n "$CUOBJDUMP" ]; then
  for c in .carry/cubin/*.cubin; do
    sass=$("$CUOBJDUMP" --dump-sass "$c")
    echo "SASS $(basename "$c"): HMMA=$(grep -c ' HMMA' <<<"$sass") HGMMA=$(grep -c HGMMA <<<"$sass") LDSM=$(grep -c LDSM <<<"$sass") LDGSTS=$(grep -c LDGSTS <<<"$sass") UTMALDG=$(grep -c UTMALDG <<<"$sass")"
  done | tee "$OUT/sass.txt"
else
  echo "cuobjdump not found on this machine"
fi
