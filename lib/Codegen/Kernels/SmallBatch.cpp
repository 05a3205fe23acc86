//===- SmallBatch.cpp - Persistent GEMV kernel for decode -----------------===//
//
// Persistent grid over work items (pair x slice x n-chunk of tiles_per_item
// BLOCK_N tiles; all per-batch quantities are runtime arguments, so one
// binary serves every batch size). Per item: the shrink GEMV r = x @ A^T
// (warps take rank rows, lanes split K with vector loads, a shuffle
// reduction; r stays fp32 in shared memory), then the expand, one output
// column per thread. SIMT: at decode sizes the work is a few rows per
// adapter and the cost is memory latency, not arithmetic.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/KernelBuilder.h"
#include "moelora/Codegen/MoeBlock.h"

namespace moelora {

int smallBatchSharedBytes(const KernelSpec &spec) { return spec.blockR() * 4; }

void buildSmallBatchKernel(TileBuilder &tb, const KernelArgs &args) {
  const KernelSpec &spec = tb.spec();
  const int R = spec.rank;
  Value numPairs = args[kNumPairs];
  Value N = args[kN];
  Value K = spec.k ? tb.i32(*spec.k) : args[kK];
  Value tilesPerItem = args[kTilesPerItem];
  Value chunkCols = tb.mul(tilesPerItem, tb.i32(spec.blockN));
  Value nChunks = tb.ceilDiv(N, chunkCols);
  Value itemsPerPair = tb.mul(tb.i32(spec.numSlices), nChunks);
  Value items = tb.mul(numPairs, itemsPerPair);
  const int kVec = spec.k ? copyVectorElems(*spec.k) : 8;
  const int rVec = copyVectorElems(R);
  Value rSmem = tb.shared();
  Value factor = spec.mulRoutedWeight ? tb.i32(1) : args[kTopK];

  tb.forLoop(
      tb.blockId(0), items, tb.gridDim(0), {},
      [&](Value item, mlir::ValueRange) {
        Value pair = tb.divU(item, itemsPerPair);
        Value rest = tb.remU(item, itemsPerPair);
        Value slice = tb.divU(rest, nChunks);
        Value chunk = tb.remU(rest, nChunks);
        Value token = tb.divU(pair, args[kTopK]);
        Value lora = tb.loadI32(args[kTokenLoraMapping], token);
        Value zero = tb.i32(0);
        Value loraOk = tb.land(tb.ge(lora, zero), tb.lt(lora, args[kMaxLoras]));
        Value safeLora = tb.select(loraOk, lora, zero);
        Value enabled = tb.loadI32(args[kAdapterEnabled], safeLora);
        Value expert = tb.loadI32(args[kExpertIds], pair);
        Value active =
            tb.land(tb.land(loraOk, tb.ne(enabled, zero)), tb.ge(expert, zero));
        // `active` is uniform over the block, so the barriers inside are safe.
        tb.ifThen(active, [&] {
          Value xRow = tb.gep(
              args[kX], tb.mul(tb.toI64(tb.divU(pair, factor)), args[kXStride]),
              tb.elementType());
          Value aBase =
              loraMatrixBase(tb, args[kAPtrs], slice, safeLora, expert,
                             args[kAStrideL], args[kAStrideE]);
          // Shrink: warp w takes rank rows w, w + num_warps, ...
          tb.forLoop(
              tb.warpId(), tb.i32(R), tb.i32(spec.numWarps), {},
              [&](Value j, mlir::ValueRange) {
                Value aRow = tb.gep(aBase, tb.mul(tb.toI64(j), args[kAStrideR]),
                                    tb.elementType());
                ValueVec sum = tb.forLoop(
                    tb.mul(tb.laneId(), tb.i32(kVec)), K, tb.i32(32 * kVec),
                    {tb.f32(0.0)}, [&](Value k, mlir::ValueRange acc) {
                      ValueVec xs = tb.loadElementsAsF32(
                          tb.gep(xRow, k, tb.elementType()), kVec);
                      ValueVec as = tb.loadElementsAsF32(
                          tb.gep(aRow, k, tb.elementType()), kVec);
                      Value s = acc[0];
                      for (int i = 0; i < kVec; ++i)
                        s = tb.fadd(s, tb.fmul(xs[i], as[i]));
                      return ValueVec{s};
                    });
                Value total = tb.warpSum(sum[0]);
                tb.ifThen(tb.eq(tb.laneId(), zero), [&] {
                  tb.store(total, tb.gep(rSmem, j, tb.f32Type()));
                });
                return ValueVec{};
              });
          tb.barrier();
          // Expand: one output column per thread, r in fp32.
          Value bBase =
              loraMatrixBase(tb, args[kBPtrs], slice, safeLora, expert,
                             args[kBStrideL], args[kBStrideE]);
          Value nLo = tb.mul(chunk, chunkCols);
          Value nHi = tb.minS(tb.add(nLo, chunkCols), N);
          Value outRow = tb.gep(args[kOut],
                                tb.add(tb.mul(tb.toI64(pair), args[kOutStride]),
                                       tb.toI64(tb.mul(slice, N))),
                                tb.elementType());
          Value weight;
          if (spec.mulRoutedWeight)
            weight = tb.load(tb.f32Type(),
                             tb.gep(args[kTopkWeights], pair, tb.f32Type()));
          tb.forLoop(tb.add(nLo, tb.threadId()), nHi, tb.i32(spec.threads()),
                     {}, [&](Value n, mlir::ValueRange) {
                       Value bRow =
                           tb.gep(bBase, tb.mul(tb.toI64(n), args[kBStrideN]),
                                  tb.elementType());
                       Value y = tb.f32(0.0);
                       for (int j0 = 0; j0 < R; j0 += rVec) {
                         ValueVec bs = tb.loadElementsAsF32(
                             tb.gep(bRow, tb.i32(j0), tb.elementType()), rVec);
                         for (int i = 0; i < rVec; ++i) {
                           Value rj = tb.load(
                               tb.f32Type(),
                               tb.gep(rSmem, tb.i32(j0 + i), tb.f32Type()));
                           y = tb.fadd(y, tb.fmul(rj, bs[i]));
                         }
                       }
                       if (weight)
                         y = tb.fmul(y, weight);
                       tb.storeOutput(tb.gep(outRow, n, tb.elementType()), y,
                                      spec.addInputs);
                       return ValueVec{};
                     });
          tb.barrier(); // r is rewritten by the next item
        });
        return ValueVec{};
      });
}

} // namespace moelora
