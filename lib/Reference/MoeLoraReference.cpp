//===- MoeLoraReference.cpp - float64 reference of fused_moe_lora ---------===//
//
// The function of the kernel contract ("The function"), computed in float64:
// for every pair that passes the adapter/expert checks and every slice,
//   r = x[row] @ A_s[l,e]^T, r' = r (Fp32) or round_T(r) (RoundToIO),
//   y = r' @ B_s[l,e]^T, y *= w[p] (mulRoutedWeight),
//   out = (addInputs ? outInit : 0) + y.
// Skipped pairs keep outInit exactly.
//
//===----------------------------------------------------------------------===//

#include "moelora/Reference/Reference.h"
#include "moelora/Support/Half.h"

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace moelora {
namespace {

/// T bit pattern -> value, for all 65536 patterns of one type.
using DecodeTable = std::array<double, 65536>;

DecodeTable buildDecodeTable(DType t) {
  DecodeTable table;
  for (uint32_t h = 0; h < 65536; ++h)
    table[h] = double(toFloat(t, uint16_t(h)));
  return table;
}

const DecodeTable &decodeTable(DType t) {
  static const DecodeTable bf16 = buildDecodeTable(DType::BF16);
  static const DecodeTable f16 = buildDecodeTable(DType::F16);
  return t == DType::BF16 ? bf16 : f16;
}

[[noreturn]] void fail(const std::string &what) {
  throw std::invalid_argument("referenceFusedMoeLora: " + what);
}

void checkSize(const char *name, size_t actual, size_t expected) {
  if (actual != expected)
    fail(std::string(name) + " has " + std::to_string(actual) +
         " elements, expected " + std::to_string(expected));
}

void validate(const MoeLoraProblem &p, const std::vector<uint16_t> &outInit) {
  if (p.numTokens < 0)
    fail("numTokens must be >= 0");
  if (p.topK < 1)
    fail("topK must be >= 1");
  if (p.K < 1 || p.N < 1 || p.rank < 1)
    fail("K, N and rank must be >= 1");
  if (p.numSlices < 1)
    fail("numSlices must be >= 1");
  if (p.maxLoras < 1)
    fail("maxLoras must be >= 1");
  if (p.numExperts < 1)
    fail("numExperts must be >= 1");

  const size_t pairs = size_t(p.numPairs());
  const size_t slab = size_t(p.maxLoras) * size_t(p.numExperts);
  checkSize("x", p.x.size(), size_t(p.xRows()) * size_t(p.K));
  checkSize("loraA (slices)", p.loraA.size(), size_t(p.numSlices));
  checkSize("loraB (slices)", p.loraB.size(), size_t(p.numSlices));
  for (int s = 0; s < p.numSlices; ++s) {
    checkSize("loraA[slice]", p.loraA[s].size(),
              slab * size_t(p.rank) * size_t(p.K));
    checkSize("loraB[slice]", p.loraB[s].size(),
              slab * size_t(p.N) * size_t(p.rank));
  }
  if (p.mulRoutedWeight)
    checkSize("topkWeights", p.topkWeights.size(), pairs);
  checkSize("topkIds", p.topkIds.size(), pairs);
  checkSize("tokenLoraMapping", p.tokenLoraMapping.size(), size_t(p.numTokens));
  if (p.adapterEnabled.size() < size_t(p.maxLoras))
    fail("adapterEnabled has " + std::to_string(p.adapterEnabled.size()) +
         " elements, expected at least maxLoras = " +
         std::to_string(p.maxLoras));
  checkSize("outInit", outInit.size(), pairs * size_t(p.outCols()));
  for (size_t i = 0; i < pairs; ++i)
    if (p.topkIds[i] >= p.numExperts)
      fail("topkIds[" + std::to_string(i) +
           "] = " + std::to_string(p.topkIds[i]) +
           " is not below numExperts = " + std::to_string(p.numExperts));
}

/// sum_i a[i] * table[b[i]] with four independent accumulators.
double dotDecoded(const double *a, const uint16_t *b, int n,
                  const DecodeTable &table) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[i] * table[b[i]];
    s1 += a[i + 1] * table[b[i + 1]];
    s2 += a[i + 2] * table[b[i + 2]];
    s3 += a[i + 3] * table[b[i + 3]];
  }
  for (; i < n; ++i)
    s0 += a[i] * table[b[i]];
  return (s0 + s1) + (s2 + s3);
}

} // namespace

std::vector<double> referenceFusedMoeLora(const MoeLoraProblem &p,
                                          const std::vector<uint16_t> &outInit,
                                          IntermediatePrecision precision) {
  validate(p, outInit);
  const DecodeTable &table = decodeTable(p.dtype);
  const size_t cols = size_t(p.outCols());
  const size_t K = size_t(p.K), N = size_t(p.N), R = size_t(p.rank);
  const int pairs = p.numPairs();

  std::vector<double> out(outInit.size());
  for (size_t i = 0; i < outInit.size(); ++i)
    out[i] = table[outInit[i]];

  std::vector<double> xRow(K), r(R);
  for (int pair = 0; pair < pairs; ++pair) {
    const int token = pair / p.topK;
    const int l = p.tokenLoraMapping[token];
    if (l < 0 || l >= p.maxLoras || p.adapterEnabled[l] == 0)
      continue;
    const int e = p.topkIds[pair];
    if (e < 0)
      continue;

    const size_t row = size_t(pair / p.tokenMappingFactor());
    const uint16_t *xBits = p.x.data() + row * K;
    for (size_t k = 0; k < K; ++k)
      xRow[k] = table[xBits[k]];
    const double weight = p.mulRoutedWeight ? double(p.topkWeights[pair]) : 1;
    const size_t le = size_t(l) * size_t(p.numExperts) + size_t(e);

    for (int s = 0; s < p.numSlices; ++s) {
      const uint16_t *a = p.loraA[s].data() + le * R * K;
      for (size_t j = 0; j < R; ++j) {
        r[j] = dotDecoded(xRow.data(), a + j * K, int(K), table);
        if (precision == IntermediatePrecision::RoundToIO)
          r[j] = roundTo(p.dtype, r[j]);
      }
      const uint16_t *b = p.loraB[s].data() + le * N * R;
      double *o = out.data() + size_t(pair) * cols + size_t(s) * N;
      for (size_t n = 0; n < N; ++n) {
        double y = dotDecoded(r.data(), b + n * R, int(R), table) * weight;
        o[n] = (p.addInputs ? o[n] : 0.0) + y;
      }
    }
  }
  return out;
}

int alignCapacity(int numTokens, int topK, int numExperts, int blockM) {
  if (blockM <= 0)
    throw std::invalid_argument("alignCapacity: blockM must be > 0, got " +
                                std::to_string(blockM));
  if (numTokens < 0 || topK < 1 || numExperts < 1)
    throw std::invalid_argument(
        "alignCapacity: need numTokens >= 0, topK >= 1, numExperts >= 1");
  const int64_t raw =
      int64_t(numTokens) * topK + int64_t(numExperts) * (int64_t(blockM) - 1);
  const int64_t em = (raw + blockM - 1) / blockM * blockM;
  if (em > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("alignCapacity: EM overflows int32");
  return int(em);
}

double relativeL2Error(const std::vector<double> &actual,
                       const std::vector<double> &reference) {
  if (actual.size() != reference.size())
    throw std::invalid_argument(
        "relativeL2Error: actual has " + std::to_string(actual.size()) +
        " elements, reference has " + std::to_string(reference.size()));
  double diff = 0, norm = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double d = actual[i] - reference[i];
    diff += d * d;
    norm += reference[i] * reference[i];
  }
  if (norm == 0)
    return diff == 0 ? 0.0 : std::numeric_limits<double>::infinity();
  return std::sqrt(diff / norm);
}

} // namespace moelora
