//===- TileBytes.h - Shared-memory sizes both sides must agree on -*- C++
//-*-===//
//
// Pure arithmetic on a KernelSpec, without LLVM: the generator lays out its
// shared tiles with these, and the runtime's dispatcher (which has no
// generator) checks a plan against the device's limit with the same numbers.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SPEC_TILEBYTES_H
#define MOELORA_SPEC_TILEBYTES_H

#include "moelora/Spec/KernelSpec.h"

#include <algorithm>
#include <optional>

namespace moelora {

/// Bytes of one element of T (bf16 / fp16).
inline constexpr int kElementBytes = 2;

/// Row pitch (elements) of a shared tile of `cols` columns: 8 elements of
/// padding put ldmatrix rows of consecutive tile rows in different banks.
inline int paddedPitch(int cols) { return cols + 8; }

/// Row pitch (elements) of the shrink's x and A tiles (one-shot and
/// two-kernel shrink): padded for ldmatrix; wgmma reads 128-byte swizzled
/// rows, which need no padding against bank conflicts (and keep each tile,
/// a multiple of 8 rows, 1024-byte aligned).
inline int shrinkTilePitch(const KernelSpec &spec) {
  return spec.wgmma ? spec.blockK : paddedPitch(spec.blockK);
}

/// Row pitch (elements) of a shared tile whose columns are the rank (the
/// expand's r and B tiles): padded for ldmatrix, or BLOCK_R in wgmma's
/// 128-byte swizzle (swizzled).
inline int rankTilePitch(const KernelSpec &spec, bool swizzled) {
  return swizzled ? spec.blockR() : paddedPitch(spec.blockR());
}

/// Bytes of a staged output tile (rows x cols of T).
inline int stagedOutputBytes(int rows, int cols) {
  return rows * paddedPitch(cols) * kElementBytes;
}

/// Warps of a GEMM tile: along M first (one 16-row MMA tile each), the rest
/// along N (the kernel builders' layout, and the shared-memory sizes here).
struct WarpGrid {
  int warpsM = 1, warpsN = 1;
  static WarpGrid forTile(int numWarps, int blockM) {
    WarpGrid g;
    g.warpsM = std::max(1, std::min(numWarps, blockM / 16));
    g.warpsN = numWarps / g.warpsM;
    return g;
  }
};

/// The one-shot kernel's shared memory, phase by phase (the phases reuse
/// the same bytes): shrink stages, expand stages, the cross-warp reduction
/// of r, and (SPLIT_K > 1) the cluster's partial and summed r.
struct OneShotSharedLayout {
  int slices = 1;      ///< slices per program (fuse_slices: all)
  int xPitch = 0;      ///< shrink tiles' pitch (BLOCK_K + pad; wgmma: BLOCK_K)
  int shrinkStage = 0; ///< x tile, then each slice's A tile
  int expandBytes = 0; ///< num_stages expand stages
  /// Where the expand stages start: 0, or (earlyExpand, whose stages are
  /// in flight while r is reduced) past the reduction's and the cluster
  /// sums' bytes, 1024-byte aligned.
  int expandOffset = 0;
  int rBytes = 0;      ///< r of the program's slices (f32)
  int reduceBytes = 0; ///< warpsN partial r (f32)
  /// Partial and summed r (f32): two r's, one with reduce_scatter and no
  /// warps along K.
  int clusterBytes = 0;
  /// wgmmaExpand: r in T, one BLOCK_M x BLOCK_R swizzled tile per slice,
  /// from rTileOffset (1024-byte aligned, past the expand stages, the
  /// reduction and the cluster sums, which it outlives or follows).
  int rTileOffset = 0;
  int rTileBytes = 0;
  explicit OneShotSharedLayout(const KernelSpec &spec);
  /// The largest phase: the bytes the phases share.
  int phaseBytes(const KernelSpec &spec) const;
  /// phaseBytes, then the shrink's stage barriers (stageBarrierBytes).
  int sharedBytes(const KernelSpec &spec) const;
};

/// Rows of the shrink's A tile per slice (one_shot: BLOCK_R; shrink:
/// BLOCK_N): the box rows of its tensor maps (tmaWeights).
inline int weightTileRows(const KernelSpec &spec) {
  return spec.family == KernelFamily::OneShot ? spec.blockR() : spec.blockN;
}

/// Whether the shrink's stages complete on mbarriers: its A tiles arrive
/// by bulk tensor copies, or a producer warp fills them.
inline bool hasStageBarriers(const KernelSpec &spec) {
  return spec.tmaWeights || spec.producerWarp || spec.bulkShrink;
}
/// The shrink's stage barriers (8-byte mbarriers), after every phase's
/// bytes (an mbarrier's memory may not be reused while it is valid): one
/// per stage ("full"), and with a producer warp one more per stage that
/// the consumers release it on ("empty").
inline int stageBarrierBytes(const KernelSpec &spec) {
  if (!hasStageBarriers(spec))
    return 0;
  return 8 * spec.numStages * (spec.producerWarp ? 2 : 1);
}
/// producerWarp: the rows of the tiles the producer copies by cp.async (x,
/// and each computed slice's A tile without tmaWeights), one 8-byte row
/// address each in its row table.
inline int producerRowTableRows(const KernelSpec &spec) {
  if (!spec.producerWarp)
    return 0;
  const int slices = spec.fusesSlices() ? spec.numSlices : 1;
  return spec.blockM + (spec.tmaWeights ? 0 : slices * weightTileRows(spec));
}
/// The bytes after a shrink's phases: its stage barriers, then the
/// producer's row table.
inline int shrinkTailBytes(const KernelSpec &spec) {
  return stageBarrierBytes(spec) + 8 * producerRowTableRows(spec);
}
/// bulksOutput: the expand's stage barriers (one 8-byte mbarrier per stage,
/// on which the bulk copies of the old output rows complete), the last
/// bytes of the kernel's dynamic shared memory.
inline int expandBarrierBytes(const KernelSpec &spec) {
  return spec.bulksOutput() ? 8 * spec.numStages : 0;
}
/// The bytes after every phase of a kernel: the shrink's tail, then the
/// expand's stage barriers.
inline int kernelTailBytes(const KernelSpec &spec) {
  return shrinkTailBytes(spec) + expandBarrierBytes(spec);
}
/// Offset of the stage barriers in a kernel's dynamic shared memory of
/// `sharedBytes` bytes (they, the row table and the expand's barriers are
/// its last bytes).
inline int stageBarrierOffset(const KernelSpec &spec, int sharedBytes) {
  return sharedBytes - kernelTailBytes(spec);
}
/// Offset of the expand's stage barriers (expandBarrierBytes) in the
/// dynamic shared memory of the spec's kernel (one_shot or expand).
int expandBarrierOffset(const KernelSpec &spec);
/// Offset of the producer's row table: right after the stage barriers.
inline int producerRowTableOffset(const KernelSpec &spec, int sharedBytes) {
  return stageBarrierOffset(spec, sharedBytes) + stageBarrierBytes(spec);
}

/// One stage of the two-kernel shrink: the x tile, then each computed
/// slice's A tile (BLOCK_N rows), BLOCK_K + pad columns each (wgmma:
/// BLOCK_K, swizzled).
int shrinkStageBytes(const KernelSpec &spec);
/// The two-kernel shrink's dynamic shared memory: num_stages stages, or
/// (SPLIT_K > 1) the f32 partial tiles for the cluster peers, whichever is
/// larger.
int shrinkKernelSharedBytes(const KernelSpec &spec);

/// The most dynamic shared memory one block may opt into on sm_<sm>.
int maxDynamicSharedBytes(int sm);

/// The output tile of one expand step, how many steps are in flight, and
/// whether the step runs on wgmma (its B tile then swizzled, unpadded).
struct ExpandShape {
  int rows = 0, cols = 0, stages = 1;
  bool wgmma = false;
  /// The spec's tile: BLOCK_M x BLOCK_N, num_stages, its wgmmaExpand.
  static ExpandShape of(const KernelSpec &spec);
  bool operator==(const ExpandShape &) const = default;
};

/// One stage of the expand loop (one-shot and two-kernel expand): a
/// BLOCK_N x BLOCK_R tile of B, then (aligned output) the staged output.
int expandStageBytes(const KernelSpec &spec);
/// The same for one step of `shape` (a cols x BLOCK_R tile of B: padded
/// for ldmatrix, or swizzled for wgmma).
int expandStageBytes(const KernelSpec &spec, const ExpandShape &shape);

/// The few-rows expand's shape (one_shot and expand) for a block whose
/// valid rows all lie in its first fewRowsTile (16 or 32): that many rows,
/// BLOCK_N widened by up to BLOCK_M / rows (at most 256 columns, 4 16-byte
/// B-tile copies per thread and, for 32 rows, 32 accumulators per thread:
/// wider tiles cost registers), as many stages (at least 2, or the
/// spec's 1) as the kernel's dynamic shared memory holds. None for other
/// families, BLOCK_M up to the tile's rows, 32 rows above BLOCK_R 64, or
/// where no widening fits.
std::optional<ExpandShape> fewRowsExpandShape(const KernelSpec &spec);
/// The same where the spec asks for it (KernelSpec::fewRows): the kernels'
/// builders and KernelSpec::fewRowsExpand() ask this.
std::optional<ExpandShape> fewRowsShapeIfEnabled(const KernelSpec &spec);

/// The two-kernel expand's dynamic shared memory: its BLOCK_M x BLOCK_R rows
/// of the intermediate, then (reusing them) num_stages expand stages; with
/// wgmmaExpand the rows' swizzled tile (expandRTileBytes), then the stages.
int expandKernelSharedBytes(const KernelSpec &spec);
/// The same without the expand's stage barriers at its end: the bytes its
/// tiles and stages may use.
int expandKernelPhaseBytes(const KernelSpec &spec);
/// The two-kernel expand's swizzled r tile (wgmmaExpand): BLOCK_M x BLOCK_R
/// of T, a multiple of 1024 bytes.
int expandRTileBytes(const KernelSpec &spec);

} // namespace moelora

#endif // MOELORA_SPEC_TILEBYTES_H
