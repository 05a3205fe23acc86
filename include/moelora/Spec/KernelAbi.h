//===- KernelAbi.h - Parameter lists of the generated kernels ---*- C++ -*-===//
//
// One source of truth for the order and types of every kernel's parameters:
// the code generator builds the entry signature from it, the metadata JSON
// records it and the runtime packs launch arguments by it.
//
// The GEMM families (one_shot, small_batch, shrink, expand) share one list,
// a superset of what each needs (unused entries are ignored by the kernel),
// so that the runtime has one argument packer for all of them. Strides are in
// elements; innermost strides are 1 (checked by the runtime).
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SPEC_KERNELABI_H
#define MOELORA_SPEC_KERNELABI_H

#include "moelora/Spec/KernelSpec.h"

#include <string_view>
#include <vector>

namespace moelora {

enum class ParamType {
  Ptr,
  I32,
  I64,
  /// A CUtensorMap (kTensorMapBytes, 64-byte aligned) passed by value and
  /// read in place (__grid_constant__): bulk tensor copies address it.
  TensorMap,
};
inline constexpr int kTensorMapBytes = 128;
inline constexpr int kTensorMapAlign = 64;
std::string_view toString(ParamType t);

struct KernelParam {
  std::string_view name;
  ParamType type;
};

/// Indices into the GEMM parameter list (order == position).
enum GemmParam : int {
  kX,              ///< ptr T: x (Mx, K), or the intermediate for expand
  kXStride,        ///< i64: row stride of x
  kAPtrs,          ///< ptr: device array of num_slices lora_a base pointers
  kAStrideL,       ///< i64: lora_a stride over adapters
  kAStrideE,       ///< i64: lora_a stride over experts
  kAStrideR,       ///< i64: lora_a stride over rank rows
  kBPtrs,          ///< ptr: device array of num_slices lora_b base pointers
  kBStrideL,       ///< i64
  kBStrideE,       ///< i64
  kBStrideN,       ///< i64: lora_b stride over output rows
  kOut,            ///< ptr T: output (pairs, num_slices*N), or intermediate
  kOutStride,      ///< i64: stride between pairs of the output
  kTopkWeights,    ///< ptr f32: (num_pairs)
  kSortedTokenIds, ///< ptr i32: (max_loras, EM); sorted metadata only
  kExpertIds,      ///< ptr i32: sorted (max_loras, EM/BM) or naive (pairs)
  kNumTokensPostPadded, ///< ptr i32: (max_loras); sorted only
  kTokenLoraMapping,    ///< ptr i32: (num_tokens)
  kLoraIds,             ///< ptr i32: (max_loras+1)
  kAdapterEnabled,      ///< ptr i32: (max_loras+1)
  kInterSliceStride,    ///< i64: intermediate stride over slices
  kNumPairs,            ///< i32: num_tokens*top_k
  kTopK,                ///< i32
  kN,                   ///< i32: output columns per slice (R for shrink)
  kK,                   ///< i32: reduction length (R for expand)
  kEM,                  ///< i32: sorted capacity per adapter
  kMaxLoras,            ///< i32
  kNpid,                ///< i32: outer N-chunks per row block (one_shot)
  kTilesPerItem,        ///< i32: BLOCK_N tiles per work item (small_batch)
  kOutColOffset,        ///< i32: first output column (expand)
  kNumGemmParams
};

/// Indices into the align_block_size parameter list.
enum AlignParam : int {
  kAlignTopkIds,             ///< ptr i32 (num_pairs)
  kAlignTokenLoraMapping,    ///< ptr i32 (num_tokens)
  kAlignSortedTokenIds,      ///< ptr i32 (max_loras, EM) out
  kAlignExpertIds,           ///< ptr i32 (max_loras, EM/BM) out
  kAlignNumTokensPostPadded, ///< ptr i32 (max_loras) out
  kAlignNumPairs,            ///< i32
  kAlignTopK,                ///< i32
  kAlignNumExperts,          ///< i32
  kAlignEM,                  ///< i32
  kAlignMaxLoras,            ///< i32
  kNumAlignParams
};

const std::vector<KernelParam> &kernelParams(KernelFamily family);
/// A kernel's full parameter list: its family's, then (tmaWeights) one
/// tensor map of lora_a per slice, a_tensor_map_<s> at index
/// kNumGemmParams + s.
std::vector<KernelParam> kernelParams(const KernelSpec &spec);
/// Tensor-map parameters of a kernel (tmaWeights: numSlices, else 0).
int weightTensorMapParams(const KernelSpec &spec);
/// Slices a tmaWeights kernel can take (its tensor maps travel as kernel
/// parameters).
inline constexpr int kMaxTensorMapSlices = 8;

/// Widest vector (elements: 8, 4 or 2) that divides `elems`: the width of
/// the kernels' global accesses along a row of that many elements, so row
/// strides and base pointers must be multiples of it (the runtime checks).
int copyVectorElems(int elems);

/// The align_block_size variant for a target and BLOCK_SIZE_M: every other
/// field at its KernelSpec default, as the spec parser produces it, so the
/// runtime, the bundles and the tests agree on its cache key.
KernelSpec alignBlockSizeSpec(int sm, int blockM);

/// align_block_size keeps per-expert counters in shared memory.
inline constexpr int kMaxAlignExperts = 1024;

} // namespace moelora

#endif // MOELORA_SPEC_KERNELABI_H
