//===- ExpandTiles.h - r @ B^T over a program's N tiles ---------*- C++ -*-===//
//
// The expand half shared by the one-shot and the two-kernel expand: with r
// (the block's rows x BLOCK_R) already in registers as mma A fragments, a
// program walks its N tiles with each stage carrying the tile's B rows and,
// when the output is staged, the old output values, num_stages deep. Only
// where r comes from differs (the one-shot's shrink, or the intermediate).
//
// A sorted block whose valid rows all lie in its first 16 (an expert with
// few pairs: most blocks at M <= 512 with many experts) wastes the warps of
// the other rows and walks N in BLOCK_N steps, each a dependent round trip.
// Such a block can instead run a 16-row tile as many BLOCK_N wide, with
// every warp on a share of its columns (few-rows shape): fewer, wider steps
// in the same shared memory. A 32-row few-rows tile (fewRowsTile) serves
// groups of 16-32 pairs the same way.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_CODEGEN_EXPANDTILES_H
#define MOELORA_CODEGEN_EXPANDTILES_H

#include "moelora/Codegen/MoeBlock.h"

#include <array>
#include <optional>

namespace moelora {

/// Shared memory of one expand stage: a cols x BLOCK_R tile of B, then
/// (aligned output) the staged output tile.
struct ExpandTilesLayout {
  int bPitch = 0;     ///< B tile pitch (BLOCK_R + pad)
  int bTileBytes = 0; ///< B tile of a stage
  int stageBytes = 0; ///< one stage
  ExpandTilesLayout(const KernelSpec &spec, const ExpandShape &shape);
};

/// Plans the copy of a rows x BLOCK_R tile of rank columns (r's rows or
/// B's) from `source`: 16-byte chunks into wgmma's swizzle (swizzled), or
/// the widest chunks R allows into the padded tile (rankTilePitch).
TileCopyPlan planRankTileCopy(TileBuilder &tb, int rows, const TileRows &source,
                              bool swizzled);

/// The warp's share of the block: rows warpRow0 .. + 16 * mTiles, and
/// column group wn of warpsN along each tile.
struct ExpandWarp {
  int mTiles = 1, warpsN = 1;
  Value wn, warpRow0;
};

/// A program's share [lo, hi) of N's BLOCK_N tiles: program pidN of the
/// npid programs of a row block takes the pidN-th run of ceil(tiles / npid).
struct TileRange {
  Value lo, hi;
};
TileRange programTiles(TileBuilder &tb, Value N, Value pidN, Value npid);

/// r, the expand's A operand, in T: the warp's mma A fragments
/// (frags[mt * BLOCK_R/16 + j]; mma.sync steps), or (wgmma steps) the
/// block's rows x BLOCK_R Swizzled128 tile in shared memory, published to
/// the async proxy (fenceAsyncShared, then a barrier).
struct ExpandOperand {
  llvm::ArrayRef<std::array<Value, 4>> frags;
  Value swizzledTile;
};

/// out[rows, n] (+)= r @ B_s[l,e]^T (x topk weight when mul_routed_weight)
/// for n in the BLOCK_N tiles `tiles` (shape.cols / BLOCK_N of them per
/// step) of the slice whose output columns start at outSlice. Stages live
/// at `smem` (clear of r's tile); after run() they are free again.
///
/// Made before r exists, it plans the copies, and issuePrologue() may put
/// the first num_stages - 1 stages (B rows and old outputs: neither depends
/// on r) in flight while r is still being reduced (early_expand); run()
/// then waits for them instead of issuing them.
class ExpandTiles {
public:
  ExpandTiles(TileBuilder &tb, const KernelArgs &args, const MoeBlock &blk,
              const ExpandShape &shape, const ExpandWarp &warp, Value smem,
              Value N, Value outSlice, TileRange tiles);
  // The loop's callbacks refer to this object.
  ExpandTiles(const ExpandTiles &) = delete;
  ExpandTiles &operator=(const ExpandTiles &) = delete;
  /// Issues the copies of the loop's first stages (nothing with one stage).
  /// The stages' bytes must be free, and stay untouched until run().
  void issuePrologue();
  /// Another ExpandTiles of the same stages, shape and tiles issued them.
  void assumePrologueIssued() { loop.prologueIssued = true; }
  /// The loop over the tiles with r (and its prologue, unless issued);
  /// once.
  void run(const ExpandOperand &r);

private:
  Value tileStart(Value iter);
  void issue(Value iter, Value stage);

  TileBuilder &tb;
  const KernelArgs &args;
  ExpandShape shape;
  ExpandWarp warp;
  Value smem, N;
  int bPitch = 0, bTileBytes = 0, stageBytes = 0;
  Value bBase, bStride, rLimit, colLimit;
  TileRange tiles;
  int widen = 1;
  EpilogueRows outRows;
  std::optional<StagedOutput> staged;
  PipelineLoop loop;
  bool ran = false;
};

/// ExpandTiles(...).run(r): the whole expand where it starts.
void expandTiles(TileBuilder &tb, const KernelArgs &args, const MoeBlock &blk,
                 const ExpandShape &shape, const ExpandWarp &warp,
                 const ExpandOperand &r, Value smem, Value N, Value outSlice,
                 TileRange tiles);

/// This thread's part of "is any of the block's tile rows `rows` ..
/// BLOCK_M valid" (i1). Computed early, its loads overlap the shrink; a
/// TileBuilder::barrierAny over it gives the block's answer.
Value validRowPast(TileBuilder &tb, const MoeBlock &blk, int rows);

/// The few-rows warp: every warp of the block on all of the shape's rows
/// (16 or 32), a column share each.
ExpandWarp fewRowsWarp(TileBuilder &tb, const ExpandShape &shape);

} // namespace moelora

#endif // MOELORA_CODEGEN_EXPANDTILES_H
