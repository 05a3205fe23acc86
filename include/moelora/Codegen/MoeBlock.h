//===- MoeBlock.h - Which pairs, adapter and expert a program serves -*- C++
//-*-===//
//
// The contract's program-to-work mapping, shared by every GEMM family:
// adapter (naive: token_lora_mapping, sorted: lora_ids[pid.z]), early exits
// (adapter -1 / out of range / disabled, expert -1, blocks past
// num_tokens_post_padded), the pair of each tile row (naive: one pair per
// program; sorted: sorted_token_ids, padding ids >= num_pairs invalid), and
// the epilogue that writes an accumulator tile into the output.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_CODEGEN_MOEBLOCK_H
#define MOELORA_CODEGEN_MOEBLOCK_H

#include "moelora/Codegen/KernelBuilder.h"

namespace moelora {

struct MoeBlock {
  Value active; ///< i1: the program has work
  Value lora;   ///< i32 adapter, clamped to a valid index
  Value expert; ///< i32 expert, clamped to a valid index
  Value slice;  ///< i32 slice (from ProgramIndex)
  /// Pair id of tile row `row` (clamped to 0 when invalid) and validity.
  std::function<Value(Value row)> pairOf;
  std::function<Value(Value row)> rowValid;
};

/// A GEMM family's program: its slice and its index among that slice's
/// programs. Grid x is (program, slice, cluster rank) from slowest to
/// fastest, so the S programs that gather the same x rows (W13's gate and up
/// slices) run side by side and all but the first read the rows from L2;
/// with slices on grid y, each slice's pass re-read x from DRAM.
struct ProgramIndex {
  Value slice; ///< i32 in [0, numSlices)
  Value pid;   ///< i32 program within the slice; cluster ranks stay innermost
};
/// Decodes blockIdx.x (or, in a persistent kernel's loop, the program `x`
/// it has reached) for programs launched in clusters of `clusterSize` (1
/// without clusters). The launcher's grid x is programs * numSlices.
ProgramIndex programIndex(TileBuilder &tb, int clusterSize, Value x = Value());

/// Sorted metadata: what a lora slot (grid z = index into lora_ids) holds
/// for all its row blocks, asked for once per slot.
struct LoraSlot {
  Value lora;   ///< i32 adapter, clamped to a valid index
  Value active; ///< i1: a valid, enabled adapter
  Value padded; ///< i32 num_tokens_post_padded[lora]
};
LoraSlot resolveLoraSlot(TileBuilder &tb, const KernelArgs &args);

/// Resolves the program `pidM` (row block) of `slice` and, on the sorted
/// path, of the lora slot grid z (resolved here, or `slot` when given).
MoeBlock resolveMoeBlock(TileBuilder &tb, const KernelArgs &args, Value pidM,
                         Value slice, const LoraSlot *slot = nullptr);

/// Sorted metadata (prefetchesNextRowIds): the first threads bring the
/// lines of row block `pidM`'s sorted ids and its expert id of adapter
/// `lora` into L1, for a block that reads them later. pidM must lie below
/// EM / BLOCK_M.
void prefetchRowBlockIds(TileBuilder &tb, const KernelArgs &args, Value lora,
                         Value pidM);

/// The block's rows of x for the shrink: a pair reads x row pair / top_k, or
/// row pair where x has a row per pair (mul_routed_weight: the down
/// projection, x = (num_tokens * top_k, K)).
TileRows blockXRows(TileBuilder &tb, const KernelArgs &args,
                    const MoeBlock &blk);

/// A stacked LoRA weight's slice base, ptrArray[slice]: a plain load, or
/// (`inPlace`) one issued where this is called (TileBuilder::loadInPlace),
/// for kernels that ask for it before their early-exit test.
Value loraSliceBase(TileBuilder &tb, Value ptrArray, Value slice,
                    bool inPlace = false);
/// &sliceBase[lora][expert]: the l / e strides applied to a slice base.
Value loraMatrixAt(TileBuilder &tb, Value sliceBase, Value lora, Value expert,
                   Value strideL, Value strideE);

/// tmaWeights: thread 0 prefetches every slice's tensor map (the generator
/// does it first thing, before the grid-dependency wait), so that the first
/// bulk copies need not fetch it.
void prefetchWeightTensorMaps(TileBuilder &tb, const KernelArgs &args);

/// tmaWeights: one thread (thread 0, or lane 0 of the producer warp)
/// copies the A tiles of `count` slices (sliceOf(s):
/// the s-th computed slice) by bulk tensor copies through each slice's
/// tensor map into tileOf(s): rows row0 .. row0 + rows - 1 of A_s[l, e]
/// (l, e: the block's adapter and expert), BLOCK_K columns from k0, in
/// the Swizzled128 layout; rows and columns outside A_s arrive as zeros.
/// It arrives on `bar` with their bytes first.
void issueWeightTensorTiles(TileBuilder &tb, const KernelArgs &args,
                            const MoeBlock &blk,
                            llvm::function_ref<Value(int)> sliceOf, int count,
                            int rows, Value k0, Value row0, Value bar,
                            llvm::function_ref<Value(int)> tileOf);

/// The threads that copy a shrink tile whose rows start at row `tableRow`
/// of the producer's row table: all threads, or (producerWarp) the
/// producer's lanes through the row table at the end of a kernel's
/// `sharedBytes` of shared memory (producerRowTableOffset).
CopyThreads shrinkTileCopiers(TileBuilder &tb, int sharedBytes, int tableRow);

/// The copies of a GEMM shrink's stage (the one-shot's and the two-kernel
/// shrink's): the block's x tile (BLOCK_M x BLOCK_K), then, unless
/// tma_weights brings them, each computed slice's A tile, rows row0 ..
/// row0 + weightRows - 1 of A_s[l, e] (null row0: 0), rows at or past the
/// rank reading zeros; copied by shrinkTileCopiers(sharedBytes).
struct ShrinkStageCopies {
  TileCopyPlan x;
  llvm::SmallVector<TileCopyPlan> weights; ///< per computed slice
  /// bulk_shrink: the same tiles as whole rows by bulk copies.
  std::optional<BulkRowPlan> xRows;
  llvm::SmallVector<BulkRowPlan> weightRows;
};
ShrinkStageCopies planShrinkStageCopies(TileBuilder &tb, const KernelArgs &args,
                                        const MoeBlock &blk,
                                        llvm::function_ref<Value(int)> sliceOf,
                                        int slices, int weightRows, Value row0,
                                        int pitch, int sharedBytes);
/// Issues a stage's planned copies of K columns k0.. (< kLimit, if given)
/// into the x tile at `base` and slice s's A tile at weightTile(s); bulk
/// rows complete on the stage's mbarrier `bar` (threads() arrivals per
/// phase: every thread arrives once with its rows' bytes). A tensor-copied
/// A (tma_weights) is the caller's.
void issueShrinkStageCopies(TileBuilder &tb, const ShrinkStageCopies &copies,
                            Value base,
                            llvm::function_ref<Value(int)> weightTile, Value k0,
                            Value kLimit, Value bar);

/// Tile rows over a matrix: row r of the tile is matrix row rowOf(r) when
/// valid(r) (row 0 otherwise), at `stride` elements per row.
TileRows matrixRows(TileBuilder &tb, Value base, Value stride,
                    std::function<Value(Value)> rowOf,
                    std::function<Value(Value)> valid);

/// Output rows of one warp's accumulator tile, resolved once before loops.
struct EpilogueRows {
  ValueVec rowPtr; ///< per (mt, half): &out[pair][colBase] (T*)
  ValueVec ok;     ///< per (mt, half): i1
  ValueVec weight; ///< per (mt, half): f32 routed weight (mul_routed_weight)
};

/// Rows of the warp tile starting at tile row `warpRow0`; out is
/// `outBase + pair*rowStride` (T elements).
EpilogueRows resolveEpilogueRows(TileBuilder &tb, const KernelArgs &args,
                                 const MoeBlock &block, int mTiles,
                                 Value warpRow0, Value outBase, Value rowStride,
                                 bool loadWeights);

/// Writes acc (warp tile) at columns colBase + accCol < colLimit of each row:
/// out = (add_inputs ? out : 0) + acc * (weight?).
void storeAccumulators(TileBuilder &tb, Accumulators &acc,
                       const EpilogueRows &rows, Value colBase, Value colLimit,
                       bool addInputs, bool mulWeight);

/// A program's rows x cols output tile staged through shared memory (specs
/// with stagesOutput()): the old values (add_inputs) are copied in by
/// cp.async ahead of use, like the GEMM operands, instead of one dependent
/// global round trip per element after the math; the results are written
/// back to the tile and leave in 16-byte row chunks. The shared tile is
/// rows x pitch elements.
struct StagedOutput {
  TileCopyPlan rowChunks; ///< the tile as 8-element chunks of output rows
  /// KernelSpec::bulksOutput: instead of chunks, whole rows by bulk copies.
  std::optional<BulkRowPlan> bulkRows;
  int rows = 0, cols = 0, pitch = 0;
  int bytes() const { return rows * pitch * kElementBytes; }
};

/// Plans the tile over output rows `outBase + pair*rowStride` of the block's
/// pairs (invalid rows are never written).
StagedOutput planStagedOutput(TileBuilder &tb, const MoeBlock &block, int rows,
                              int cols, Value outBase, Value rowStride);

/// Issues the cp.async copies of the old values of output columns colStart..
/// (< colLimit) into `smemTile`; the caller commits and waits. With bulk
/// rows the copies complete on the stage's mbarrier `bar` (threads() arrivals
/// per phase: every thread arrives, with the bytes of its rows).
void loadStagedOutput(TileBuilder &tb, const StagedOutput &out, Value smemTile,
                      Value colStart, Value colLimit, Value bar = Value());

/// out = (addInputs ? old : 0) + acc * (mulWeight ? weight : 1): each warp
/// combines its accumulator tile (at warpRow0, warpCol0 of the block tile)
/// with the old values in `smemTile`, then, after a barrier that every
/// thread of the block must reach, all threads store the valid rows'
/// columns colStart.. < colLimit. `rows` supplies the routed weights.
void storeStagedOutput(TileBuilder &tb, Accumulators &acc,
                       const EpilogueRows &rows, const StagedOutput &out,
                       Value smemTile, Value warpRow0, Value warpCol0,
                       Value colStart, Value colLimit, bool addInputs,
                       bool mulWeight);

} // namespace moelora

#endif // MOELORA_CODEGEN_MOEBLOCK_H
