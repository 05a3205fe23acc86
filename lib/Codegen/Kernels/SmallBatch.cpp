//===- SmallBatch.cpp - Persistent GEMV kernel for decode -----------------===//
//
// Persistent grid over work items (pair x slice x n-chunk of tiles_per_item
// BLOCK_N tiles; all per-batch quantities are runtime arguments, so one
// binary serves every batch size). Per item: the shrink GEMV r = x @ A^T
// (threads split K with vector loads over groups of rank rows, then a
// shuffle + shared-memory reduction; r stays fp32 in shared memory), then
// the expand, one output column per thread. SIMT: at decode sizes the work is a
// few rows per adapter and the cost is memory latency, not arithmetic.
//
// SPLIT_K = C > 1 (sm_90): the grid is made of C-block clusters and a work
// item belongs to a cluster. Each block reduces its own 1/C of K, the blocks
// exchange their partial r vectors through distributed shared memory, and
// each expands every C-th column. So a pair's A is read once per item, by C
// SMs, instead of whole by one SM: at decode a block's time is its bytes over
// one SM's bandwidth, and A (R x K) is most of them.
//
// Latency: the expand's operands that do not depend on r (the first B row,
// the routed weight, the output it adds to) are loaded before the shrink,
// and `adapter_enabled` gates only the stores, so neither adds a dependent
// round trip to the item.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/KernelBuilder.h"
#include "moelora/Codegen/MoeBlock.h"

#include <algorithm>

namespace moelora {

namespace {
/// Rank rows whose loads one thread keeps in flight together.
constexpr int kRowGroup = 16;
/// K steps per thread emitted as straight-line code (more: a loop). Measured
/// on an H100: 7 unrolled steps (K = 7168) ran slower than the loop.
constexpr int kMaxUnrolledSteps = 6;
/// Largest rank whose first B row is loaded before the shrink: sm_90 has
/// the registers for R 64 (ptxas -v, no spills); sm_80 spills from R 64.
int maxPrefetchRank(int sm) { return sm >= 90 ? 64 : 32; }
} // namespace

int smallBatchSharedBytes(const KernelSpec &spec) {
  // r (fp32), then one partial sum per warp and rank row, then (clusters)
  // this block's partial r, double-buffered over active items.
  const int partialR = spec.splitK > 1 ? 2 * spec.blockR() * 4 : 0;
  return spec.blockR() * 4 + spec.numWarps * spec.blockR() * 4 + partialR;
}

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
  const int rBytes = spec.blockR() * 4;
  Value factor = spec.mulRoutedWeight ? tb.i32(1) : args[kTopK];
  const int C = spec.splitK;
  const int threads = spec.threads();
  Value rank = C > 1 ? tb.clusterRank() : tb.i32(0);
  Value firstItem = C > 1 ? tb.clusterIndex() : tb.blockId(0);
  Value itemStep = C > 1 ? tb.numClusters() : tb.gridDim(0);
  // This block's K range [kLo, kHi): K split in C vector-aligned parts.
  const std::optional<int> kPart =
      spec.k ? std::optional<int>((*spec.k + C * kVec - 1) / (C * kVec) * kVec)
             : std::nullopt;
  Value kc = kPart ? tb.i32(*kPart)
                   : tb.mul(tb.ceilDiv(tb.ceilDiv(K, tb.i32(C)), tb.i32(kVec)),
                            tb.i32(kVec));
  Value kLo = tb.mul(rank, kc);
  Value kHi = tb.minS(tb.add(kLo, kc), K);

  // `phase` picks the half of the partial-r double buffer. It flips only on
  // items that reach the cluster barrier (active ones; `active` is the same
  // in every block of a cluster): two writes to one half are then always
  // separated by a barrier that every peer passes after reading that half.
  // (Counting loop iterations instead would let an inactive item between
  // two active ones put both in the same half, unordered against a slow
  // peer's reads.)
  tb.forLoop(
      firstItem, items, itemStep, {tb.i32(0)},
      [&](Value item, mlir::ValueRange carried) {
        Value phase = carried[0];
        Value pair = tb.divU(item, itemsPerPair);
        Value rest = tb.remU(item, itemsPerPair);
        Value slice = tb.divU(rest, nChunks);
        Value chunk = tb.remU(rest, nChunks);
        Value token = tb.divU(pair, args[kTopK]);
        // Both metadata loads first, so their latencies overlap.
        Value lora = tb.loadI32(args[kTokenLoraMapping], token);
        Value expert = tb.loadI32(args[kExpertIds], pair);
        Value zero = tb.i32(0);
        Value loraOk = tb.land(tb.ge(lora, zero), tb.lt(lora, args[kMaxLoras]));
        Value safeLora = tb.select(loraOk, lora, zero);
        Value enabled = tb.loadI32(args[kAdapterEnabled], safeLora);
        Value safeExpert = tb.maxS(expert, zero);
        Value aBase =
            loraMatrixBase(tb, args[kAPtrs], slice, safeLora, safeExpert,
                           args[kAStrideL], args[kAStrideE]);
        Value bBase =
            loraMatrixBase(tb, args[kBPtrs], slice, safeLora, safeExpert,
                           args[kBStrideL], args[kBStrideE]);
        // The item's loads start once the adapter and expert are known; whether
        // the adapter is enabled (one more dependent load) only gates the
        // stores, so its latency overlaps the shrink's loads instead of
        // preceding them. A disabled adapter's output is left untouched.
        Value enabledOk = tb.ne(enabled, zero);
        Value active = tb.land(loraOk, tb.ge(expert, zero));
        // `active` is uniform over the block (and the cluster), so the barriers
        // inside are safe.
        tb.ifThen(active, [&] {
          Value xRow = tb.gep(
              args[kX], tb.mul(tb.toI64(tb.divU(pair, factor)), args[kXStride]),
              tb.elementType());
          // The expand's operands do not depend on r: the thread's first
          // column of B, its weight and the output it adds to are loaded now,
          // so their latency overlaps the shrink's instead of following it.
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
          // Block `rank` of the cluster takes every C-th run of `threads`
          // columns.
          Value nFirst =
              tb.add(nLo, tb.add(tb.mul(rank, tb.i32(threads)), tb.threadId()));
          Value firstValid = tb.lt(nFirst, nHi);
          Value nSafe = tb.select(firstValid, nFirst, nLo); // nLo < N
          auto bRowOf = [&](Value n) {
            return tb.gep(bBase, tb.mul(tb.toI64(n), args[kBStrideN]),
                          tb.elementType());
          };
          auto loadBRow = [&](Value n) {
            ValueVec vectors;
            for (int j0 = 0; j0 < R; j0 += rVec)
              vectors.push_back(tb.loadElements(
                  tb.gep(bRowOf(n), tb.i32(j0), tb.elementType()), rVec));
            return vectors;
          };
          // B's row is held in registers across the shrink while the
          // registers allow (see maxPrefetchRank).
          const bool prefetchB = R <= maxPrefetchRank(spec.sm);
          ValueVec firstB = prefetchB ? loadBRow(nSafe) : ValueVec{};
          Value firstOut = tb.gep(outRow, nSafe, tb.elementType());
          Value firstPrior =
              spec.addInputs ? tb.load(tb.elementType(), firstOut) : Value();
          // Shrink: thread t takes the K vectors t, t + threads, ... of x and
          // of a group of rank rows at once, so a whole group's loads are in
          // flight together (decode is latency-bound); partial sums are reduced
          // over the warp with shuffles, then over the warps in shared memory.
          Value partials = tb.sharedOffset(rSmem, tb.i32(rBytes));
          for (int g0 = 0; g0 < R; g0 += kRowGroup) {
            const int rows = std::min(kRowGroup, R - g0);
            ValueVec aRows;
            for (int r = 0; r < rows; ++r)
              aRows.push_back(tb.gep(aBase,
                                     tb.mul(tb.i64(g0 + r), args[kAStrideR]),
                                     tb.elementType()));
            // acc[r] += x[k..k+kVec) . A[g0+r][k..k+kVec), weighted by
            // `mask` (0 or 1) for a possibly out-of-range step.
            auto step = [&](Value k, ValueVec acc) {
              ValueVec xs =
                  tb.loadElementsAsF32(tb.gep(xRow, k, tb.elementType()), kVec);
              for (int r = 0; r < rows; ++r) {
                ValueVec as = tb.loadElementsAsF32(
                    tb.gep(aRows[r], k, tb.elementType()), kVec);
                for (int i = 0; i < kVec; ++i)
                  acc[r] = tb.fadd(acc[r], tb.fmul(xs[i], as[i]));
              }
              return acc;
            };
            Value first = tb.add(kLo, tb.mul(tb.threadId(), tb.i32(kVec)));
            const int stride = threads * kVec;
            ValueVec sums(rows, tb.f32(0.0));
            if (kPart && *kPart / stride <= kMaxUnrolledSteps) {
              // K is known: every thread's steps are straight-line code, so
              // all their loads are in flight at once. Steps inside every
              // block's range need no mask; the rest are masked to kHi.
              const bool exact = *spec.k == C * *kPart;
              const int full = exact ? *kPart / stride : 0;
              const int steps = (*kPart + stride - 1) / stride;
              for (int it = 0; it < full; ++it)
                sums = step(tb.add(first, tb.i32(it * stride)), sums);
              for (int it = full; it < steps; ++it) {
                Value k = tb.add(first, tb.i32(it * stride));
                Value inRange = tb.lt(k, kHi);
                ValueVec extra = step(tb.select(inRange, k, tb.i32(0)),
                                      ValueVec(rows, tb.f32(0.0)));
                for (int r = 0; r < rows; ++r)
                  sums[r] = tb.fadd(sums[r],
                                    tb.select(inRange, extra[r], tb.f32(0.0)));
              }
            } else {
              sums =
                  tb.forLoop(first, kHi, tb.i32(stride), sums,
                             [&](Value k, mlir::ValueRange acc) {
                               return step(k, ValueVec(acc.begin(), acc.end()));
                             });
            }
            for (int r = 0; r < rows; ++r) {
              Value total = tb.warpSum(sums[r]);
              tb.ifThen(tb.eq(tb.laneId(), zero), [&] {
                Value slot =
                    tb.add(tb.mul(tb.warpId(), tb.i32(R)), tb.i32(g0 + r));
                tb.store(total, tb.gep(partials, slot, tb.f32Type()));
              });
            }
          }
          tb.barrier();
          // This block's r (over its K range); with clusters, published in
          // the item's half of the double buffer: a peer may still read the
          // other half (the previous active item) until the barrier below.
          Value partialR =
              C > 1 ? tb.sharedOffset(
                          rSmem, tb.add(tb.i32(rBytes + spec.numWarps * rBytes),
                                        tb.mul(phase, tb.i32(rBytes))))
                    : rSmem;
          tb.ifThen(tb.lt(tb.threadId(), tb.i32(R)), [&] {
            Value sum = tb.f32(0.0);
            for (int w = 0; w < spec.numWarps; ++w)
              sum = tb.fadd(
                  sum,
                  tb.load(tb.f32Type(),
                          tb.gep(partials, tb.add(tb.i32(w * R), tb.threadId()),
                                 tb.f32Type())));
            tb.store(sum, tb.gep(partialR, tb.threadId(), tb.f32Type()));
          });
          if (C > 1) {
            // Every block's partial r is visible after the cluster barrier
            // (release/acquire); each block sums the C of them, in rank
            // order so that all blocks get the same r.
            tb.clusterBarrier();
            tb.ifThen(tb.lt(tb.threadId(), tb.i32(R)), [&] {
              Value mine = tb.gep(partialR, tb.threadId(), tb.f32Type());
              Value sum = tb.sumOverCluster(tb.f32Type(), mine, C).front();
              tb.store(sum, tb.gep(rSmem, tb.threadId(), tb.f32Type()));
            });
          }
          tb.barrier();
          // Expand: one output column per thread, r in fp32. y = r . B[n].
          auto dotR = [&](const ValueVec &bVectors) {
            Value y = tb.f32(0.0);
            for (int v = 0; v * rVec < R; ++v) {
              ValueVec bs = tb.widenToF32(bVectors[v], rVec);
              for (int i = 0; i < rVec; ++i) {
                Value rj =
                    tb.load(tb.f32Type(),
                            tb.gep(rSmem, tb.i32(v * rVec + i), tb.f32Type()));
                y = tb.fadd(y, tb.fmul(rj, bs[i]));
              }
            }
            return weight ? tb.fmul(y, weight) : y;
          };
          tb.ifThen(tb.land(firstValid, enabledOk), [&] {
            Value y = dotR(prefetchB ? firstB : loadBRow(nFirst));
            if (firstPrior)
              y = tb.fadd(tb.fromElement(firstPrior), y);
            tb.store(tb.toElement(y), firstOut);
          });
          const int colStep = C * threads;
          tb.forLoop(tb.add(nFirst, tb.i32(colStep)),
                     tb.select(enabledOk, nHi, nLo), tb.i32(colStep), {},
                     [&](Value n, mlir::ValueRange) {
                       tb.storeOutput(tb.gep(outRow, n, tb.elementType()),
                                      dotR(loadBRow(n)), spec.addInputs);
                       return ValueVec{};
                     });
          tb.barrier(); // r is rewritten by the next item
        });
        return ValueVec{tb.select(active, tb.sub(tb.i32(1), phase), phase)};
      });
  // A block must not exit while a peer may still read its shared memory.
  if (C > 1)
    tb.clusterBarrier();
}

} // namespace moelora
