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
/// Rank rows a thread keeps in flight together when K is walked in a loop.
constexpr int kRowGroup = 16;
/// K steps per thread emitted as straight-line code (more: a loop). Measured
/// on an H100: 7 unrolled steps (K = 7168) ran slower than the loop.
constexpr int kMaxUnrolledSteps = 6;
/// A-vector loads (16 bytes: 4 registers each) one thread issues before the
/// first use; beyond this the rows go in batches, one round trip each.
constexpr int kMaxLoadsInFlight = 16;
/// B-row vector loads one thread issues together in the expand: 16 (up to 8
/// columns) while R <= 32; at R 64 one column (8 loads), as ptxas spills at
/// two under the 128-register cap of two blocks per SM.
int maxExpandLoads(int rank) { return rank <= 32 ? 16 : 8; }
/// Columns per expand batch (each adds its old output's load).
constexpr int kMaxExpandColumns = 8;
/// Largest rank whose first B row is loaded before the shrink: sm_90 has
/// the registers for R 64 (ptxas -v, no spills); sm_80 spills from R 64.
int maxPrefetchRank(int sm) { return sm >= 90 ? 64 : 32; }

int nextPow2(int v) {
  int p = 1;
  while (p < v)
    p *= 2;
  return p;
}

/// How a block's threads cover its shrink: R rank rows by its K range in
/// kVec-element vectors. A short K range (a cluster's part, or a small K)
/// takes fewer threads per row and more rows side by side, so that every
/// thread has loads to issue and the rank's rows are not walked in series.
struct ShrinkLayout {
  int lanesK;     ///< threads along K per row (a power of two)
  int rowsAtOnce; ///< rows side by side: threads / lanesK
  int passes;     ///< rows per thread: ceil(R / rowsAtOnce)
  /// K vectors per thread, when K is known and they are few enough to be
  /// straight-line code (else K is a loop of stride lanesK * kVec).
  std::optional<int> steps;
  int batchPasses; ///< rows per thread whose loads are issued together
  int warpsPerRow() const { return std::max(1, lanesK / 32); }
};

ShrinkLayout shrinkLayout(const KernelSpec &spec, std::optional<int> kPart,
                          int kVec) {
  const int threads = spec.threads();
  ShrinkLayout l;
  l.lanesK =
      kPart ? std::min(threads, nextPow2((*kPart + kVec - 1) / kVec)) : threads;
  // No more rows side by side than the tile's rank rows.
  l.lanesK = std::max(l.lanesK, threads / spec.blockR());
  // A row's lanes are one warp's (shuffles only) or the whole block's: rows
  // over 2 or 4 of 8 warps made ptxas spill at R 64 under the 128-register
  // cap of two blocks per SM; 32 lanes (more K steps per thread) do not.
  if (l.lanesK > 32 && l.lanesK < threads)
    l.lanesK = 32;
  l.rowsAtOnce = threads / l.lanesK;
  l.passes = (spec.rank + l.rowsAtOnce - 1) / l.rowsAtOnce;
  if (kPart) {
    const int steps = (*kPart + l.lanesK * kVec - 1) / (l.lanesK * kVec);
    if (steps <= kMaxUnrolledSteps)
      l.steps = steps;
  }
  l.batchPasses =
      std::min(l.passes,
               l.steps ? std::max(1, kMaxLoadsInFlight / *l.steps) : kRowGroup);
  return l;
}
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
        // The slices' base pointers first, then both metadata loads, so
        // that all four latencies overlap (the pointers loaded in place:
        // LLVM would sink plain loads past the active test, one more round
        // trip before A's first row could be asked for).
        Value aSlice = loraSliceBase(tb, args[kAPtrs], slice, /*inPlace=*/true);
        Value bSlice = loraSliceBase(tb, args[kBPtrs], slice, /*inPlace=*/true);
        Value lora = tb.loadI32(args[kTokenLoraMapping], token);
        Value expert = tb.loadI32(args[kExpertIds], pair);
        Value zero = tb.i32(0);
        Value loraOk = tb.land(tb.ge(lora, zero), tb.lt(lora, args[kMaxLoras]));
        Value safeLora = tb.select(loraOk, lora, zero);
        Value enabled = tb.loadI32(args[kAdapterEnabled], safeLora);
        Value safeExpert = tb.maxS(expert, zero);
        Value aBase = loraMatrixAt(tb, aSlice, safeLora, safeExpert,
                                   args[kAStrideL], args[kAStrideE]);
        Value bBase = loraMatrixAt(tb, bSlice, safeLora, safeExpert,
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
          // Shrink: the block's threads tile (rank rows x its K range) as
          // layout.rowsAtOnce rows side by side, layout.lanesK threads along
          // K in each; a thread issues a batch of rows' loads (all its K
          // vectors of each) before the first use, so a batch costs one
          // memory round trip (decode is latency-bound). Partial sums are
          // reduced over a row's lanes with shuffles, then over its warps in
          // shared memory.
          const ShrinkLayout layout = shrinkLayout(spec, kPart, kVec);
          Value partials = tb.sharedOffset(rSmem, tb.i32(rBytes));
          Value laneK = tb.remU(tb.threadId(), tb.i32(layout.lanesK));
          Value rowInPass = tb.divU(tb.threadId(), tb.i32(layout.lanesK));
          const bool rowMask = R % layout.rowsAtOnce != 0;
          Value first = tb.add(kLo, tb.mul(laneK, tb.i32(kVec)));
          const int stride = layout.lanesK * kVec;
          for (int p0 = 0; p0 < layout.passes; p0 += layout.batchPasses) {
            const int batch = std::min(layout.batchPasses, layout.passes - p0);
            ValueVec rows, aRows;
            for (int p = p0; p < p0 + batch; ++p) {
              Value row = tb.add(rowInPass, tb.i32(p * layout.rowsAtOnce));
              // Rows past R (a rank that is not a multiple of the rows side
              // by side) read row 0 and are never stored.
              Value safeRow =
                  rowMask ? tb.select(tb.lt(row, tb.i32(R)), row, tb.i32(0))
                          : row;
              rows.push_back(row);
              aRows.push_back(tb.gep(aBase,
                                     tb.mul(tb.toI64(safeRow), args[kAStrideR]),
                                     tb.elementType()));
            }
            // acc[p] += x[k..k+kVec) . A[row p][k..k+kVec); a step with
            // `inRange` false reads column 0 and adds zeros (both operands
            // zeroed, so no 0 * inf).
            auto step = [&](Value k, ValueVec acc, Value inRange = Value()) {
              auto masked = [&](ValueVec v) {
                if (inRange)
                  for (Value &e : v)
                    e = tb.select(inRange, e, tb.f32(0.0));
                return v;
              };
              ValueVec xs = masked(tb.loadElementsAsF32(
                  tb.gep(xRow, k, tb.elementType()), kVec));
              for (int p = 0; p < batch; ++p) {
                ValueVec as = masked(tb.loadElementsAsF32(
                    tb.gep(aRows[p], k, tb.elementType()), kVec));
                for (int i = 0; i < kVec; ++i)
                  acc[p] = tb.fadd(acc[p], tb.fmul(xs[i], as[i]));
              }
              return acc;
            };
            ValueVec sums(batch, tb.f32(0.0));
            if (layout.steps) {
              // K is known: every thread's steps are straight-line code, so
              // all their loads are in flight at once. Steps inside every
              // block's range need no mask; the rest are masked to kHi.
              const int steps = *layout.steps;
              const bool exact =
                  *spec.k == C * *kPart && (*kPart / kVec) % layout.lanesK == 0;
              const int full = exact ? steps : 0;
              for (int it = 0; it < full; ++it)
                sums = step(tb.add(first, tb.i32(it * stride)), sums);
              for (int it = full; it < steps; ++it) {
                Value k = tb.add(first, tb.i32(it * stride));
                Value inRange = tb.lt(k, kHi);
                sums = step(tb.select(inRange, k, tb.i32(0)), sums, inRange);
              }
            } else {
              sums =
                  tb.forLoop(first, kHi, tb.i32(stride), sums,
                             [&](Value k, mlir::ValueRange acc) {
                               return step(k, ValueVec(acc.begin(), acc.end()));
                             });
            }
            const int groupLanes = std::min(layout.lanesK, 32);
            Value leader =
                tb.eq(tb.remU(tb.laneId(), tb.i32(groupLanes)), zero);
            // A row spanning several warps keeps one partial per warp.
            Value warpInRow = tb.divU(laneK, tb.i32(32)); // 0 when lanesK <= 32
            for (int p = 0; p < batch; ++p) {
              Value total = tb.warpSum(sums[p], groupLanes);
              Value store =
                  rowMask ? tb.land(leader, tb.lt(rows[p], tb.i32(R))) : leader;
              tb.ifThen(store, [&] {
                Value slot = tb.add(tb.mul(warpInRow, tb.i32(R)), rows[p]);
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
            for (int w = 0; w < layout.warpsPerRow(); ++w)
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
          // r is read from shared memory 4 floats at a time (r's offset and
          // rVec are multiples of 4 from R 4 up), and summed into 4
          // interleaved accumulators: a column's dot product is then 4
          // short dependent chains, not one of R (decode is latency-bound).
          auto dotR = [&](const ValueVec &bVectors) {
            const bool wide = rVec % 4 == 0;
            ValueVec rs;
            for (int j0 = 0; j0 < R; j0 += wide ? 4 : 1) {
              Value p = tb.gep(rSmem, tb.i32(j0), tb.f32Type());
              if (!wide) {
                rs.push_back(tb.load(tb.f32Type(), p));
                continue;
              }
              ValueVec four =
                  tb.scalarsOf(tb.load(tb.vectorType(tb.f32Type(), 4), p));
              rs.insert(rs.end(), four.begin(), four.end());
            }
            ValueVec acc(std::min(4, R), tb.f32(0.0));
            for (int v = 0; v * rVec < R; ++v) {
              ValueVec bs = tb.widenToF32(bVectors[v], rVec);
              for (int i = 0; i < rVec && v * rVec + i < R; ++i) {
                const int j = v * rVec + i;
                acc[j % acc.size()] =
                    tb.fadd(acc[j % acc.size()], tb.fmul(rs[j], bs[i]));
              }
            }
            Value y = acc[0];
            for (size_t a = 1; a < acc.size(); ++a)
              y = tb.fadd(y, acc[a]);
            return weight ? tb.fmul(y, weight) : y;
          };
          // (add_inputs ? prior : 0) + r . B[n], before rounding to T.
          auto columnValue = [&](const ValueVec &bRow, Value prior) {
            Value y = dotR(bRow);
            return prior ? tb.fadd(tb.fromElement(prior), y) : y;
          };
          tb.ifThen(tb.land(firstValid, enabledOk), [&] {
            tb.store(tb.toElement(columnValue(
                         prefetchB ? firstB : loadBRow(nFirst), firstPrior)),
                     firstOut);
          });
          // The other columns in batches: a batch's B rows and old outputs
          // are loaded before its first use (one round trip per batch, not
          // per column).
          const int colStep = C * threads;
          const int rowVectors = (R + rVec - 1) / rVec;
          const int batchCols =
              std::clamp(maxExpandLoads(R) / rowVectors, 1, kMaxExpandColumns);
          tb.forLoop(
              tb.add(nFirst, tb.i32(colStep)), tb.select(enabledOk, nHi, nLo),
              tb.i32(colStep * batchCols), {}, [&](Value n0, mlir::ValueRange) {
                ValueVec cols, valid;
                std::vector<ValueVec> bRows;
                ValueVec priors;
                for (int u = 0; u < batchCols; ++u) {
                  Value n = tb.add(n0, tb.i32(u * colStep));
                  Value ok = u == 0 ? tb.boolean(true) : tb.lt(n, nHi);
                  Value safeN = u == 0 ? n : tb.select(ok, n, nLo);
                  cols.push_back(safeN);
                  valid.push_back(ok);
                  bRows.push_back(loadBRow(safeN));
                  if (spec.addInputs)
                    priors.push_back(
                        tb.load(tb.elementType(),
                                tb.gep(outRow, safeN, tb.elementType())));
                }
                for (int u = 0; u < batchCols; ++u) {
                  Value y = columnValue(bRows[u],
                                        spec.addInputs ? priors[u] : Value());
                  auto storeIt = [&] {
                    tb.store(tb.toElement(y),
                             tb.gep(outRow, cols[u], tb.elementType()));
                  };
                  if (u == 0)
                    storeIt();
                  else
                    tb.ifThen(valid[u], storeIt);
                }
                return ValueVec{};
              });
          tb.barrier(); // r is rewritten by the next item
        });
        return ValueVec{tb.select(active, tb.sub(tb.i32(1), phase), phase)};
      });
  // A block must not exit while a peer may still read its shared memory
  // (a peer has used what it read before it arrives: no release needed).
  if (C > 1)
    tb.clusterBarrierRelaxed();
}

} // namespace moelora
