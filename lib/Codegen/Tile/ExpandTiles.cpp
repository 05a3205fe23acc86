//===- ExpandTiles.cpp - r @ B^T over a program's N tiles -----------------===//

#include "moelora/Codegen/ExpandTiles.h"

#include <algorithm>
#include <cassert>

namespace moelora {

ExpandTilesLayout::ExpandTilesLayout(const KernelSpec &spec,
                                     const ExpandShape &shape) {
  bPitch = rankTilePitch(spec, shape.wgmma);
  bTileBytes = shape.cols * bPitch * kElementBytes;
  stageBytes = expandStageBytes(spec, shape);
  assert((!shape.wgmma || stageBytes % 1024 == 0) &&
         "wgmma's swizzled B tiles start 1024-byte aligned");
}

TileCopyPlan planRankTileCopy(TileBuilder &tb, int rows, const TileRows &source,
                              bool swizzled) {
  const KernelSpec &spec = tb.spec();
  const int BR = spec.blockR();
  const int pitch = rankTilePitch(spec, swizzled);
  if (swizzled)
    return tb.planTileCopy(rows, BR, 8, pitch, source,
                           SharedTileLayout::Swizzled128);
  return tb.planTileCopy(rows, BR, copyVectorElems(spec.rank), pitch, source);
}

TileRange programTiles(TileBuilder &tb, Value N, Value pidN, Value npid) {
  Value nTiles = tb.ceilDiv(N, tb.i32(tb.spec().blockN));
  Value perPid = tb.ceilDiv(nTiles, npid);
  Value lo = tb.mul(pidN, perPid);
  return {lo, tb.minS(tb.add(lo, perPid), nTiles)};
}

Value validRowPast(TileBuilder &tb, const MoeBlock &blk, int rows) {
  const KernelSpec &spec = tb.spec();
  Value any = tb.boolean(false);
  for (int row0 = rows; row0 < spec.blockM; row0 += spec.threads()) {
    Value row = tb.add(tb.threadId(), tb.i32(row0));
    Value inTile = tb.lt(row, tb.i32(spec.blockM));
    // Threads past the tile ask for row `rows` (valid or not, it is a row
    // of this block) and ignore the answer.
    Value valid = blk.rowValid(tb.select(inTile, row, tb.i32(rows)));
    any = tb.lor(any, tb.land(inTile, valid));
  }
  return any;
}

ExpandWarp fewRowsWarp(TileBuilder &tb, const ExpandShape &shape) {
  return ExpandWarp{shape.rows / 16, tb.spec().numWarps, tb.warpId(),
                    tb.i32(0)};
}

ExpandTiles::ExpandTiles(TileBuilder &tb, const KernelArgs &args,
                         const MoeBlock &blk, const ExpandShape &shape,
                         const ExpandWarp &warp, Value smem, Value N,
                         Value outSlice, TileRange tiles)
    : tb(tb), args(args), shape(shape), warp(warp), smem(smem), N(N),
      tiles(tiles) {
  const KernelSpec &spec = tb.spec();
  const ExpandTilesLayout lay(spec, shape);
  bPitch = lay.bPitch;
  bTileBytes = lay.bTileBytes;
  stageBytes = lay.stageBytes;
  const int R = spec.rank;
  bBase = loraMatrixAt(tb, loraSliceBase(tb, args[kBPtrs], blk.slice), blk.lora,
                       blk.expert, args[kBStrideL], args[kBStrideE]);
  // Rows of the B tile are output columns n0 + row; n0 varies per tile, so
  // the tile rows are planned relative to a moving base (issue).
  bStride = args[kBStrideN];
  outRows =
      resolveEpilogueRows(tb, args, blk, warp.mTiles, warp.warpRow0, outSlice,
                          args[kOutStride], spec.mulRoutedWeight);
  rLimit = R < spec.blockR() ? tb.i32(R) : Value();
  if (spec.stagesOutput())
    staged = planStagedOutput(tb, blk, shape.rows, shape.cols, outSlice,
                              args[kOutStride]);

  loop.stages = shape.stages;
  loop.asyncProxyReads = shape.wgmma;
  if (staged && staged->bulkRows) {
    // The old rows arrive by bulk copies on the stages' mbarriers, every
    // thread arriving once; each ExpandTiles runs its own loop.
    if (spec.addInputs) {
      loop.stageBarriers = tb.shared(expandBarrierOffset(spec));
      loop.stageArrivals = spec.threads();
      loop.releaseStageBarriers = true;
      loop.asyncProxyWrites = true;
    }
    // A stage is refilled only after its results' bulk stores read it.
    loop.beforeReuse = [&tb] { tb.bulkWaitRead(0); };
  }
  // A step covers `widen` of the program's BLOCK_N tiles; a wide step's
  // columns stop at the program's last tile (the next program's follow).
  widen = shape.cols / spec.blockN;
  Value tilesLeft = tb.maxS(tb.sub(tiles.hi, tiles.lo), tb.i32(0));
  loop.count = widen == 1 ? tilesLeft : tb.ceilDiv(tilesLeft, tb.i32(widen));
  colLimit = widen == 1 ? N : tb.minS(tb.mul(tiles.hi, tb.i32(spec.blockN)), N);
  loop.issue = [this](Value iter, Value stage) { issue(iter, stage); };
}

Value ExpandTiles::tileStart(Value iter) {
  Value tile = widen == 1 ? iter : tb.mul(iter, tb.i32(widen));
  return tb.mul(tb.add(tiles.lo, tile), tb.i32(tb.spec().blockN));
}

void ExpandTiles::issue(Value iter, Value stage) {
  const KernelSpec &spec = tb.spec();
  Value n0 = tileStart(iter);
  TileBuilder &b = tb;
  Value limit = colLimit;
  TileRows bRows = matrixRows(
      tb, bBase, bStride, [&b, n0](Value r) { return b.add(n0, r); },
      [&b, n0, limit](Value r) { return b.lt(b.add(n0, r), limit); });
  TileCopyPlan bPlan = planRankTileCopy(tb, shape.cols, bRows, shape.wgmma);
  Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(stageBytes)));
  tb.issueTileCopy(bPlan, base, tb.i32(0), rLimit);
  if (staged && spec.addInputs)
    loadStagedOutput(
        tb, *staged, tb.sharedOffset(base, tb.i32(bTileBytes)), n0, colLimit,
        staged->bulkRows ? tb.stageBarrier(loop.stageBarriers, stage)
                         : Value());
}

void ExpandTiles::issuePrologue() {
  assert(!loop.stageBarriers && "bulk output rows start with their loop");
  tb.issuePipelinePrologue(loop);
  loop.prologueIssued = true;
}

void ExpandTiles::run(const ExpandOperand &r) {
  assert(shape.wgmma == bool(r.swizzledTile) &&
         "a wgmma step reads r from its swizzled tile, mma.sync from "
         "fragments");
  assert(!ran && "consume refers to this call's operands");
  ran = true;
  const KernelSpec &spec = tb.spec();
  const int rSteps = spec.blockR() / 16;
  const int warpCols = shape.cols / warp.warpsN;
  loop.consume = [&](Value iter, Value stage, mlir::ValueRange) {
    Value n0 = tileStart(iter);
    Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(stageBytes)));
    Value warpCol0 = tb.mul(warp.wn, tb.i32(warpCols));
    Accumulators y = tb.zeroAccumulators(warp.mTiles, warpCols / 8);
    if (shape.wgmma)
      // The warpgroup's 64 rows of r against its warpCols rows of B.
      tb.warpgroupMmaFromShared(y, r.swizzledTile, shape.rows, warp.warpRow0,
                                {base}, shape.cols, warpCol0, tb.i32(0),
                                rSteps);
    else
      tb.mmaWithFragA(y, r.frags, rSteps, base, bPitch, warpCol0, tb.i32(0));
    if (staged)
      storeStagedOutput(tb, y, outRows, *staged,
                        tb.sharedOffset(base, tb.i32(bTileBytes)),
                        warp.warpRow0, warpCol0, n0, colLimit, spec.addInputs,
                        spec.mulRoutedWeight);
    else
      storeAccumulators(tb, y, outRows, tb.add(n0, warpCol0), colLimit,
                        spec.addInputs, spec.mulRoutedWeight);
    return ValueVec{};
  };
  tb.pipelined(loop, {});
}

void expandTiles(TileBuilder &tb, const KernelArgs &args, const MoeBlock &blk,
                 const ExpandShape &shape, const ExpandWarp &warp,
                 const ExpandOperand &r, Value smem, Value N, Value outSlice,
                 TileRange tiles) {
  ExpandTiles(tb, args, blk, shape, warp, smem, N, outSlice, tiles).run(r);
}

} // namespace moelora
