//===- Shrink.cpp - The two-kernel path's shrink --------------------------===//
//
// inter[s][p][0:R] (+)= x[p / factor] @ A_s[l,e]^T over K (Triton's
// _fused_moe_lora_kernel in its shrink role): a grouped GEMM. Program
// ((M-blocks * N-blocks * split) x slice, lora), tiles swizzled in
// GROUP_SIZE_M groups. SPLIT_K > 1 (sm_90): the splits of a tile are a
// thread-block cluster; each block reduces its share of K, and the partials
// are summed in rank order through distributed shared memory, so the result
// is the same bits on every run (atomics would add in arrival order).
// fuse_slices: one program computes every slice of its tile from one copy
// of the x tile (a stage holds x, then each slice's A tile), so W13 gathers
// each pair's x row once instead of once per slice.
// wgmma (sm_90a): as in the one-shot, the tiles are 128-byte swizzled and
// each warpgroup (64 rows; warpgroups beyond BLOCK_M / 64 take a share of
// BLOCK_N) multiplies them with wgmma.mma_async from shared memory; with
// tma_weights the A tiles arrive by bulk tensor copies; with producer_warp
// one more warp issues every copy (PipelineLoop::producerWarp).
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/KernelBuilder.h"
#include "moelora/Codegen/MoeBlock.h"

#include <algorithm>
#include <functional>

namespace moelora {

namespace {
struct GemmLayout {
  WarpGrid grid;
  int mTiles, nTiles; // per warp and slice
  int pitch;          // BLOCK_K + pad (wgmma: BLOCK_K, swizzled)
  int slices;         // slices per program (fuse_slices: all)
  int xTileBytes, weightTileBytes;
  int stageBytes; // x tile, then one weight tile per slice
  explicit GemmLayout(const KernelSpec &spec)
      : grid(WarpGrid::forTile(spec.numWarps, spec.blockM)) {
    mTiles = spec.blockM / 16 / grid.warpsM;
    nTiles = spec.blockN / grid.warpsN / 8;
    pitch = shrinkTilePitch(spec);
    slices = spec.fusesSlices() ? spec.numSlices : 1;
    xTileBytes = spec.blockM * pitch * kElementBytes;
    weightTileBytes = spec.blockN * pitch * kElementBytes;
    stageBytes = shrinkStageBytes(spec);
  }
  int weightTileOffset(int s) const { return xTileBytes + s * weightTileBytes; }
};
} // namespace

int shrinkSharedBytes(const KernelSpec &spec) {
  // The runtime checks plans with the same arithmetic (Spec/TileBytes).
  return shrinkKernelSharedBytes(spec);
}

namespace {
/// SPLIT_K > 1: the warp's accumulators summed over the cluster's C blocks in
/// rank order, handed to `atRankZero` in block 0 of the cluster (the others
/// only contribute). Shared layout (f32): [warp][m16n8 tile][lane][4], one
/// 16-byte vector per access.
void sumOverSplits(TileBuilder &tb, const Accumulators &acc, Value smem, int C,
                   Value rank,
                   const std::function<void(Accumulators &)> &atRankZero) {
  const int tiles = acc.mTiles * acc.nTiles;
  auto slot = [&](int tile) {
    Value index =
        tb.add(tb.mul(tb.add(tb.mul(tb.warpId(), tb.i32(tiles)), tb.i32(tile)),
                      tb.i32(32)),
               tb.laneId());
    return tb.gep(smem, tb.mul(index, tb.i32(4)), tb.f32Type());
  };
  mlir::Type f32x4 = tb.vectorType(tb.f32Type(), 4);
  // The pipeline's stages are read: the shared memory holds partials now.
  tb.barrier();
  for (int tile = 0; tile < tiles; ++tile)
    tb.store(tb.vectorOf(ValueVec(acc.values.begin() + tile * 4,
                                  acc.values.begin() + tile * 4 + 4)),
             slot(tile));
  // Release/acquire over the cluster: every block's partial is visible.
  tb.clusterBarrier();
  tb.ifThen(tb.eq(rank, tb.i32(0)), [&] {
    Accumulators total = acc;
    for (int tile = 0; tile < tiles; ++tile) {
      ValueVec sum = tb.sumOverCluster(f32x4, slot(tile), C);
      std::copy(sum.begin(), sum.end(), total.values.begin() + tile * 4);
    }
    atRankZero(total);
  });
  // No block may leave while rank 0 still reads its shared memory. A
  // release barrier: rank 0 reads values that only predicated stores use,
  // so a relaxed arrive could pass reads still in flight (it faulted).
  tb.clusterBarrier();
}
} // namespace

void buildShrinkKernel(TileBuilder &tb, const KernelArgs &args) {
  const KernelSpec &spec = tb.spec();
  const GemmLayout lay(spec);
  const int R = spec.rank;

  // Reduction length and output width of this GEMM.
  Value kTotal = spec.k ? tb.i32(*spec.k) : args[kK];
  Value nTotal = tb.i32(R);

  // pid -> (tile, split), tile -> (pidM, pidN) with GROUP_SIZE_M swizzling.
  // A tile's splits are consecutive programs: its cluster.
  const int C = spec.splitK;
  Value numPairs = args[kNumPairs];
  Value mBlocks =
      spec.sorted ? tb.divU(args[kEM], tb.i32(spec.blockM)) : numPairs;
  Value nBlocks = tb.ceilDiv(nTotal, tb.i32(spec.blockN));
  ProgramIndex program = programIndex(tb, C);
  Value pid = program.pid;
  Value split = C > 1 ? tb.remU(pid, tb.i32(C)) : tb.i32(0);
  Value tile = C > 1 ? tb.divU(pid, tb.i32(C)) : pid;
  Value group = tb.i32(spec.groupSizeM);
  Value perGroup = tb.mul(group, nBlocks);
  Value groupId = tb.divU(tile, perGroup);
  Value firstM = tb.mul(groupId, group);
  Value groupRows = tb.minS(tb.sub(mBlocks, firstM), group);
  Value inGroup = tb.remU(tile, perGroup);
  Value pidM = tb.add(firstM, tb.remU(inGroup, groupRows));
  Value pidN = tb.divU(inGroup, groupRows);

  MoeBlock blk = resolveMoeBlock(tb, args, pidM, program.slice);
  tb.ifThen(blk.active, [&] {
    // Row tile wm, column share wn (with wgmma, warpgroups along M).
    const bool wg = spec.wgmma;
    auto [wm, wn] = tb.warpCoords(lay.grid, wg);
    Value warpRow0 = tb.mul(wm, tb.i32(16 * lay.mTiles));
    Value warpCol0 = tb.mul(wn, tb.i32(8 * lay.nTiles));
    Value n0 = tb.mul(pidN, tb.i32(spec.blockN));

    // Row operand: x rows; weight operands: rows n0.. of A_s[l,e] (R x K)
    // for each slice s this program computes.
    const int F = lay.slices;
    auto sliceOf = [&](int s) { return F == 1 ? blk.slice : tb.i32(s); };
    // The copying threads, as in the one-shot (shrinkTileCopiers).
    ShrinkStageCopies copies;
    auto planCopies = [&] {
      copies = planShrinkStageCopies(tb, args, blk, sliceOf, F, spec.blockN, n0,
                                     lay.pitch, shrinkKernelSharedBytes(spec));
    };
    if (!spec.producerWarp)
      planCopies();
    Value kLimit = spec.evenK() ? Value() : kTotal;

    // This split's K range, in whole BLOCK_K steps.
    Value kSteps = tb.ceilDiv(kTotal, tb.i32(spec.blockK));
    Value stepsPerSplit = tb.ceilDiv(kSteps, tb.i32(C));
    Value stepLo = tb.mul(split, stepsPerSplit);
    Value stepHi = tb.minS(tb.add(stepLo, stepsPerSplit), kSteps);

    Value smem = tb.shared();
    auto stageBase = [&](Value stage) {
      return tb.sharedOffset(smem, tb.mul(stage, tb.i32(lay.stageBytes)));
    };
    auto weightTile = [&](Value base, int s) {
      return tb.sharedOffset(base, tb.i32(lay.weightTileOffset(s)));
    };
    PipelineLoop loop;
    loop.stages = spec.numStages;
    loop.count = tb.maxS(tb.sub(stepHi, stepLo), tb.i32(0));
    loop.asyncProxyReads = wg;
    if (hasStageBarriers(spec)) {
      loop.stageBarriers =
          tb.shared(stageBarrierOffset(spec, shrinkKernelSharedBytes(spec)));
    }
    if (spec.producerWarp) {
      loop.producerWarp = true;
      loop.fullExtraArrivals = spec.tmaWeights ? 1 : 0;
      loop.prepareIssue = planCopies;
    }
    if (spec.bulkShrink) {
      // Every thread arrives once per stage with its rows' bytes.
      loop.stageArrivals = spec.threads();
      loop.asyncProxyWrites = true;
    }
    loop.issue = [&](Value iter, Value stage) {
      Value base = stageBase(stage);
      Value k0 = tb.mul(tb.add(stepLo, iter), tb.i32(spec.blockK));
      if (!spec.tmaWeights) {
        issueShrinkStageCopies(
            tb, copies, base, [&](int s) { return weightTile(base, s); }, k0,
            kLimit,
            spec.bulkShrink ? tb.stageBarrier(loop.stageBarriers, stage)
                            : Value());
        return;
      }
      tb.issueTileCopy(copies.x, base, k0, kLimit);
      // Rows n0.. of each A_s[l, e] (rows past R arrive as zeros).
      issueWeightTensorTiles(tb, args, blk, sliceOf, F, weightTileRows(spec),
                             k0, n0, tb.stageBarrier(loop.stageBarriers, stage),
                             [&](int s) { return weightTile(base, s); });
    };
    // The slices' accumulators side by side along N: slice s is n8 tiles
    // [s * nTiles, (s + 1) * nTiles) of every row tile.
    const int nt = lay.nTiles;
    Accumulators acc = tb.zeroAccumulators(lay.mTiles, nt * F);
    loop.consume = [&](Value, Value stage, mlir::ValueRange carried) {
      Accumulators all = acc;
      all.values.assign(carried.begin(), carried.end());
      Value base = stageBase(stage);
      if (wg) {
        // Each warpgroup: its 64 rows of x against its column share of
        // every slice's A tile, the whole BLOCK_K, one wgmma chain.
        llvm::SmallVector<Value> wTiles;
        for (int s = 0; s < F; ++s)
          wTiles.push_back(weightTile(base, s));
        tb.warpgroupMmaFromShared(all, base, spec.blockM, warpRow0, wTiles,
                                  spec.blockN, warpCol0, tb.i32(0),
                                  spec.blockK / 16);
        return all.values;
      }
      for (int s = 0; s < F; ++s) {
        Accumulators a = all.columns(s * nt, nt);
        tb.mmaFromShared(a, base, lay.pitch, warpRow0, weightTile(base, s),
                         lay.pitch, warpCol0, tb.i32(0), spec.blockK / 16);
        all.setColumns(s * nt, a);
      }
      return all.values;
    };
    acc.values = tb.pipelined(loop, acc.values);

    auto store = [&](Accumulators &total) {
      for (int s = 0; s < F; ++s) {
        Accumulators a = total.columns(s * nt, nt);
        Value interSlice =
            tb.mul(tb.toI64(sliceOf(s)), args[kInterSliceStride]);
        Value out = tb.gep(args[kOut], interSlice, tb.elementType());
        EpilogueRows outRows = resolveEpilogueRows(
            tb, args, blk, lay.mTiles, warpRow0, out, args[kOutStride], false);
        storeAccumulators(tb, a, outRows, tb.add(n0, warpCol0), nTotal,
                          /*addInputs=*/false, /*mulWeight=*/false);
      }
    };
    if (C > 1)
      sumOverSplits(tb, acc, smem, C, split, store);
    else
      store(acc);
  });
}

} // namespace moelora
