//===- ExpandTiles.cpp - r @ B^T over a program's N tiles -----------------===//

#include "moelora/Codegen/ExpandTiles.h"

#include <algorithm>

namespace moelora {

ExpandShape ExpandShape::of(const KernelSpec &spec) {
  return {spec.blockM, spec.blockN, spec.numStages};
}

std::optional<ExpandShape> fewRowsExpandShape(const KernelSpec &spec,
                                              int sharedBytes) {
  const int minStages = std::min(2, spec.numStages);
  // Widest first: the steps are latency-bound, their bytes are few.
  for (int widen = spec.blockM / 16; widen >= 2; widen /= 2) {
    const int cols = widen * spec.blockN;
    if (cols % (8 * spec.numWarps) != 0)
      continue; // every warp takes whole n8 tiles
    // Wider tiles cost registers (up to +52 at 512 columns, a spill in the
    // four-warp rank-64 one-shot at 4 B-tile copies per thread; ptxas on
    // the bench's kernels): at most 256 columns and 4 copies per thread.
    if (cols > 256 || cols * spec.blockR() / 8 > 4 * spec.threads())
      continue;
    for (int stages = spec.numStages; stages >= minStages; --stages)
      if (stages * expandStageBytes(spec, 16, cols) <= sharedBytes)
        return ExpandShape{16, cols, stages};
  }
  return std::nullopt;
}

ExpandTilesLayout::ExpandTilesLayout(const KernelSpec &spec,
                                     const ExpandShape &shape) {
  bPitch = paddedPitch(spec.blockR());
  bTileBytes = shape.cols * bPitch * kElementBytes;
  stageBytes = expandStageBytes(spec, shape.rows, shape.cols);
}

ColumnRange programColumns(TileBuilder &tb, Value N, Value pidN, Value npid) {
  const int BN = tb.spec().blockN;
  Value nTiles = tb.ceilDiv(N, tb.i32(BN));
  Value perPid = tb.ceilDiv(nTiles, npid);
  Value lo = tb.mul(tb.mul(pidN, perPid), tb.i32(BN));
  Value hi = tb.mul(tb.add(tb.mul(pidN, perPid), perPid), tb.i32(BN));
  return {lo, tb.minS(hi, N)};
}

Value validRowPast16(TileBuilder &tb, const MoeBlock &blk) {
  const KernelSpec &spec = tb.spec();
  Value any = tb.boolean(false);
  for (int row0 = 16; row0 < spec.blockM; row0 += spec.threads()) {
    Value row = tb.add(tb.threadId(), tb.i32(row0));
    Value inTile = tb.lt(row, tb.i32(spec.blockM));
    // Threads past the tile ask for row 16 (valid or not, it is a row of
    // this block) and ignore the answer.
    Value valid = blk.rowValid(tb.select(inTile, row, tb.i32(16)));
    any = tb.lor(any, tb.land(inTile, valid));
  }
  return any;
}

ExpandWarp fewRowsWarp(TileBuilder &tb) {
  return ExpandWarp{1, tb.spec().numWarps, tb.warpId(), tb.i32(0)};
}

void expandTiles(TileBuilder &tb, const KernelArgs &args, const MoeBlock &blk,
                 const ExpandShape &shape, const ExpandWarp &warp,
                 llvm::ArrayRef<std::array<Value, 4>> rFrags, Value smem,
                 Value outSlice, ColumnRange cols) {
  const KernelSpec &spec = tb.spec();
  const ExpandTilesLayout lay(spec, shape);
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
  const int warpCols = shape.cols / warp.warpsN;
  Value rLimit = R < BR ? tb.i32(R) : Value();
  std::optional<StagedOutput> staged;
  if (spec.stagesOutput())
    staged = planStagedOutput(tb, blk, shape.rows, shape.cols, outSlice,
                              args[kOutStride]);

  PipelineLoop loop;
  loop.stages = shape.stages;
  // Programs past the last tile have hi <= lo (ceilDiv is unsigned).
  loop.count = tb.ceilDiv(tb.maxS(tb.sub(cols.hi, cols.lo), tb.i32(0)),
                          tb.i32(shape.cols));
  auto tileStart = [&](Value iter) {
    return tb.add(cols.lo, tb.mul(iter, tb.i32(shape.cols)));
  };
  loop.issue = [&](Value iter, Value stage) {
    Value n0 = tileStart(iter);
    Value nEnd = cols.hi;
    TileRows bRows = matrixRows(
        tb, bBase, bStride, [&tb, n0](Value r) { return tb.add(n0, r); },
        [&tb, n0, nEnd](Value r) { return tb.lt(tb.add(n0, r), nEnd); });
    TileCopyPlan bPlan =
        tb.planTileCopy(shape.cols, BR, bVec, lay.bPitch, bRows);
    Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    tb.issueTileCopy(bPlan, base, tb.i32(0), rLimit);
    if (staged && spec.addInputs)
      loadStagedOutput(tb, *staged,
                       tb.sharedOffset(base, tb.i32(lay.bTileBytes)), n0,
                       cols.hi);
  };
  loop.consume = [&](Value iter, Value stage, mlir::ValueRange) {
    Value n0 = tileStart(iter);
    Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    Value warpCol0 = tb.mul(warp.wn, tb.i32(warpCols));
    Accumulators y = tb.zeroAccumulators(warp.mTiles, warpCols / 8);
    tb.mmaWithFragA(y, rFrags, rSteps, base, lay.bPitch, warpCol0, tb.i32(0));
    if (staged)
      storeStagedOutput(tb, y, outRows, *staged,
                        tb.sharedOffset(base, tb.i32(lay.bTileBytes)),
                        warp.warpRow0, warpCol0, n0, cols.hi, spec.addInputs,
                        spec.mulRoutedWeight);
    else
      storeAccumulators(tb, y, outRows, tb.add(n0, warpCol0), cols.hi,
                        spec.addInputs, spec.mulRoutedWeight);
    return ValueVec{};
  };
  tb.pipelined(loop, {});
}

} // namespace moelora
