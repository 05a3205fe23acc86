//===- ExpandTiles.cpp - r @ B^T over a program's N tiles -----------------===//

#include "moelora/Codegen/ExpandTiles.h"

#include <optional>

namespace moelora {

ExpandTilesLayout::ExpandTilesLayout(const KernelSpec &spec) {
  bPitch = paddedPitch(spec.blockR());
  bTileBytes = spec.blockN * bPitch * kElementBytes;
  stageBytes = expandStageBytes(spec);
}

TileRange programTiles(TileBuilder &tb, Value N, Value pidN, Value npid) {
  Value nTiles = tb.ceilDiv(N, tb.i32(tb.spec().blockN));
  Value perPid = tb.ceilDiv(nTiles, npid);
  Value lo = tb.mul(pidN, perPid);
  return {lo, tb.minS(tb.add(lo, perPid), nTiles)};
}

void expandTiles(TileBuilder &tb, const KernelArgs &args, const MoeBlock &blk,
                 const ExpandWarp &warp,
                 llvm::ArrayRef<std::array<Value, 4>> rFrags, Value smem,
                 Value N, Value outSlice, TileRange tiles) {
  const KernelSpec &spec = tb.spec();
  const ExpandTilesLayout lay(spec);
  const int R = spec.rank;
  const int BR = spec.blockR();
  const int rSteps = BR / 16;
  Value bBase = loraMatrixBase(tb, args[kBPtrs], blk.slice, blk.lora,
                               blk.expert, args[kBStrideL], args[kBStrideE]);
  // Rows of the B tile are output columns n0 + row; n0 varies per tile, so
  // the tile rows are planned relative to a moving base below.
  const int bVec = copyVectorElems(R);
  Value bStride = args[kBStrideN];
  EpilogueRows outRows =
      resolveEpilogueRows(tb, args, blk, warp.mTiles, warp.warpRow0, outSlice,
                          args[kOutStride], spec.mulRoutedWeight);
  const int warpCols = spec.blockN / warp.warpsN;
  Value rLimit = R < BR ? tb.i32(R) : Value();
  std::optional<StagedOutput> staged;
  if (spec.stagesOutput())
    staged = planStagedOutput(tb, blk, spec.blockM, spec.blockN, outSlice,
                              args[kOutStride]);

  PipelineLoop loop;
  loop.stages = spec.numStages;
  loop.count = tb.maxS(tb.sub(tiles.hi, tiles.lo), tb.i32(0));
  loop.issue = [&](Value iter, Value stage) {
    Value n0 = tb.mul(tb.add(tiles.lo, iter), tb.i32(spec.blockN));
    TileRows bRows = matrixRows(
        tb, bBase, bStride, [&tb, n0](Value r) { return tb.add(n0, r); },
        [&tb, n0, N](Value r) { return tb.lt(tb.add(n0, r), N); });
    TileCopyPlan bPlan =
        tb.planTileCopy(spec.blockN, BR, bVec, lay.bPitch, bRows);
    Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    tb.issueTileCopy(bPlan, base, tb.i32(0), rLimit);
    if (staged && spec.addInputs)
      loadStagedOutput(tb, *staged,
                       tb.sharedOffset(base, tb.i32(lay.bTileBytes)), n0, N);
  };
  loop.consume = [&](Value iter, Value stage, mlir::ValueRange) {
    Value n0 = tb.mul(tb.add(tiles.lo, iter), tb.i32(spec.blockN));
    Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    Value warpCol0 = tb.mul(warp.wn, tb.i32(warpCols));
    Accumulators y = tb.zeroAccumulators(warp.mTiles, warpCols / 8);
    tb.mmaWithFragA(y, rFrags, rSteps, base, lay.bPitch, warpCol0, tb.i32(0));
    if (staged)
      storeStagedOutput(tb, y, outRows, *staged,
                        tb.sharedOffset(base, tb.i32(lay.bTileBytes)),
                        warp.warpRow0, warpCol0, n0, N, spec.addInputs,
                        spec.mulRoutedWeight);
    else
      storeAccumulators(tb, y, outRows, tb.add(n0, warpCol0), N, spec.addInputs,
                        spec.mulRoutedWeight);
    return ValueVec{};
  };
  tb.pipelined(loop, {});
}

} // namespace moelora
