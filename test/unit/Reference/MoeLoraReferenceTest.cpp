//===- MoeLoraReferenceTest.cpp - float64 fused_moe_lora reference --------===//

#include "moelora/Reference/ProblemGenerator.h"
#include "moelora/Reference/Reference.h"
#include "moelora/Support/Half.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <ostream>
#include <stdexcept>

using namespace moelora;

namespace moelora {
/// Parameterized cases print "bf16"/"fp16" (found by argument-dependent
/// lookup in DType's namespace), not a byte dump.
void PrintTo(DType d, std::ostream *os) { *os << toString(d); }
} // namespace moelora

namespace {

std::vector<uint16_t> encode(DType t, const std::vector<double> &values) {
  std::vector<uint16_t> bits;
  for (double v : values) {
    bits.push_back(fromFloat(t, float(v)));
    // Hand-written values must be exact in T.
    EXPECT_EQ(double(toFloat(t, bits.back())), v) << v;
  }
  return bits;
}

std::vector<double> decode(DType t, const std::vector<uint16_t> &bits) {
  std::vector<double> values;
  for (uint16_t b : bits)
    values.push_back(toFloat(t, b));
  return values;
}

/// One token, one pair, one adapter, one expert, one slice:
/// R=2, K=3, N=2 with
///   x = [1, 2, 3]
///   A = [[1, 0.5, 0.25], [0.125, 1, -1]]  -> r = [2.75, -0.875]
///   B = [[1, 2], [0.5, -1]]               -> y = [1.0, 2.25]
MoeLoraProblem tinyProblem(DType t) {
  MoeLoraProblem p;
  p.dtype = t;
  p.numTokens = 1;
  p.topK = 1;
  p.K = 3;
  p.N = 2;
  p.rank = 2;
  p.numSlices = 1;
  p.maxLoras = 1;
  p.numExperts = 1;
  p.x = encode(t, {1, 2, 3});
  p.loraA = {encode(t, {1, 0.5, 0.25, 0.125, 1, -1})};
  p.loraB = {encode(t, {1, 2, 0.5, -1})};
  p.topkWeights = {0.5f};
  p.topkIds = {0};
  p.tokenLoraMapping = {0};
  p.adapterEnabled = {1, 0};
  return p;
}

class TinyTest : public ::testing::TestWithParam<DType> {};

} // namespace

TEST_P(TinyTest, AddInputs) {
  MoeLoraProblem p = tinyProblem(GetParam());
  const auto init = encode(p.dtype, {0.5, -1});
  for (auto precision :
       {IntermediatePrecision::RoundToIO, IntermediatePrecision::Fp32}) {
    p.addInputs = true;
    EXPECT_EQ(referenceFusedMoeLora(p, init, precision),
              (std::vector<double>{1.5, 1.25}));
    p.addInputs = false;
    EXPECT_EQ(referenceFusedMoeLora(p, init, precision),
              (std::vector<double>{1.0, 2.25}));
  }
}

TEST_P(TinyTest, MulRoutedWeight) {
  MoeLoraProblem p = tinyProblem(GetParam());
  p.mulRoutedWeight = true; // one pair, one x row either way
  const auto init = encode(p.dtype, {0.5, -1});
  p.addInputs = false;
  EXPECT_EQ(referenceFusedMoeLora(p, init, IntermediatePrecision::Fp32),
            (std::vector<double>{0.5, 1.125}));
  p.addInputs = true;
  EXPECT_EQ(referenceFusedMoeLora(p, init, IntermediatePrecision::Fp32),
            (std::vector<double>{1.0, 0.125}));
}

/// r not representable in T: RoundToIO and Fp32 differ. With eps the spacing
/// of T at [1, 2): x = [1, 1, 1], A rows [1, eps/2, 0] (r0 = 1 + eps/2, a tie
/// that rounds to even 1) and [1, eps/2, eps/4] (r1 = 1 + 3eps/4, rounds up
/// to 1 + eps), B = identity.
TEST_P(TinyTest, IntermediateRounding) {
  const DType t = GetParam();
  const double eps = t == DType::BF16 ? 0x1p-7 : 0x1p-10;
  MoeLoraProblem p = tinyProblem(t);
  p.x = encode(t, {1, 1, 1});
  p.loraA = {encode(t, {1, eps / 2, 0, 1, eps / 2, eps / 4})};
  p.loraB = {encode(t, {1, 0, 0, 1})};
  p.addInputs = false;
  const auto init = encode(t, {0, 0});
  EXPECT_EQ(referenceFusedMoeLora(p, init, IntermediatePrecision::RoundToIO),
            (std::vector<double>{1.0, 1.0 + eps}));
  EXPECT_EQ(referenceFusedMoeLora(p, init, IntermediatePrecision::Fp32),
            (std::vector<double>{1.0 + eps / 2, 1.0 + 3 * eps / 4}));
}

INSTANTIATE_TEST_SUITE_P(Types, TinyTest,
                         ::testing::Values(DType::BF16, DType::F16),
                         [](const auto &info) {
                           return info.param == DType::BF16 ? "bf16" : "fp16";
                         });

/// Every skip rule leaves outInit exactly, also with addInputs=false.
TEST(MoeLoraReferenceTest, SkippedPairsKeepOutInit) {
  ProblemOptions o;
  o.numTokens = 6;
  o.topK = 2;
  o.K = 16;
  o.N = 8;
  o.rank = 4;
  o.numSlices = 2;
  o.maxLoras = 3;
  o.numExperts = 4;
  o.fracNoAdapter = 0;
  o.fracNoExpert = 0;
  MoeLoraProblem p = makeRandomProblem(o);
  // token 0: adapter -1; token 1: disabled adapter 1; token 2: adapter 3
  // (>= maxLoras); token 3: adapter 0 with expert -1 in its second pair;
  // token 4: adapter 2 (computed); token 5: adapter 0 (computed).
  p.tokenLoraMapping = {-1, 1, 3, 0, 2, 0};
  p.adapterEnabled = {1, 0, 1, 1};
  p.topkIds[7] = -1;
  const std::vector<bool> computed = {false, false, false, false, false, false,
                                      true,  false, true,  true,  true,  true};
  const auto init = randomBits(p.dtype, size_t(p.numPairs() * p.outCols()), 7);
  const auto initValues = decode(p.dtype, init);
  for (bool add : {true, false}) {
    p.addInputs = add;
    const auto out =
        referenceFusedMoeLora(p, init, IntermediatePrecision::RoundToIO);
    ASSERT_EQ(out.size(), init.size());
    for (int pair = 0; pair < p.numPairs(); ++pair) {
      int changed = 0;
      for (int c = 0; c < p.outCols(); ++c) {
        const size_t i = size_t(pair * p.outCols() + c);
        if (!computed[size_t(pair)]) {
          EXPECT_EQ(out[i], initValues[i]) << "pair " << pair << " col " << c;
        }
        changed += out[i] != initValues[i];
      }
      if (computed[size_t(pair)]) {
        EXPECT_GT(changed, 0) << "pair " << pair;
      }
    }
  }
}

/// Two tokens, topK 2, two experts, two adapters, two slices. Each x row is
/// distinct; A_s[l][e] picks column 0 of x scaled by c = 1 + e + 2l + 4s, and
/// B is the identity, so out[p][s*N + 0] = x[row(p)][0] * c * (w[p]).
TEST(MoeLoraReferenceTest, TokenMappingFactorSelectsRows) {
  const DType t = DType::BF16;
  for (bool mul : {false, true}) {
    MoeLoraProblem p;
    p.dtype = t;
    p.numTokens = 2;
    p.topK = 2;
    p.K = 2;
    p.N = 2;
    p.rank = 2;
    p.numSlices = 2;
    p.maxLoras = 2;
    p.numExperts = 2;
    p.mulRoutedWeight = mul;
    p.addInputs = false;
    ASSERT_EQ(p.tokenMappingFactor(), mul ? 1 : 2);
    std::vector<double> xv;
    for (int row = 0; row < p.xRows(); ++row)
      xv.insert(xv.end(), {double(row + 1), 0.25});
    p.x = encode(t, xv);
    for (int s = 0; s < 2; ++s) {
      std::vector<double> a, b;
      for (int l = 0; l < 2; ++l)
        for (int e = 0; e < 2; ++e) {
          const double c = 1 + e + 2 * l + 4 * s;
          a.insert(a.end(), {c, 0, 0, 0});
          b.insert(b.end(), {1, 0, 0, 1});
        }
      p.loraA.push_back(encode(t, a));
      p.loraB.push_back(encode(t, b));
    }
    p.topkIds = {1, 0, 0, 1};
    p.topkWeights = {0.5f, 0.25f, 2.0f, 0.125f};
    p.tokenLoraMapping = {1, 0};
    p.adapterEnabled = {1, 1, 0};
    const auto init = encode(t, std::vector<double>(16, 3.0));
    const auto out =
        referenceFusedMoeLora(p, init, IntermediatePrecision::RoundToIO);
    for (int pair = 0; pair < 4; ++pair) {
      const int row = mul ? pair : pair / 2;
      const int l = p.tokenLoraMapping[size_t(pair / 2)];
      const int e = p.topkIds[size_t(pair)];
      const double w = mul ? p.topkWeights[size_t(pair)] : 1.0;
      for (int s = 0; s < 2; ++s) {
        const double c = 1 + e + 2 * l + 4 * s;
        EXPECT_EQ(out[size_t(pair * 4 + s * 2)], (row + 1) * c * w)
            << "mul " << mul << " pair " << pair << " slice " << s;
        EXPECT_EQ(out[size_t(pair * 4 + s * 2 + 1)], 0.0);
      }
    }
  }
}

/// Computed another way: y = (B A) x with the product B A formed first.
TEST(MoeLoraReferenceTest, MatchesAssociatedProductInFp32Mode) {
  ProblemOptions o;
  o.dtype = DType::F16;
  o.numTokens = 9;
  o.topK = 3;
  o.K = 40;
  o.N = 24;
  o.rank = 8;
  o.numSlices = 2;
  o.maxLoras = 3;
  o.numExperts = 5;
  o.seed = 42;
  o.fracDisabledAdapter = 0.2;
  for (bool mul : {false, true}) {
    o.mulRoutedWeight = mul;
    const MoeLoraProblem p = makeRandomProblem(o);
    const auto init =
        randomBits(p.dtype, size_t(p.numPairs() * p.outCols()), 3);
    const auto out =
        referenceFusedMoeLora(p, init, IntermediatePrecision::Fp32);
    const auto v = [&](uint16_t b) { return double(toFloat(p.dtype, b)); };
    for (int pair = 0; pair < p.numPairs(); ++pair) {
      const int l = p.tokenLoraMapping[size_t(pair / p.topK)];
      const int e = p.topkIds[size_t(pair)];
      const bool active = l >= 0 && l < p.maxLoras &&
                          p.adapterEnabled[size_t(l)] != 0 && e >= 0;
      const size_t row = size_t(pair / p.tokenMappingFactor());
      for (int s = 0; s < p.numSlices; ++s)
        for (int n = 0; n < p.N; ++n) {
          const size_t i = size_t(pair * p.outCols() + s * p.N + n);
          if (!active) {
            EXPECT_EQ(out[i], v(init[i]));
            continue;
          }
          const size_t le = size_t(l * p.numExperts + e);
          double y = 0;
          for (int k = 0; k < p.K; ++k) {
            double w = 0; // (B A)[n][k]
            for (int j = 0; j < p.rank; ++j)
              w += v(p.loraB[s][(le * p.N + n) * p.rank + j]) *
                   v(p.loraA[s][(le * p.rank + j) * p.K + k]);
            y += w * v(p.x[row * p.K + k]);
          }
          if (mul)
            y *= p.topkWeights[size_t(pair)];
          EXPECT_NEAR(out[i], v(init[i]) + y, 1e-12);
        }
    }
  }
}

TEST(MoeLoraReferenceTest, RoundToIOStaysCloseToFp32) {
  ProblemOptions o;
  o.numTokens = 16;
  o.K = 256;
  o.N = 128;
  o.rank = 32;
  o.numSlices = 2;
  o.addInputs = false;
  o.seed = 5;
  const MoeLoraProblem p = makeRandomProblem(o);
  const std::vector<uint16_t> init(size_t(p.numPairs() * p.outCols()), 0);
  const auto a = referenceFusedMoeLora(p, init, IntermediatePrecision::Fp32);
  const auto b =
      referenceFusedMoeLora(p, init, IntermediatePrecision::RoundToIO);
  const double err = relativeL2Error(b, a);
  EXPECT_GT(err, 0.0);
  EXPECT_LT(err, 1e-2); // bf16 has 8 significant bits
}

TEST(MoeLoraReferenceTest, RejectsInvalidInput) {
  MoeLoraProblem p = tinyProblem(DType::BF16);
  const std::vector<uint16_t> init(2, 0);
  const auto run = [&] {
    return referenceFusedMoeLora(p, init, IntermediatePrecision::Fp32);
  };
  EXPECT_NO_THROW(run());
  p.topkIds = {1}; // numExperts = 1
  EXPECT_THROW(run(), std::invalid_argument);
  p = tinyProblem(DType::BF16);
  p.x.pop_back();
  EXPECT_THROW(run(), std::invalid_argument);
  p = tinyProblem(DType::BF16);
  p.loraB[0].push_back(0);
  EXPECT_THROW(run(), std::invalid_argument);
  p = tinyProblem(DType::BF16);
  p.mulRoutedWeight = true;
  p.topkWeights.clear();
  EXPECT_THROW(run(), std::invalid_argument);
  p = tinyProblem(DType::BF16);
  try {
    referenceFusedMoeLora(p, std::vector<uint16_t>(3, 0),
                          IntermediatePrecision::Fp32);
    FAIL() << "no exception";
  } catch (const std::invalid_argument &e) {
    EXPECT_NE(std::string(e.what()).find("outInit"), std::string::npos)
        << e.what();
  }
}

/// The GPU suites call the reference at K=6144, N=2048, R=128 on a few dozen
/// pairs; keep that well under a second or two.
TEST(MoeLoraReferenceTest, LargeShapeIsFast) {
  ProblemOptions o;
  o.numTokens = 16;
  o.topK = 2;
  o.K = 6144;
  o.N = 2048;
  o.rank = 128;
  o.numSlices = 2;
  o.maxLoras = 1;
  o.numExperts = 2;
  o.fracNoAdapter = 0;
  o.fracNoExpert = 0;
  const MoeLoraProblem p = makeRandomProblem(o);
  const auto init = randomBits(p.dtype, size_t(p.numPairs() * p.outCols()), 1);
  const auto start = std::chrono::steady_clock::now();
  const auto out =
      referenceFusedMoeLora(p, init, IntermediatePrecision::RoundToIO);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ASSERT_EQ(out.size(), init.size());
  for (double v : out)
    ASSERT_TRUE(std::isfinite(v));
  EXPECT_LT(seconds, 5.0);
}

TEST(RelativeL2ErrorTest, Basics) {
  const std::vector<double> ref = {3, -4};
  EXPECT_EQ(relativeL2Error(ref, ref), 0.0);
  EXPECT_DOUBLE_EQ(relativeL2Error({3.3, -4.4}, ref), 0.1);
  // ||(1, 0)|| / ||(3, -4)|| = 1/5.
  EXPECT_DOUBLE_EQ(relativeL2Error({4, -4}, ref), 0.2);
  EXPECT_DOUBLE_EQ(relativeL2Error({0, 0}, ref), 1.0);
  EXPECT_EQ(relativeL2Error({}, {}), 0.0);
  EXPECT_EQ(relativeL2Error({0, 0}, {0, 0}), 0.0);
  EXPECT_EQ(relativeL2Error({1, 0}, {0, 0}),
            std::numeric_limits<double>::infinity());
  EXPECT_THROW(relativeL2Error({1}, ref), std::invalid_argument);
}
