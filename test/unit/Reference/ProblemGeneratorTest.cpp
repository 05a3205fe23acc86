//===- ProblemGeneratorTest.cpp - random fused_moe_lora problems ----------===//

#include "moelora/Reference/ProblemGenerator.h"
#include "moelora/Support/Half.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

using namespace moelora;

namespace {

ProblemOptions smallOptions() {
  ProblemOptions o;
  o.numTokens = 64;
  o.topK = 4;
  o.K = 32;
  o.N = 16;
  o.rank = 8;
  o.numSlices = 2;
  o.maxLoras = 3;
  o.numExperts = 16;
  return o;
}

} // namespace

TEST(ProblemGeneratorTest, ShapesMatchTheProblem) {
  for (bool mul : {false, true}) {
    ProblemOptions o = smallOptions();
    o.mulRoutedWeight = mul;
    o.addInputs = !mul;
    o.dtype = mul ? DType::F16 : DType::BF16;
    const MoeLoraProblem p = makeRandomProblem(o);
    EXPECT_EQ(p.dtype, o.dtype);
    EXPECT_EQ(p.mulRoutedWeight, mul);
    EXPECT_EQ(p.addInputs, !mul);
    EXPECT_EQ(p.x.size(), size_t((mul ? 64 * 4 : 64) * 32));
    ASSERT_EQ(p.loraA.size(), 2u);
    ASSERT_EQ(p.loraB.size(), 2u);
    for (int s = 0; s < 2; ++s) {
      EXPECT_EQ(p.loraA[s].size(), size_t(3 * 16 * 8 * 32));
      EXPECT_EQ(p.loraB[s].size(), size_t(3 * 16 * 16 * 8));
    }
    EXPECT_EQ(p.topkIds.size(), 256u);
    EXPECT_EQ(p.topkWeights.size(), 256u);
    EXPECT_EQ(p.tokenLoraMapping.size(), 64u);
    EXPECT_EQ(p.adapterEnabled.size(), 4u);
    // The reference accepts it.
    const auto init =
        randomBits(p.dtype, size_t(p.numPairs() * p.outCols()), 9);
    EXPECT_NO_THROW(
        referenceFusedMoeLora(p, init, IntermediatePrecision::RoundToIO));
  }
}

TEST(ProblemGeneratorTest, DeterministicPerSeed) {
  const ProblemOptions o = smallOptions();
  const MoeLoraProblem a = makeRandomProblem(o);
  const MoeLoraProblem b = makeRandomProblem(o);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.loraA, b.loraA);
  EXPECT_EQ(a.loraB, b.loraB);
  EXPECT_EQ(a.topkIds, b.topkIds);
  EXPECT_EQ(a.topkWeights, b.topkWeights);
  EXPECT_EQ(a.tokenLoraMapping, b.tokenLoraMapping);
  ProblemOptions o2 = o;
  o2.seed = 2;
  const MoeLoraProblem c = makeRandomProblem(o2);
  EXPECT_NE(a.x, c.x);
  EXPECT_NE(a.topkIds, c.topkIds);
  EXPECT_EQ(randomBits(DType::BF16, 100, 3), randomBits(DType::BF16, 100, 3));
  EXPECT_NE(randomBits(DType::BF16, 100, 3), randomBits(DType::BF16, 100, 4));
}

TEST(ProblemGeneratorTest, DistinctExpertsPerToken) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    ProblemOptions o = smallOptions();
    o.seed = seed;
    o.topK = 8;
    o.numExperts = 8 + int(seed % 5); // topK close to E
    o.fracNoExpert = 0;
    const MoeLoraProblem p = makeRandomProblem(o);
    for (int t = 0; t < p.numTokens; ++t) {
      std::set<int> experts;
      for (int k = 0; k < p.topK; ++k) {
        const int e = p.topkIds[size_t(t * p.topK + k)];
        ASSERT_GE(e, 0);
        ASSERT_LT(e, p.numExperts);
        experts.insert(e);
      }
      ASSERT_EQ(experts.size(), size_t(p.topK)) << "token " << t;
    }
  }
}

TEST(ProblemGeneratorTest, RespectsExpertsUsed) {
  ProblemOptions o = smallOptions();
  o.numTokens = 200;
  o.numExperts = 64;
  o.expertsUsed = 6;
  o.fracNoExpert = 0.1;
  const MoeLoraProblem p = makeRandomProblem(o);
  std::set<int> used;
  int none = 0;
  for (int e : p.topkIds) {
    ASSERT_GE(e, -1);
    ASSERT_LT(e, 6);
    if (e < 0)
      ++none;
    else
      used.insert(e);
  }
  EXPECT_EQ(used.size(), 6u);
  EXPECT_GT(none, 0);
  EXPECT_LT(none, 200); // expected ~10% of 800 pairs

  o.expertsUsed = 3; // fewer allowed experts than topK = 4
  EXPECT_THROW(makeRandomProblem(o), std::invalid_argument);
  o.expertsUsed = 65;
  EXPECT_THROW(makeRandomProblem(o), std::invalid_argument);
}

TEST(ProblemGeneratorTest, AdaptersComeInContiguousSequences) {
  int disabledTokens = 0, noAdapterTokens = 0, tokens = 0;
  for (uint64_t seed = 1; seed <= 30; ++seed) {
    ProblemOptions o = smallOptions();
    o.seed = seed;
    o.numTokens = 100;
    o.maxLoras = 4;
    o.fracNoAdapter = 0.2;
    o.fracDisabledAdapter = 0.2;
    const MoeLoraProblem p = makeRandomProblem(o);
    ASSERT_EQ(p.adapterEnabled.size(), 5u);
    int disabled = -1;
    for (int l = 0; l < p.maxLoras; ++l)
      if (p.adapterEnabled[size_t(l)] == 0) {
        ASSERT_EQ(disabled, -1) << "two disabled adapters";
        disabled = l;
      }
    ASSERT_NE(disabled, -1);
    int runs = 1;
    for (int t = 0; t < p.numTokens; ++t) {
      const int l = p.tokenLoraMapping[size_t(t)];
      ASSERT_GE(l, -1);
      ASSERT_LT(l, p.maxLoras);
      if (t > 0 && l != p.tokenLoraMapping[size_t(t - 1)])
        ++runs;
      disabledTokens += l == disabled;
      noAdapterTokens += l == -1;
      ++tokens;
    }
    // At most 4*maxLoras+4 sequences.
    ASSERT_LE(runs, 20);
  }
  // Expected share 0.2 each; loose bounds.
  EXPECT_GT(noAdapterTokens, tokens / 20);
  EXPECT_LT(noAdapterTokens, tokens / 2);
  EXPECT_GT(disabledTokens, tokens / 20);
  EXPECT_LT(disabledTokens, tokens / 2);

  ProblemOptions o = smallOptions();
  o.fracNoAdapter = 0;
  o.fracDisabledAdapter = 0;
  const MoeLoraProblem p = makeRandomProblem(o);
  for (int l = 0; l < p.maxLoras; ++l)
    EXPECT_NE(p.adapterEnabled[size_t(l)], 0);
  for (int l : p.tokenLoraMapping) {
    EXPECT_GE(l, 0);
    EXPECT_LT(l, p.maxLoras);
  }
}

TEST(ProblemGeneratorTest, ValueRanges) {
  ProblemOptions o = smallOptions();
  o.K = 64;
  o.rank = 16;
  const MoeLoraProblem p = makeRandomProblem(o);
  const auto maxAbs = [&](const std::vector<uint16_t> &bits) {
    double m = 0;
    for (uint16_t b : bits) {
      const double v = toFloat(p.dtype, b);
      EXPECT_TRUE(std::isfinite(v));
      m = std::max(m, std::fabs(v));
    }
    return m;
  };
  EXPECT_LE(maxAbs(p.x), 1.0);
  EXPECT_GT(maxAbs(p.x), 0.9);
  EXPECT_LE(maxAbs(p.loraA[0]), 1.0 / 8 * 1.01); // 1/sqrt(64)
  EXPECT_GT(maxAbs(p.loraA[0]), 0.9 / 8);
  EXPECT_LE(maxAbs(p.loraB[1]), 1.0 / 4 * 1.01); // 1/sqrt(16)
  EXPECT_GT(maxAbs(p.loraB[1]), 0.9 / 4);
  for (float w : p.topkWeights) {
    EXPECT_GT(w, 0.0f);
    EXPECT_LT(w, 1.0f);
  }
  EXPECT_LE(maxAbs(randomBits(DType::F16, 1000, 1)), 1.0);

  // Outputs are O(1).
  const std::vector<uint16_t> zeros(size_t(p.numPairs() * p.outCols()), 0);
  const auto out = referenceFusedMoeLora(p, zeros, IntermediatePrecision::Fp32);
  double sum2 = 0;
  for (double v : out)
    sum2 += v * v;
  const double rms = std::sqrt(sum2 / double(out.size()));
  EXPECT_GT(rms, 0.02);
  EXPECT_LT(rms, 2.0);
}

TEST(ProblemGeneratorTest, EdgeCases) {
  ProblemOptions o = smallOptions();
  o.numTokens = 0;
  MoeLoraProblem p = makeRandomProblem(o);
  EXPECT_TRUE(p.topkIds.empty());
  EXPECT_TRUE(p.tokenLoraMapping.empty());
  EXPECT_TRUE(p.x.empty());

  o = smallOptions();
  o.numTokens = 1;
  o.maxLoras = 1;
  o.fracNoAdapter = 0;
  o.fracDisabledAdapter = 0.5; // the only adapter is disabled
  p = makeRandomProblem(o);
  EXPECT_EQ(p.adapterEnabled[0], 0);
  EXPECT_EQ(p.tokenLoraMapping[0], 0);

  o = smallOptions();
  o.fracNoAdapter = 0.7;
  o.fracDisabledAdapter = 0.5;
  EXPECT_THROW(makeRandomProblem(o), std::invalid_argument);
  o = smallOptions();
  o.fracNoExpert = 1.5;
  EXPECT_THROW(makeRandomProblem(o), std::invalid_argument);
}
