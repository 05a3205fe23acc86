//===- LaunchArgs.h - One fused_moe_lora call's operands --------*- C++ -*-===//
//
// Raw device pointers, shapes and element strides exactly as the contract's
// tensors (../shared/notes/kernel-contract.md). Innermost strides are 1.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_LAUNCHARGS_H
#define MOELORA_RUNTIME_LAUNCHARGS_H

#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/KernelSpec.h"
#include "moelora/Spec/TileBytes.h"

#include <cstdint>

namespace moelora {

struct MoeLoraCall {
  DType dtype = DType::BF16;
  // Tensors (device pointers).
  const void *x = nullptr;            ///< (Mx, K)
  const void *loraAPtrs = nullptr;    ///< device array of numSlices pointers
  const void *loraBPtrs = nullptr;    ///< device array of numSlices pointers
  void *out = nullptr;                ///< (numTokens, topK, numSlices*N)
  const float *topkWeights = nullptr; ///< (numTokens*topK)
  const int32_t *sortedTokenIds = nullptr;      ///< (maxLoras, EM), sorted
  const int32_t *expertIds = nullptr;           ///< sorted or naive layout
  const int32_t *numTokensPostPadded = nullptr; ///< (maxLoras), sorted
  const int32_t *tokenLoraMapping = nullptr;    ///< (numTokens)
  const int32_t *loraIds = nullptr;             ///< (maxLoras+1)
  const int32_t *adapterEnabled = nullptr;      ///< (maxLoras+1)
  /// Host array of the numSlices device pointers in loraAPtrs, or null
  /// (then no tensor maps: weightTensorMapsApply).
  const void *const *loraAHostPtrs = nullptr;
  // Element strides.
  int64_t xStride = 0;
  int64_t aStrideL = 0, aStrideE = 0, aStrideR = 0;
  int64_t bStrideL = 0, bStrideE = 0, bStrideN = 0;
  int64_t outStride = 0; ///< between pairs (output's stride(1))
  // Shapes.
  int numTokens = 0, topK = 1, K = 0, N = 0, rank = 0, numSlices = 1;
  int maxLoras = 1, numActiveLoras = 1, numExperts = 1;
  int EM = 0;         ///< sorted capacity per adapter
  int blockSizeM = 0; ///< BLOCK_SIZE_M the sorted metadata was built with
  bool sorted = false;
  bool mulRoutedWeight = false;
  bool addInputs = true;
  int numPairs() const { return numTokens * topK; }
};

/// Whether every output row of the call (from column `colOffset`) starts
/// 16-byte aligned: what KernelSpec::alignedOutput variants need. A call
/// without an output pointer yet (planning by shape) counts as aligned.
inline bool outputRowsAligned(const MoeLoraCall &call, int colOffset = 0) {
  return reinterpret_cast<uintptr_t>(call.out) % 16 == 0 &&
         call.outStride % 8 == 0 && call.N % 8 == 0 && colOffset % 8 == 0;
}

/// Whether lora_a can be read through tensor maps (KernelSpec::tmaWeights):
/// the slices' base pointers are given on the host, and the bases and the
/// adapter, expert and row strides are 16-byte aligned (as the encoding
/// requires).
inline bool weightTensorMapsApply(const MoeLoraCall &call) {
  if (!call.loraAHostPtrs || call.numSlices < 1 ||
      call.numSlices > kMaxTensorMapSlices)
    return false;
  for (int s = 0; s < call.numSlices; ++s) {
    const auto base = reinterpret_cast<uintptr_t>(call.loraAHostPtrs[s]);
    if (base == 0 || base % 16 != 0)
      return false;
  }
  constexpr int64_t kMaxStride = (int64_t(1) << 40) / kElementBytes;
  for (int64_t stride : {call.aStrideL, call.aStrideE, call.aStrideR})
    if (stride <= 0 || stride % 8 != 0 || stride >= kMaxStride)
      return false;
  return true;
}

/// The two-kernel path's intermediate buffer (numSlices, numPairs, R) in T.
struct IntermediateBuffer {
  void *data = nullptr;
  int64_t sliceStride = 0; ///< numPairs * R
  int64_t pairStride = 0;  ///< R
};

} // namespace moelora

#endif // MOELORA_RUNTIME_LAUNCHARGS_H
