//===- OneShot.cpp - Fused shrink + expand, r kept in registers -----------===//
//
// Program ((pid_m * NPID + pid_n) x slice, lora): shrink the block's rows over
// K into r (BLOCK_M x BLOCK_R, fp32 on the tensor cores), round r to T and keep
// it in registers as mma A fragments (wgmma_expand: in a swizzled shared
// tile), then expand over this program's share of N in BLOCK_N tiles.
// Warps: warpsM row groups; the warpsN warps of a row group split each
// BLOCK_K step in the shrink (partials summed through shared memory) and
// each BLOCK_N tile in the expand. With an aligned
// output, each expand stage also carries the output tile (StagedOutput), so
// the old values are in flight num_stages - 1 tiles ahead of their use.
//
// SPLIT_K = C > 1 (sm_90): the C programs of a row block (NPID = C) form a
// thread-block cluster. Each shrinks 1/C of K and the partial r are summed
// through distributed shared memory, so no program repeats another's
// shrink (with NPID > 1 alone, every program reads the block's x and A).
//
// fuse_slices: a program computes every slice: each shrink stage holds the
// x tile once and each slice's A tile, r holds the slices side by side
// (reductions and cluster sums treat them as one wider tile), and the
// expand walks the program's share of each slice's N tiles in turn.
//
// Few rows: a sorted block whose valid rows all lie in its first 16 or 32
// (fewRowsTile; an expert with few pairs) runs its expand as a tile of that
// many rows, every warp on a column share of several BLOCK_N
// (ExpandTiles.h), r's first rows broadcast from the warps that hold them.
//
// wgmma (sm_90a): the shrink's tiles are 128-byte swizzled and each
// warpgroup (64 rows) multiplies them with wgmma.mma_async straight from
// shared memory, no ldmatrix; warpgroups beyond BLOCK_M / 64 split BLOCK_K
// as the warps along N do. Its accumulators land in mma.sync's layout, so
// the reduction, cluster sum and expand are the same code. With
// tma_weights, thread 0 fetches the A tiles by bulk tensor copies (one
// mbarrier per stage counts their bytes) while all threads copy x. With
// producer_warp, one more warp issues all of the shrink's copies and the
// others only multiply (PipelineLoop::producerWarp). With wgmma_expand the
// expand multiplies on wgmma too: r goes into a swizzled tile past the
// expand stages and each warpgroup reads it and the stage's B tile through
// descriptors (the few-rows branch keeps mma.sync fragments).
//
// persistent (sorted): a resident grid whose programs each walk a stride of
// their lora slot's programs (buildOneShotKernel), each one the same code
// as a program of the plain grid (buildOneShotProgram).
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/ExpandTiles.h"
#include "moelora/Codegen/KernelBuilder.h"

#include <algorithm>

namespace moelora {

namespace {

/// The warp grid and tile sizes, with the shared-memory phases sized where
/// the runtime sizes them too (OneShotSharedLayout).
struct OneShotLayout : OneShotSharedLayout {
  WarpGrid grid;
  int mTiles; // m16 tiles per warp
  int blockR; // BLOCK_R
  explicit OneShotLayout(const KernelSpec &spec)
      : OneShotSharedLayout(spec),
        grid(WarpGrid::forTile(spec.numWarps, spec.blockM)) {
    mTiles = spec.blockM / 16 / grid.warpsM;
    blockR = spec.blockR();
  }
};

/// r (the warp's rows, all BLOCK_R columns) summed over the C blocks of the
/// cluster. Shared layout (f32): [row group][m16n8 tile][lane][4], so every
/// access is one 16-byte vector and a warp's are contiguous. One warp per row
/// group publishes this block's partial; after a cluster barrier the warps
/// of a row group each sum a share of the tiles over the C blocks (in rank
/// order, so that every block gets the same r) into a second buffer at
/// `totalsOffset`, from which all of them read the whole r.
/// reduce_scatter (KernelSpec::scattersClusterSum) instead: each block sums
/// its 1/C of the vectors over the C blocks, in place, and after a second
/// cluster barrier reads every tile's sums from the block that owns it
/// (with warps along K, each tile once, passed on through the second
/// buffer; else straight into the warps' registers, and no second buffer).
/// Each block reads 2 r's bytes from the cluster instead of C, for one
/// cluster barrier more; the same sums in the same order give the same r,
/// bit for bit.
void sumClusterPartials(TileBuilder &tb, Accumulators &r, Value smem, int C,
                        Value wm, Value wn, int warpsN, int totalsOffset) {
  const int tiles = r.mTiles * r.nTiles;
  auto slotIndex = [&](int tile) {
    return tb.add(
        tb.mul(tb.add(tb.mul(wm, tb.i32(tiles)), tb.i32(tile)), tb.i32(32)),
        tb.laneId());
  };
  auto slot = [&](Value base, int tile) {
    return tb.gep(base, tb.mul(slotIndex(tile), tb.i32(4)), tb.f32Type());
  };
  auto fragment = [&](int tile) {
    ValueVec v;
    for (int i = 0; i < 4; ++i)
      v.push_back(r.values[tile * 4 + i]);
    return v;
  };
  auto setFragment = [&](int tile, const ValueVec &v) {
    for (int i = 0; i < 4; ++i)
      r.values[tile * 4 + i] = v[i];
  };
  mlir::Type f32x4 = tb.vectorType(tb.f32Type(), 4);
  tb.ifThen(tb.eq(wn, tb.i32(0)), [&] {
    for (int tile = 0; tile < tiles; ++tile)
      tb.store(tb.vectorOf(fragment(tile)), slot(smem, tile));
  });
  // Release/acquire over the cluster: every block's partial is visible.
  tb.clusterBarrier();
  // A tile's sums: summed here, or (reduce_scatter) read from its owner.
  std::function<ValueVec(int)> sumOfTile = [&](int tile) {
    return tb.sumOverCluster(f32x4, slot(smem, tile), C);
  };
  if (tb.spec().scattersClusterSum()) {
    // This block's share of the vectors (rank-major), spread over its
    // threads. Peers read only their own shares of this buffer, so the
    // sums may overwrite this one's.
    const int vectors = tb.spec().blockM / 16 * r.nTiles * 32;
    const int share = vectors / C;
    const int threads = tb.spec().threads();
    Value shareStart = tb.mul(tb.clusterRank(), tb.i32(share));
    for (int j = 0; j < share; j += threads) {
      auto sumVector = [&] {
        Value v = tb.add(shareStart, tb.add(tb.threadId(), tb.i32(j)));
        Value at = tb.sharedOffset(smem, tb.mul(v, tb.i32(16)));
        tb.store(tb.vectorOf(tb.sumOverCluster(f32x4, at, C)), at);
      };
      if (j + threads <= share)
        sumVector();
      else
        tb.ifThen(tb.lt(tb.threadId(), tb.i32(share - j)), sumVector);
    }
    // Release/acquire again: every share's sums are visible.
    tb.clusterBarrier();
    auto owner = [&, share](int tile) {
      return tb.divU(slotIndex(tile), tb.i32(share));
    };
    if (warpsN == 1) {
      // A run of the warp's tiles within one share is read through one
      // mapped address (fewer 64-bit addresses live beside r): shares of
      // whole tiles where the counts divide, else each lane's vector alone.
      const int tilesPerShare = share % 32 == 0 ? share / 32 : 0;
      int run = 1;
      if (tilesPerShare > 0 &&
          (tilesPerShare % tiles == 0 || tiles % tilesPerShare == 0))
        run = std::min(tilesPerShare, tiles);
      for (int first = 0; first < tiles; first += run) {
        Value remote = tb.inClusterBlock(slot(smem, first), owner(first));
        // Slots of consecutive tiles are 32 vectors (128 f32) apart.
        for (int tile = first; tile < first + run; ++tile)
          setFragment(tile,
                      tb.scalarsOf(tb.load(
                          f32x4, tb.gep(remote, tb.i32((tile - first) * 128),
                                        tb.f32Type()))));
      }
      // No block may reuse its shared memory while a peer still reads it:
      // these reads are not used before the arrive, so it must release
      // them (a relaxed arrive would let a peer overwrite its share while
      // a read of it is in flight).
      tb.clusterBarrier();
      return;
    }
    // (owner by value: it ends with this scope.)
    sumOfTile = [&, owner](int tile) {
      return tb.scalarsOf(
          tb.loadFromClusterBlock(f32x4, slot(smem, tile), owner(tile)));
    };
  }
  Value totals = tb.sharedOffset(smem, tb.i32(totalsOffset));
  for (int tile = 0; tile < tiles; ++tile) {
    tb.ifThen(tb.eq(wn, tb.i32(tile % warpsN)), [&] {
      tb.store(tb.vectorOf(sumOfTile(tile)), slot(totals, tile));
    });
  }
  tb.barrier();
  for (int tile = 0; tile < tiles; ++tile)
    setFragment(tile, tb.scalarsOf(tb.load(f32x4, slot(totals, tile))));
  // No block may reuse its shared memory while a peer still reads it (the
  // peers' reads above are used before they arrive: no release needed).
  tb.clusterBarrierRelaxed();
}

/// r's first `rowTiles` 16-row tiles as A fragments in every warp (the
/// few-rows expand's rows): each is stored by the warp that holds it (row
/// group wm, K share 0 of `grid`; `frags` are a warp's, [mt * rSteps + j])
/// and read back by all, through shared memory at `smem`, free again on
/// return.
llvm::SmallVector<std::array<Value, 4>>
fragmentsOfFirstRows(TileBuilder &tb,
                     llvm::ArrayRef<std::array<Value, 4>> frags, int rSteps,
                     int mTiles, int rowTiles, const WarpGrid &grid,
                     bool warpgroups, Value smem) {
  auto slot = [&](int j) {
    Value index = tb.add(tb.mul(tb.i32(j), tb.i32(32)), tb.laneId());
    return tb.sharedOffset(smem, tb.mul(index, tb.i32(16)));
  };
  for (int wm = 0; wm * mTiles < rowTiles; ++wm)
    tb.ifThen(tb.eq(tb.warpId(),
                    tb.i32(TileBuilder::warpAt(grid, warpgroups, wm, 0))),
              [&] {
                for (int mt = 0; mt < mTiles && wm * mTiles + mt < rowTiles;
                     ++mt)
                  for (int j = 0; j < rSteps; ++j)
                    tb.store(tb.vectorOf(frags[mt * rSteps + j]),
                             slot((wm * mTiles + mt) * rSteps + j));
              });
  tb.barrier();
  mlir::Type i32x4 = tb.vectorType(tb.i32Type(), 4);
  llvm::SmallVector<std::array<Value, 4>> out;
  for (int j = 0; j < rowTiles * rSteps; ++j) {
    ValueVec v = tb.scalarsOf(tb.load(i32x4, slot(j)));
    out.push_back({v[0], v[1], v[2], v[3]});
  }
  // The expand's stages reuse these bytes.
  tb.barrier();
  return out;
}

/// The programs of a row block: its cluster's SPLIT_K blocks, else NPID.
Value rowBlockPrograms(TileBuilder &tb, const KernelArgs &args) {
  const KernelSpec &spec = tb.spec();
  return spec.splitK > 1 ? tb.i32(spec.splitK)
         : spec.npid > 0 ? tb.i32(spec.npid)
                         : args[kNpid];
}

/// Program x's work (null x: blockIdx.x's), of lora slot `slot` (null:
/// grid z's, resolved here).
void buildOneShotProgram(TileBuilder &tb, const KernelArgs &args, Value x,
                         const LoraSlot *slot) {
  const KernelSpec &spec = tb.spec();
  const OneShotLayout lay(spec);
  const int warpsN = lay.grid.warpsN;
  const int BR = lay.blockR;
  const int F = lay.slices;

  const int C = spec.splitK;
  Value npid = rowBlockPrograms(tb, args);
  ProgramIndex program = programIndex(tb, C, x);
  Value pidM = tb.divU(program.pid, npid);
  Value pidN = tb.remU(program.pid, npid);
  MoeBlock blk = resolveMoeBlock(tb, args, pidM, program.slice, slot);

  tb.ifThen(blk.active, [&] {
    // Row tile wm, K share wn (with wgmma, warpgroups along M).
    const bool wg = spec.wgmma;
    auto [wm, wn] = tb.warpCoords(lay.grid, wg);
    Value warpRow0 = tb.mul(wm, tb.i32(16 * lay.mTiles));
    Value K = spec.k ? tb.i32(*spec.k) : args[kK];

    // ---- Shrink: r = x[rows] @ A[l,e]^T over K. ----
    // The slices this program computes: its own, or all of them.
    auto sliceBlock = [&](int s) {
      MoeBlock b = blk;
      if (F > 1)
        b.slice = tb.i32(s);
      return b;
    };
    // The copying threads: all, or the producer warp's lanes, which plan
    // their copies in the producer (PipelineLoop::prepareIssue) through a
    // row table in shared memory (the x tile's rows, then each A tile's),
    // so that the consumers hold no copy addresses and the producer few.
    ShrinkStageCopies copies;
    auto planCopies = [&] {
      copies = planShrinkStageCopies(
          tb, args, blk, [&](int s) { return sliceBlock(s).slice; }, F, BR,
          Value(), lay.xPitch, lay.sharedBytes(spec));
    };
    if (!spec.producerWarp)
      planCopies();
    Value smem = tb.shared();
    const int stageBytes = lay.shrinkStage;
    auto aOffset = [&](int s) {
      return (spec.blockM + s * BR) * lay.xPitch * kElementBytes;
    };
    Value kLimit = spec.evenK() ? Value() : K;
    const int kPerWarp = spec.blockK / warpsN;

    // This program's BLOCK_K steps: all, or its cluster rank's share.
    Value kSteps = tb.ceilDiv(K, tb.i32(spec.blockK));
    Value stepLo = tb.i32(0), stepHi = kSteps;
    if (C > 1) {
      Value perRank = tb.ceilDiv(kSteps, tb.i32(C));
      stepLo = tb.minS(tb.mul(pidN, perRank), kSteps);
      stepHi = tb.minS(tb.add(stepLo, perRank), kSteps);
    }
    PipelineLoop shrink;
    shrink.stages = spec.numStages;
    shrink.count = tb.sub(stepHi, stepLo);
    shrink.asyncProxyReads = wg;
    if (hasStageBarriers(spec)) {
      shrink.stageBarriers =
          tb.shared(stageBarrierOffset(spec, lay.sharedBytes(spec)));
    }
    if (spec.producerWarp) {
      shrink.producerWarp = true;
      shrink.fullExtraArrivals = spec.tmaWeights ? 1 : 0;
      shrink.prepareIssue = planCopies;
    }
    if (spec.bulkShrink) {
      // Every thread arrives once per stage with its rows' bytes; a
      // persistent program runs this loop once per row block.
      shrink.stageArrivals = spec.threads();
      shrink.releaseStageBarriers = true;
      shrink.asyncProxyWrites = true;
    }
    shrink.issue = [&](Value iter, Value stage) {
      Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(stageBytes)));
      Value k0 = tb.mul(tb.add(stepLo, iter), tb.i32(spec.blockK));
      auto aTile = [&](int s) {
        return tb.sharedOffset(base, tb.i32(aOffset(s)));
      };
      if (!spec.tmaWeights) {
        issueShrinkStageCopies(
            tb, copies, base, aTile, k0, kLimit,
            spec.bulkShrink ? tb.stageBarrier(shrink.stageBarriers, stage)
                            : Value());
        return;
      }
      tb.issueTileCopy(copies.x, base, k0, kLimit);
      // A_s[l, e] rows 0..BR-1 (rows past R arrive as zeros).
      issueWeightTensorTiles(
          tb, args, blk, [&](int s) { return sliceBlock(s).slice; }, F,
          weightTileRows(spec), k0, tb.i32(0),
          tb.stageBarrier(shrink.stageBarriers, stage), aTile);
    };
    // r of the F slices side by side: slice s is n8 tiles [s * BR / 8,
    // (s + 1) * BR / 8) of every row tile.
    Accumulators r = tb.zeroAccumulators(lay.mTiles, F * BR / 8);
    shrink.consume = [&](Value, Value stage, mlir::ValueRange carried) {
      Accumulators all = r;
      all.values.assign(carried.begin(), carried.end());
      Value base = tb.sharedOffset(smem, tb.mul(stage, tb.i32(stageBytes)));
      Value kWarp = tb.mul(wn, tb.i32(kPerWarp));
      if (wg) {
        // One warpgroup MMA chain per slice over this K share: the
        // warpgroup's 64 rows of x against all BLOCK_R rows of A_s.
        llvm::SmallVector<Value> aTiles;
        for (int s = 0; s < F; ++s)
          aTiles.push_back(tb.sharedOffset(base, tb.i32(aOffset(s))));
        tb.warpgroupMmaFromShared(all, base, spec.blockM, warpRow0, aTiles, BR,
                                  tb.i32(0), kWarp, kPerWarp / 16);
        return all.values;
      }
      for (int s = 0; s < F; ++s) {
        Accumulators acc = all.columns(s * BR / 8, BR / 8);
        tb.mmaFromShared(acc, base, lay.xPitch, warpRow0,
                         tb.sharedOffset(base, tb.i32(aOffset(s))), lay.xPitch,
                         tb.i32(0), kWarp, kPerWarp / 16);
        all.setColumns(s * BR / 8, acc);
      }
      return all.values;
    };
    r.values = tb.pipelined(shrink, r.values);
    // Whether the block may take the few-rows expand: asked here, where its
    // loads (the sorted ids, read for x before) overlap the reductions;
    // asked before the shrink, its register pushed a rank-64 four-warp
    // variant over its budget.
    const std::optional<ExpandShape> fewRows = fewRowsShapeIfEnabled(spec);
    Value validPast = fewRows ? validRowPast(tb, blk, fewRows->rows) : Value();
    // The expand's operands: with early_expand its first slice's first
    // stages go out now, their round trip under the reductions below (the
    // stages sit past the reductions' bytes, and the shrink's loop left its
    // own stages free). A block that may take the few-rows expand decides
    // first, and issues that shape's stages or the dense one's.
    Value N, expandSmem = smem;
    TileRange tiles;
    auto expandOperands = [&] {
      N = args[kN];
      tiles = programTiles(tb, N, pidN, npid);
    };
    auto outSliceOf = [&](const MoeBlock &sb) {
      return tb.gep(args[kOut], tb.mul(sb.slice, N), tb.elementType());
    };
    const ExpandWarp denseWarp{lay.mTiles, warpsN, wn, warpRow0};
    std::optional<ExpandTiles> earlyExpand; // dense only: run as it is
    bool earlyIssued = false;
    Value fewRowsOnly;
    if (spec.expandsEarly()) {
      expandOperands();
      expandSmem = tb.sharedOffset(smem, tb.i32(lay.expandOffset));
      MoeBlock sb = sliceBlock(0);
      auto issueEarly = [&](const ExpandShape &shape, const ExpandWarp &warp) {
        ExpandTiles(tb, args, sb, shape, warp, expandSmem, N, outSliceOf(sb),
                    tiles)
            .issuePrologue();
      };
      if (fewRows) {
        fewRowsOnly = tb.lnot(tb.barrierAny(validPast));
        tb.ifThenElse(
            fewRowsOnly,
            [&] { issueEarly(*fewRows, fewRowsWarp(tb, *fewRows)); },
            [&] { issueEarly(ExpandShape::of(spec), denseWarp); });
      } else {
        earlyExpand.emplace(tb, args, sb, ExpandShape::of(spec), denseWarp,
                            expandSmem, N, outSliceOf(sb), tiles);
        earlyExpand->issuePrologue();
      }
      earlyIssued = true;
    }
    if (warpsN > 1)
      tb.reduceAccumulators(r, smem, warpsN, wn, warpRow0, spec.blockM, F * BR);
    if (C > 1)
      sumClusterPartials(tb, r, smem, C, wm, wn, warpsN, lay.rBytes);

    // ---- Expand: out[rows, n] (+)= r @ B[l,e]^T over this program's tiles
    // of each of its slices.
    if (!earlyIssued)
      expandOperands();
    const int rSteps = BR / 16;
    // wgmma_expand: each slice's r, rounded to T (Triton feeds the expand
    // dot in T), in its swizzled tile, written by the warps of K share 0
    // (every share holds the whole sum) and published to the async proxy.
    auto rTile = [&](int s) {
      return tb.sharedOffset(
          smem, tb.i32(lay.rTileOffset + s * spec.blockM * BR * kElementBytes));
    };
    if (spec.wgmmaExpand) {
      tb.ifThen(tb.eq(wn, tb.i32(0)), [&] {
        for (int s = 0; s < F; ++s) {
          Accumulators rs = r.columns(s * BR / 8, BR / 8);
          tb.storeAccumulatorsSwizzled(rs, rTile(s), spec.blockM, warpRow0, 0);
        }
        tb.fenceAsyncShared();
      });
    }
    if (fewRows && !fewRowsOnly)
      fewRowsOnly = tb.lnot(tb.barrierAny(validPast));
    // r's tile is published by a barrier: fewRowsOnly's, where it is asked
    // here.
    if (spec.wgmmaExpand && (!fewRows || earlyIssued))
      tb.barrier();
    for (int s = 0; s < F; ++s) {
      // r rounded to T, as A fragments (mma.sync steps; with wgmma_expand
      // only the few-rows branch's).
      auto fragments = [&] {
        Accumulators rs = r.columns(s * BR / 8, BR / 8);
        llvm::SmallVector<std::array<Value, 4>> frags;
        for (int mt = 0; mt < lay.mTiles; ++mt)
          for (int j = 0; j < rSteps; ++j)
            frags.push_back(tb.accumulatorsToFragA(rs, mt, j));
        return frags;
      };
      llvm::SmallVector<std::array<Value, 4>> rFrags;
      if (!spec.wgmmaExpand)
        rFrags = fragments();
      MoeBlock sb = sliceBlock(s);
      Value outSlice = outSliceOf(sb);
      // The expand of this slice in `shape`; the first slice's stages may
      // be in flight already (early_expand).
      auto runExpand = [&](const ExpandShape &shape, const ExpandWarp &warp,
                           const ExpandOperand &rOperand) {
        if (s == 0 && earlyExpand) {
          earlyExpand->run(rOperand);
          return;
        }
        ExpandTiles expand(tb, args, sb, shape, warp, expandSmem, N, outSlice,
                           tiles);
        if (s == 0 && earlyIssued)
          expand.assumePrologueIssued();
        expand.run(rOperand);
      };
      auto dense = [&] {
        ExpandOperand rOperand;
        if (spec.wgmmaExpand)
          rOperand.swizzledTile = rTile(s);
        else
          rOperand.frags = rFrags;
        runExpand(ExpandShape::of(spec), denseWarp, rOperand);
      };
      if (!fewRows) {
        dense();
        continue;
      }
      tb.ifThenElse(
          fewRowsOnly,
          [&] {
            auto firstRows = fragmentsOfFirstRows(
                tb, spec.wgmmaExpand ? fragments() : rFrags, rSteps, lay.mTiles,
                fewRows->rows / 16, lay.grid, wg, smem);
            ExpandOperand rOperand;
            rOperand.frags = firstRows;
            runExpand(*fewRows, fewRowsWarp(tb, *fewRows), rOperand);
          },
          dense);
    }
  });
}

} // namespace

int oneShotSharedBytes(const KernelSpec &spec) {
  return OneShotLayout(spec).sharedBytes(spec);
}

void buildOneShotKernel(TileBuilder &tb, const KernelArgs &args) {
  const KernelSpec &spec = tb.spec();
  if (!spec.persistent) {
    buildOneShotProgram(tb, args, Value(), nullptr);
    return;
  }
  // Persistent: the grid's programs of this lora slot walk its programs x
  // = blockIdx.x, + gridDim.x, ... Programs are numbered with the row block
  // outermost (programIndex), so those of the row blocks past
  // num_tokens_post_padded are the tail, never visited; cluster ranks stay
  // innermost, so a cluster's blocks walk the same row blocks together.
  const int C = spec.splitK;
  Value npid = rowBlockPrograms(tb, args);
  LoraSlot slot = resolveLoraSlot(tb, args);
  Value blocksPerLora = tb.divU(args[kEM], tb.i32(spec.blockM));
  Value rowBlocks =
      tb.minS(blocksPerLora, tb.ceilDiv(slot.padded, tb.i32(spec.blockM)));
  Value programs = tb.select(
      slot.active, tb.mul(rowBlocks, tb.mul(npid, tb.i32(spec.gridSlices()))),
      tb.i32(0));
  Value stride = tb.gridDim(0);
  tb.forLoop(
      tb.blockId(0), programs, stride, {}, [&](Value x, mlir::ValueRange) {
        // The next program's sorted ids and expert id, on their way to L1
        // while this one computes (its first copies wait on them).
        Value next = tb.add(x, stride);
        if (prefetchesNextRowIds(spec))
          tb.ifThen(tb.lt(next, programs), [&] {
            Value nextPidM = tb.divU(programIndex(tb, C, next).pid, npid);
            prefetchRowBlockIds(tb, args, slot.lora, nextPidM);
          });
        buildOneShotProgram(tb, args, x, &slot);
        // The next program's copies reuse the shared memory.
        tb.barrier();
        return ValueVec{};
      });
}

} // namespace moelora
