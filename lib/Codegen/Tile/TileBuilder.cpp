//===- TileBuilder.cpp - The shared tile layer ----------------------------===//

#include "moelora/Codegen/TileBuilder.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <cassert>

using namespace mlir;

namespace moelora {

namespace {
enum SregKind { kCtaid, kNctaid };
} // namespace

TileBuilder::TileBuilder(OpBuilder &builder, Location loc,
                         const KernelSpec &spec)
    : b(builder), location(loc), kernelSpec(spec) {
  // Ids and the shared base are made once at the entry, where they dominate
  // every region the builders open later.
  tidValue = NVVM::ThreadIdXOp::create(b, location, i32Type());
  laneValue = arith::AndIOp::create(b, location, tidValue, i32(31));
  warpValue = arith::ShRUIOp::create(b, location, tidValue, i32(5));
  sharedBaseValue = LLVM::AddressOfOp::create(b, location, sharedPtrType(),
                                              StringRef("moelora_smem"));
}

// ---- Types ----
Type TileBuilder::i1Type() { return b.getI1Type(); }
Type TileBuilder::i32Type() { return b.getI32Type(); }
Type TileBuilder::i64Type() { return b.getI64Type(); }
Type TileBuilder::f32Type() { return b.getF32Type(); }
Type TileBuilder::elementType() {
  return kernelSpec.dtype == DType::BF16 ? Type(b.getBF16Type())
                                         : Type(b.getF16Type());
}
Type TileBuilder::globalPtrType() {
  return LLVM::LLVMPointerType::get(b.getContext(), 1);
}
Type TileBuilder::sharedPtrType() {
  return LLVM::LLVMPointerType::get(b.getContext(), 3);
}
Type TileBuilder::vectorType(Type elem, int n) {
  return VectorType::get({n}, elem);
}

// ---- Scalars ----
Value TileBuilder::i32(int64_t v) {
  return arith::ConstantOp::create(b, location, b.getI32IntegerAttr(v));
}
Value TileBuilder::i64(int64_t v) {
  return arith::ConstantOp::create(b, location, b.getI64IntegerAttr(v));
}
Value TileBuilder::f32(double v) {
  return arith::ConstantOp::create(b, location, b.getF32FloatAttr(v));
}
Value TileBuilder::boolean(bool v) {
  return arith::ConstantOp::create(b, location, b.getBoolAttr(v));
}
Value TileBuilder::add(Value x, Value y) {
  return arith::AddIOp::create(b, location, x, y);
}
Value TileBuilder::sub(Value x, Value y) {
  return arith::SubIOp::create(b, location, x, y);
}
Value TileBuilder::mul(Value x, Value y) {
  return arith::MulIOp::create(b, location, x, y);
}
Value TileBuilder::divU(Value x, Value y) {
  return arith::DivUIOp::create(b, location, x, y);
}
Value TileBuilder::remU(Value x, Value y) {
  return arith::RemUIOp::create(b, location, x, y);
}
Value TileBuilder::divS(Value x, Value y) {
  return arith::DivSIOp::create(b, location, x, y);
}
Value TileBuilder::minS(Value x, Value y) {
  return arith::MinSIOp::create(b, location, x, y);
}
Value TileBuilder::maxS(Value x, Value y) {
  return arith::MaxSIOp::create(b, location, x, y);
}
Value TileBuilder::ceilDiv(Value x, Value y) {
  return divU(add(x, sub(y, i32(1))), y);
}
Value TileBuilder::eq(Value x, Value y) {
  return arith::CmpIOp::create(b, location, arith::CmpIPredicate::eq, x, y);
}
Value TileBuilder::ne(Value x, Value y) {
  return arith::CmpIOp::create(b, location, arith::CmpIPredicate::ne, x, y);
}
Value TileBuilder::lt(Value x, Value y) {
  return arith::CmpIOp::create(b, location, arith::CmpIPredicate::slt, x, y);
}
Value TileBuilder::le(Value x, Value y) {
  return arith::CmpIOp::create(b, location, arith::CmpIPredicate::sle, x, y);
}
Value TileBuilder::ge(Value x, Value y) {
  return arith::CmpIOp::create(b, location, arith::CmpIPredicate::sge, x, y);
}
Value TileBuilder::land(Value x, Value y) {
  return arith::AndIOp::create(b, location, x, y);
}
Value TileBuilder::lor(Value x, Value y) {
  return arith::OrIOp::create(b, location, x, y);
}
Value TileBuilder::lnot(Value x) {
  return arith::XOrIOp::create(b, location, x, boolean(true));
}
Value TileBuilder::select(Value c, Value x, Value y) {
  return arith::SelectOp::create(b, location, c, x, y);
}
Value TileBuilder::toI64(Value v) {
  if (v.getType().isInteger(64))
    return v;
  return arith::ExtSIOp::create(b, location, i64Type(), v);
}
Value TileBuilder::fadd(Value x, Value y) {
  return arith::AddFOp::create(b, location, x, y);
}
Value TileBuilder::fmul(Value x, Value y) {
  return arith::MulFOp::create(b, location, x, y);
}

// ---- Ids ----
Value TileBuilder::sreg(int kind, int dim) {
  Type t = i32Type();
  switch (kind * 3 + dim) {
  case kCtaid * 3 + 0:
    return NVVM::BlockIdXOp::create(b, location, t);
  case kCtaid * 3 + 1:
    return NVVM::BlockIdYOp::create(b, location, t);
  case kCtaid * 3 + 2:
    return NVVM::BlockIdZOp::create(b, location, t);
  case kNctaid * 3 + 0:
    return NVVM::GridDimXOp::create(b, location, t);
  case kNctaid * 3 + 1:
    return NVVM::GridDimYOp::create(b, location, t);
  default:
    return NVVM::GridDimZOp::create(b, location, t);
  }
}

Value TileBuilder::threadId() { return tidValue; }
Value TileBuilder::blockId(int dim) { return sreg(kCtaid, dim); }
Value TileBuilder::gridDim(int dim) { return sreg(kNctaid, dim); }
Value TileBuilder::laneId() { return laneValue; }
Value TileBuilder::clusterRank() {
  return NVVM::ClusterId::create(b, location, i32Type());
}
Value TileBuilder::clusterIndex() {
  return NVVM::ClusterIdXOp::create(b, location, i32Type());
}
Value TileBuilder::numClusters() {
  return NVVM::ClusterDimXOp::create(b, location, i32Type());
}
Value TileBuilder::warpId() { return warpValue; }

WarpCoords TileBuilder::warpCoords(const WarpGrid &grid, bool warpgroups) {
  assert((!warpgroups || grid.warpsM % 4 == 0) && "whole warpgroups along M");
  Value warp = warpId();
  if (warpgroups)
    return {remU(warp, i32(grid.warpsM)), divU(warp, i32(grid.warpsM))};
  return {divU(warp, i32(grid.warpsN)), remU(warp, i32(grid.warpsN))};
}

int TileBuilder::warpAt(const WarpGrid &grid, bool warpgroups, int wm, int wn) {
  return warpgroups ? wn * grid.warpsM + wm : wm * grid.warpsN + wn;
}

// ---- Memory ----
Value TileBuilder::gep(Value base, Value index, Type elem) {
  return LLVM::GEPOp::create(b, location, base.getType(), elem, base,
                             ValueRange{index});
}
Value TileBuilder::load(Type type, Value ptr) {
  return LLVM::LoadOp::create(b, location, type, ptr);
}
void TileBuilder::store(Value value, Value ptr) {
  LLVM::StoreOp::create(b, location, value, ptr);
}
Value TileBuilder::loadInPlace(Type type, Value ptr) {
  const unsigned bytes = mlir::isa<LLVM::LLVMPointerType>(type)
                             ? 8
                             : type.getIntOrFloatBitWidth() / 8;
  return LLVM::LoadOp::create(b, location, type, ptr, bytes,
                              /*isVolatile=*/false, /*isNonTemporal=*/false,
                              /*isInvariant=*/false, /*isInvariantGroup=*/false,
                              LLVM::AtomicOrdering::monotonic, "device");
}
Value TileBuilder::loadI32(Value base, Value index) {
  return load(i32Type(), gep(base, index, i32Type()));
}
Value TileBuilder::loadPtr(Value base, Value index) {
  return load(globalPtrType(), gep(base, index, globalPtrType()));
}
Value TileBuilder::shared(int64_t byteOffset) {
  if (byteOffset == 0)
    return sharedBaseValue;
  return gep(sharedBaseValue, i32(byteOffset), b.getI8Type());
}
Value TileBuilder::sharedOffset(Value base, Value byteOffset) {
  return gep(base, byteOffset, b.getI8Type());
}

ValueVec TileBuilder::loadElementsAsF32(Value ptr, int elems) {
  return widenToF32(loadElements(ptr, elems), elems);
}

Value TileBuilder::loadElements(Value ptr, int elems) {
  Type vecType = VectorType::get({elems}, elementType());
  return LLVM::LoadOp::create(b, location, vecType, ptr,
                              /*alignment=*/elems * kElementBytes);
}

Value TileBuilder::packElements(ArrayRef<Value> f32s) {
  const int n = static_cast<int>(f32s.size());
  Value v =
      LLVM::UndefOp::create(b, location, VectorType::get({n}, elementType()));
  for (int i = 0; i < n; ++i)
    v = LLVM::InsertElementOp::create(b, location, v, toElement(f32s[i]),
                                      i32(i));
  return v;
}

void TileBuilder::storeElements(Value vec, Value ptr) {
  const int n =
      static_cast<int>(cast<VectorType>(vec.getType()).getNumElements());
  LLVM::StoreOp::create(b, location, vec, ptr,
                        /*alignment=*/n * kElementBytes);
}

Value TileBuilder::vectorOf(ArrayRef<Value> scalars) {
  const int n = static_cast<int>(scalars.size());
  Value v = LLVM::UndefOp::create(
      b, location, VectorType::get({n}, scalars.front().getType()));
  for (int i = 0; i < n; ++i)
    v = LLVM::InsertElementOp::create(b, location, v, scalars[i], i32(i));
  return v;
}

ValueVec TileBuilder::scalarsOf(Value vec) {
  ValueVec out;
  const int n =
      static_cast<int>(cast<VectorType>(vec.getType()).getNumElements());
  for (int i = 0; i < n; ++i)
    out.push_back(LLVM::ExtractElementOp::create(b, location, vec, i32(i)));
  return out;
}

ValueVec TileBuilder::widenToF32(Value v, int elems) {
  ValueVec out;
  for (int i = 0; i < elems; ++i)
    out.push_back(
        fromElement(LLVM::ExtractElementOp::create(b, location, v, i32(i))));
  return out;
}

Value TileBuilder::warpSum(Value v, int lanes) {
  assert(lanes >= 1 && lanes <= 32 && (lanes & (lanes - 1)) == 0);
  for (int offset = lanes / 2; offset > 0; offset /= 2) {
    Value other = NVVM::ShflOp::create(
        b, location, f32Type(), i32(-1), v, i32(offset), i32(31),
        NVVM::ShflKindAttr::get(b.getContext(), NVVM::ShflKind::bfly),
        UnitAttr());
    v = fadd(v, other);
  }
  return v;
}

Value TileBuilder::shuffleIdx(Value v, Value srcLane) {
  return NVVM::ShflOp::create(
      b, location, i32Type(), i32(-1), v, srcLane, i32(31),
      NVVM::ShflKindAttr::get(b.getContext(), NVVM::ShflKind::idx), UnitAttr());
}

void TileBuilder::syncWarp() { NVVM::SyncWarpOp::create(b, location, i32(-1)); }

void TileBuilder::atomicAddI32(Value ptr, Value v) {
  LLVM::AtomicRMWOp::create(b, location, LLVM::AtomicBinOp::add, ptr, v,
                            LLVM::AtomicOrdering::monotonic);
}

// ---- Control flow ----
void TileBuilder::ifThen(Value cond, const std::function<void()> &then) {
  auto ifOp = scf::IfOp::create(b, location, cond, /*withElseRegion=*/false);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  // Values cached outside the region stay valid (they dominate it).
  then();
}

void TileBuilder::ifThenElse(Value cond, const std::function<void()> &then,
                             const std::function<void()> &otherwise) {
  auto ifOp = scf::IfOp::create(b, location, cond, /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&ifOp.getThenRegion().front());
  then();
  b.setInsertionPointToStart(&ifOp.getElseRegion().front());
  otherwise();
}

ValueVec
TileBuilder::forLoop(Value lb, Value ub, Value step, ValueRange init,
                     const std::function<ValueVec(Value, ValueRange)> &body) {
  auto forOp = scf::ForOp::create(
      b, location, lb, ub, step, init,
      [&](OpBuilder &nested, Location loc, Value iv, ValueRange args) {
        ValueVec yielded = body(iv, args);
        scf::YieldOp::create(nested, loc, yielded);
      });
  return ValueVec(forOp.getResults().begin(), forOp.getResults().end());
}

void TileBuilder::barrier() { NVVM::Barrier0Op::create(b, location); }

Value TileBuilder::barrierAny(Value pred) {
  auto any = NVVM::BarrierOp::create(
      b, location, i32Type(), /*barrierId=*/Value(),
      /*numberOfThreads=*/Value(),
      NVVM::BarrierReductionAttr::get(b.getContext(),
                                      NVVM::BarrierReduction::OR),
      arith::ExtUIOp::create(b, location, i32Type(), pred));
  return ne(any.getRes(), i32(0));
}

void TileBuilder::clusterBarrier() {
  NVVM::ClusterArriveOp::create(b, location, b.getUnitAttr());
  NVVM::ClusterWaitOp::create(b, location, b.getUnitAttr());
}
void TileBuilder::clusterBarrierRelaxed() {
  NVVM::ClusterArriveRelaxedOp::create(b, location, b.getUnitAttr());
  NVVM::ClusterWaitOp::create(b, location, b.getUnitAttr());
}

Value TileBuilder::inClusterBlock(Value sharedPtr, Value rank) {
  // Address space 7: shared::cluster.
  auto clusterPtr = LLVM::LLVMPointerType::get(b.getContext(), 7);
  return NVVM::MapaOp::create(b, location, clusterPtr, sharedPtr, rank);
}

Value TileBuilder::loadFromClusterBlock(Type type, Value sharedPtr,
                                        Value rank) {
  return load(type, inClusterBlock(sharedPtr, rank));
}

ValueVec TileBuilder::sumOverCluster(Type type, Value sharedPtr, int blocks) {
  auto vec = dyn_cast<VectorType>(type);
  ValueVec sum(vec ? vec.getNumElements() : 1, f32(0.0));
  for (int c = 0; c < blocks; ++c) {
    Value v = loadFromClusterBlock(type, sharedPtr, i32(c));
    ValueVec parts = vec ? scalarsOf(v) : ValueVec{v};
    for (size_t i = 0; i < sum.size(); ++i)
      sum[i] = fadd(sum[i], parts[i]);
  }
  return sum;
}

// ---- Tiles ----
BulkRowPlan TileBuilder::planBulkRows(int rows, int pitch,
                                      const TileRows &source) {
  assert(pitch % 8 == 0 && "bulk copies need 16-byte aligned rows");
  BulkRowPlan plan;
  plan.pitch = pitch;
  const int threads = kernelSpec.threads();
  for (int first = 0; first < rows; first += threads) {
    BulkRowPlan::Row r;
    Value row = add(threadId(), i32(first));
    Value inTile = first + threads <= rows ? boolean(true) : lt(row, i32(rows));
    // Threads past the tile stand in for row 0 and own nothing.
    r.row = select(inTile, row, i32(0));
    r.valid = source.rowValid ? land(inTile, source.rowValid(r.row)) : inTile;
    r.rowPtr = source.rowBase(r.row);
    plan.rows.push_back(r);
  }
  return plan;
}

Value TileBuilder::bulkRowBytes(const BulkRowPlan &plan, Value rowBytes) {
  Value bytes = i32(0);
  for (const BulkRowPlan::Row &r : plan.rows)
    bytes = add(bytes, select(r.valid, rowBytes, i32(0)));
  return bytes;
}

void TileBuilder::issueBulkRows(const BulkRowPlan &plan, Value smemTile,
                                Value col0, Value rowBytes, Value bar,
                                bool toGlobal) {
  assert((toGlobal || bar) && "copies into shared memory complete on bar");
  for (const BulkRowPlan::Row &r : plan.rows)
    ifThen(land(r.valid, lt(i32(0), rowBytes)), [&] {
      Value shared = gep(smemTile, mul(r.row, i32(plan.pitch)), elementType());
      Value global = gep(r.rowPtr, col0, elementType());
      if (toGlobal)
        bulkCopyToGlobal(global, shared, rowBytes);
      else
        bulkCopyToShared(shared, global, rowBytes, bar);
    });
}

TileCopyPlan TileBuilder::planTileCopy(int rows, int cols, int vecElems,
                                       int pitch, const TileRows &source,
                                       SharedTileLayout layout,
                                       CopyThreads copiers) {
  assert((layout == SharedTileLayout::Padded ||
          (vecElems == 8 && cols % 64 == 0)) &&
         "a swizzled tile is copied in 16-byte chunks of 64-column atoms");
  TileCopyPlan plan;
  plan.vecElems = vecElems;
  const int chunksPerRow = cols / vecElems;
  const int total = rows * chunksPerRow;
  const int threads = copiers.count ? copiers.count : kernelSpec.threads();
  plan.thread = copiers.count ? copiers.index : threadId();
  plan.rowTable = copiers.rowTable;
  if (plan.rowTable)
    writeRowTable(plan.rowTable, rows, source, copiers);
  plan.totalChunks = total;
  auto smemIndex = [&](Value row, Value col) -> Value {
    if (layout == SharedTileLayout::Padded)
      return add(mul(row, i32(pitch)), col);
    return swizzledIndex(rows, row, col);
  };
  for (int first = 0; first < total; first += threads) {
    TileCopyPlan::Chunk c;
    c.first = first;
    c.guarded = first + threads > total;
    Value chunk = add(plan.thread, i32(first));
    if (c.guarded) // keep the row index in range for the address math
      chunk = minS(chunk, i32(total - 1));
    Value row = divU(chunk, i32(chunksPerRow));
    c.colInTile = mul(remU(chunk, i32(chunksPerRow)), i32(vecElems));
    if (copiers.rowTable) {
      c.row = row;
    } else {
      c.rowPtr = source.rowBase(row);
      c.rowValid = source.rowValid ? source.rowValid(row) : boolean(true);
    }
    c.smemIndex = smemIndex(row, c.colInTile);
    plan.chunks.push_back(c);
  }
  return plan;
}

void TileBuilder::copyAsync(Value smemDst, Value src, int bytes,
                            Value srcBytes) {
  // 16-byte copies bypass L1 (.cg); smaller ones may only use .ca.
  auto modifier = bytes == 16 ? NVVM::LoadCacheModifierKind::CG
                              : NVVM::LoadCacheModifierKind::CA;
  NVVM::CpAsyncOp::create(b, location, smemDst, src, bytes, modifier, srcBytes);
}

void TileBuilder::writeRowTable(Value table, int rows, const TileRows &source,
                                CopyThreads copiers) {
  // One warp's lanes: a warp sync publishes the table to them.
  assert(copiers.count == 32 && "a row table is one warp's");
  const int threads = copiers.count;
  for (int row0 = 0; row0 < rows; row0 += threads) {
    auto write = [&] {
      Value row = add(copiers.index, i32(row0));
      Value bits =
          LLVM::PtrToIntOp::create(b, location, i64Type(), source.rowBase(row));
      if (source.rowValid)
        bits = arith::OrIOp::create(
            b, location, bits,
            arith::ExtUIOp::create(b, location, i64Type(),
                                   lnot(source.rowValid(row))));
      store(bits, gep(table, row, i64Type()));
    };
    if (row0 + threads > rows)
      ifThen(lt(add(copiers.index, i32(row0)), i32(rows)), write);
    else
      write();
  }
  syncWarp();
}

void TileBuilder::issueTileCopy(const TileCopyPlan &plan, Value smemTile,
                                Value colStart, Value colLimit) {
  const int bytes = plan.vecElems * kElementBytes;
  Type elem = elementType();
  for (const TileCopyPlan::Chunk &c : plan.chunks) {
    auto emit = [&] {
      Value col = add(colStart, c.colInTile);
      Value valid = c.rowValid;
      Value rowPtr = c.rowPtr;
      if (plan.rowTable) {
        // Bit 0 marks an invalid row; the address is then a valid row's.
        Value bits = load(i64Type(), gep(plan.rowTable, c.row, i64Type()));
        valid = eq(arith::AndIOp::create(b, location, bits, i64(1)), i64(0));
        Value address =
            arith::AndIOp::create(b, location, bits, i64(~int64_t(1)));
        rowPtr =
            LLVM::IntToPtrOp::create(b, location, globalPtrType(), address);
      }
      Value srcBytes = i32(bytes);
      if (colLimit) {
        // Bytes left in the row at this column, clamped to [0, bytes].
        Value left = mul(sub(colLimit, col), i32(kElementBytes));
        srcBytes = minS(maxS(left, i32(0)), i32(bytes));
        valid = land(valid, lt(col, colLimit));
      }
      srcBytes = select(valid, srcBytes, i32(0));
      // Masked chunks still need a mapped address: column 0 of a valid row.
      Value safeCol = select(valid, col, i32(0));
      Value src = gep(rowPtr, safeCol, elem);
      copyAsync(gep(smemTile, c.smemIndex, elem), src, bytes, srcBytes);
    };
    if (c.guarded)
      ifThen(lt(add(plan.thread, i32(c.first)), i32(plan.totalChunks)), emit);
    else
      emit();
  }
}

void TileBuilder::commitGroup() {
  NVVM::CpAsyncCommitGroupOp::create(b, location);
}
void TileBuilder::waitGroup(int pending) {
  NVVM::CpAsyncWaitGroupOp::create(b, location, pending);
}

Value TileBuilder::inProducerWarp() {
  return eq(warpId(), i32(kernelSpec.numWarps));
}

CopyThreads TileBuilder::producerLanes() { return {32, laneId(), Value()}; }

/// The warp-specialised pipeline: see PipelineLoop::producerWarp.
static ValueVec pipelinedWithProducer(TileBuilder &tb, const PipelineLoop &loop,
                                      ValueRange init) {
  const int stages = loop.stages;
  const int consumerWarps = tb.spec().numWarps;
  Value full = loop.stageBarriers;
  Value empty = tb.stageBarrier(full, tb.i32(stages));
  SmallVector<int> arrivals(stages, 32 + loop.fullExtraArrivals);
  arrivals.append(stages, consumerWarps);
  tb.initStageBarriers(full, arrivals);
  // A stage's barriers complete one phase per use: iteration i waits for
  // phase i / stages of `full`, and (i >= stages) for phase i / stages - 1
  // of `empty`, the consumers' release of the previous use.
  auto parity = [&](Value use) { return tb.remU(use, tb.i32(2)); };
  tb.ifThen(tb.inProducerWarp(), [&] {
    if (loop.prepareIssue)
      loop.prepareIssue();
    tb.forLoop(tb.i32(0), loop.count, tb.i32(1), {},
               [&](Value iter, ValueRange) {
                 Value stage = tb.remU(iter, tb.i32(stages));
                 Value use = tb.divU(iter, tb.i32(stages));
                 tb.ifThen(tb.ge(iter, tb.i32(stages)), [&] {
                   tb.waitBarrierPhase(tb.stageBarrier(empty, stage),
                                       parity(tb.add(use, tb.i32(1))));
                 });
                 loop.issue(iter, stage);
                 tb.arriveWhenCopiesLand(tb.stageBarrier(full, stage));
                 return ValueVec{};
               });
    // Nothing is left to issue: the consumers' block barriers from here on
    // stop waiting for this warp once it has exited. Its copies (and their
    // arrivals) land first: wait_group counts committed groups only.
    tb.commitGroup();
    tb.waitGroup(0);
    tb.exitThread();
  });
  ValueVec result =
      tb.forLoop(tb.i32(0), loop.count, tb.i32(1), init,
                 [&](Value iter, ValueRange carried) {
                   Value stage = tb.remU(iter, tb.i32(stages));
                   tb.waitBarrierPhase(tb.stageBarrier(full, stage),
                                       parity(tb.divU(iter, tb.i32(stages))));
                   // The producer's cp.async wrote through the generic proxy.
                   if (loop.asyncProxyReads)
                     tb.fenceAsyncShared();
                   ValueVec out = loop.consume(iter, stage, carried);
                   // consume() has waited for its MMAs: the warp is done with
                   // the stage.
                   tb.ifThen(tb.eq(tb.laneId(), tb.i32(0)),
                             [&] { tb.arrive(tb.stageBarrier(empty, stage)); });
                   return out;
                 });
  // The buffers are reused after this: every consumer is done with them.
  tb.barrier();
  return result;
}

void TileBuilder::issuePipelinePrologue(const PipelineLoop &loop) {
  assert(!loop.producerWarp && "the producer warp issues its own stages");
  if (loop.stages <= 1)
    return;
  // Iterations 0 .. stages-2 in flight. Every step commits a group
  // (possibly empty) so that wait_group counts stay uniform. A loop, not an
  // unrolled prologue: one copy of the issue code less to optimise and
  // emit, at no cost on the GPU.
  forLoop(i32(0), i32(loop.stages - 1), i32(1), {}, [&](Value s, ValueRange) {
    ifThen(lt(s, loop.count), [&] { loop.issue(s, s); });
    commitGroup();
    return ValueVec{};
  });
}

ValueVec TileBuilder::pipelined(const PipelineLoop &loop, ValueRange init) {
  const int stages = loop.stages;
  if (loop.producerWarp) {
    assert(!loop.beforeReuse && !loop.releaseStageBarriers &&
           !loop.asyncProxyWrites && loop.stageArrivals == 1 &&
           "the warp-specialised pipeline has its own barriers");
    return pipelinedWithProducer(*this, loop, init);
  }
  // Ordered before the copies by initStageBarriers' block barrier.
  if (loop.asyncProxyWrites)
    fenceAsyncShared();
  if (loop.stageBarriers)
    initStageBarriers(loop.stageBarriers,
                      SmallVector<int>(stages, loop.stageArrivals));
  auto releaseBarriers = [&] {
    if (loop.stageBarriers && loop.releaseStageBarriers)
      invalidateStageBarriers(loop.stageBarriers, stages);
  };
  if (stages <= 1) {
    // One buffer: copy, wait, use, and keep the buffer until all warps are
    // done with it.
    ValueVec result = forLoop(
        i32(0), loop.count, i32(1), init, [&](Value iter, ValueRange carried) {
          loop.issue(iter, i32(0));
          commitGroup();
          waitGroup(0);
          if (loop.stageBarriers)
            waitBarrierPhase(loop.stageBarriers,
                             arith::AndIOp::create(b, location, iter, i32(1)));
          if (loop.asyncProxyReads)
            fenceAsyncShared();
          barrier();
          ValueVec out = loop.consume(iter, i32(0), carried);
          if (loop.beforeReuse)
            loop.beforeReuse();
          barrier();
          return out;
        });
    releaseBarriers();
    return result;
  }
  if (!loop.prologueIssued)
    issuePipelinePrologue(loop);
  ValueVec result = forLoop(
      i32(0), loop.count, i32(1), init, [&](Value iter, ValueRange carried) {
        // Iteration `iter` has landed for this thread; the barrier makes it
        // visible to all and proves buffer (iter-1) % stages is free.
        waitGroup(stages - 2);
        // A stage's mbarrier completes one phase per use: the parity of
        // iteration iter's is (iter / stages) % 2.
        if (loop.stageBarriers)
          waitBarrierPhase(
              stageBarrier(loop.stageBarriers, remU(iter, i32(stages))),
              arith::AndIOp::create(b, location, divU(iter, i32(stages)),
                                    i32(1)));
        if (loop.beforeReuse)
          loop.beforeReuse();
        if (loop.asyncProxyReads)
          fenceAsyncShared();
        barrier();
        Value next = add(iter, i32(stages - 1));
        ifThen(lt(next, loop.count),
               [&] { loop.issue(next, remU(next, i32(stages))); });
        commitGroup();
        return loop.consume(iter, remU(iter, i32(stages)), carried);
      });
  waitGroup(0);
  if (loop.beforeReuse)
    loop.beforeReuse();
  barrier();
  releaseBarriers();
  return result;
}

static Type structOf(OpBuilder &b, Type elem, int n) {
  SmallVector<Type> fields(n, elem);
  return LLVM::LLVMStructType::getLiteral(b.getContext(), fields);
}

// ldmatrix (non-transposed, 8x8 b16) of `count` matrices from this lane's
// row address: one 32-bit register of two elements per matrix.
static SmallVector<Value, 4> ldmatrix(OpBuilder &b, Location loc, Value ptr,
                                      int count) {
  Value res = NVVM::LdMatrixOp::create(
      b, loc, structOf(b, b.getI32Type(), count), ptr, count,
      NVVM::MMALayout::row,
      NVVM::LdStMatrixShapeAttr::get(b.getContext(), 8, 8),
      NVVM::LdStMatrixEltType::B16);
  SmallVector<Value, 4> words;
  for (int i = 0; i < count; ++i)
    words.push_back(LLVM::ExtractValueOp::create(b, loc, res, i));
  return words;
}

std::array<Value, 4> TileBuilder::loadFragA(Value smemTile, int pitch,
                                            Value row0, Value k0,
                                            int swizzledRows) {
  // ldmatrix.x4: lanes 0-15 address rows 0-15 at k0, lanes 16-31 rows 0-15
  // at k0+8; matrices come back as a0 (rows 0-7, k 0-7), a1 (rows 8-15),
  // a2 (rows 0-7, k 8-15), a3.
  Value lane = laneId();
  Value row = add(row0, arith::AndIOp::create(b, location, lane, i32(15)));
  Value k =
      add(k0, mul(arith::ShRUIOp::create(b, location, lane, i32(4)), i32(8)));
  Value index = swizzledRows > 0 ? swizzledIndex(swizzledRows, row, k)
                                 : add(mul(row, i32(pitch)), k);
  Value ptr = gep(smemTile, index, elementType());
  SmallVector<Value, 4> w = ldmatrix(b, location, ptr, 4);
  return {w[0], w[1], w[2], w[3]};
}

std::array<Value, 4> TileBuilder::loadFragB2(Value smemTile, int pitch,
                                             Value n0, Value k0) {
  // Matrices: (n0.., k0), (n0.., k0+8), (n0+8.., k0), (n0+8.., k0+8).
  Value lane = laneId();
  Value n = add(
      n0, add(arith::AndIOp::create(b, location, lane, i32(7)),
              mul(arith::ShRUIOp::create(b, location, lane, i32(4)), i32(8))));
  Value kHalf = arith::AndIOp::create(
      b, location, arith::ShRUIOp::create(b, location, lane, i32(3)), i32(1));
  Value k = add(k0, mul(kHalf, i32(8)));
  Value ptr = gep(smemTile, add(mul(n, i32(pitch)), k), elementType());
  SmallVector<Value, 4> w = ldmatrix(b, location, ptr, 4);
  return {w[0], w[1], w[2], w[3]};
}

std::array<Value, 2> TileBuilder::loadFragB1(Value smemTile, int pitch,
                                             Value n0, Value k0) {
  // ldmatrix.x2: lanes 0-7 give rows n0.. at k0, lanes 8-15 at k0+8 (the
  // addresses of lanes 16-31 are ignored but must be valid).
  Value lane = laneId();
  Value n = add(n0, arith::AndIOp::create(b, location, lane, i32(7)));
  Value kHalf = arith::AndIOp::create(
      b, location, arith::ShRUIOp::create(b, location, lane, i32(3)), i32(1));
  Value k = add(k0, mul(kHalf, i32(8)));
  Value ptr = gep(smemTile, add(mul(n, i32(pitch)), k), elementType());
  SmallVector<Value, 4> w = ldmatrix(b, location, ptr, 2);
  return {w[0], w[1]};
}

// The shared address of this lane's 16-byte row for an ldmatrix/stmatrix
// of `count` 8x8 matrices ordered (row0, col0), (row0 + 8, col0),
// (row0, col0 + 8), (row0 + 8, col0 + 8): lanes 8m..8m+7 give matrix m's
// rows. With two matrices the upper lanes' addresses are ignored but must be
// valid, so they repeat the lower ones.
static Value accumulatorMatrixRow(TileBuilder &tb, Value tile, int pitch,
                                  Value row0, Value col0, int count) {
  assert((count == 2 || count == 4) && pitch % 8 == 0);
  Value lane = tb.laneId();
  Value matrix = tb.remU(tb.divU(lane, tb.i32(8)), tb.i32(count));
  Value row =
      tb.add(row0, tb.add(tb.remU(lane, tb.i32(8)),
                          tb.mul(tb.remU(matrix, tb.i32(2)), tb.i32(8))));
  Value col = tb.add(col0, tb.mul(tb.divU(matrix, tb.i32(2)), tb.i32(8)));
  return tb.gep(tile, tb.add(tb.mul(row, tb.i32(pitch)), col),
                tb.elementType());
}

ValueVec TileBuilder::loadAccumulatorPairs(Value tile, int pitch, Value row0,
                                           Value col0, int count) {
  Value ptr = accumulatorMatrixRow(*this, tile, pitch, row0, col0, count);
  Type pairType = VectorType::get({2}, elementType());
  ValueVec pairs;
  for (Value word : ldmatrix(b, location, ptr, count))
    pairs.push_back(LLVM::BitcastOp::create(b, location, pairType, word));
  return pairs;
}

void TileBuilder::storeAccumulatorPairs(Value tile, int pitch, Value row0,
                                        Value col0, ArrayRef<Value> pairs) {
  assert(kernelSpec.sm >= 90 && "stmatrix needs sm_90");
  const int count = static_cast<int>(pairs.size());
  Value ptr = accumulatorMatrixRow(*this, tile, pitch, row0, col0, count);
  SmallVector<Value> words;
  for (Value p : pairs)
    words.push_back(LLVM::BitcastOp::create(b, location, i32Type(), p));
  NVVM::StMatrixOp::create(b, location, ptr, words, NVVM::MMALayout::row,
                           NVVM::LdStMatrixShapeAttr::get(b.getContext(), 8, 8),
                           NVVM::LdStMatrixEltType::B16);
}

void TileBuilder::mma(ArrayRef<Value> a, ArrayRef<Value> bFrag,
                      MutableArrayRef<Value> acc) {
  bool isBf16 = kernelSpec.dtype == DType::BF16;
  auto ptxType = isBf16 ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
  auto cast = [&](Value v) -> Value {
    if (isBf16)
      return v; // bf16 pairs travel as i32
    return LLVM::BitcastOp::create(b, location,
                                   VectorType::get({2}, b.getF16Type()), v);
  };
  SmallVector<Value> aOps, bOps;
  for (Value v : a)
    aOps.push_back(cast(v));
  for (Value v : bFrag)
    bOps.push_back(cast(v));
  Value res = NVVM::MmaOp::create(
      b, location, structOf(b, f32Type(), 4), aOps, bOps,
      SmallVector<Value>(acc.begin(), acc.end()), {16, 8, 16}, std::nullopt,
      std::nullopt, std::array<NVVM::MMATypes, 2>{ptxType, ptxType},
      std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                     NVVM::MMALayout::col});
  for (int i = 0; i < 4; ++i)
    acc[i] = LLVM::ExtractValueOp::create(b, location, res, i);
}

Value TileBuilder::swizzledTileDescriptor(Value tile, int rows, Value row0,
                                          Value k) {
  // Byte address of (row0, k): atom k / 64, 128 bytes per row; within an
  // atom the k offset is added unswizzled (the hardware applies the XOR to
  // the address bits, which is why tiles start 1024-byte aligned).
  Value base = LLVM::PtrToIntOp::create(b, location, i32Type(), tile);
  Value offset =
      add(add(mul(divU(k, i32(64)), i32(rows * 128)), mul(row0, i32(128))),
          mul(remU(k, i32(64)), i32(kElementBytes)));
  Value start = arith::AndIOp::create(
      b, location,
      arith::ShRUIOp::create(b, location, add(base, offset), i32(4)),
      i32(0x3FFF));
  // Leading byte offset 1 (unused by K-major swizzled layouts), stride byte
  // offset 1024 (from one 8-row group to the next) in 16-byte units, and
  // swizzle mode 1 (128 bytes) in bits 62-63.
  constexpr uint64_t kFields =
      (uint64_t(1) << 16) | (uint64_t(1024 / 16) << 32) | (uint64_t(1) << 62);
  Value start64 = arith::ExtUIOp::create(b, location, i64Type(), start);
  return arith::OrIOp::create(b, location, start64,
                              i64(static_cast<int64_t>(kFields)));
}

Value TileBuilder::swizzledIndex(int rows, Value row, Value col) {
  // Atom (col / 64), row, then the 16-byte chunk's slot (col / 8) % 8 XOR
  // row % 8 (the 128-byte swizzle that wgmma's descriptor names), then the
  // element within its chunk.
  Value atom = divU(col, i32(64));
  Value slot = arith::XOrIOp::create(
      b, location, remU(divU(col, i32(8)), i32(8)), remU(row, i32(8)));
  return add(
      add(add(mul(atom, i32(rows * 64)), mul(row, i32(64))), mul(slot, i32(8))),
      remU(col, i32(8)));
}

void TileBuilder::storeAccumulatorsSwizzled(Accumulators &acc, Value tile,
                                            int rows, Value row0, int col0) {
  for (int mt = 0; mt < acc.mTiles; ++mt)
    for (int nt = 0; nt < acc.nTiles; ++nt)
      for (int half = 0; half < 2; ++half) {
        // Elements 2 * half and 2 * half + 1: one row, adjacent columns.
        const int i = 2 * half;
        Value row = add(row0, accRow(mt, i));
        Value col = add(i32(col0), accCol(nt, i));
        Value pair = packElements({acc.at(mt, nt, i), acc.at(mt, nt, i + 1)});
        storeElements(pair,
                      gep(tile, swizzledIndex(rows, row, col), elementType()));
      }
}

void TileBuilder::fenceAsyncShared() {
  NVVM::FenceProxyOp::create(
      b, location, NVVM::ProxyKind::async_shared,
      NVVM::SharedSpaceAttr::get(b.getContext(),
                                 NVVM::SharedSpace::shared_cta));
}

void TileBuilder::initStageBarriers(Value bars, ArrayRef<int> arrivals) {
  ifThen(eq(threadId(), i32(0)), [&] {
    for (size_t i = 0; i < arrivals.size(); ++i)
      NVVM::MBarrierInitOp::create(b, location, stageBarrier(bars, i32(i)),
                                   i32(arrivals[i]), /*predicate=*/Value());
    // The initialisation becomes visible to the async proxy, whose copies
    // complete their bytes on these barriers.
    NVVM::FenceMbarrierInitOp::create(b, location);
  });
  barrier();
}

Value TileBuilder::stageBarrier(Value bars, Value index) {
  return sharedOffset(bars, mul(index, i32(8)));
}

void TileBuilder::arriveExpectBytes(Value bar, int bytes) {
  NVVM::MBarrierArriveExpectTxOp::create(b, location, Type(), bar, i32(bytes),
                                         NVVM::MemScopeKind::CTA,
                                         /*relaxed=*/false,
                                         /*predicate=*/Value());
}

void TileBuilder::arriveExpectBytes(Value bar, Value bytes) {
  NVVM::MBarrierArriveExpectTxOp::create(b, location, Type(), bar, bytes,
                                         NVVM::MemScopeKind::CTA,
                                         /*relaxed=*/false,
                                         /*predicate=*/Value());
}

void TileBuilder::invalidateStageBarriers(Value bars, int count) {
  ifThen(eq(threadId(), i32(0)), [&] {
    for (int i = 0; i < count; ++i)
      NVVM::MBarrierInvalOp::create(b, location, stageBarrier(bars, i32(i)));
  });
}

void TileBuilder::bulkCopyToShared(Value dst, Value src, Value bytes,
                                   Value bar) {
  // The destination is a shared::cluster address; this block's own window
  // lies inside the cluster's.
  Type clusterPtr = LLVM::LLVMPointerType::get(b.getContext(), 7);
  NVVM::CpAsyncBulkGlobalToSharedClusterOp::create(
      b, location, LLVM::AddrSpaceCastOp::create(b, location, clusterPtr, dst),
      src, bar, bytes, /*multicastMask=*/Value(), /*l2CacheHint=*/Value());
}

void TileBuilder::bulkCopyToGlobal(Value dst, Value src, Value bytes) {
  NVVM::CpAsyncBulkSharedCTAToGlobalOp::create(b, location, dst, src, bytes,
                                               /*l2CacheHint=*/Value(),
                                               /*byteMask=*/Value());
}

void TileBuilder::bulkCommitGroup() {
  NVVM::CpAsyncBulkCommitGroupOp::create(b, location);
}

void TileBuilder::bulkWaitRead(int pending) {
  NVVM::CpAsyncBulkWaitGroupOp::create(
      b, location, b.getI32IntegerAttr(pending), b.getUnitAttr());
}

void TileBuilder::waitBarrierPhase(Value bar, Value parity) {
  // try_wait suspends for a while and may return before the phase is
  // done: loop until it says so.
  auto loop = scf::WhileOp::create(b, location, TypeRange{}, ValueRange{});
  OpBuilder::InsertionGuard guard(b);
  b.createBlock(&loop.getBefore());
  Value done = NVVM::MBarrierTryWaitOp::create(b, location, i1Type(), bar,
                                               parity, /*ticks=*/Value());
  scf::ConditionOp::create(b, location, lnot(done), ValueRange{});
  b.createBlock(&loop.getAfter());
  scf::YieldOp::create(b, location);
}

void TileBuilder::arriveWhenCopiesLand(Value bar) {
  NVVM::CpAsyncMBarrierArriveOp::create(b, location, bar, /*noinc=*/true);
}

void TileBuilder::arrive(Value bar) {
  NVVM::MBarrierArriveOp::create(b, location, Type(), bar, /*count=*/Value());
}

void TileBuilder::exitThread() { NVVM::Exit::create(b, location); }

void TileBuilder::prefetchToL1(Value ptr) {
  NVVM::PrefetchOp::create(
      b, location,
      NVVM::PrefetchCacheLevelAttr::get(b.getContext(),
                                        NVVM::PrefetchCacheLevel::L1),
      /*evictPriority=*/nullptr, ptr, /*predicate=*/Value(),
      /*tensormap=*/false, /*uniform=*/false, /*in_param_space=*/false);
}

void TileBuilder::prefetchTensorMap(Value map) {
  NVVM::PrefetchOp::create(b, location, /*cacheLevel=*/nullptr,
                           /*evictPriority=*/nullptr, map,
                           /*predicate=*/Value(), /*tensormap=*/true,
                           /*uniform=*/false, /*in_param_space=*/false);
}

void TileBuilder::copySwizzledTensorTile(Value smemTile, int rows, int cols,
                                         Value map, Value col0,
                                         ArrayRef<Value> outer, Value bar) {
  assert(cols % 64 == 0 && rows <= 256 && outer.size() == 3);
  // The destination operand is a shared::cluster address; this block's own
  // shared window lies inside the cluster's.
  Type clusterPtr = LLVM::LLVMPointerType::get(b.getContext(), 7);
  for (int atom = 0; atom < cols / 64; ++atom) {
    Value dst = LLVM::AddrSpaceCastOp::create(
        b, location, clusterPtr,
        sharedOffset(smemTile, i32(atom * rows * 128)));
    SmallVector<Value> coords = {add(col0, i32(atom * 64))};
    coords.append(outer.begin(), outer.end());
    NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
        b, location, dst, map, coords, bar, /*im2colOffsets=*/ValueRange{},
        /*multicastMask=*/Value(), /*l2CacheHint=*/Value(),
        NVVM::TMALoadMode::TILE, /*isCTAOnly=*/false,
        /*group=*/NVVM::CTAGroupKindAttr(), /*predicate=*/Value());
  }
}

void TileBuilder::warpgroupMmaFromShared(Accumulators &acc, Value aTile,
                                         int aRows, Value warpRow0,
                                         ArrayRef<Value> bTiles, int bRows,
                                         Value bRow0, Value k0, int kSteps) {
  assert(acc.mTiles == 1 && "a warp owns 16 rows of the warpgroup tile");
  assert(acc.nTiles % bTiles.size() == 0);
  const int perB = acc.nTiles / int(bTiles.size());
  const bool isBf16 = kernelSpec.dtype == DType::BF16;
  const auto inType = isBf16 ? NVVM::WGMMATypes::bf16 : NVVM::WGMMATypes::f16;
  // One accumulator struct per B tile: wgmma's register operands.
  Type type = structOf(b, f32Type(), perB * 4);
  SmallVector<Value> structs;
  for (size_t j = 0; j < bTiles.size(); ++j) {
    Value v = LLVM::UndefOp::create(b, location, type);
    for (int i = 0; i < perB * 4; ++i)
      v = LLVM::InsertValueOp::create(b, location, v,
                                      acc.values[j * perB * 4 + i], i);
    structs.push_back(v);
  }
  Value groupRow0 = mul(divU(warpRow0, i32(64)), i32(64));
  // The accumulators were written by ordinary instructions: fence them
  // (and the shared operands) before the warpgroup's asynchronous MMAs.
  NVVM::WgmmaFenceAlignedOp::create(b, location);
  for (int ks = 0; ks < kSteps; ++ks) {
    Value k = add(k0, i32(16 * ks));
    Value aDesc = swizzledTileDescriptor(aTile, aRows, groupRow0, k);
    for (size_t j = 0; j < bTiles.size(); ++j) {
      Value bDesc = swizzledTileDescriptor(bTiles[j], bRows, bRow0, k);
      structs[j] = NVVM::WgmmaMmaAsyncOp::create(
          b, location, type, structs[j], aDesc, bDesc,
          NVVM::MMAShapeAttr::get(b.getContext(), 64, perB * 8, 16), inType,
          inType, NVVM::WGMMATypes::f32, NVVM::WGMMAScaleOut::one,
          NVVM::WGMMAScaleIn::one, NVVM::WGMMAScaleIn::one,
          NVVM::MMALayout::row, NVVM::MMALayout::col,
          /*satfinite=*/nullptr);
    }
  }
  NVVM::WgmmaGroupSyncAlignedOp::create(b, location);
  NVVM::WgmmaWaitGroupSyncOp::create(b, location, 0);
  for (size_t j = 0; j < bTiles.size(); ++j)
    for (int i = 0; i < perB * 4; ++i)
      acc.values[j * perB * 4 + i] =
          LLVM::ExtractValueOp::create(b, location, structs[j], i);
}

void TileBuilder::mmaFromShared(Accumulators &acc, Value aTile, int aPitch,
                                Value aRow0, Value bTile, int bPitch,
                                Value bRow0, Value k0, int kSteps) {
  SmallVector<std::array<Value, 4>> aFrags;
  for (int mt = 0; mt < acc.mTiles; ++mt)
    for (int ks = 0; ks < kSteps; ++ks)
      aFrags.push_back(loadFragA(aTile, aPitch, add(aRow0, i32(16 * mt)),
                                 add(k0, i32(16 * ks))));
  mmaWithFragA(acc, aFrags, kSteps, bTile, bPitch, bRow0, k0);
}

void TileBuilder::mmaWithFragA(Accumulators &acc,
                               ArrayRef<std::array<Value, 4>> aFrags,
                               int kSteps, Value bTile, int bPitch, Value bRow0,
                               Value k0) {
  for (int ks = 0; ks < kSteps; ++ks) {
    Value k = add(k0, i32(16 * ks));
    for (int nt = 0; nt < acc.nTiles; nt += 2) {
      Value n = add(bRow0, i32(8 * nt));
      std::array<Value, 4> bf;
      bool pair = nt + 1 < acc.nTiles;
      if (pair) {
        bf = loadFragB2(bTile, bPitch, n, k);
      } else {
        auto one = loadFragB1(bTile, bPitch, n, k);
        bf = {one[0], one[1], Value(), Value()};
      }
      for (int mt = 0; mt < acc.mTiles; ++mt) {
        const auto &a = aFrags[mt * kSteps + ks];
        Value *c0 = &acc.at(mt, nt, 0);
        mma(a, {bf[0], bf[1]}, MutableArrayRef<Value>(c0, 4));
        if (pair) {
          Value *c1 = &acc.at(mt, nt + 1, 0);
          mma(a, {bf[2], bf[3]}, MutableArrayRef<Value>(c1, 4));
        }
      }
    }
  }
}

void TileBuilder::reduceAccumulators(Accumulators &acc, Value smem, int groups,
                                     Value group, Value rowBase, int tileRows,
                                     int tileCols) {
  auto slot = [&](Value g, int mt, int nt, int i) {
    Value row = add(rowBase, accRow(mt, i));
    Value index =
        add(mul(add(mul(g, i32(tileRows)), row), i32(tileCols)), accCol(nt, i));
    return gep(smem, index, f32Type());
  };
  // 1. Every warp publishes its partial sums.
  for (int mt = 0; mt < acc.mTiles; ++mt)
    for (int nt = 0; nt < acc.nTiles; ++nt)
      for (int i = 0; i < 4; ++i)
        store(acc.at(mt, nt, i), slot(group, mt, nt, i));
  barrier();
  // 2. Warp `group` sums the n-tiles nt with nt % groups == group and
  // leaves the total in group 0's slot (only it reads those slots): each
  // thread keeps 1/groups of the partials live, not all of them.
  for (int nt = 0; nt < acc.nTiles; ++nt)
    ifThen(eq(group, i32(nt % groups)), [&] {
      for (int mt = 0; mt < acc.mTiles; ++mt)
        for (int i = 0; i < 4; ++i) {
          Value sum = load(f32Type(), slot(i32(0), mt, nt, i));
          for (int g = 1; g < groups; ++g)
            sum = fadd(sum, load(f32Type(), slot(i32(g), mt, nt, i)));
          store(sum, slot(i32(0), mt, nt, i));
        }
    });
  barrier();
  // 3. Every warp reads the totals of its rows.
  for (int mt = 0; mt < acc.mTiles; ++mt)
    for (int nt = 0; nt < acc.nTiles; ++nt)
      for (int i = 0; i < 4; ++i)
        acc.at(mt, nt, i) = load(f32Type(), slot(i32(0), mt, nt, i));
  barrier();
}

Accumulators TileBuilder::zeroAccumulators(int mTiles, int nTiles) {
  Accumulators acc;
  acc.mTiles = mTiles;
  acc.nTiles = nTiles;
  Value zero = f32(0.0);
  acc.values.assign(mTiles * nTiles * 4, zero);
  return acc;
}

Value TileBuilder::toElement(Value f) {
  return arith::TruncFOp::create(b, location, elementType(), f);
}
Value TileBuilder::fromElement(Value t) {
  return arith::ExtFOp::create(b, location, f32Type(), t);
}

std::array<Value, 4> TileBuilder::accumulatorsToFragA(Accumulators &acc, int mt,
                                                      int j) {
  auto pack = [&](Value lo, Value hi) -> Value {
    return LLVM::BitcastOp::create(b, location, i32Type(),
                                   packElements({lo, hi}));
  };
  // a0: rows g, k 0-7 (tile 2j c0,c1); a1: rows g+8 (tile 2j c2,c3);
  // a2: rows g, k 8-15 (tile 2j+1 c0,c1); a3: rows g+8 (tile 2j+1 c2,c3).
  return {pack(acc.at(mt, 2 * j, 0), acc.at(mt, 2 * j, 1)),
          pack(acc.at(mt, 2 * j, 2), acc.at(mt, 2 * j, 3)),
          pack(acc.at(mt, 2 * j + 1, 0), acc.at(mt, 2 * j + 1, 1)),
          pack(acc.at(mt, 2 * j + 1, 2), acc.at(mt, 2 * j + 1, 3))};
}

Value TileBuilder::accRow(int mt, int i) {
  Value g = arith::ShRUIOp::create(b, location, laneId(), i32(2));
  return add(g, i32(mt * 16 + 8 * (i / 2)));
}
Value TileBuilder::accCol(int nt, int i) {
  Value tig = arith::AndIOp::create(b, location, laneId(), i32(3));
  return add(mul(tig, i32(2)), i32(nt * 8 + i % 2));
}

void TileBuilder::storeOutput(Value ptr, Value value, bool addInputs) {
  if (addInputs)
    value = fadd(fromElement(load(elementType(), ptr)), value);
  store(toElement(value), ptr);
}

} // namespace moelora
