//===- BenchShapeCall.h - A benchmark case as the dispatcher's call -*- C++
//-*-===//
//
// Separate from BenchCases.h: the dispatcher's header needs the CUDA
// headers, which the C-ABI-only benchmark tools do not have.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_BENCHMARKS_BENCHSHAPECALL_H
#define MOELORA_BENCHMARKS_BENCHSHAPECALL_H

#include "BenchCases.h"

#include "moelora/Runtime/Dispatcher.h"

namespace moelora::bench {

/// The case's call as the dispatcher sees it (shapes and flags, no
/// pointers), for planning without a GPU.
inline MoeLoraCall benchShapeCall(const BenchCase &c) {
  MoeLoraCall call;
  call.dtype = c.dtype == MOELORA_DTYPE_BF16 ? DType::BF16 : DType::F16;
  call.numTokens = c.M;
  call.topK = c.preset->topK;
  call.K = c.K();
  call.N = c.N();
  call.rank = c.rank;
  call.numSlices = c.slices();
  call.maxLoras = c.maxLoras;
  call.numActiveLoras = c.maxLoras;
  call.numExperts = c.preset->experts;
  call.sorted = c.sorted;
  call.blockSizeM = c.sorted ? 64 : 16;
  call.EM = c.sorted ? moelora_align_capacity(c.M, c.preset->topK,
                                              c.preset->experts, 64)
                     : 0;
  call.mulRoutedWeight = c.mrw();
  call.addInputs = true;
  // As benchShapeArgs: lora_a's host bases (placeholders) and strides.
  call.loraAHostPtrs = benchHostBasePlaceholders();
  call.aStrideL = int64_t(call.numExperts) * call.rank * call.K;
  call.aStrideE = int64_t(call.rank) * call.K;
  call.aStrideR = call.K;
  return call;
}

} // namespace moelora::bench

#endif // MOELORA_BENCHMARKS_BENCHSHAPECALL_H
