//===- AlignBlockSizeReferenceTest.cpp - reference align_block_size -------===//

#include "moelora/Reference/ProblemGenerator.h"
#include "moelora/Reference/Reference.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using namespace moelora;

namespace {

std::vector<int32_t> row(const std::vector<int32_t> &v, size_t r,
                         size_t width) {
  return std::vector<int32_t>(v.begin() + r * width,
                              v.begin() + (r + 1) * width);
}

/// Pairs (t, k) -> p = 2t + k:
///   t0 (adapter 0): experts [2, 0]   -> p0: e2, p1: e0
///   t1 (adapter 1): experts [0, -1]  -> p2: e0, p3 dropped
///   t2 (adapter 0): experts [3, 2]   -> p4: e3, p5: e2
///   t3 (adapter -1): experts [1, 0]  -> dropped
const std::vector<int32_t> kTopkIds = {2, 0, 0, -1, 3, 2, 1, 0};
const std::vector<int32_t> kMapping = {0, 1, 0, -1};

} // namespace

TEST(AlignCapacityTest, Formula) {
  EXPECT_EQ(alignCapacity(4, 2, 4, 4), 20); // 8 + 4*3 = 20
  EXPECT_EQ(alignCapacity(5, 2, 4, 4), 24); // 10 + 12 = 22 -> 24
  EXPECT_EQ(alignCapacity(0, 8, 64, 16), 960);
  EXPECT_EQ(alignCapacity(3, 1, 7, 1), 3);
  EXPECT_EQ(alignCapacity(100, 8, 256, 64), 16960); // 800 + 16128 = 16928
  EXPECT_THROW(alignCapacity(4, 2, 4, 0), std::invalid_argument);
}

TEST(AlignBlockSizeReferenceTest, HandComputedExample) {
  const auto res = referenceAlignBlockSize(kTopkIds, kMapping, /*numTokens=*/4,
                                           /*topK=*/2, /*numExperts=*/4,
                                           /*maxLoras=*/2, /*blockM=*/4);
  ASSERT_EQ(res.EM, 20);
  const int32_t P = 8; // padding value numTokens*topK
  const std::vector<int32_t> expected = {
      // adapter 0: e0 [1], e2 [0, 5], e3 [4], each padded to 4
      1, P, P, P, 0, 5, P, P, 4, P, P, P, P, P, P, P, P, P, P, P,
      // adapter 1: e0 [2]
      2, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P, P};
  EXPECT_EQ(res.sortedTokenIds, expected);
  EXPECT_EQ(res.expertIds,
            (std::vector<int32_t>{0, 2, 3, -1, -1, 0, -1, -1, -1, -1}));
  EXPECT_EQ(res.numTokensPostPadded, (std::vector<int32_t>{12, 4}));
}

TEST(AlignBlockSizeReferenceTest, AdapterWithoutTokens) {
  const auto res = referenceAlignBlockSize(kTopkIds, kMapping, 4, 2, 4,
                                           /*maxLoras=*/3, 4);
  ASSERT_EQ(res.EM, 20);
  ASSERT_EQ(res.sortedTokenIds.size(), 60u);
  ASSERT_EQ(res.expertIds.size(), 15u);
  EXPECT_EQ(row(res.sortedTokenIds, 2, 20), std::vector<int32_t>(20, 8));
  EXPECT_EQ(row(res.expertIds, 2, 5), std::vector<int32_t>(5, -1));
  EXPECT_EQ(res.numTokensPostPadded, (std::vector<int32_t>{12, 4, 0}));
}

TEST(AlignBlockSizeReferenceTest, BlockOfOneAndFullGroups) {
  // blockM 1: no padding at all.
  auto res = referenceAlignBlockSize(kTopkIds, kMapping, 4, 2, 4, 2, 1);
  ASSERT_EQ(res.EM, 8);
  EXPECT_EQ(row(res.sortedTokenIds, 0, 8),
            (std::vector<int32_t>{1, 0, 5, 4, 8, 8, 8, 8}));
  EXPECT_EQ(row(res.expertIds, 0, 8),
            (std::vector<int32_t>{0, 2, 2, 3, -1, -1, -1, -1}));
  EXPECT_EQ(res.numTokensPostPadded, (std::vector<int32_t>{4, 1}));

  // blockM 2, one adapter, expert 1 has exactly 2 pairs, expert 0 has 3.
  // Pairs: p0 e1, p1 e0, p2 e0, p3 e1, p4 e0, p5 -1.
  res = referenceAlignBlockSize({1, 0, 0, 1, 0, -1}, {0, 0, 0}, 3, 2, 2, 1, 2);
  ASSERT_EQ(res.EM, 8); // 6 + 2 = 8
  EXPECT_EQ(res.sortedTokenIds, (std::vector<int32_t>{1, 2, 4, 6, 0, 3, 6, 6}));
  EXPECT_EQ(res.expertIds, (std::vector<int32_t>{0, 0, 1, -1}));
  EXPECT_EQ(res.numTokensPostPadded, (std::vector<int32_t>{6}));
}

TEST(AlignBlockSizeReferenceTest, RejectsInvalidArguments) {
  const auto expectMessage = [](auto fn, const std::string &word) {
    try {
      fn();
      ADD_FAILURE() << "no exception for " << word;
    } catch (const std::invalid_argument &e) {
      EXPECT_NE(std::string(e.what()).find(word), std::string::npos)
          << e.what();
    }
  };
  expectMessage(
      [] { referenceAlignBlockSize(kTopkIds, kMapping, 4, 2, 4, 2, 0); },
      "blockM");
  expectMessage(
      [] { referenceAlignBlockSize(kTopkIds, kMapping, 4, 2, 4, 2, -4); },
      "blockM");
  expectMessage(
      [] { referenceAlignBlockSize(kTopkIds, kMapping, 4, 3, 4, 2, 4); },
      "topkIds");
  expectMessage(
      [] {
        referenceAlignBlockSize(kTopkIds, {0, 1, 0}, 4, 2, 4, 2, 4);
      },
      "tokenLoraMapping");
  expectMessage(
      [] { referenceAlignBlockSize(kTopkIds, kMapping, 4, 2, 3, 2, 4); },
      "numExperts"); // expert 3 with 3 experts
  expectMessage(
      [] { referenceAlignBlockSize(kTopkIds, kMapping, 4, 2, 4, 0, 4); },
      "maxLoras");
}

/// Invariants on random problems.
TEST(AlignBlockSizeReferenceTest, RandomInvariants) {
  int checkedPairs = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    ProblemOptions o;
    o.numTokens = 1 + int(seed * 37 % 97);
    o.topK = 1 + int(seed % 4);
    o.numExperts = 4 + int(seed % 13);
    o.maxLoras = 1 + int(seed % 4);
    o.K = o.N = 1;
    o.rank = 1;
    o.seed = seed;
    o.fracNoAdapter = 0.2;
    o.fracNoExpert = 0.1;
    o.expertsUsed = seed % 3 == 0 ? o.topK : 0;
    const MoeLoraProblem p = makeRandomProblem(o);
    for (int blockM : {1, 4, 16, 64}) {
      SCOPED_TRACE("seed " + std::to_string(seed) + " blockM " +
                   std::to_string(blockM));
      const auto res =
          referenceAlignBlockSize(p.topkIds, p.tokenLoraMapping, p.numTokens,
                                  p.topK, p.numExperts, p.maxLoras, blockM);
      const int pairs = p.numPairs();
      const size_t EM = size_t(res.EM);
      ASSERT_EQ(res.EM,
                alignCapacity(p.numTokens, p.topK, p.numExperts, blockM));
      ASSERT_EQ(res.EM % blockM, 0);
      const size_t blocks = EM / size_t(blockM);
      ASSERT_EQ(res.sortedTokenIds.size(), size_t(p.maxLoras) * EM);
      ASSERT_EQ(res.expertIds.size(), size_t(p.maxLoras) * blocks);
      ASSERT_EQ(res.numTokensPostPadded.size(), size_t(p.maxLoras));

      std::vector<int> seen(size_t(pairs), 0);
      for (int l = 0; l < p.maxLoras; ++l) {
        const int32_t *sorted = res.sortedTokenIds.data() + size_t(l) * EM;
        const int32_t *experts = res.expertIds.data() + size_t(l) * blocks;
        const int ntpp = res.numTokensPostPadded[size_t(l)];
        ASSERT_GE(ntpp, 0);
        ASSERT_LE(ntpp, res.EM);
        ASSERT_EQ(ntpp % blockM, 0);
        int prevExpert = -1, prevPair = -1;
        for (int b = 0; b < ntpp / blockM; ++b) {
          const int e = experts[b];
          ASSERT_GE(e, prevExpert) << "block " << b;
          ASSERT_LT(e, p.numExperts);
          // Every used block starts with a real pair (padding < blockM).
          ASSERT_LT(sorted[size_t(b) * size_t(blockM)], pairs);
          bool inPadding = false;
          for (int i = 0; i < blockM; ++i) {
            const int32_t id = sorted[size_t(b * blockM + i)];
            if (id == pairs) {
              inPadding = true;
              continue;
            }
            ASSERT_FALSE(inPadding) << "pair after padding in block " << b;
            ASSERT_GE(id, 0);
            ASSERT_LT(id, pairs);
            ASSERT_EQ(p.topkIds[size_t(id)], e);
            ASSERT_EQ(p.tokenLoraMapping[size_t(id / p.topK)], l);
            if (e == prevExpert) {
              ASSERT_GT(id, prevPair) << "not stable inside expert " << e;
            }
            prevExpert = e;
            prevPair = id;
            ++seen[size_t(id)];
          }
          // A group's padding ends the group: the next block is a new expert.
          if (inPadding && b + 1 < ntpp / blockM) {
            ASSERT_GT(experts[b + 1], e);
          }
        }
        for (size_t i = size_t(ntpp); i < EM; ++i)
          ASSERT_EQ(sorted[i], pairs);
        for (size_t b = size_t(ntpp / blockM); b < blocks; ++b)
          ASSERT_EQ(experts[b], -1);
      }
      for (int q = 0; q < pairs; ++q) {
        const int l = p.tokenLoraMapping[size_t(q / p.topK)];
        const bool valid =
            l >= 0 && l < p.maxLoras && p.topkIds[size_t(q)] >= 0;
        ASSERT_EQ(seen[size_t(q)], valid ? 1 : 0) << "pair " << q;
        checkedPairs += valid;
      }
    }
  }
  EXPECT_GT(checkedPairs, 1000);
}
