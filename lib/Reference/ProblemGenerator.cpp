//===- ProblemGenerator.cpp - random fused_moe_lora problems --------------===//

#include "moelora/Reference/ProblemGenerator.h"
#include "moelora/Support/Half.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

namespace moelora {
namespace {

/// splitmix64 finaliser: derives independent sub-seeds from one seed.
uint64_t mixSeed(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// mt19937_64 with our own mappings to reals and ranges (the std::
/// distributions are implementation-defined, these are not).
class Rng {
public:
  explicit Rng(uint64_t seed) : engine(seed) {}

  /// Uniform in [0, 1) with 53 random bits.
  double unit() { return double(engine() >> 11) * 0x1p-53; }
  /// Uniform in [-1, 1).
  double symmetric() { return 2.0 * unit() - 1.0; }
  /// Uniform integer in [0, n), n > 0, without modulo bias.
  uint64_t below(uint64_t n) {
    const uint64_t max = std::numeric_limits<uint64_t>::max();
    const uint64_t limit = max - max % n;
    uint64_t v;
    do
      v = engine();
    while (v >= limit);
    return v % n;
  }

private:
  std::mt19937_64 engine;
};

enum Stream : uint64_t {
  StreamAdapters,
  StreamExperts,
  StreamWeights,
  StreamX,
  StreamLoraA,     // + 2 * slice
  StreamLoraB = 5, // + 2 * slice
};

std::vector<uint16_t> randomValues(DType dtype, size_t n, double scale,
                                   uint64_t seed) {
  Rng rng(seed);
  std::vector<uint16_t> bits(n);
  for (auto &b : bits)
    b = fromFloat(dtype, float(rng.symmetric() * scale));
  return bits;
}

[[noreturn]] void fail(const std::string &what) {
  throw std::invalid_argument("makeRandomProblem: " + what);
}

void validate(const ProblemOptions &o) {
  if (o.numTokens < 0)
    fail("numTokens must be >= 0");
  if (o.topK < 1)
    fail("topK must be >= 1");
  if (o.K < 1 || o.N < 1 || o.rank < 1)
    fail("K, N and rank must be >= 1");
  if (o.numSlices < 1)
    fail("numSlices must be >= 1");
  if (o.maxLoras < 1)
    fail("maxLoras must be >= 1");
  if (o.numExperts < 1)
    fail("numExperts must be >= 1");
  auto isFraction = [](double f) { return f >= 0.0 && f <= 1.0; };
  if (!isFraction(o.fracNoAdapter))
    fail("fracNoAdapter must be in [0, 1]");
  if (!isFraction(o.fracDisabledAdapter))
    fail("fracDisabledAdapter must be in [0, 1]");
  if (o.fracNoAdapter + o.fracDisabledAdapter > 1.0)
    fail("fracNoAdapter + fracDisabledAdapter must be <= 1");
  if (!isFraction(o.fracNoExpert))
    fail("fracNoExpert must be in [0, 1]");
  if (o.expertsUsed < 0 || o.expertsUsed > o.numExperts)
    fail("expertsUsed must be in [0, numExperts]");
  const int allowed = o.expertsUsed ? o.expertsUsed : o.numExperts;
  if (o.topK > allowed)
    fail("topK = " + std::to_string(o.topK) +
         " distinct experts per token need at least that many allowed "
         "experts, have " +
         std::to_string(allowed));
}

/// Contiguous sequences of tokens, each with one adapter.
void assignAdapters(const ProblemOptions &o, MoeLoraProblem &p) {
  Rng rng(mixSeed(o.seed, StreamAdapters));
  p.adapterEnabled.assign(size_t(o.maxLoras) + 1, 1);
  p.adapterEnabled[size_t(o.maxLoras)] = 0;
  int disabled = -1;
  if (o.fracDisabledAdapter > 0) {
    disabled = int(rng.below(uint64_t(o.maxLoras)));
    p.adapterEnabled[size_t(disabled)] = 0;
  }
  std::vector<int> enabled;
  for (int l = 0; l < o.maxLoras; ++l)
    if (l != disabled)
      enabled.push_back(l);

  p.tokenLoraMapping.assign(size_t(o.numTokens), -1);
  if (o.numTokens == 0)
    return;
  // Sequence boundaries: S-1 distinct cut points in [1, numTokens).
  const int maxSeqs = std::min(o.numTokens, 4 * o.maxLoras + 4);
  const int numSeqs = 1 + int(rng.below(uint64_t(maxSeqs)));
  std::vector<int> cuts(size_t(o.numTokens - 1));
  for (size_t i = 0; i < cuts.size(); ++i)
    cuts[i] = int(i) + 1;
  for (int i = 0; i < numSeqs - 1; ++i)
    std::swap(cuts[size_t(i)],
              cuts[size_t(i) + rng.below(uint64_t(cuts.size()) - i)]);
  cuts.resize(size_t(numSeqs - 1));
  std::sort(cuts.begin(), cuts.end());
  cuts.push_back(o.numTokens);

  int begin = 0;
  for (int end : cuts) {
    const double u = rng.unit();
    int adapter;
    if (u < o.fracNoAdapter)
      adapter = -1;
    else if (u < o.fracNoAdapter + o.fracDisabledAdapter || enabled.empty())
      adapter = disabled;
    else
      adapter = enabled[size_t(rng.below(uint64_t(enabled.size())))];
    for (int t = begin; t < end; ++t)
      p.tokenLoraMapping[size_t(t)] = adapter;
    begin = end;
  }
}

void assignExperts(const ProblemOptions &o, MoeLoraProblem &p) {
  Rng rng(mixSeed(o.seed, StreamExperts));
  const int allowed = o.expertsUsed ? o.expertsUsed : o.numExperts;
  // A permutation of the allowed experts; a partial Fisher-Yates shuffle of
  // its first topK entries draws topK distinct experts and leaves it a
  // permutation for the next token.
  std::vector<int32_t> perm(static_cast<size_t>(allowed));
  for (int e = 0; e < allowed; ++e)
    perm[size_t(e)] = e;
  p.topkIds.resize(size_t(p.numPairs()));
  for (int t = 0; t < o.numTokens; ++t) {
    for (int k = 0; k < o.topK; ++k) {
      std::swap(perm[size_t(k)],
                perm[size_t(k) + rng.below(uint64_t(allowed - k))]);
      p.topkIds[size_t(t) * size_t(o.topK) + size_t(k)] = perm[size_t(k)];
    }
  }
  for (auto &id : p.topkIds)
    if (rng.unit() < o.fracNoExpert)
      id = -1;
}

} // namespace

MoeLoraProblem makeRandomProblem(const ProblemOptions &o) {
  validate(o);
  MoeLoraProblem p;
  p.dtype = o.dtype;
  p.numTokens = o.numTokens;
  p.topK = o.topK;
  p.K = o.K;
  p.N = o.N;
  p.rank = o.rank;
  p.numSlices = o.numSlices;
  p.maxLoras = o.maxLoras;
  p.numExperts = o.numExperts;
  p.mulRoutedWeight = o.mulRoutedWeight;
  p.addInputs = o.addInputs;

  assignAdapters(o, p);
  assignExperts(o, p);

  Rng weightRng(mixSeed(o.seed, StreamWeights));
  p.topkWeights.resize(size_t(p.numPairs()));
  for (auto &w : p.topkWeights) {
    do
      w = float(weightRng.unit());
    while (!(w > 0.0f && w < 1.0f));
  }

  const size_t K = size_t(o.K), N = size_t(o.N), R = size_t(o.rank);
  const size_t slab = size_t(o.maxLoras) * size_t(o.numExperts);
  p.x = randomValues(o.dtype, size_t(p.xRows()) * K, 1.0,
                     mixSeed(o.seed, StreamX));
  const double scaleA = 1.0 / std::sqrt(double(o.K));
  const double scaleB = 1.0 / std::sqrt(double(o.rank));
  for (int s = 0; s < o.numSlices; ++s) {
    p.loraA.push_back(randomValues(o.dtype, slab * R * K, scaleA,
                                   mixSeed(o.seed, StreamLoraA + 2 * s)));
    p.loraB.push_back(randomValues(o.dtype, slab * N * R, scaleB,
                                   mixSeed(o.seed, StreamLoraB + 2 * s)));
  }
  return p;
}

std::vector<uint16_t> randomBits(DType dtype, size_t n, uint64_t seed) {
  return randomValues(dtype, n, 1.0, seed);
}

} // namespace moelora
