//===- Expand.cpp - The two-kernel path's expand --------------------------===//
//
// out[p][off + s*N + n] (+)= inter[s][p] @ B_s[l,e]^T (x topk weight). The
// reduction is only R long, so the work is streaming B and the output: a
// program loads its rows of the intermediate once, keeps them in registers
// as mma A fragments, and walks its share of N (NPID programs per row block)
// with expandTiles, num_stages tiles of B and old output in flight. (One
// program per BLOCK_N tile reloaded the rows per tile and kept a single
// tile in flight: 45% of DRAM bandwidth at 23% occupancy on the H200.)
// A block whose valid rows all lie in its first 16 (or 32) takes the
// few-rows shape (ExpandTiles.h): every warp reads r's first 16 (32) rows.
// wgmma_expand: the rows land in a 128-byte swizzled tile that stays put
// (the stages follow it), the warps form warpgroups of 64 rows, and each
// step multiplies the tile with the stage's B tile on wgmma; the few-rows
// branch reads its fragments from the same tile.
// Program ((pid_m * NPID + pid_n) x slice, lora).
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/ExpandTiles.h"
#include "moelora/Codegen/KernelBuilder.h"

#include <algorithm>

namespace moelora {

int expandSharedBytes(const KernelSpec &spec) {
  return expandKernelSharedBytes(spec);
}

void buildExpandKernel(TileBuilder &tb, const KernelArgs &args) {
  const KernelSpec &spec = tb.spec();
  const WarpGrid grid = WarpGrid::forTile(spec.numWarps, spec.blockM);
  const int mTiles = spec.blockM / 16 / grid.warpsM;
  const int R = spec.rank;
  const int BR = spec.blockR();

  ProgramIndex program = programIndex(tb, 1);
  Value npid = spec.npid > 0 ? tb.i32(spec.npid) : args[kNpid];
  Value pidM = tb.divU(program.pid, npid);
  Value pidN = tb.remU(program.pid, npid);
  MoeBlock blk = resolveMoeBlock(tb, args, pidM, program.slice);

  tb.ifThen(blk.active, [&] {
    const bool wg = spec.wgmmaExpand;
    auto [wm, wn] = tb.warpCoords(grid, /*warpgroups=*/wg);
    Value warpRow0 = tb.mul(wm, tb.i32(16 * mTiles));
    Value N = args[kN];

    // r: the slice's intermediate rows of this block's pairs (columns >= R
    // read zeros), through shared memory into A fragments.
    Value interSlice = tb.mul(tb.toI64(blk.slice), args[kInterSliceStride]);
    TileRows rows =
        matrixRows(tb, tb.gep(args[kX], interSlice, tb.elementType()),
                   args[kXStride], blk.pairOf, blk.rowValid);
    const int rPitch = rankTilePitch(spec, wg);
    TileCopyPlan rPlan = planRankTileCopy(tb, spec.blockM, rows, wg);
    Value smem = tb.shared();
    // Whether the block may take the few-rows expand (ExpandTiles.h):
    // asked before the copy's wait, so the sorted ids' loads overlap it.
    const std::optional<ExpandShape> fewRows = fewRowsShapeIfEnabled(spec);
    Value validPast = fewRows ? validRowPast(tb, blk, fewRows->rows) : Value();
    tb.issueTileCopy(rPlan, smem, tb.i32(0), R < BR ? tb.i32(R) : Value());
    tb.commitGroup();
    tb.waitGroup(0);
    // wgmma reads the tile through the async proxy.
    if (wg)
      tb.fenceAsyncShared();
    Value fewRowsOnly;
    if (fewRows)
      fewRowsOnly = tb.lnot(tb.barrierAny(validPast));
    else
      tb.barrier();

    // The warp's rows of r as A fragments, then the expand, whose stages
    // reuse the r tile's shared memory; a wgmma step reads the tile itself,
    // and its stages follow it.
    auto expand = [&](const ExpandShape &shape, const ExpandWarp &warp) {
      llvm::SmallVector<std::array<Value, 4>> rFrags;
      ExpandOperand r;
      Value stages = smem;
      if (shape.wgmma) {
        r.swizzledTile = smem;
        stages = tb.shared(expandRTileBytes(spec));
      } else {
        for (int mt = 0; mt < warp.mTiles; ++mt)
          for (int j = 0; j < BR / 16; ++j)
            rFrags.push_back(tb.loadFragA(
                smem, rPitch, tb.add(warp.warpRow0, tb.i32(16 * mt)),
                tb.i32(16 * j), wg ? spec.blockM : 0));
        r.frags = rFrags;
        tb.barrier();
      }
      TileRange tiles = programTiles(tb, N, pidN, npid);
      Value outSlice =
          tb.gep(args[kOut], tb.add(args[kOutColOffset], tb.mul(blk.slice, N)),
                 tb.elementType());
      expandTiles(tb, args, blk, shape, warp, r, stages, N, outSlice, tiles);
    };
    auto dense = [&] {
      expand(ExpandShape::of(spec),
             ExpandWarp{mTiles, grid.warpsN, wn, warpRow0});
    };
    if (fewRows)
      tb.ifThenElse(
          fewRowsOnly, [&] { expand(*fewRows, fewRowsWarp(tb, *fewRows)); },
          dense);
    else
      dense();
  });
}

} // namespace moelora
