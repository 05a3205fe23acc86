//===- ProblemGenerator.h - random fused_moe_lora problems -------*- C++
//-*-===//
//
// Deterministic (seeded) random MoeLoraProblems for the unit tests, the GPU
// suites and the tuner. Values are drawn with std::mt19937_64 and our own
// integer-to-real mapping, so a seed gives the same problem with every
// standard library.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_REFERENCE_PROBLEMGENERATOR_H
#define MOELORA_REFERENCE_PROBLEMGENERATOR_H

#include "moelora/Reference/Reference.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moelora {

struct ProblemOptions {
  DType dtype = DType::BF16;
  int numTokens = 8;
  int topK = 2;
  int K = 64;
  int N = 64;
  int rank = 16;
  int numSlices = 1;
  int maxLoras = 4;
  int numExperts = 8;
  bool mulRoutedWeight = false;
  bool addInputs = true;
  uint64_t seed = 1;
  /// Expected share of tokens without an adapter (-1).
  double fracNoAdapter = 0.1;
  /// When > 0, one randomly chosen adapter is disabled (adapterEnabled = 0)
  /// and this is the expected share of tokens mapped to it. When 0, every
  /// adapter is enabled.
  double fracDisabledAdapter = 0.0;
  /// Expected share of pairs whose expert is -1.
  double fracNoExpert = 0.05;
  /// 0: route over all experts. Otherwise only experts [0, expertsUsed) are
  /// routed to ("sparse routing", as real MoE layers hit a minority).
  int expertsUsed = 0;
};

/// A random problem:
///  - x, A, B uniform in [-1, 1], A scaled by 1/sqrt(K) and B by 1/sqrt(R)
///    (so outputs are O(1)), rounded to `dtype`;
///  - topK distinct experts per token among the allowed ones, then each pair
///    set to -1 with probability fracNoExpert;
///  - tokens split into contiguous sequences, each with one adapter (as in a
///    serving batch): -1, the disabled adapter, or a random enabled one;
///  - topkWeights uniform in (0, 1); adapterEnabled has maxLoras+1 entries
///    (the last one 0).
/// Throws std::invalid_argument for inconsistent options (e.g. topK larger
/// than the number of allowed experts).
MoeLoraProblem makeRandomProblem(const ProblemOptions &options);

/// `n` T bit patterns of values uniform in [-1, 1] (finite, no NaN/inf);
/// meant as the output's initial content.
std::vector<uint16_t> randomBits(DType dtype, size_t n, uint64_t seed);

} // namespace moelora

#endif // MOELORA_REFERENCE_PROBLEMGENERATOR_H
