//===- KernelBuilder.h - One builder per kernel family ----------*- C++ -*-===//
//
// A kernel builder fills the body of a kernel entry whose signature comes
// from KernelAbi.h. It works at the level of tiles and loops through
// TileBuilder; nothing here knows about PTX.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_CODEGEN_KERNELBUILDER_H
#define MOELORA_CODEGEN_KERNELBUILDER_H

#include "moelora/Codegen/TileBuilder.h"
#include "moelora/Spec/KernelAbi.h"

#include "mlir/IR/ValueRange.h"

namespace moelora {

/// The entry's arguments, indexed by GemmParam / AlignParam.
struct KernelArgs {
  mlir::ValueRange values;
  Value operator[](int index) const { return values[index]; }
};

/// The builders lay out warps with WarpGrid (Spec/TileBytes.h: the runtime
/// sizes shared memory with the same grid): warpsM row groups of 16*k rows,
/// warpsN column groups (or K groups, for the one-shot's shrink).
void buildOneShotKernel(TileBuilder &tb, const KernelArgs &args);
void buildSmallBatchKernel(TileBuilder &tb, const KernelArgs &args);
void buildShrinkKernel(TileBuilder &tb, const KernelArgs &args);
void buildExpandKernel(TileBuilder &tb, const KernelArgs &args);
void buildAlignBlockSizeKernel(TileBuilder &tb, const KernelArgs &args);

/// Dynamic shared memory of each family (bytes).
int oneShotSharedBytes(const KernelSpec &spec);
int smallBatchSharedBytes(const KernelSpec &spec);
int shrinkSharedBytes(const KernelSpec &spec);
int expandSharedBytes(const KernelSpec &spec);
int alignBlockSizeSharedBytes(const KernelSpec &spec);

/// Whether a persistent one-shot prefetches its next program's sorted ids
/// and expert id into L1 (prefetchRowBlockIds); sm_90 only, where LLVM
/// selects prefetch.global.L1 (with PTX 8.0). (The same prefetch of each
/// sorted block's own ids, issued with its expert id, measured 0.999x on
/// the prefill and two-kernel cases: PERF-LOG e2.)
inline bool prefetchesNextRowIds(const KernelSpec &spec) {
  return spec.persistent && spec.sm >= 90;
}

} // namespace moelora

#endif // MOELORA_CODEGEN_KERNELBUILDER_H
