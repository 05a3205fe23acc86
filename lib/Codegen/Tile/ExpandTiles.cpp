//===- ExpandTiles.cpp - r @ B^T over a program's N tiles -----------------===//

#include "moelora/Codegen/ExpandTiles.h"

namespace moelora {

ExpandTilesLayout::ExpandTilesLayout(const KernelSpec &spec) {
  bPitch = paddedPitch(spec.blockR());
  bTileBytes = spec.blockN * bPitch * kElementBytes;
  stageBytes = expandStageBytes(spec);
}

ExpandTiles::ExpandTiles(TileBuilder &tb, const KernelArgs &args,
                         const MoeBlock &blk, const ExpandWarp &warp,
                         Value smem, Value N, Value outSlice, Value tileLo,
                         Value tileHi)
    : tb(tb), spec(tb.spec()), lay(tb.spec()), warp(warp), smem(smem), N(N),
      tileLo(tileLo) {
  const int R = spec.rank;
  const int BR = spec.blockR();
  Value bBase = loraMatrixBase(tb, args[kBPtrs], blk.slice, blk.lora,
                               blk.expert, args[kBStrideL], args[kBStrideE]);
  Value bStride = args[kBStrideN];
  outRows =
      resolveEpilogueRows(tb, args, blk, warp.mTiles, warp.warpRow0, outSlice,
                          args[kOutStride], spec.mulRoutedWeight);
  if (spec.stagesOutput())
    staged = planStagedOutput(tb, blk, spec.blockM, spec.blockN, outSlice,
                              args[kOutStride]);

  loop.stages = spec.numStages;
  loop.count = tb.maxS(tb.sub(tileHi, tileLo), tb.i32(0));
  // Rows of the B tile are output columns n0 + row; n0 varies per tile, so
  // the tile rows are planned relative to a moving base.
  loop.issue = [this, bBase, bStride, R, BR](Value iter, Value stage) {
    TileBuilder &tb = this->tb;
    Value n0 = tb.mul(tb.add(this->tileLo, iter), tb.i32(spec.blockN));
    Value N = this->N;
    TileRows bRows = matrixRows(
        tb, bBase, bStride, [&tb, n0](Value r) { return tb.add(n0, r); },
        [&tb, n0, N](Value r) { return tb.lt(tb.add(n0, r), N); });
    TileCopyPlan bPlan =
        tb.planTileCopy(spec.blockN, BR, copyVectorElems(R), lay.bPitch, bRows);
    Value base =
        tb.sharedOffset(this->smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    tb.issueTileCopy(bPlan, base, tb.i32(0), R < BR ? tb.i32(R) : Value());
    if (staged && spec.addInputs)
      loadStagedOutput(tb, *staged,
                       tb.sharedOffset(base, tb.i32(lay.bTileBytes)), n0, N);
  };
  loop.consume = [this](Value iter, Value stage, mlir::ValueRange) {
    TileBuilder &tb = this->tb;
    const int warpCols = spec.blockN / this->warp.warpsN;
    Value n0 = tb.mul(tb.add(this->tileLo, iter), tb.i32(spec.blockN));
    Value base =
        tb.sharedOffset(this->smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    Value warpCol0 = tb.mul(this->warp.wn, tb.i32(warpCols));
    Accumulators y = tb.zeroAccumulators(this->warp.mTiles, warpCols / 8);
    tb.mmaWithFragA(y, r, spec.blockR() / 16, base, lay.bPitch, warpCol0,
                    tb.i32(0));
    if (staged)
      storeStagedOutput(tb, y, outRows, *staged,
                        tb.sharedOffset(base, tb.i32(lay.bTileBytes)),
                        this->warp.warpRow0, warpCol0, n0, this->N,
                        spec.addInputs, spec.mulRoutedWeight);
    else
      storeAccumulators(tb, y, outRows, tb.add(n0, warpCol0), this->N,
                        EpilogueMode::Store, spec.addInputs,
                        spec.mulRoutedWeight);
    return ValueVec{};
  };
}

void ExpandTiles::issuePrologue() { tb.issuePipelinePrologue(loop); }

void ExpandTiles::run(llvm::ArrayRef<std::array<Value, 4>> rFrags) {
  r.assign(rFrags.begin(), rFrags.end());
  tb.pipelinedAfterPrologue(loop, {});
}

} // namespace moelora
