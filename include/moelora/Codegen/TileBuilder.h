//===- TileBuilder.h - The shared tile layer of all kernel builders -*- C++
//-*-===//
//
// Everything a kernel builder needs below the level of "tiles and loops":
// scalar arithmetic on i32/i64, thread and block ids, global and shared
// memory access, masked + clamped cp.async tile copies (padded or wgmma's
// 128-byte swizzle), a software-pipelined loop skeleton, ldmatrix fragments,
// mma.sync m16n8k16, sm_90a warpgroup MMA from shared tiles and epilogue
// stores.
// Kernel builders (lib/Codegen/Kernels) describe tiles with it and never spell
// NVVM operations or index arithmetic that another builder also needs.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_CODEGEN_TILEBUILDER_H
#define MOELORA_CODEGEN_TILEBUILDER_H

#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/KernelSpec.h"
#include "moelora/Spec/TileBytes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Value.h"
#include "llvm/ADT/SmallVector.h"

#include <array>
#include <functional>

namespace moelora {

using mlir::Value;
using ValueVec = llvm::SmallVector<Value>;

/// Per-warp accumulators of an (mTiles*16) x (nTiles*8) block: 4 f32 values
/// per m16n8 tile, in mma.sync's C layout. Index: (mt * nTiles + nt) * 4 + i.
struct Accumulators {
  int mTiles = 0, nTiles = 0;
  ValueVec values;
  Value &at(int mt, int nt, int i) {
    return values[(mt * nTiles + nt) * 4 + i];
  }
  /// The n8 tiles [nt0, nt0 + count) of every row tile, as their own
  /// accumulators (fuse_slices keeps the slices side by side along N).
  Accumulators columns(int nt0, int count) const {
    Accumulators sub;
    sub.mTiles = mTiles;
    sub.nTiles = count;
    for (int mt = 0; mt < mTiles; ++mt)
      for (int nt = nt0; nt < nt0 + count; ++nt)
        for (int i = 0; i < 4; ++i)
          sub.values.push_back(values[(mt * nTiles + nt) * 4 + i]);
    return sub;
  }
  /// Writes `sub` back as tiles [nt0, nt0 + sub.nTiles) (see columns()).
  void setColumns(int nt0, Accumulators &sub) {
    for (int mt = 0; mt < mTiles; ++mt)
      for (int nt = 0; nt < sub.nTiles; ++nt)
        for (int i = 0; i < 4; ++i)
          at(mt, nt0 + nt, i) = sub.at(mt, nt, i);
  }
};

/// How a tile's rows map to global memory. Rows that are not valid read
/// zeros; their address is clamped to a valid row so no byte outside the
/// operand is ever touched.
struct TileRows {
  /// Pointer (!llvm.ptr<1> to T) of element (row, 0), for a row index in
  /// [0, rows) of the tile; must already be clamped for invalid rows.
  std::function<Value(Value row)> rowBase;
  /// i1: whether the row holds data (null = all valid).
  std::function<Value(Value row)> rowValid;
};

/// A global -> shared copy of a rows x cols tile of T in vecElems chunks,
/// spread over all threads. Planned once outside the loop that issues it,
/// so row addresses and masks are computed once per thread, not per step.
struct TileCopyPlan {
  struct Chunk {
    int first = 0;        ///< chunk index = the thread's index + first
    bool guarded = false; ///< the last round: not every thread has a chunk
    Value rowPtr;         ///< &src[row][0], clamped for invalid rows
    Value rowValid;       ///< i1
    Value row;            ///< i32 tile row (read from the plan's rowTable)
    Value smemIndex;      ///< element offset of the chunk in the tile
    Value colInTile;      ///< i32 column of the chunk in the tile
  };
  int vecElems = 8; ///< elements per cp.async (8, 4 or 2: 16, 8 or 4 bytes)
  int totalChunks = 0;
  Value thread;   ///< i32 index of this thread among the copying threads
  Value rowTable; ///< CopyThreads::rowTable: chunks read their row there
  llvm::SmallVector<Chunk> chunks;
};

/// A rows x cols tile whose rows move whole, one bulk copy (cp.async.bulk)
/// per row, issued by the row's owner thread (row = thread + k * threads):
/// rows are contiguous in global memory and, at a 16-byte aligned pitch, in
/// the shared tile. Planned once outside the loop that issues it.
struct BulkRowPlan {
  struct Row {
    Value row;    ///< i32 tile row (row 0 for a thread past the tile)
    Value valid;  ///< i1: in the tile and holding data
    Value rowPtr; ///< &src[row][0], clamped for invalid rows
  };
  llvm::SmallVector<Row> rows; ///< this thread's
  int pitch = 0;               ///< shared tile pitch (elements)
};

/// The threads that copy a tile: `count` of them, this one at `index`
/// (count 0: all of the spec's threads, at threadId); chunks go to them in
/// row-major order. With `rowTable` (8 bytes per tile row in shared
/// memory; only for one warp's lanes), planTileCopy first writes the rows'
/// addresses there (TileBuilder::writeRowTable) and each chunk reads its
/// row's when it is issued, so that no thread holds row addresses between
/// stages.
struct CopyThreads {
  int count = 0;
  Value index;
  Value rowTable;
};

/// How a shared tile is laid out.
enum class SharedTileLayout {
  /// [row][col] with a padded pitch (ldmatrix rows in different banks).
  Padded,
  /// wgmma's 128-byte swizzle: 64-column atoms one after another
  /// ([cols / 64][rows][64]), each 128-byte row's 16-byte chunks permuted by
  /// XOR with row % 8. A tile must start 1024-byte aligned.
  Swizzled128,
};

/// A warp's place in a WarpGrid: row tile wm (of warpsM), share wn (of
/// warpsN).
struct WarpCoords {
  Value wm, wn;
};

/// Software pipeline of global->shared copies over `count` iterations with
/// `stages` shared buffers (Triton's num_stages): iteration i's copies are
/// issued stages-1 iterations ahead of its use.
struct PipelineLoop {
  int stages = 1;
  Value count; ///< i32 number of iterations (may be 0)
  /// Issue the cp.async copies of iteration `iter` into buffer `stage`.
  std::function<void(Value iter, Value stage)> issue;
  /// Use buffer `stage` of iteration `iter`; returns the new loop-carried
  /// values.
  std::function<ValueVec(Value iter, Value stage, mlir::ValueRange carried)>
      consume;
  /// The consumer reads the buffers through the async proxy (wgmma): the
  /// copies are fenced into it before the barrier that publishes them.
  bool asyncProxyReads = false;
  /// Bulk tensor copies fill part of each stage: `stages` mbarriers
  /// (8 bytes each) at this shared address, which pipelined() initialises,
  /// the issue of a stage arriving on its own (TileBuilder::stageBarrier)
  /// with the bytes it copies. Every thread waits for the stage's phase
  /// before the barrier that publishes it.
  Value stageBarriers;
  /// Arrivals that complete a phase of each stage barrier (1: the issuing
  /// thread's arrive with the stage's bytes; more where several threads
  /// issue bulk copies into a stage, each arriving with its own bytes).
  int stageArrivals = 1;
  /// The loop may run again (once per call of its builder): the stage
  /// barriers are invalidated after it, since initialising a valid mbarrier
  /// is undefined.
  bool releaseStageBarriers = false;
  /// Stages are written through the async proxy (bulk copies): every thread
  /// fences its earlier generic accesses to shared memory before the first
  /// issue, since the stages reuse bytes of earlier phases.
  bool asyncProxyWrites = false;
  /// Called by every thread before the block barrier after which the stage
  /// consumed last is refilled, and before the loop's last barrier: e.g.
  /// waits until this thread's bulk stores have read the stage.
  std::function<void()> beforeReuse;
  /// Warp specialisation (KernelSpec::producerWarp): the warp after the
  /// spec's num_warps runs every issue() and then exits; the others run
  /// every consume() and never issue. stageBarriers then holds 2 * stages
  /// mbarriers: "full" ones, on which the producer's 32 lanes arrive when
  /// their cp.async land (plus fullExtraArrivals more arrivals per phase,
  /// e.g. a bulk copy's expect-tx arrive), then "empty" ones, on which each
  /// consumer warp arrives when its MMAs are done with the stage.
  bool producerWarp = false;
  int fullExtraArrivals = 0;
  /// With a producer warp: called once in it before its first issue(), to
  /// plan its copies there (the consumers never hold their addresses).
  std::function<void()> prepareIssue;
  /// The prologue (iterations 0 .. stages-2) was issued before the loop,
  /// by TileBuilder::issuePipelinePrologue, with no cp.async group
  /// committed in between.
  bool prologueIssued = false;
};

class TileBuilder {
public:
  TileBuilder(mlir::OpBuilder &builder, mlir::Location loc,
              const KernelSpec &spec);

  mlir::OpBuilder &builder() { return b; }
  mlir::Location loc() const { return location; }
  const KernelSpec &spec() const { return kernelSpec; }

  // ---- Types ----
  mlir::Type i1Type();
  mlir::Type i32Type();
  mlir::Type i64Type();
  mlir::Type f32Type();
  mlir::Type elementType(); ///< T (bf16 or f16)
  mlir::Type globalPtrType();
  mlir::Type sharedPtrType();
  mlir::Type vectorType(mlir::Type elem, int n);

  // ---- Scalars (i32 unless stated) ----
  Value i32(int64_t v);
  Value i64(int64_t v);
  Value f32(double v);
  Value boolean(bool v);
  Value add(Value a, Value b);
  Value sub(Value a, Value b);
  Value mul(Value a, Value b);
  Value divU(Value a, Value b);
  Value remU(Value a, Value b);
  Value divS(Value a, Value b);
  Value minS(Value a, Value b);
  Value maxS(Value a, Value b);
  Value ceilDiv(Value a, Value b);
  Value eq(Value a, Value b);
  Value ne(Value a, Value b);
  Value lt(Value a, Value b); ///< signed
  Value le(Value a, Value b);
  Value ge(Value a, Value b);
  Value land(Value a, Value b);
  Value lor(Value a, Value b);
  Value lnot(Value a);
  Value select(Value c, Value a, Value b);
  Value toI64(Value v); ///< sign-extends i32
  Value fadd(Value a, Value b);
  Value fmul(Value a, Value b);

  // ---- Ids ----
  Value threadId();
  Value blockId(int dim);
  Value gridDim(int dim);
  Value laneId();
  Value warpId();
  /// This warp's (wm, wn) in `grid`. mma.sync builders put consecutive warps
  /// side by side along N; for warpgroup MMA the four warps of a hardware
  /// warpgroup (warps 4g .. 4g + 3) must hold consecutive row tiles of one
  /// share, so there wm varies fastest (grid.warpsM a multiple of 4).
  WarpCoords warpCoords(const WarpGrid &grid, bool warpgroups);
  /// The warp at (wm, wn) in `grid`: warpCoords' inverse, for code that
  /// names a warp statically.
  static int warpAt(const WarpGrid &grid, bool warpgroups, int wm, int wn);
  // Thread-block clusters (sm_90): this block's rank in its cluster, the
  // cluster's index in the grid (x) and the number of clusters (x).
  Value clusterRank();
  Value clusterIndex();
  Value numClusters();

  // ---- Memory ----
  /// &base[index] for an element type; index i32 or i64.
  Value gep(Value base, Value index, mlir::Type elem);
  Value load(mlir::Type type, Value ptr);
  void store(Value value, Value ptr);
  /// base[index] of an i32 array in global memory.
  Value loadI32(Value base, Value index);
  /// A load issued where it is built: a relaxed gpu-scope load, which
  /// LLVM does not sink into the branch that uses it, as it does plain
  /// loads (for loads meant to go out before a block's early-exit test).
  Value loadInPlace(mlir::Type type, Value ptr);
  /// prefetch.global.L1: brings the line holding global address `ptr` into
  /// this SM's L1 (and L2), for a load that comes later.
  void prefetchToL1(Value ptr);
  /// Loads a device pointer stored in a global array of pointers.
  Value loadPtr(Value base, Value index);
  /// The kernel's dynamic shared memory (byte address) plus an offset.
  Value shared(int64_t byteOffset = 0);
  Value sharedOffset(Value sharedBase, Value byteOffset);

  /// Loads `elems` contiguous T values (one vector access of elems*2 bytes,
  /// which must be aligned to that) and widens them to f32.
  ValueVec loadElementsAsF32(Value ptr, int elems);
  /// The two halves of loadElementsAsF32: the vector load (issue it early:
  /// it stays in flight until first use) and the widening.
  Value loadElements(Value ptr, int elems);
  ValueVec widenToF32(Value vec, int elems);
  /// f32 values rounded to T and packed into one vector<n x T>.
  Value packElements(llvm::ArrayRef<Value> f32s);
  /// Stores a vector<n x T> as one access (aligned to its size).
  void storeElements(Value vec, Value ptr);
  /// A vector of the given scalars (all of one type), and back.
  Value vectorOf(llvm::ArrayRef<Value> scalars);
  ValueVec scalarsOf(Value vec);
  /// Sum of an f32 over each aligned group of `lanes` lanes of a warp
  /// (butterfly shuffles; `lanes` a power of two <= 32): every lane of a
  /// group gets its group's sum.
  Value warpSum(Value v, int lanes = 32);
  /// The i32 `v` of lane `srcLane` (shfl.sync.idx over the full warp).
  Value shuffleIdx(Value v, Value srcLane);
  /// bar.warp.sync over all lanes: orders shared-memory accesses in a warp.
  void syncWarp();
  /// Atomic *ptr += v on an i32 (any address space).
  void atomicAddI32(Value ptr, Value v);

  // ---- Control flow ----
  void ifThen(Value cond, const std::function<void()> &then);
  void ifThenElse(Value cond, const std::function<void()> &then,
                  const std::function<void()> &otherwise);
  /// scf.for over i32 [lb, ub) step; `body` returns the yielded values.
  ValueVec
  forLoop(Value lb, Value ub, Value step, mlir::ValueRange init,
          const std::function<ValueVec(Value iv, mlir::ValueRange)> &body);
  void barrier();
  /// A block barrier (bar.red.or) that answers, in every thread, whether
  /// `pred` (i1) held in any thread.
  Value barrierAny(Value pred);
  /// barrier.cluster.arrive (release) + wait (acquire), aligned: every
  /// thread of every block of the cluster must reach it.
  void clusterBarrier();
  /// barrier.cluster.arrive.relaxed + wait: only that every block got here.
  /// It guards a block's shared memory against reuse or exit while peers
  /// read it only if every peer has used every value it read (a store or
  /// arithmetic executed before its arrive): a read whose value feeds only a
  /// store that a predicate skips may still be in flight (the shrink's
  /// rank 0 faulted so). Cheaper than clusterBarrier() where it is safe: a
  /// release arrive first waits for all of the thread's earlier memory
  /// operations, its global stores included (ncu: a tenth of a decode
  /// cluster kernel's warp samples sat there).
  void clusterBarrierRelaxed();
  /// This block's shared address `sharedPtr` in the shared memory of
  /// cluster block `rank` (mapa; a shared::cluster pointer, which byte
  /// offsets move within that block's shared memory).
  Value inClusterBlock(Value sharedPtr, Value rank);
  /// Loads a `type` at this block's shared address `sharedPtr` in the shared
  /// memory of cluster block `rank` (mapa + ld.shared::cluster).
  Value loadFromClusterBlock(mlir::Type type, Value sharedPtr, Value rank);
  /// The `type` (f32 or a vector of f32) at `sharedPtr` summed over cluster
  /// blocks 0..blocks-1, in rank order so that every block gets the same
  /// bits; one f32 per element.
  ValueVec sumOverCluster(mlir::Type type, Value sharedPtr, int blocks);

  // ---- Tiles ----
  /// Plans the copy of a rows x cols tile (cols a multiple of vecElems)
  /// into a shared tile of row pitch `pitch` elements, by `threads`.
  TileCopyPlan planTileCopy(int rows, int cols, int vecElems, int pitch,
                            const TileRows &source,
                            SharedTileLayout layout = SharedTileLayout::Padded,
                            CopyThreads threads = {});
  /// Writes the address and validity of `rows` tile rows of `source` into
  /// the shared row table at `table` (8 bytes a row: the address, its bit 0
  /// set for an invalid row), spread over `copiers` (one warp's lanes),
  /// which then sync (bar.warp.sync) before they read it.
  void writeRowTable(Value table, int rows, const TileRows &source,
                     CopyThreads copiers);
  /// Plans the bulk row copies of a `rows`-row tile of pitch `pitch` (a
  /// multiple of 8) over the spec's threads.
  BulkRowPlan planBulkRows(int rows, int pitch, const TileRows &source);
  /// The bytes this thread's valid rows move at `rowBytes` (i32) each: what
  /// it announces on a stage barrier before issuing them.
  Value bulkRowBytes(const BulkRowPlan &plan, Value rowBytes);
  /// Copies `rowBytes` (a multiple of 16) of each of this thread's valid
  /// rows, from global column col0 into the shared tile (completing on the
  /// mbarrier `bar`), or (toGlobal) from the shared tile to global column
  /// col0 (in this thread's current bulk async-group).
  void issueBulkRows(const BulkRowPlan &plan, Value smemTile, Value col0,
                     Value rowBytes, Value bar, bool toGlobal = false);
  /// Issues the planned cp.async chunks for global columns starting at
  /// colStart into `smemTile`; columns >= colLimit (if given) read zeros.
  void issueTileCopy(const TileCopyPlan &plan, Value smemTile, Value colStart,
                     Value colLimit);
  /// One cp.async of `bytes` (4, 8 or 16) from global `src` to shared
  /// `smemDst`; `srcBytes` (i32, optional) bytes are read, the rest zeroed.
  void copyAsync(Value smemDst, Value src, int bytes, Value srcBytes = Value());
  void commitGroup();
  void waitGroup(int pending);
  /// Runs a PipelineLoop; returns the final carried values. Leaves all
  /// copies complete and the shared buffers free on exit. With a producer
  /// warp, only the consumers return (the producer exits).
  ValueVec pipelined(const PipelineLoop &loop, mlir::ValueRange init);
  /// Issues a PipelineLoop's prologue ahead of pipelined(), which then
  /// skips it (loop.prologueIssued): plain cp.async stages only (no stage
  /// barriers, no producer warp).
  void issuePipelinePrologue(const PipelineLoop &loop);
  /// i1: this thread is in the producer warp (KernelSpec::producerWarp:
  /// the warp after num_warps).
  Value inProducerWarp();
  /// The 32 lanes of the producer warp as copying threads.
  CopyThreads producerLanes();

  /// mma.sync A fragment (16x16) from a row-major shared tile [row][k] of
  /// row pitch `pitch`, or (swizzledRows > 0) from a Swizzled128 tile of
  /// that many rows (ldmatrix reads 16-byte rows, which the swizzle keeps
  /// whole).
  std::array<Value, 4> loadFragA(Value smemTile, int pitch, Value row0,
                                 Value k0, int swizzledRows = 0);
  /// mma.sync B fragments of two adjacent n8 tiles (16 n x k16) from a
  /// shared tile stored [n][k]: {b0,b1} of n0..n0+7 then of n0+8..n0+15.
  std::array<Value, 4> loadFragB2(Value smemTile, int pitch, Value n0,
                                  Value k0);
  /// B fragment of one n8 tile.
  std::array<Value, 2> loadFragB1(Value smemTile, int pitch, Value n0,
                                  Value k0);
  /// acc[0..3] += A(16x16) * B(16x8) on the tensor cores, fp32 accumulate.
  void mma(llvm::ArrayRef<Value> a, llvm::ArrayRef<Value> b,
           llvm::MutableArrayRef<Value> acc);
  /// acc += A[aRow0 + 16*mt.., k0 .. k0+16*kSteps) * B[bRow0 + 8*nt.., same
  /// k]^T with both operands in shared tiles ([row][k] layout).
  void mmaFromShared(Accumulators &acc, Value aTile, int aPitch, Value aRow0,
                     Value bTile, int bPitch, Value bRow0, Value k0,
                     int kSteps);
  /// Same with A already in registers: aFrags[mt * kSteps + ks].
  void mmaWithFragA(Accumulators &acc,
                    llvm::ArrayRef<std::array<Value, 4>> aFrags, int kSteps,
                    Value bTile, int bPitch, Value bRow0, Value k0);
  // ---- Warpgroup MMA (sm_90a) ----
  /// acc += A[rows of this warp's warpgroup, k0 .. k0 + 16 * kSteps) *
  /// B_j[bRow0 .. bRow0 + 8 * t, same k]^T, where acc holds bTiles.size()
  /// groups of t = acc.nTiles / bTiles.size() n8 tiles side by side (one per
  /// B_j: fused slices), on the warpgroup of this warp
  /// (wgmma.mma_async m64nNk16, fp32 accumulate). A and each Bi are
  /// Swizzled128 shared tiles of aRows / bRows rows (bRow0 a multiple of 8).
  /// warpRow0 is this warp's first row (a multiple of 16; its warpgroup's 64
  /// rows start at the 64-row boundary below it) and acc its 16 rows of the
  /// result (mTiles 1), whose layout per n8 tile is mma.sync's C layout.
  /// All four warps of the warpgroup must call it; it returns when the
  /// results are in the registers.
  void warpgroupMmaFromShared(Accumulators &acc, Value aTile, int aRows,
                              Value warpRow0, llvm::ArrayRef<Value> bTiles,
                              int bRows, Value bRow0, Value k0, int kSteps);
  /// The element pairs of `count` (2 or 4) m16n8 tiles' worth of a
  /// row-major [row][col] shared tile of pitch `pitch` (a multiple of 8),
  /// by one ldmatrix: n8 tiles at col0 (count 2) or col0 and col0 + 8
  /// (count 4), rows row0..row0+15. ldmatrix hands each lane the pair at row
  /// lane/4, columns 2*(lane%4) of each 8x8 matrix: the mma.sync C layout,
  /// so pairs[2 * t + half] is acc.at(., t, 2 * half .. 2 * half + 1) of
  /// the t-th n8 tile, as a vector of two T.
  ValueVec loadAccumulatorPairs(Value tile, int pitch, Value row0, Value col0,
                                int count);
  /// The inverse, by one stmatrix (sm_90): `pairs` as loadAccumulatorPairs
  /// returns them.
  void storeAccumulatorPairs(Value tile, int pitch, Value row0, Value col0,
                             llvm::ArrayRef<Value> pairs);
  /// Element index of (row, col) in a Swizzled128 tile of `rows` rows.
  Value swizzledIndex(int rows, Value row, Value col);
  /// The warp's accumulators (rows row0 + accRow, columns col0 + accCol)
  /// rounded to T into the Swizzled128 tile `tile` of `rows` rows, two
  /// columns per 4-byte store (conflict-free: the swizzle spreads a warp's
  /// eight rows over all banks).
  void storeAccumulatorsSwizzled(Accumulators &acc, Value tile, int rows,
                                 Value row0, int col0);
  /// fence.proxy.async.shared::cta: this thread's earlier writes to shared
  /// memory (cp.async included) become visible to the async proxy, which
  /// wgmma reads its shared operands through.
  void fenceAsyncShared();

  // ---- Bulk tensor copies (sm_90) ----
  /// Thread 0 initialises arrivals.size() mbarriers (8 bytes each from the
  /// shared address `bars`), barrier i completing a phase on arrivals[i]
  /// arrivals and its transaction bytes; a block barrier publishes them
  /// (pipelined() does it for a PipelineLoop's stageBarriers).
  void initStageBarriers(Value bars, llvm::ArrayRef<int> arrivals);
  /// The mbarrier `index` (i32) of initStageBarriers' array.
  Value stageBarrier(Value bars, Value index);
  /// Arrives on `bar` after adding `bytes` to the transaction bytes its
  /// current phase waits for (issue it before the copies it counts).
  void arriveExpectBytes(Value bar, int bytes);
  void arriveExpectBytes(Value bar, Value bytes);
  /// mbarrier.inval of `count` barriers of initStageBarriers' array (thread
  /// 0; after a block barrier past their last use), so that their memory
  /// may be initialised again.
  void invalidateStageBarriers(Value bars, int count);
  /// One cp.async.bulk of `bytes` (i32, a multiple of 16) from global
  /// `src` to shared `dst` (both 16-byte aligned), its bytes completing on
  /// the mbarrier `bar` (count them there first: arriveExpectBytes).
  void bulkCopyToShared(Value dst, Value src, Value bytes, Value bar);
  /// One cp.async.bulk of `bytes` from shared `src` to global `dst`, in
  /// this thread's current bulk async-group (bulkCommitGroup).
  void bulkCopyToGlobal(Value dst, Value src, Value bytes);
  void bulkCommitGroup();
  /// Waits until at most `pending` of this thread's committed bulk groups
  /// are still reading their shared sources.
  void bulkWaitRead(int pending);
  /// Waits until the phase of `bar` with parity `parity` (i32: 0 or 1) has
  /// completed; its copies are then visible to this thread.
  void waitBarrierPhase(Value bar, Value parity);
  /// One arrival on `bar` once this thread's earlier cp.async have landed
  /// (cp.async.mbarrier.arrive.noinc: counted in the barrier's arrivals).
  void arriveWhenCopiesLand(Value bar);
  /// One arrival on `bar` (release: this thread's earlier accesses first).
  void arrive(Value bar);
  /// Ends this thread (PTX exit): block barriers stop waiting for it.
  void exitThread();
  /// prefetch.tensormap: brings the tensor map at `map` (a TensorMap
  /// parameter's address) close to the copy engine ahead of its first use.
  void prefetchTensorMap(Value map);
  /// Copies a rows x cols Swizzled128 tile (cols a multiple of 64, rows <=
  /// 256, `smemTile` 1024-byte aligned) from a 4-d tensor through the
  /// tensor map at `map` (the generic address of a TensorMap parameter,
  /// encoded with a 64 x rows box and the 128-byte swizzle, which is the
  /// tile's layout): one box per 64 columns, from column col0 and the
  /// outer coordinates (row0, i2, i3), counted on `bar` (rows * cols * 2
  /// bytes). Elements outside the tensor arrive as zeros. Issued by the
  /// calling thread alone.
  void copySwizzledTensorTile(Value smemTile, int rows, int cols, Value map,
                              Value col0, llvm::ArrayRef<Value> outer,
                              Value bar);

  /// Sums the accumulators of `groups` warps that hold partial sums of the
  /// same rows (a K split across warps) through shared memory at `smem`
  /// (groups * tileRows * tileCols f32); afterwards every one of them holds
  /// the full sum. `rowBase` is the warp tile's first row in the block tile.
  void reduceAccumulators(Accumulators &acc, Value smem, int groups,
                          Value group, Value rowBase, int tileRows,
                          int tileCols);
  /// Zero accumulators for an mTiles x nTiles warp tile.
  Accumulators zeroAccumulators(int mTiles, int nTiles);
  /// The A operand of an mma (k16) from two adjacent n8 accumulator tiles
  /// (columns 16*j .. 16*j+15 of row tile mt), rounded to T: the C layout
  /// of m16n8 tiles 2j and 2j+1 is the A layout of a k16 step.
  std::array<Value, 4> accumulatorsToFragA(Accumulators &acc, int mt, int j);

  /// Row and column (within a warp tile) of accumulator element i of tile
  /// (mt, nt) for this lane: row = mt*16 + lane/4 + 8*(i/2),
  /// col = nt*8 + 2*(lane%4) + i%2.
  Value accRow(int mt, int i);
  Value accCol(int nt, int i);

  // ---- Epilogue ----
  /// Converts an f32 to T (round to nearest even).
  Value toElement(Value f);
  Value fromElement(Value t);
  /// out[ptr] = (addInputs ? out[ptr] : 0) + value, rounded once to T.
  void storeOutput(Value ptr, Value value, bool addInputs);

private:
  Value sreg(int kind, int dim);
  /// wgmma's shared memory descriptor of the 8-row groups from row0 on at
  /// column k (a multiple of 16) of a Swizzled128 tile of `rows` rows.
  Value swizzledTileDescriptor(Value tile, int rows, Value row0, Value k);
  mlir::OpBuilder &b;
  mlir::Location location;
  const KernelSpec &kernelSpec;
  Value sharedBaseValue;
  Value laneValue, warpValue, tidValue;
};

} // namespace moelora

#endif // MOELORA_CODEGEN_TILEBUILDER_H
