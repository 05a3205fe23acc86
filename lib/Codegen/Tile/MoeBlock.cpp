//===- MoeBlock.cpp - Program-to-work mapping of the contract -------------===//

#include "moelora/Codegen/MoeBlock.h"

#include <algorithm>
#include <cassert>

namespace moelora {

ProgramIndex programIndex(TileBuilder &tb, int clusterSize, Value x) {
  const int S = tb.spec().gridSlices();
  if (!x)
    x = tb.blockId(0);
  if (S == 1)
    return {tb.i32(0), x};
  if (clusterSize == 1)
    return {tb.remU(x, tb.i32(S)), tb.divU(x, tb.i32(S))};
  Value rank = tb.remU(x, tb.i32(clusterSize));
  Value cluster = tb.divU(x, tb.i32(clusterSize));
  return {
      tb.remU(cluster, tb.i32(S)),
      tb.add(tb.mul(tb.divU(cluster, tb.i32(S)), tb.i32(clusterSize)), rank)};
}

/// The adapter `lora` (from lora_ids or token_lora_mapping) clamped, and
/// `active` (null: true) and whether it is valid and enabled.
static std::pair<Value, Value> checkedAdapter(TileBuilder &tb,
                                              const KernelArgs &args,
                                              Value lora, Value active) {
  Value zero = tb.i32(0);
  Value loraOk = tb.land(tb.ge(lora, zero), tb.lt(lora, args[kMaxLoras]));
  active = active ? tb.land(active, loraOk) : loraOk;
  Value clamped = tb.select(loraOk, lora, zero);
  Value enabled = tb.loadI32(args[kAdapterEnabled], clamped);
  return {clamped, tb.land(active, tb.ne(enabled, zero))};
}

LoraSlot resolveLoraSlot(TileBuilder &tb, const KernelArgs &args) {
  LoraSlot slot;
  std::tie(slot.lora, slot.active) = checkedAdapter(
      tb, args, tb.loadI32(args[kLoraIds], tb.blockId(2)), Value());
  slot.padded = tb.loadI32(args[kNumTokensPostPadded], slot.lora);
  return slot;
}

MoeBlock resolveMoeBlock(TileBuilder &tb, const KernelArgs &args, Value pidM,
                         Value slice, const LoraSlot *slot) {
  const KernelSpec &spec = tb.spec();
  MoeBlock blk;
  blk.slice = slice;
  Value numPairs = args[kNumPairs];
  Value zero = tb.i32(0);
  Value active;
  LoraSlot own;
  if (spec.sorted) {
    if (!slot) {
      own = resolveLoraSlot(tb, args);
      slot = &own;
    }
    blk.lora = slot->lora;
    active = slot->active;
  } else {
    Value pair = pidM;
    Value inRange = tb.lt(pair, numPairs);
    Value token =
        tb.divU(tb.minS(pair, tb.sub(numPairs, tb.i32(1))), args[kTopK]);
    std::tie(blk.lora, active) = checkedAdapter(
        tb, args, tb.loadI32(args[kTokenLoraMapping], token), inRange);
  }

  Value expert;
  if (spec.sorted) {
    Value padded = slot->padded;
    active = tb.land(active, tb.lt(tb.mul(pidM, tb.i32(spec.blockM)), padded));
    Value blocksPerLora = tb.divU(args[kEM], tb.i32(spec.blockM));
    Value safePid = tb.minS(pidM, tb.sub(blocksPerLora, tb.i32(1)));
    expert = tb.loadI32(args[kExpertIds],
                        tb.add(tb.mul(blk.lora, blocksPerLora), safePid));
  } else {
    expert = tb.loadI32(args[kExpertIds],
                        tb.minS(pidM, tb.sub(numPairs, tb.i32(1))));
  }
  Value expertOk = tb.ge(expert, zero);
  blk.active = tb.land(active, expertOk);
  blk.expert = tb.select(expertOk, expert, zero);

  if (spec.sorted) {
    Value rowBase =
        tb.add(tb.mul(blk.lora, args[kEM]), tb.mul(pidM, tb.i32(spec.blockM)));
    Value sortedIds = args[kSortedTokenIds];
    blk.pairOf = [&tb, sortedIds, rowBase, numPairs](Value row) {
      Value id = tb.loadI32(sortedIds, tb.add(rowBase, row));
      return tb.select(tb.lt(id, numPairs), id, tb.i32(0));
    };
    blk.rowValid = [&tb, sortedIds, rowBase, numPairs](Value row) {
      Value id = tb.loadI32(sortedIds, tb.add(rowBase, row));
      return tb.lt(id, numPairs);
    };
  } else {
    blk.pairOf = [&tb, pidM](Value row) {
      return tb.select(tb.eq(row, tb.i32(0)), pidM, tb.i32(0));
    };
    blk.rowValid = [&tb](Value row) { return tb.eq(row, tb.i32(0)); };
  }
  return blk;
}

void prefetchRowBlockIds(TileBuilder &tb, const KernelArgs &args, Value lora,
                         Value pidM) {
  const int blockM = tb.spec().blockM;
  // BLOCK_M 4-byte ids: one 128-byte line per 32 rows.
  const int idLines = std::max(1, blockM * 4 / 128);
  Value t = tb.threadId();
  tb.ifThen(tb.lt(t, tb.i32(idLines)), [&] {
    Value row =
        tb.add(tb.mul(lora, args[kEM]),
               tb.add(tb.mul(pidM, tb.i32(blockM)), tb.mul(t, tb.i32(32))));
    tb.prefetchToL1(tb.gep(args[kSortedTokenIds], row, tb.i32Type()));
  });
  tb.ifThen(tb.eq(t, tb.i32(idLines)), [&] {
    Value blocksPerLora = tb.divU(args[kEM], tb.i32(blockM));
    tb.prefetchToL1(tb.gep(args[kExpertIds],
                           tb.add(tb.mul(lora, blocksPerLora), pidM),
                           tb.i32Type()));
  });
}

TileRows blockXRows(TileBuilder &tb, const KernelArgs &args,
                    const MoeBlock &blk) {
  Value factor = tb.spec().mulRoutedWeight ? tb.i32(1) : args[kTopK];
  return matrixRows(
      tb, args[kX], args[kXStride],
      [&tb, blk, factor](Value r) { return tb.divU(blk.pairOf(r), factor); },
      blk.rowValid);
}

Value loraSliceBase(TileBuilder &tb, Value ptrArray, Value slice,
                    bool inPlace) {
  if (!inPlace)
    return tb.loadPtr(ptrArray, slice);
  return tb.loadInPlace(tb.globalPtrType(),
                        tb.gep(ptrArray, slice, tb.globalPtrType()));
}

Value loraMatrixAt(TileBuilder &tb, Value base, Value lora, Value expert,
                   Value strideL, Value strideE) {
  Value offset = tb.add(tb.mul(tb.toI64(lora), strideL),
                        tb.mul(tb.toI64(expert), strideE));
  return tb.gep(base, offset, tb.elementType());
}

void prefetchWeightTensorMaps(TileBuilder &tb, const KernelArgs &args) {
  tb.ifThen(tb.eq(tb.threadId(), tb.i32(0)), [&] {
    for (int s = 0; s < weightTensorMapParams(tb.spec()); ++s)
      tb.prefetchTensorMap(args[kNumGemmParams + s]);
  });
}

void issueWeightTensorTiles(TileBuilder &tb, const KernelArgs &args,
                            const MoeBlock &blk,
                            llvm::function_ref<Value(int)> sliceOf, int count,
                            int rows, Value k0, Value row0, Value bar,
                            llvm::function_ref<Value(int)> tileOf) {
  const KernelSpec &spec = tb.spec();
  const int maps = weightTensorMapParams(spec);
  // The map of a slice: a select over the parameters' addresses (folded
  // where the slice is a constant).
  auto mapOf = [&](Value slice) {
    Value map = args[kNumGemmParams];
    for (int s = 1; s < maps; ++s)
      map = tb.select(tb.eq(slice, tb.i32(s)), args[kNumGemmParams + s], map);
    return map;
  };
  Value issuer = spec.producerWarp ? tb.laneId() : tb.threadId();
  tb.ifThen(tb.eq(issuer, tb.i32(0)), [&] {
    tb.arriveExpectBytes(bar, count * rows * spec.blockK * kElementBytes);
    // Coordinates innermost first: (k, row, expert, adapter).
    for (int s = 0; s < count; ++s)
      tb.copySwizzledTensorTile(tileOf(s), rows, spec.blockK, mapOf(sliceOf(s)),
                                k0, {row0, blk.expert, blk.lora}, bar);
  });
}

CopyThreads shrinkTileCopiers(TileBuilder &tb, int sharedBytes, int tableRow) {
  const KernelSpec &spec = tb.spec();
  if (!spec.producerWarp)
    return CopyThreads{};
  CopyThreads c = tb.producerLanes();
  c.rowTable =
      tb.shared(producerRowTableOffset(spec, sharedBytes) + 8 * tableRow);
  return c;
}

ShrinkStageCopies planShrinkStageCopies(TileBuilder &tb, const KernelArgs &args,
                                        const MoeBlock &blk,
                                        llvm::function_ref<Value(int)> sliceOf,
                                        int slices, int weightRows, Value row0,
                                        int pitch, int sharedBytes) {
  const KernelSpec &spec = tb.spec();
  const int R = spec.rank;
  // Rows of x and A are K elements apart: the copy width must divide K
  // (a runtime K requires K % 8 == 0, checked by the runtime).
  const int kVec = spec.k ? copyVectorElems(*spec.k) : 8;
  const SharedTileLayout layout =
      spec.wgmma ? SharedTileLayout::Swizzled128 : SharedTileLayout::Padded;
  ShrinkStageCopies c;
  if (spec.bulkShrink)
    c.xRows = tb.planBulkRows(spec.blockM, pitch, blockXRows(tb, args, blk));
  else
    c.x = tb.planTileCopy(spec.blockM, spec.blockK, kVec, pitch,
                          blockXRows(tb, args, blk), layout,
                          shrinkTileCopiers(tb, sharedBytes, 0));
  for (int s = 0; s < slices && !spec.tmaWeights; ++s) {
    Value base =
        loraMatrixAt(tb, loraSliceBase(tb, args[kAPtrs], sliceOf(s)), blk.lora,
                     blk.expert, args[kAStrideL], args[kAStrideE]);
    std::function<Value(Value)> rowOf = [](Value r) { return r; };
    std::function<Value(Value)> valid;
    if (row0) {
      rowOf = [&tb, row0](Value r) { return tb.add(row0, r); };
      valid = [&tb, row0, R](Value r) {
        return tb.lt(tb.add(row0, r), tb.i32(R));
      };
    } else if (R < weightRows) {
      valid = [&tb, R](Value r) { return tb.lt(r, tb.i32(R)); };
    }
    TileRows rows = matrixRows(tb, base, args[kAStrideR], rowOf, valid);
    if (spec.bulkShrink)
      c.weightRows.push_back(tb.planBulkRows(weightRows, pitch, rows));
    else
      c.weights.push_back(tb.planTileCopy(
          weightRows, spec.blockK, kVec, pitch, rows, layout,
          shrinkTileCopiers(tb, sharedBytes, spec.blockM + s * weightRows)));
  }
  return c;
}

void issueShrinkStageCopies(TileBuilder &tb, const ShrinkStageCopies &copies,
                            Value base,
                            llvm::function_ref<Value(int)> weightTile, Value k0,
                            Value kLimit, Value bar) {
  if (!copies.xRows) {
    tb.issueTileCopy(copies.x, base, k0, kLimit);
    for (size_t s = 0; s < copies.weights.size(); ++s)
      tb.issueTileCopy(copies.weights[s], weightTile(int(s)), k0, kLimit);
    return;
  }
  // Whole BLOCK_K rows (bulk_shrink needs EVEN_K): announce this thread's
  // bytes, then copy.
  Value rowBytes = tb.i32(tb.spec().blockK * kElementBytes);
  Value bytes = tb.bulkRowBytes(*copies.xRows, rowBytes);
  for (const BulkRowPlan &w : copies.weightRows)
    bytes = tb.add(bytes, tb.bulkRowBytes(w, rowBytes));
  tb.arriveExpectBytes(bar, bytes);
  tb.issueBulkRows(*copies.xRows, base, k0, rowBytes, bar);
  for (size_t s = 0; s < copies.weightRows.size(); ++s)
    tb.issueBulkRows(copies.weightRows[s], weightTile(int(s)), k0, rowBytes,
                     bar);
}

TileRows matrixRows(TileBuilder &tb, Value base, Value stride,
                    std::function<Value(Value)> rowOf,
                    std::function<Value(Value)> valid) {
  TileRows rows;
  rows.rowBase = [&tb, base, stride, rowOf, valid](Value r) {
    Value row = rowOf(r);
    if (valid)
      row = tb.select(valid(r), row, tb.i32(0));
    Value offset = tb.mul(tb.toI64(row), stride);
    return tb.gep(base, offset, tb.elementType());
  };
  rows.rowValid = valid;
  return rows;
}

EpilogueRows resolveEpilogueRows(TileBuilder &tb, const KernelArgs &args,
                                 const MoeBlock &block, int mTiles,
                                 Value warpRow0, Value outBase, Value rowStride,
                                 bool loadWeights) {
  EpilogueRows rows;
  for (int mt = 0; mt < mTiles; ++mt) {
    for (int half = 0; half < 2; ++half) {
      Value row = tb.add(warpRow0, tb.accRow(mt, 2 * half));
      Value pair = block.pairOf(row);
      Value offset = tb.mul(tb.toI64(pair), rowStride);
      rows.rowPtr.push_back(tb.gep(outBase, offset, tb.elementType()));
      rows.ok.push_back(block.rowValid(row));
      if (loadWeights)
        rows.weight.push_back(tb.load(
            tb.f32Type(), tb.gep(args[kTopkWeights], pair, tb.f32Type())));
    }
  }
  return rows;
}

void storeAccumulators(TileBuilder &tb, Accumulators &acc,
                       const EpilogueRows &rows, Value colBase, Value colLimit,
                       bool addInputs, bool mulWeight) {
  // Groups of kGroupTiles n-tiles: within a group every load of the old
  // values (add_inputs) is issued before any store, so the loads overlap
  // (a load inside each masked store chains one round trip per element);
  // groups bound the values held live (all at once cost up to ~200
  // registers and most of the occupancy).
  constexpr int kGroupTiles = 2;
  for (int nt0 = 0; nt0 < acc.nTiles; nt0 += kGroupTiles) {
    const int ntEnd = std::min(acc.nTiles, nt0 + kGroupTiles);
    llvm::SmallVector<Value> values;
    for (int mt = 0; mt < acc.mTiles; ++mt)
      for (int nt = nt0; nt < ntEnd; ++nt)
        for (int i = 0; i < 4; ++i) {
          int r = mt * 2 + i / 2;
          Value v = acc.at(mt, nt, i);
          if (mulWeight)
            v = tb.fmul(v, rows.weight[r]);
          if (addInputs) {
            // Masked elements read column 0 of a valid row instead.
            Value col = tb.add(colBase, tb.accCol(nt, i));
            Value ok = tb.land(rows.ok[r], tb.lt(col, colLimit));
            Value ptr = tb.gep(rows.rowPtr[r], tb.select(ok, col, tb.i32(0)),
                               tb.elementType());
            v = tb.fadd(tb.fromElement(tb.load(tb.elementType(), ptr)), v);
          }
          values.push_back(v);
        }
    int index = 0;
    for (int mt = 0; mt < acc.mTiles; ++mt)
      for (int nt = nt0; nt < ntEnd; ++nt)
        for (int i = 0; i < 4; ++i) {
          int r = mt * 2 + i / 2;
          Value v = values[index++];
          Value col = tb.add(colBase, tb.accCol(nt, i));
          tb.ifThen(tb.land(rows.ok[r], tb.lt(col, colLimit)), [&] {
            Value ptr = tb.gep(rows.rowPtr[r], col, tb.elementType());
            tb.store(tb.toElement(v), ptr);
          });
        }
  }
}

StagedOutput planStagedOutput(TileBuilder &tb, const MoeBlock &block, int rows,
                              int cols, Value outBase, Value rowStride) {
  StagedOutput out;
  out.rows = rows;
  out.cols = cols;
  out.pitch = paddedPitch(cols);
  TileRows source =
      matrixRows(tb, outBase, rowStride, block.pairOf, block.rowValid);
  if (!tb.spec().bulksOutput()) {
    out.rowChunks =
        tb.planTileCopy(rows, cols, /*vecElems=*/8, out.pitch, source);
    return out;
  }
  out.bulkRows = tb.planBulkRows(rows, out.pitch, source);
  return out;
}

/// Bytes of a bulk row copy of columns colStart.. (< colLimit) of the tile.
static Value stagedRowBytes(TileBuilder &tb, const StagedOutput &out,
                            Value colStart, Value colLimit) {
  Value cols = tb.minS(tb.i32(out.cols), tb.sub(colLimit, colStart));
  return tb.mul(tb.maxS(cols, tb.i32(0)), tb.i32(kElementBytes));
}

void loadStagedOutput(TileBuilder &tb, const StagedOutput &out, Value smemTile,
                      Value colStart, Value colLimit, Value bar) {
  if (!out.bulkRows) {
    tb.issueTileCopy(out.rowChunks, smemTile, colStart, colLimit);
    return;
  }
  // Every thread arrives once, announcing its rows' bytes first.
  Value bytes = stagedRowBytes(tb, out, colStart, colLimit);
  tb.arriveExpectBytes(bar, tb.bulkRowBytes(*out.bulkRows, bytes));
  tb.issueBulkRows(*out.bulkRows, smemTile, colStart, bytes, bar);
}

void storeStagedOutput(TileBuilder &tb, Accumulators &acc,
                       const EpilogueRows &rows, const StagedOutput &out,
                       Value smemTile, Value warpRow0, Value warpCol0,
                       Value colStart, Value colLimit, bool addInputs,
                       bool mulWeight) {
  // Each lane owns column pairs (c, c+1) of rows g and g+8 of every m16n8
  // tile. Rows and columns outside the output hold zeros or garbage here
  // and are never stored below.
  mlir::Type elem = tb.elementType();
  // oldPair gives the pair's old values (a vector of two T) when
  // addInputs; it is called after the routed weight's multiply.
  auto combine = [&](int mt, int nt, int half,
                     llvm::function_ref<Value()> oldPair) {
    Value v[2] = {acc.at(mt, nt, 2 * half), acc.at(mt, nt, 2 * half + 1)};
    if (mulWeight)
      for (Value &x : v)
        x = tb.fmul(x, rows.weight[mt * 2 + half]);
    if (addInputs) {
      ValueVec old = tb.widenToF32(oldPair(), 2);
      for (int i = 0; i < 2; ++i)
        v[i] = tb.fadd(old[i], v[i]);
    }
    return tb.packElements(v);
  };
  if (tb.spec().sm >= 90) {
    // One ldmatrix.x4 brings two n8 tiles' old pairs, so each two tiles
    // wait on shared memory once instead of once per pair (the 4-byte loads
    // could not pass the stores between them); one stmatrix.x4 writes the
    // results back (x2 for a last single tile). Loading more tiles before
    // the first add hides more latency but keeps more old values live: 4
    // tiles cost up to 17 registers more (PERF-LOG s1).
    for (int mt = 0; mt < acc.mTiles; ++mt) {
      Value row0 = tb.add(warpRow0, tb.i32(mt * 16));
      for (int nt = 0; nt < acc.nTiles; nt += 2) {
        const int count = nt + 1 < acc.nTiles ? 4 : 2;
        Value col0 = tb.add(warpCol0, tb.i32(nt * 8));
        ValueVec old;
        if (addInputs)
          old = tb.loadAccumulatorPairs(smemTile, out.pitch, row0, col0, count);
        ValueVec results;
        for (int p = 0; p < count; ++p)
          results.push_back(
              combine(mt, nt + p / 2, p % 2, [&] { return old[p]; }));
        tb.storeAccumulatorPairs(smemTile, out.pitch, row0, col0, results);
      }
    }
  } else {
    // One 4-byte shared access per pair (stmatrix needs sm_90).
    for (int mt = 0; mt < acc.mTiles; ++mt)
      for (int nt = 0; nt < acc.nTiles; ++nt)
        for (int half = 0; half < 2; ++half) {
          Value row = tb.add(warpRow0, tb.accRow(mt, 2 * half));
          Value col = tb.add(warpCol0, tb.accCol(nt, 0));
          Value ptr = tb.gep(smemTile,
                             tb.add(tb.mul(row, tb.i32(out.pitch)), col), elem);
          tb.storeElements(
              combine(mt, nt, half, [&] { return tb.loadElements(ptr, 2); }),
              ptr);
        }
  }
  if (out.bulkRows) {
    // The combined tile leaves by bulk copies, which read it through the
    // async proxy: fence this thread's writes into it, then wait for all.
    tb.fenceAsyncShared();
    tb.barrier();
    tb.issueBulkRows(*out.bulkRows, smemTile, colStart,
                     stagedRowBytes(tb, out, colStart, colLimit), Value(),
                     /*toGlobal=*/true);
    tb.bulkCommitGroup();
    return;
  }
  tb.barrier();
  const TileCopyPlan &plan = out.rowChunks;
  for (const TileCopyPlan::Chunk &c : plan.chunks) {
    auto emit = [&] {
      Value col = tb.add(colStart, c.colInTile);
      tb.ifThen(tb.land(c.rowValid, tb.lt(col, colLimit)), [&] {
        Value chunk =
            tb.loadElements(tb.gep(smemTile, c.smemIndex, elem), plan.vecElems);
        tb.storeElements(chunk, tb.gep(c.rowPtr, col, elem));
      });
    };
    if (c.guarded)
      tb.ifThen(tb.lt(tb.add(tb.threadId(), tb.i32(c.first)),
                      tb.i32(plan.totalChunks)),
                emit);
    else
      emit();
  }
}

} // namespace moelora
