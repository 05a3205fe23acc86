//===- TileBytes.cpp - Shared-memory sizes both sides must agree on -------===//

#include "moelora/Spec/TileBytes.h"

#include <algorithm>

namespace moelora {

int maxDynamicSharedBytes(int sm) {
  // The opt-in maximum per block (CUDA programming guide, compute
  // capabilities table).
  switch (sm) {
  case 80:
    return 163 * 1024;
  case 86:
  case 89:
    return 99 * 1024;
  default:
    return 227 * 1024;
  }
}

OneShotSharedLayout::OneShotSharedLayout(const KernelSpec &spec) {
  const WarpGrid grid = WarpGrid::forTile(spec.numWarps, spec.blockM);
  const int blockR = spec.blockR();
  slices = spec.fusesSlices() ? spec.numSlices : 1;
  xPitch = shrinkTilePitch(spec);
  shrinkStage = (spec.blockM + slices * blockR) * xPitch * kElementBytes;
  expandBytes = expandStageBytes(spec) * spec.numStages;
  rBytes = spec.blockM * slices * blockR * 4;
  reduceBytes = grid.warpsN > 1 ? grid.warpsN * rBytes : 0;
  // Partial and summed r; reduce_scatter sums in place, and without warps
  // along K gathers the sums straight into registers.
  const bool oneBuffer = spec.scattersClusterSum() && grid.warpsN == 1;
  clusterBytes = spec.splitK > 1 ? (oneBuffer ? 1 : 2) * rBytes : 0;
  if (spec.expandsEarly()) {
    // Past the bytes used while the early stages are in flight: the
    // reductions', and the few-rows expand's copies of r's first rows
    // (fragmentsOfFirstRows: 512 bytes per 16-row tile and k16 step, at
    // most two tiles). Reserved whether or not the block has a few-rows
    // shape, which itself depends on this layout.
    const int firstRowsBytes = 2 * (blockR / 16) * 512;
    expandOffset =
        (std::max({reduceBytes, clusterBytes, firstRowsBytes}) + 1023) / 1024 *
        1024;
  }
  if (spec.wgmmaExpand) {
    const int after =
        std::max({expandOffset + expandBytes, reduceBytes, clusterBytes});
    rTileOffset = (after + 1023) / 1024 * 1024;
    rTileBytes = slices * expandRTileBytes(spec);
  }
}

int OneShotSharedLayout::phaseBytes(const KernelSpec &spec) const {
  return std::max({shrinkStage * spec.numStages, expandOffset + expandBytes,
                   reduceBytes, clusterBytes, rTileOffset + rTileBytes});
}

int OneShotSharedLayout::sharedBytes(const KernelSpec &spec) const {
  // Phase bytes are multiples of 16, so the barriers are 8-byte aligned.
  return phaseBytes(spec) + kernelTailBytes(spec);
}

int shrinkStageBytes(const KernelSpec &spec) {
  const int slices = spec.fusesSlices() ? spec.numSlices : 1;
  return (spec.blockM + slices * spec.blockN) * shrinkTilePitch(spec) *
         kElementBytes;
}

int shrinkKernelSharedBytes(const KernelSpec &spec) {
  const int slices = spec.fusesSlices() ? spec.numSlices : 1;
  const int partial =
      spec.splitK > 1 ? slices * spec.blockM * spec.blockN * 4 : 0;
  return std::max(shrinkStageBytes(spec) * spec.numStages, partial) +
         shrinkTailBytes(spec);
}

int expandStageBytes(const KernelSpec &spec) {
  return expandStageBytes(spec, ExpandShape::of(spec));
}

int expandStageBytes(const KernelSpec &spec, const ExpandShape &shape) {
  // A swizzled B tile needs no padding against bank conflicts; it starts
  // each stage, whose bytes (BLOCK_M 64 or 128 rows of staged output) stay
  // multiples of 1024.
  return shape.cols * rankTilePitch(spec, shape.wgmma) * kElementBytes +
         (spec.stagesOutput() ? stagedOutputBytes(shape.rows, shape.cols) : 0);
}

int expandKernelSharedBytes(const KernelSpec &spec) {
  return expandKernelPhaseBytes(spec) + expandBarrierBytes(spec);
}

int expandBarrierOffset(const KernelSpec &spec) {
  const int sharedBytes = spec.family == KernelFamily::OneShot
                              ? OneShotSharedLayout(spec).sharedBytes(spec)
                              : expandKernelSharedBytes(spec);
  return sharedBytes - expandBarrierBytes(spec);
}

int expandKernelPhaseBytes(const KernelSpec &spec) {
  // wgmma steps read r's swizzled tile throughout: the stages follow it.
  if (spec.wgmmaExpand)
    return expandRTileBytes(spec) + expandStageBytes(spec) * spec.numStages;
  const int rTile = spec.blockM * rankTilePitch(spec, false) * kElementBytes;
  return std::max(rTile, expandStageBytes(spec) * spec.numStages);
}

int expandRTileBytes(const KernelSpec &spec) {
  return spec.blockM * rankTilePitch(spec, true) * kElementBytes;
}

ExpandShape ExpandShape::of(const KernelSpec &spec) {
  return {spec.blockM, spec.blockN, spec.numStages, spec.wgmmaExpand};
}

std::optional<ExpandShape> fewRowsExpandShape(const KernelSpec &spec) {
  int sharedBytes = 0;
  if (spec.family == KernelFamily::OneShot) {
    // The stages start where the dense expand's do. Issued early, they are
    // in flight while r's wgmma tile is written: they end before it.
    const OneShotSharedLayout lay(spec);
    sharedBytes =
        (spec.expandsEarly() && spec.wgmmaExpand ? lay.rTileOffset
                                                 : lay.phaseBytes(spec)) -
        lay.expandOffset;
  } else if (spec.family == KernelFamily::Expand)
    sharedBytes = expandKernelPhaseBytes(spec);
  else
    return std::nullopt;
  const int rows = spec.fewRowsTile;
  // 32 rows double r's fragments too: up to BLOCK_R 64 (32 registers).
  if ((rows != 16 && rows != 32) || (rows == 32 && spec.blockR() > 64))
    return std::nullopt;
  const int minStages = std::min(2, spec.numStages);
  // Widest first: the steps are latency-bound, their bytes are few.
  for (int widen = spec.blockM / rows; widen >= 2; widen /= 2) {
    const int cols = widen * spec.blockN;
    if (cols % (8 * spec.numWarps) != 0)
      continue; // every warp takes whole n8 tiles
    // Wider tiles cost registers (ptxas, the bench's kernels: up to +52 at
    // 512 columns, +16 at most within these limits).
    if (cols > 256 || cols * spec.blockR() / 8 > 4 * spec.threads())
      continue;
    // A 32-row tile: at most the accumulators per thread of the widest
    // 16-row one (16 x 256 over four warps).
    if (rows > 16 && rows * cols > 32 * spec.threads())
      continue;
    for (int stages = spec.numStages; stages >= minStages; --stages)
      if (stages * expandStageBytes(spec, {rows, cols, stages}) <= sharedBytes)
        return ExpandShape{rows, cols, stages};
  }
  return std::nullopt;
}

std::optional<ExpandShape> fewRowsShapeIfEnabled(const KernelSpec &spec) {
  return spec.fewRows ? fewRowsExpandShape(spec) : std::nullopt;
}

} // namespace moelora
