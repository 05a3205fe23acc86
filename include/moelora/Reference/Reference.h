//===- Reference.h - float64 CPU reference of the kernel contract -*- C++
//-*-===//
//
// The function of ../shared/notes/kernel-contract.md ("The function") and of
// moe_lora_align_block_size, computed on the host in float64. Used by the
// tests, the GPU suites and the tuner to check every kernel.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_REFERENCE_REFERENCE_H
#define MOELORA_REFERENCE_REFERENCE_H

#include "moelora/Spec/KernelSpec.h"

#include <cstdint>
#include <vector>

namespace moelora {

/// Host copy of one fused_moe_lora call. All tensors contiguous, element
/// type T stored as raw 16-bit patterns (fp16 or bf16 per `dtype`).
struct MoeLoraProblem {
  DType dtype = DType::BF16;
  int numTokens = 0;
  int topK = 1;
  int K = 0;    ///< hidden size (columns of x, of A)
  int N = 0;    ///< output columns per slice (rows of B)
  int rank = 0; ///< R
  int numSlices = 1;
  int maxLoras = 1;
  int numExperts = 1;
  bool mulRoutedWeight = false;
  bool addInputs = true;

  std::vector<uint16_t> x;                  ///< (Mx, K); Mx below
  std::vector<std::vector<uint16_t>> loraA; ///< per slice (maxLoras, E, R, K)
  std::vector<std::vector<uint16_t>> loraB; ///< per slice (maxLoras, E, N, R)
  std::vector<float> topkWeights;           ///< (numTokens*topK)
  std::vector<int32_t> topkIds;             ///< (numTokens*topK), -1 = none
  std::vector<int32_t> tokenLoraMapping;    ///< (numTokens), -1 = none
  std::vector<int32_t> adapterEnabled;      ///< (maxLoras+1)

  int numPairs() const { return numTokens * topK; }
  /// token_mapping_factor of the contract: 1 if mul_routed_weight else topK.
  int tokenMappingFactor() const { return mulRoutedWeight ? 1 : topK; }
  int xRows() const { return numPairs() / tokenMappingFactor(); }
  int outCols() const { return numSlices * N; }
};

/// How the intermediate r is rounded before the expand dot.
enum class IntermediatePrecision {
  RoundToIO, ///< one-shot and two-kernel: r rounded to T (Triton feeds T)
  Fp32,      ///< small-batch: r kept in fp32
};

/// Returns the expected output (numPairs, numSlices*N) in float64, before the
/// final rounding to T. `outInit` is the output's content before the call (T
/// bit patterns, same shape); pairs that the contract skips keep it exactly.
std::vector<double> referenceFusedMoeLora(const MoeLoraProblem &p,
                                          const std::vector<uint16_t> &outInit,
                                          IntermediatePrecision precision);

/// Output of moe_lora_align_block_size (contract, kernel family 4).
struct AlignBlockSizeResult {
  int EM = 0;                               ///< padded capacity per adapter
  std::vector<int32_t> sortedTokenIds;      ///< (maxLoras, EM)
  std::vector<int32_t> expertIds;           ///< (maxLoras, EM / blockM)
  std::vector<int32_t> numTokensPostPadded; ///< (maxLoras)
};

/// EM = round_up(numTokens*topK + E*(blockM-1), blockM).
int alignCapacity(int numTokens, int topK, int numExperts, int blockM);

/// Unused slots: sortedTokenIds = numTokens*topK, expertIds = -1,
/// numTokensPostPadded = 0 for adapters without tokens.
AlignBlockSizeResult
referenceAlignBlockSize(const std::vector<int32_t> &topkIds,
                        const std::vector<int32_t> &tokenLoraMapping,
                        int numTokens, int topK, int numExperts, int maxLoras,
                        int blockM);

/// ||a - b|| / ||b|| over all elements (b the reference).
double relativeL2Error(const std::vector<double> &actual,
                       const std::vector<double> &reference);

} // namespace moelora

#endif // MOELORA_REFERENCE_REFERENCE_H
