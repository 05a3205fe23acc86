#!/usr/bin/env bash
# Builds the GPU suite here and stages what the device machine needs under
# .carry/ (binaries, the PTX bundle, the two shared libraries the binaries
# use): pass `carry: [".carry"]` to the device tool and run
# scripts/device/run-gpu-suite.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
# The card the device tool lends (its name selects the tuned table).
MOELORA_GPU=${MOELORA_GPU:-NVIDIA H200}
cmake -S . -B "$BUILD" -G Ninja >/dev/null
ninja -C "$BUILD" -j2 moelora_gpu_tests make-gpu-bundle prepare-capi-cache
rm -rf .carry && mkdir -p .carry/bin .carry/lib
"$BUILD"/test/gpu/make-gpu-bundle .carry/gpu-bundle
# The C ABI suite's disk cache: every variant its calls dispatch to, on
# either card the device tool lends (each card's tuned table picks its own
# variants; the runtime there has no generator).
for gpu in "$MOELORA_GPU" "NVIDIA H200" "NVIDIA H100 80GB HBM3"; do
  MOELORA_TARGET_GPU="$gpu" "$BUILD"/test/gpu/prepare-capi-cache .carry/capi-cache
done
cp "$BUILD"/test/gpu/moelora_gpu_tests .carry/bin/
for lib in libfmt.so.9 libyaml-cpp.so.0.7; do
  cp -L "/usr/lib/x86_64-linux-gnu/$lib" .carry/lib/
done
strip .carry/bin/* 2>/dev/null || true
du -sh .carry
# Cubins of one kernel per tensor-core family, for the SASS check there.
mkdir -p .carry/cubin
# (First matches by glob: `ls | head -1` can die of SIGPIPE under pipefail.)
first() { echo "$1"; }
for fam in one_shot shrink expand small_batch; do
  f=$(first .carry/gpu-bundle/moelora_${fam}_bf16_*.ptx)
  /usr/local/cuda/bin/ptxas -arch=sm_90 "$f" -o ".carry/cubin/$(basename "${f%.ptx}").cubin"
done
# A wgmma kernel with its A tiles by bulk tensor copies (UTMALDG) and the
# same kernel without them, per family that has them.
for fam in one_shot shrink; do
  f=$(first .carry/gpu-bundle/moelora_${fam}_bf16_*_wg_tma_*.ptx)
  g=$(first ".carry/gpu-bundle/$(basename "$f" | sed 's/_wg_tma_.*/_wg_/')"*.ptx)
  for p in "$f" "$g"; do
    /usr/local/cuda/bin/ptxas -arch=sm_90a "$p" -o ".carry/cubin/$(basename "${p%.ptx}").cubin"
  done
done
# A one-shot and a two-kernel expand whose expand runs on wgmma
# (wgmma_expand: HGMMA, no LDSM or HMMA outside the few-rows branch, which
# these lack).
for f in $(first .carry/gpu-bundle/moelora_one_shot_bf16_*_wg_xwg_h*.ptx) \
  $(first .carry/gpu-bundle/moelora_expand_bf16_*_xwg_h*.ptx); do
  /usr/local/cuda/bin/ptxas -arch=sm_90a "$f" -o ".carry/cubin/$(basename "${f%.ptx}").cubin"
done
