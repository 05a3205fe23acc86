//===- AlignBlockSize.cpp - moe_lora_align_block_size on the GPU ----------===//
//
// One program per adapter l (grid x = max_loras):
//  1. count the adapter's pairs per expert (shared-memory atomics), and fill
//     sorted_token_ids[l] with the padding value num_pairs;
//  2. thread 0 turns the counts into BLOCK_M-padded offsets, writes
//     expert_ids[l] for the used blocks and num_tokens_post_padded[l];
//  3. the other blocks' expert ids become -1, in parallel;
//  4. warp 0 scatters the pairs in ascending order, 32 at a time: a lane's
//     slot is its expert's offset plus the number of earlier lanes with the
//     same expert (shuffles), which keeps each expert's group stable.
// Experts are limited to kMaxAlignExperts (checked by the runtime).
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/KernelBuilder.h"

namespace moelora {

namespace {
constexpr int kMaxExperts = kMaxAlignExperts;
} // namespace

int alignBlockSizeSharedBytes(const KernelSpec &) {
  // counts[E], then running offsets[E] and the padded total.
  return (2 * kMaxExperts + 1) * 4;
}

void buildAlignBlockSizeKernel(TileBuilder &tb, const KernelArgs &args) {
  const KernelSpec &spec = tb.spec();
  const int threads = spec.threads();
  Value lora = tb.blockId(0);
  Value numPairs = args[kAlignNumPairs];
  Value topK = args[kAlignTopK];
  Value numExperts = args[kAlignNumExperts];
  Value EM = args[kAlignEM];
  Value BM = tb.i32(spec.blockM);
  Value blocks = tb.divU(EM, BM);
  Value tid = tb.threadId();
  Value step = tb.i32(threads);
  Value counts = tb.shared();
  Value offsets = tb.shared(kMaxExperts * 4);
  Value sortedRow = tb.gep(args[kAlignSortedTokenIds],
                           tb.mul(tb.toI64(lora), tb.toI64(EM)), tb.i32Type());
  Value expertRow =
      tb.gep(args[kAlignExpertIds], tb.mul(tb.toI64(lora), tb.toI64(blocks)),
             tb.i32Type());
  Value zero = tb.i32(0);

  // The expert of pair p if it belongs to this adapter, else -1.
  auto expertOf = [&](Value p) {
    Value inRange = tb.lt(p, numPairs);
    Value safe = tb.select(inRange, p, zero);
    Value l = tb.loadI32(args[kAlignTokenLoraMapping], tb.divU(safe, topK));
    Value e = tb.loadI32(args[kAlignTopkIds], safe);
    Value mine = tb.land(tb.land(inRange, tb.eq(l, lora)), tb.ge(e, zero));
    return tb.select(mine, e, tb.i32(-1));
  };

  tb.forLoop(tid, numExperts, step, {}, [&](Value e, mlir::ValueRange) {
    tb.store(zero, tb.gep(counts, e, tb.i32Type()));
    return ValueVec{};
  });
  tb.forLoop(tid, EM, step, {}, [&](Value i, mlir::ValueRange) {
    tb.store(numPairs, tb.gep(sortedRow, i, tb.i32Type()));
    return ValueVec{};
  });
  tb.barrier();
  tb.forLoop(tid, numPairs, step, {}, [&](Value p, mlir::ValueRange) {
    Value e = expertOf(p);
    tb.ifThen(tb.ge(e, zero), [&] {
      tb.atomicAddI32(tb.gep(counts, e, tb.i32Type()), tb.i32(1));
    });
    return ValueVec{};
  });
  tb.barrier();

  // 2. Padded offsets, used blocks' expert ids, padded length.
  tb.ifThen(tb.eq(tid, zero), [&] {
    ValueVec total = tb.forLoop(
        zero, numExperts, tb.i32(1), {zero},
        [&](Value e, mlir::ValueRange acc) {
          Value count = tb.load(tb.i32Type(), tb.gep(counts, e, tb.i32Type()));
          Value padded = tb.mul(tb.ceilDiv(count, BM), BM);
          tb.store(acc[0], tb.gep(offsets, e, tb.i32Type()));
          Value firstBlock = tb.divU(acc[0], BM);
          tb.forLoop(firstBlock, tb.add(firstBlock, tb.divU(padded, BM)),
                     tb.i32(1), {}, [&](Value blk, mlir::ValueRange) {
                       tb.store(e, tb.gep(expertRow, blk, tb.i32Type()));
                       return ValueVec{};
                     });
          return ValueVec{tb.add(acc[0], padded)};
        });
    tb.store(total[0],
             tb.gep(args[kAlignNumTokensPostPadded], lora, tb.i32Type()));
    // Publish the total for step 3 in the slot after the offsets.
    tb.store(total[0], tb.gep(offsets, tb.i32(kMaxExperts), tb.i32Type()));
  });
  tb.barrier();

  // 3. Unused blocks.
  Value total =
      tb.load(tb.i32Type(), tb.gep(offsets, tb.i32(kMaxExperts), tb.i32Type()));
  tb.forLoop(tb.add(tb.divU(total, BM), tid), blocks, step, {},
             [&](Value blk, mlir::ValueRange) {
               tb.store(tb.i32(-1), tb.gep(expertRow, blk, tb.i32Type()));
               return ValueVec{};
             });

  // 4. Stable scatter by warp 0.
  tb.ifThen(tb.eq(tb.warpId(), zero), [&] {
    Value lane = tb.laneId();
    tb.forLoop(
        zero, numPairs, tb.i32(32), {}, [&](Value base, mlir::ValueRange) {
          Value p = tb.add(base, lane);
          Value e = expertOf(p);
          Value rank = zero;
          Value later = tb.boolean(false);
          for (int j = 0; j < 32; ++j) {
            Value other = tb.shuffleIdx(e, tb.i32(j));
            Value same = tb.eq(other, e);
            rank = tb.add(rank, tb.select(tb.land(same, tb.lt(tb.i32(j), lane)),
                                          tb.i32(1), zero));
            later = tb.lor(later, tb.land(same, tb.lt(lane, tb.i32(j))));
          }
          Value valid = tb.ge(e, zero);
          Value safeE = tb.select(valid, e, zero);
          Value slot = tb.gep(offsets, safeE, tb.i32Type());
          Value start = tb.load(tb.i32Type(), slot);
          tb.ifThen(valid, [&] {
            tb.store(p, tb.gep(sortedRow, tb.add(start, rank), tb.i32Type()));
          });
          tb.syncWarp();
          // The last lane of each expert advances its offset past the chunk.
          tb.ifThen(tb.land(valid, tb.lnot(later)), [&] {
            tb.store(tb.add(start, tb.add(rank, tb.i32(1))), slot);
          });
          tb.syncWarp();
          return ValueVec{};
        });
  });
}

} // namespace moelora
