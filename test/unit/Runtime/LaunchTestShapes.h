//===- LaunchTestShapes.h - A call and a spec for launch-geometry tests ---===//
//
// The runtime tests' common call shape (qwen3moe W13 at rank 16: K 2048, N
// 1408, 2 slices, 64 experts, 4 adapters of which 3 lora slots are
// launched) and a kernel spec over it, for tests of grids and launches.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_TEST_UNIT_RUNTIME_LAUNCHTESTSHAPES_H
#define MOELORA_TEST_UNIT_RUNTIME_LAUNCHTESTSHAPES_H

#include "moelora/Runtime/LaunchArgs.h"
#include "moelora/Spec/KernelSpec.h"

namespace moelora::test {

/// `tokens` x `topK` pairs; sorted, with the aligned capacity EM of
/// BLOCK_SIZE_M `bm` (every expert's padding).
inline MoeLoraCall call(int tokens, int topK, bool sorted, int bm = 16) {
  MoeLoraCall c;
  c.numTokens = tokens;
  c.topK = topK;
  c.K = 2048;
  c.N = 1408;
  c.rank = 16;
  c.numSlices = 2;
  c.maxLoras = 4;
  c.numActiveLoras = 3;
  c.numExperts = 64;
  c.sorted = sorted;
  if (sorted) {
    c.blockSizeM = bm;
    long n = long(c.numPairs()) + long(c.numExperts) * (bm - 1);
    c.EM = int((n + bm - 1) / bm * bm);
  }
  return c;
}

/// A `f` kernel for `c`'s rank, K, metadata and slices.
inline KernelSpec spec(KernelFamily f, const MoeLoraCall &c, int bm, int bn,
                       int warps) {
  KernelSpec s;
  s.family = f;
  s.rank = c.rank;
  s.k = c.K;
  s.sorted = c.sorted;
  s.numSlices = c.numSlices;
  s.blockM = bm;
  s.blockN = bn;
  s.numWarps = warps;
  return s;
}

} // namespace moelora::test

#endif // MOELORA_TEST_UNIT_RUNTIME_LAUNCHTESTSHAPES_H
