//===- MoeBlock.cpp - Program-to-work mapping of the contract -------------===//

#include "moelora/Codegen/MoeBlock.h"

#include <algorithm>

namespace moelora {

MoeBlock resolveMoeBlock(TileBuilder &tb, const KernelArgs &args, Value pidM) {
  const KernelSpec &spec = tb.spec();
  MoeBlock blk;
  blk.slice = tb.blockId(1);
  Value maxLoras = args[kMaxLoras];
  Value numPairs = args[kNumPairs];
  Value zero = tb.i32(0);
  Value lora;
  Value active;
  if (spec.sorted) {
    lora = tb.loadI32(args[kLoraIds], tb.blockId(2));
  } else {
    Value pair = pidM;
    active = tb.lt(pair, numPairs);
    Value token =
        tb.divU(tb.minS(pair, tb.sub(numPairs, tb.i32(1))), args[kTopK]);
    lora = tb.loadI32(args[kTokenLoraMapping], token);
  }
  Value loraOk = tb.land(tb.ge(lora, zero), tb.lt(lora, maxLoras));
  active = active ? tb.land(active, loraOk) : loraOk;
  blk.lora = tb.select(loraOk, lora, zero);
  Value enabled = tb.loadI32(args[kAdapterEnabled], blk.lora);
  active = tb.land(active, tb.ne(enabled, zero));

  Value expert;
  if (spec.sorted) {
    Value padded = tb.loadI32(args[kNumTokensPostPadded], blk.lora);
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

Value loraMatrixBase(TileBuilder &tb, Value ptrArray, Value slice, Value lora,
                     Value expert, Value strideL, Value strideE) {
  Value base = tb.loadPtr(ptrArray, slice);
  Value offset = tb.add(tb.mul(tb.toI64(lora), strideL),
                        tb.mul(tb.toI64(expert), strideE));
  return tb.gep(base, offset, tb.elementType());
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
                       EpilogueMode mode, bool addInputs, bool mulWeight) {
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
          if (mode == EpilogueMode::Store && addInputs) {
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
            if (mode == EpilogueMode::AtomicAdd)
              tb.atomicAddOutput(ptr, v);
            else
              tb.store(tb.toElement(v), ptr);
          });
        }
  }
}

} // namespace moelora
