//===- DispatcherTest.cpp - vLLM's dispatch rules, R > 128, tuned table ---===//
//
// planFusedMoeLora against kernel-contract.md "vLLM's dispatch" on an H100
// (132 SMs: NPID > 1 only below 198 programs).
//
//===----------------------------------------------------------------------===//

#include "moelora/Runtime/Dispatcher.h"
#include "moelora/Runtime/KernelLauncher.h"
#include "moelora/Spec/SpecValidation.h"
#include "moelora/Spec/TileBytes.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

using namespace moelora;
using ::testing::HasSubstr;

namespace {

const DeviceInfo kH100{90, 132, "NVIDIA H100 80GB HBM3"};
constexpr long kTarget = 132 * 3 / 2; // 1.5 x SMs

/// A naive-metadata call (qwen3moe-like W13 by default).
MoeLoraCall naiveCall(int tokens, int topK = 8, int K = 2048, int N = 1408,
                      int rank = 16, int slices = 2) {
  MoeLoraCall c;
  c.dtype = DType::BF16;
  c.numTokens = tokens;
  c.topK = topK;
  c.K = K;
  c.N = N;
  c.rank = rank;
  c.numSlices = slices;
  c.maxLoras = 4;
  c.numActiveLoras = 4;
  c.numExperts = 64;
  return c;
}

int alignCapacity(int pairs, int experts, int bm) {
  long n = long(pairs) + long(experts) * (bm - 1);
  return int((n + bm - 1) / bm * bm);
}

MoeLoraCall sortedCall(int tokens, int blockSizeM = 16, int topK = 8,
                       int K = 2048, int N = 1408, int rank = 16,
                       int slices = 2) {
  MoeLoraCall c = naiveCall(tokens, topK, K, N, rank, slices);
  c.sorted = true;
  c.blockSizeM = blockSizeM;
  c.EM = alignCapacity(c.numPairs(), c.numExperts, blockSizeM);
  return c;
}

DispatchPlan planOk(const MoeLoraCall &c, bool sharded = false,
                    const TunedTable *t = nullptr,
                    const DeviceInfo &d = kH100) {
  auto p = planFusedMoeLora(c, sharded, d, t);
  EXPECT_TRUE(p) << p.error().message;
  return p ? *p : DispatchPlan{};
}

long ceilDiv(long a, long b) { return (a + b - 1) / b; }

/// A table of one entry, the sorted bf16 R 16 (K 2048, N 1408, two slices)
/// bucket of `path`, with these config members.
Expected<TunedTable> parseOneEntryTable(const char *path,
                                        const std::string &config) {
  return TunedTable::parse(
      fmt::format(R"({{"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {{"path": "{}", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {{{}}}}}]}})",
                  path, config),
      "t.json");
}
/// parseOneEntryTable's table; a parse error fails the test.
TunedTable oneEntryTable(const char *path, const std::string &config) {
  auto t = parseOneEntryTable(path, config);
  if (!t) {
    ADD_FAILURE() << t.error().message;
    return TunedTable{};
  }
  return *t;
}

TEST(DispatcherTest, PathNames) {
  EXPECT_EQ(toString(DispatchPath::None), "none");
  EXPECT_EQ(toString(DispatchPath::SmallBatch), "small_batch");
  EXPECT_EQ(toString(DispatchPath::OneShot), "one_shot");
  EXPECT_EQ(toString(DispatchPath::TwoKernel), "two_kernel");
}

// One-shot and expand variants stage 16-byte output rows only where every
// row is 16-byte aligned; otherwise the element-wise epilogue.
TEST(DispatcherTest, AlignedOutputFollowsTheCall) {
  auto stages = [](const MoeLoraCall &c, bool sharded) {
    DispatchPlan p = planOk(c, sharded);
    EXPECT_FALSE(p.kernels.empty());
    return p.kernels.empty() ? false : p.kernels.back().spec.alignedOutput;
  };
  for (bool sharded : {false, true}) {
    MoeLoraCall c = sortedCall(256, 64);
    c.outStride = int64_t(c.numSlices) * c.N;
    EXPECT_TRUE(stages(c, sharded)); // shape only: no pointer yet
    alignas(16) static char buffer[64];
    c.out = buffer;
    EXPECT_TRUE(stages(c, sharded));
    c.out = buffer + 2; // 2-byte aligned: an element, not a row chunk
    EXPECT_FALSE(stages(c, sharded));
    c.out = buffer;
    c.outStride += 4;
    EXPECT_FALSE(stages(c, sharded));
    c = sortedCall(256, 64, 8, 2048, 1004);
    c.outStride = int64_t(c.numSlices) * c.N;
    EXPECT_FALSE(stages(c, sharded));
  }
  // Families that never stage output keep the default, so a misaligned
  // call does not split their variants.
  MoeLoraCall decode = naiveCall(1, 8, 2048, 1004);
  DispatchPlan small = planOk(decode);
  ASSERT_EQ(small.path, DispatchPath::SmallBatch);
  EXPECT_TRUE(small.kernels[0].spec.alignedOutput);
  MoeLoraCall sharded = sortedCall(256, 64, 8, 2048, 1004);
  DispatchPlan two = planOk(sharded, true);
  ASSERT_EQ(two.path, DispatchPath::TwoKernel);
  EXPECT_TRUE(two.kernels[0].spec.alignedOutput);  // shrink
  EXPECT_FALSE(two.kernels[1].spec.alignedOutput); // expand
  EXPECT_TRUE(outputRowsAligned(naiveCall(4), 0));
  EXPECT_FALSE(outputRowsAligned(naiveCall(4), 4));
}

TEST(DispatcherTest, EmptyWorkPlansNothing) {
  for (bool sorted : {false, true})
    for (bool sharded : {false, true})
      for (int which = 0; which < 4; ++which) {
        MoeLoraCall c = sorted ? sortedCall(64) : naiveCall(64);
        switch (which) {
        case 0:
          c.numTokens = 0;
          break;
        case 1:
          c.numSlices = 0;
          break;
        case 2:
          c.numActiveLoras = 0;
          break;
        case 3:
          c.N = 0;
          break;
        }
        SCOPED_TRACE(::testing::Message()
                     << "sorted=" << sorted << " sharded=" << sharded
                     << " empty field #" << which);
        DispatchPlan p = planOk(c, sharded);
        EXPECT_EQ(p.path, DispatchPath::None);
        EXPECT_TRUE(p.kernels.empty());
        EXPECT_EQ(p.workspaceBytes, 0u);
        EXPECT_FALSE(p.fromTunedTable);
      }
}

TEST(DispatcherTest, FullyShardedIsTwoKernel) {
  for (bool sorted : {false, true})
    for (int tokens : {1, 64, 4096}) {
      MoeLoraCall c = sorted ? sortedCall(tokens) : naiveCall(tokens);
      c.mulRoutedWeight = true;
      SCOPED_TRACE(::testing::Message()
                   << "sorted=" << sorted << " tokens=" << tokens);
      DispatchPlan p = planOk(c, /*sharded=*/true);
      EXPECT_EQ(p.path, DispatchPath::TwoKernel);
      ASSERT_EQ(p.kernels.size(), 2u);
      const KernelSpec &shrink = p.kernels[0].spec;
      const KernelSpec &expand = p.kernels[1].spec;
      EXPECT_EQ(shrink.family, KernelFamily::Shrink);
      EXPECT_EQ(expand.family, KernelFamily::Expand);
      EXPECT_EQ(p.workspaceBytes,
                size_t(c.numSlices) * c.numPairs() * c.rank * 2);
      EXPECT_EQ(p.workspaceBytes, intermediateBytes(c));
      // Both halves see the metadata layout and the shape flags; the shrink
      // reduces over K and never adds into its output, the expand over R.
      for (const KernelSpec *s : {&shrink, &expand}) {
        EXPECT_EQ(s->sorted, sorted);
        EXPECT_EQ(s->rank, c.rank);
        EXPECT_EQ(s->numSlices, c.numSlices);
        EXPECT_EQ(s->sm, kH100.sm);
        EXPECT_EQ(s->blockM, sorted ? c.blockSizeM : 16);
      }
      EXPECT_EQ(shrink.k, c.K);
      EXPECT_FALSE(shrink.addInputs);
      EXPECT_TRUE(shrink.mulRoutedWeight) << "selects x's row per pair";
      EXPECT_FALSE(expand.k.has_value());
      EXPECT_TRUE(expand.addInputs);
      EXPECT_TRUE(expand.mulRoutedWeight);
      EXPECT_NE(shrink.cacheKey(), expand.cacheKey());
    }
}

TEST(DispatcherTest, TwoKernelShrinkSplitsLongKWhenProgramsAreFew) {
  // mixtral-like W2 (8 experts, top_k 2, K 7168, one slice), sorted with
  // BLOCK_SIZE_M 64: at 64 tokens about 34 row blocks walk 112 BLOCK_K
  // steps each.
  auto shrinkOf = [](int tokens, int K) {
    MoeLoraCall c = sortedCall(tokens, 64, 2, K, 4096, 16, 1);
    c.numExperts = 8;
    c.EM = alignCapacity(c.numPairs(), c.numExperts, 64);
    DispatchPlan p = planOk(c, /*sharded=*/true);
    EXPECT_EQ(p.path, DispatchPath::TwoKernel);
    return p.kernels.at(0).spec;
  };
  KernelSpec small = shrinkOf(64, 7168);
  EXPECT_GT(small.splitK, 1);
  // Programs x SPLIT_K stay within 4 per SM, each split >= 8 BLOCK_K steps.
  EXPECT_LE(34L * small.splitK, 4L * kH100.smCount);
  EXPECT_GE(7168 / small.blockK / small.splitK, 8);
  // 4096 tokens: about 160 row blocks, one split more; 16384: none.
  EXPECT_EQ(shrinkOf(4096, 7168).splitK, 2);
  EXPECT_EQ(shrinkOf(16384, 7168).splitK, 1);
  // A short K is not split: 512 / 64 = 8 steps.
  EXPECT_EQ(shrinkOf(64, 512).splitK, 1);
  EXPECT_EQ(small.family, KernelFamily::Shrink);
  // The splits are a thread-block cluster (deterministic sums): none before
  // sm_90.
  MoeLoraCall c = sortedCall(64, 64, 2, 7168, 4096, 16, 1);
  c.numExperts = 8;
  c.EM = alignCapacity(c.numPairs(), c.numExperts, 64);
  auto a100 = planFusedMoeLora(c, /*fullySharded=*/true,
                               DeviceInfo{80, 108, "NVIDIA A100"}, nullptr);
  ASSERT_TRUE(a100) << a100.error().message;
  EXPECT_EQ(a100->kernels.at(0).spec.splitK, 1);
}

// Without a tuned entry the sorted W13 shrink computes both slices in one
// program at rank <= 16 (where x outweighs A; measured in h200-v28); W2 (one
// slice), larger ranks and naive metadata keep one program per slice.
TEST(DispatcherTest, TwoKernelShrinkFusesSlicesAtSmallRank) {
  auto shrinkOf = [](int tokens, int rank, int slices) {
    MoeLoraCall c = sortedCall(tokens, 64, 8, 2048, 1408, rank, slices);
    c.numExperts = 128;
    c.EM = alignCapacity(c.numPairs(), c.numExperts, 64);
    DispatchPlan p = planOk(c, /*sharded=*/true);
    EXPECT_EQ(p.path, DispatchPath::TwoKernel);
    return p.kernels.at(0);
  };
  PlannedKernel fused = shrinkOf(4096, 16, 2);
  EXPECT_TRUE(fused.spec.fusesSlices());
  EXPECT_TRUE(shrinkOf(64, 8, 2).spec.fusesSlices());
  EXPECT_FALSE(shrinkOf(4096, 16, 1).spec.fusesSlices()); // W2
  EXPECT_FALSE(shrinkOf(4096, 32, 2).spec.fusesSlices());
  EXPECT_FALSE(shrinkOf(64, 64, 2).spec.fusesSlices());
  // Naive metadata: one x row per program, nothing to share.
  MoeLoraCall naive = naiveCall(8, 8, 2048, 1408, 16, 2);
  EXPECT_FALSE(
      planOk(naive, /*sharded=*/true).kernels.at(0).spec.fusesSlices());

  // The fused shrink's grid has no slice factor; the intermediate and the
  // expand are unchanged.
  MoeLoraCall c = sortedCall(4096, 64, 8, 2048, 1408, 16, 2);
  c.numExperts = 128;
  c.EM = alignCapacity(c.numPairs(), c.numExperts, 64);
  KernelSpec plain = fused.spec;
  plain.fuseSlices = false;
  EXPECT_EQ(launchGeometry(plain, c, fused.knobs).blocksX,
            2 * launchGeometry(fused.spec, c, fused.knobs).blocksX);
}

TEST(DispatcherTest, TwoKernelExpandSharesNAmongFewRowBlocks) {
  auto expandOf = [](int tokens) {
    MoeLoraCall c = sortedCall(tokens, 64, 2, 7168, 4096, 16, 1);
    c.numExperts = 8;
    c.EM = alignCapacity(c.numPairs(), c.numExperts, 64);
    DispatchPlan p = planOk(c, /*sharded=*/true);
    EXPECT_EQ(p.path, DispatchPath::TwoKernel);
    return p.kernels.at(1);
  };
  // 64 tokens: about 34 row blocks for 4096 / BLOCK_N tiles each.
  PlannedKernel few = expandOf(64);
  EXPECT_EQ(few.spec.family, KernelFamily::Expand);
  const int nTiles = 4096 / few.spec.blockN;
  EXPECT_GT(few.knobs.npid, 1);
  EXPECT_GE(nTiles / few.knobs.npid, 2) << "each program keeps two tiles";
  EXPECT_LT(34L * few.knobs.npid / 2, 4L * kH100.smCount);
  // 16384 tokens: the row blocks alone fill the SMs.
  EXPECT_EQ(expandOf(16384).knobs.npid, 1);
}

TEST(DispatcherTest, TwoKernelExpandFitsTheDeviceSharedMemory) {
  // R 256: a stage holds a BLOCK_N x 264 tile of B; sm_86/89 allow 99 KB.
  for (int sm : {80, 86, 89, 90})
    for (int bm : {16, 64, 128}) {
      SCOPED_TRACE(::testing::Message() << "sm_" << sm << " BLOCK_M " << bm);
      MoeLoraCall c = sortedCall(64, bm);
      c.rank = 256;
      DeviceInfo d{sm, 84, "some GPU"};
      DispatchPlan p = planOk(c, /*sharded=*/false, nullptr, d);
      ASSERT_EQ(p.path, DispatchPath::TwoKernel);
      const KernelSpec &expand = p.kernels.at(1).spec;
      EXPECT_LE(expandKernelSharedBytes(expand), maxDynamicSharedBytes(sm));
      EXPECT_GE(expand.numStages, 2);
      if (sm == 90 && bm == 64) {
        EXPECT_EQ(expand.numStages, 3) << "fits as is: not reduced";
      }
    }
}

// vLLM's one-shot tile at rank 64 needs 105 KB of shared memory: on an
// L40S (sm_89, 99 KB) the plan drops to two stages; on Hopper it keeps
// three. Rank 128 before sm_90 takes eight warps (ptxas spills four).
TEST(DispatcherTest, OneShotFitsTheTargetsSharedMemory) {
  MoeLoraCall c = sortedCall(512, 64, 8, 2048, 1408, 64, 2);
  const DeviceInfo l40s{89, 142, "NVIDIA L40S"};
  DispatchPlan l40 = planOk(c, false, nullptr, l40s);
  ASSERT_EQ(l40.path, DispatchPath::OneShot);
  const KernelSpec &s = l40.kernels[0].spec;
  EXPECT_LE(OneShotSharedLayout(s).sharedBytes(s), maxDynamicSharedBytes(89));
  EXPECT_EQ(s.numStages, 2);
  DispatchPlan hopper = planOk(c);
  const KernelSpec &h = hopper.kernels[0].spec;
  EXPECT_GT(OneShotSharedLayout(h).sharedBytes(h), maxDynamicSharedBytes(89));
  EXPECT_EQ(h.numStages, 3);
  EXPECT_EQ(h.blockN, 128);

  MoeLoraCall r128 = sortedCall(512, 64, 8, 2048, 1408, 128, 2);
  EXPECT_EQ(planOk(r128, false, nullptr, DeviceInfo{80, 108, "NVIDIA A100"})
                .kernels[0]
                .spec.numWarps,
            8);
  const KernelSpec big = planOk(r128, false, nullptr, l40s).kernels[0].spec;
  EXPECT_LE(OneShotSharedLayout(big).sharedBytes(big),
            maxDynamicSharedBytes(89));
  EXPECT_TRUE(validateSpec(big).empty());
}

// Few programs give the one-shot eight warps (NPID > 1); at K < 256 its
// BLOCK_K is 64, which eight warps along N (BLOCK_M 16) cannot split into
// k16 steps: the plan keeps four, so every warp has a step.
TEST(DispatcherTest, OneShotWarpsEachHaveAK16Step) {
  for (const DeviceInfo &d : {kH100, DeviceInfo{80, 108, "NVIDIA A100"}}) {
    MoeLoraCall c = sortedCall(4, 16, 8, 128, 1408, 16, 2);
    DispatchPlan p = planOk(c, false, nullptr, d);
    ASSERT_EQ(p.path, DispatchPath::OneShot);
    const KernelSpec &s = p.kernels[0].spec;
    EXPECT_EQ(s.blockK, 64);
    EXPECT_GE(s.blockK / WarpGrid::forTile(s.numWarps, s.blockM).warpsN, 16)
        << s.cacheKey();
    EXPECT_TRUE(validateSpec(s).empty()) << validateSpec(s);
  }
}

TEST(DispatcherTest, LargeRankIsTwoKernelNotACrash) {
  for (int rank : {192, 256})
    for (bool sorted : {false, true}) {
      SCOPED_TRACE(::testing::Message()
                   << "R=" << rank << " sorted=" << sorted);
      MoeLoraCall c = sorted ? sortedCall(64) : naiveCall(64);
      c.rank = rank;
      DispatchPlan p = planOk(c);
      EXPECT_EQ(p.path, DispatchPath::TwoKernel);
      ASSERT_EQ(p.kernels.size(), 2u);
      EXPECT_EQ(p.workspaceBytes, size_t(2) * 512 * rank * 2);
      // The shrink's N tile covers R in power-of-two tiles of at most 64.
      const KernelSpec &shrink = p.kernels[0].spec;
      EXPECT_TRUE(shrink.blockN >= 16 && shrink.blockN <= 64 &&
                  (shrink.blockN & (shrink.blockN - 1)) == 0)
          << shrink.blockN;
    }
  // One-shot still handles R = 128 (vLLM's limit).
  MoeLoraCall c = naiveCall(64);
  c.rank = 128;
  EXPECT_EQ(planOk(c).path, DispatchPath::OneShot);
}

// Every spec the dispatcher plans must be one the generator accepts: a
// rank-16 shrink (BLOCK_SIZE_N 16) on 16-row blocks once asked 4 warps side
// by side along N, 4 columns each, which validateSpec rejects.
TEST(DispatcherTest, EveryPlannedSpecIsValid) {
  int checked = 0;
  for (int rank : {2, 4, 8, 12, 16, 24, 32, 64, 128, 192, 256})
    for (int tokens : {1, 16, 512})
      for (int bm : {0, 16, 32, 64, 128})
        for (bool sharded : {false, true}) {
          MoeLoraCall c = bm ? sortedCall(tokens, bm) : naiveCall(tokens);
          c.rank = rank;
          DispatchPlan p = planOk(c, sharded);
          for (const PlannedKernel &k : p.kernels) {
            EXPECT_EQ(validateSpec(k.spec), "")
                << k.spec.cacheKey() << " (sharded=" << sharded << ")";
            ++checked;
          }
        }
  EXPECT_GT(checked, 300);
}

// The occupancy hint is the family's default unless a tuned entry sets it.
TEST(DispatcherTest, MinBlocksPerSmIsTheFamilyDefault) {
  EXPECT_EQ(planOk(naiveCall(1)).kernels[0].spec.minBlocksPerSm, 2);
  EXPECT_EQ(planOk(sortedCall(512)).kernels[0].spec.minBlocksPerSm, 0);
  DispatchPlan two = planOk(sortedCall(512), /*sharded=*/true);
  ASSERT_EQ(two.kernels.size(), 2u);
  EXPECT_EQ(two.kernels[0].spec.minBlocksPerSm, 0);
  EXPECT_EQ(two.kernels[1].spec.minBlocksPerSm, 0);
}

TEST(DispatcherTest, SmallBatchForNaiveSmallRankAndFewPairs) {
  struct Case {
    int tokens, topK, rank;
    DispatchPath path;
  } cases[] = {
      {1, 8, 16, DispatchPath::SmallBatch},  // 128 <= 1024
      {8, 8, 16, DispatchPath::SmallBatch},  // 64 pairs * 16 = 1024
      {9, 8, 16, DispatchPath::SmallBatch},  // R <= 32: up to 4096
      {32, 8, 16, DispatchPath::SmallBatch}, // 256 pairs * 16 = 4096
      {33, 8, 16, DispatchPath::OneShot},    // 4224 > 4096
      {16, 8, 32, DispatchPath::SmallBatch}, // 128 pairs * 32 = 4096
      {17, 8, 32, DispatchPath::OneShot},    // 4352 > 4096
      {16, 1, 64, DispatchPath::SmallBatch}, // R 64: vLLM's 16 * 64 = 1024
      {17, 1, 64, DispatchPath::OneShot},    // 1088 > 1024
      {1, 8, 64, DispatchPath::SmallBatch},  // 512
      {1, 1, 128, DispatchPath::OneShot},    // R > 64: never small batch
      {1, 8, 128, DispatchPath::OneShot},    //
      {1, 1, 96, DispatchPath::OneShot},     //
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(::testing::Message() << "tokens=" << k.tokens << " top_k="
                                      << k.topK << " R=" << k.rank);
    MoeLoraCall c = naiveCall(k.tokens, k.topK);
    c.rank = k.rank;
    DispatchPlan p = planOk(c);
    EXPECT_EQ(p.path, k.path);
    ASSERT_EQ(p.kernels.size(), 1u);
    EXPECT_EQ(p.kernels[0].spec.family, k.path == DispatchPath::SmallBatch
                                            ? KernelFamily::SmallBatch
                                            : KernelFamily::OneShot);
    if (k.path == DispatchPath::OneShot) {
      EXPECT_EQ(p.kernels[0].spec.blockM, 16);
    }
    EXPECT_EQ(p.workspaceBytes, 0u);
  }
}

TEST(DispatcherTest, SortedNeverUsesSmallBatch) {
  DispatchPlan p = planOk(sortedCall(1));
  EXPECT_EQ(p.path, DispatchPath::OneShot);
}

TEST(DispatcherTest, SmallBatchKnobs) {
  // qwen3moe decode on an H100: 8 pairs x 2 slices = 16 items, 22 tiles of
  // 64 columns. sm_90: 8-block clusters (16 x 8 = 128 blocks <= 132 SMs,
  // K / 8 = 256 >= 128); one chunk of 22 tiles per item (N 1408 < 8 x 256
  // threads): 128 blocks.
  MoeLoraCall c = naiveCall(1);
  DispatchPlan p = planOk(c);
  ASSERT_EQ(p.path, DispatchPath::SmallBatch);
  const PlannedKernel &k = p.kernels[0];
  EXPECT_EQ(k.knobs.smCount, 132);
  EXPECT_EQ(k.spec.splitK, 8);
  EXPECT_EQ(k.spec.numWarps, 8);
  EXPECT_EQ(k.knobs.tilesPerItem, 22);
  EXPECT_EQ(k.spec.k, 2048);
  EXPECT_FALSE(k.spec.sorted);
  LaunchGeometry g = launchGeometry(k.spec, c, k.knobs);
  EXPECT_EQ(g.grid[0], 128u);
  // Without clusters (an A100): 2 x 108 programs -> 2 tiles per item.
  const DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  DispatchPlan pa = planOk(c, false, nullptr, a100);
  EXPECT_EQ(pa.kernels[0].spec.splitK, 1);
  EXPECT_EQ(pa.kernels[0].knobs.tilesPerItem, 2);
  // Per-batch quantities are runtime arguments: every small-batch size
  // shares one kernel (vLLM's 5.9k-graphs lesson); only the cluster size,
  // a compile-time shape, may differ.
  std::set<std::string> keys;
  std::set<int> clusterSizes;
  for (int tokens = 1; tokens <= 32; ++tokens) {
    DispatchPlan q = planOk(naiveCall(tokens));
    ASSERT_EQ(q.path, DispatchPath::SmallBatch);
    keys.insert(q.kernels[0].spec.cacheKey());
    clusterSizes.insert(q.kernels[0].spec.splitK);
    long nTiles = ceilDiv(1408, q.kernels[0].spec.blockN);
    EXPECT_GE(q.kernels[0].knobs.tilesPerItem, 1);
    EXPECT_LE(q.kernels[0].knobs.tilesPerItem, nTiles);
  }
  EXPECT_EQ(keys.size(), clusterSizes.size());
  EXPECT_EQ(clusterSizes, (std::set<int>{1, 2, 4, 8}));
}

// sm_90: clusters of SPLIT_K blocks share a (pair, slice)'s shrink, as
// many as one block per SM allows while each keeps K / SPLIT_K >= 128 (512
// beyond 16 items); at most 4 clusters per (pair, slice).
TEST(DispatcherTest, SmallBatchClusters) {
  // mixtral-like W2 at M=1: 2 items, K 7168 -> SPLIT_K 8; 64 tiles in 2
  // chunks of 32 (N 4096 = 2 x 8 blocks x 256 threads); 4 clusters of 8.
  MoeLoraCall few = naiveCall(1, 2, 7168, 4096, 64, 1);
  DispatchPlan f = planOk(few);
  ASSERT_EQ(f.path, DispatchPath::SmallBatch);
  const PlannedKernel &k = f.kernels[0];
  EXPECT_EQ(k.spec.splitK, 8);
  EXPECT_EQ(k.knobs.tilesPerItem, 32);
  LaunchGeometry g = launchGeometry(k.spec, few, k.knobs);
  EXPECT_EQ(g.grid[0], 2u * 2 * 8);
  // The cluster size shrinks as the batch grows; the grid is whole clusters
  // and at most 2 blocks per SM.
  std::set<std::string> keys;
  std::set<int> clusterSizes;
  for (int tokens = 1; tokens <= 8; ++tokens) {
    MoeLoraCall c = naiveCall(tokens, 8, 7168, 4096, 16, 1);
    DispatchPlan q = planOk(c);
    ASSERT_EQ(q.path, DispatchPath::SmallBatch);
    const PlannedKernel &qk = q.kernels[0];
    keys.insert(qk.spec.cacheKey());
    clusterSizes.insert(qk.spec.splitK);
    EXPECT_LE(long(c.numPairs()) * qk.spec.splitK, 132);
    LaunchGeometry qg = launchGeometry(qk.spec, c, qk.knobs);
    EXPECT_LE(qg.grid[0], 264u);
    EXPECT_EQ(qg.grid[0] % qk.spec.splitK, 0u);
  }
  // 8 and 16 items: 8 blocks each; 24 and 32: 4 (K part >= 512 beyond 16
  // items); 40 to 64: 2.
  EXPECT_EQ(clusterSizes, (std::set<int>{2, 4, 8}));
  EXPECT_EQ(keys.size(), clusterSizes.size());
  // Before sm_90 there are no clusters.
  const DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  EXPECT_EQ(planOk(few, false, nullptr, a100).kernels[0].spec.splitK, 1);
}

TEST(DispatcherTest, OneShotBlockM) {
  // Naive: 16. Sorted: the metadata's block size.
  MoeLoraCall naive = naiveCall(64);
  DispatchPlan p = planOk(naive);
  ASSERT_EQ(p.path, DispatchPath::OneShot);
  EXPECT_EQ(p.kernels[0].spec.blockM, 16);
  EXPECT_FALSE(p.kernels[0].spec.sorted);
  for (int bm : {16, 32, 64, 128}) {
    SCOPED_TRACE(bm);
    DispatchPlan q = planOk(sortedCall(64, bm));
    ASSERT_EQ(q.path, DispatchPath::OneShot);
    EXPECT_EQ(q.kernels[0].spec.blockM, bm);
    EXPECT_TRUE(q.kernels[0].spec.sorted);
    EXPECT_EQ(q.kernels[0].spec.blockN, 128);
    EXPECT_EQ(q.kernels[0].spec.numStages, 3);
  }
}

TEST(DispatcherTest, SortedBadBlockSizeNamesShrinkBlockSizeM) {
  for (int bm : {48, 8, 0, 24, 1}) {
    SCOPED_TRACE(bm);
    MoeLoraCall c = sortedCall(64, 16);
    c.blockSizeM = bm;
    for (bool sharded : {false, true}) {
      auto p = planFusedMoeLora(c, sharded, kH100, nullptr);
      ASSERT_FALSE(p);
      EXPECT_THAT(p.error().message, HasSubstr("shrink_block_size_m"));
      EXPECT_THAT(p.error().message, HasSubstr(std::to_string(bm)));
    }
  }
}

TEST(DispatcherTest, BlockKAndEvenK) {
  struct Case {
    int K, blockK;
    bool evenK;
  } cases[] = {{64, 64, true},     {128, 64, true},   {200, 64, false},
               {255, 64, false},   {256, 128, true},  {320, 128, false},
               {2048, 128, true},  {4096, 128, true}, {6144, 128, true},
               {1000, 128, false}, {96, 64, false}};
  for (bool sorted : {false, true})
    for (const Case &k : cases) {
      SCOPED_TRACE(::testing::Message() << "K=" << k.K << " sorted=" << sorted);
      MoeLoraCall c = sorted ? sortedCall(64) : naiveCall(64);
      c.K = k.K;
      DispatchPlan p = planOk(c);
      ASSERT_EQ(p.path, DispatchPath::OneShot);
      const KernelSpec &s = p.kernels[0].spec;
      EXPECT_EQ(s.blockK, k.blockK);
      EXPECT_EQ(s.k, k.K);
      EXPECT_EQ(s.evenK(), k.evenK);
      EXPECT_EQ(s.evenK(), k.K % s.blockK == 0);
      EXPECT_THAT(s.cacheKey(), HasSubstr(k.evenK ? "even_k=1" : "even_k=0"));
    }
}

/// The one-shot's cluster size on sm_90 for a rule NPID: the next power of
/// two, at most the portable cluster.
long clusterFor(long npid) {
  long c = 2;
  while (c < npid && c < kMaxPortableClusterBlocks)
    c *= 2;
  return npid > 1 ? c : 1;
}

TEST(DispatcherTest, NpidOnlyForShortGrids) {
  // Naive one-shot (R = 128 avoids small batch), one slice: programs = pairs.
  // sm_80 takes the NPID rule as it is; sm_90 turns NPID > 1 into a cluster
  // that splits the shrink (SPLIT_K = NPID).
  const DeviceInfo a100{80, 108, "NVIDIA A100"};
  for (int pairs : {1, 2, 16, 64, 100, 196, 197, 198, 199, 264, 1024, 8192}) {
    SCOPED_TRACE(::testing::Message() << "programs=" << pairs);
    MoeLoraCall c = naiveCall(pairs, 1, 2048, 1408, 128, 1);
    DispatchPlan p = planOk(c);
    ASSERT_EQ(p.path, DispatchPath::OneShot);
    const PlannedKernel &k = p.kernels[0];
    long nTiles = ceilDiv(c.N, k.spec.blockN);
    long ruleNpid =
        pairs < kTarget ? std::min(ceilDiv(kTarget, pairs), nTiles) : 1;
    long expected = clusterFor(ruleNpid);
    EXPECT_EQ(k.spec.splitK, expected);
    EXPECT_TRUE(validateSpec(k.spec).empty()) << validateSpec(k.spec);
    // A copy: the plan planOk returns is a temporary.
    const PlannedKernel old = planOk(c, false, nullptr, a100).kernels[0];
    long target80 = 108 * 3 / 2;
    EXPECT_EQ(old.knobs.npid, pairs < target80
                                  ? std::min(ceilDiv(target80, pairs), nTiles)
                                  : 1);
    EXPECT_EQ(old.spec.splitK, 1);
    EXPECT_EQ(k.knobs.npid, expected);
    EXPECT_EQ(k.spec.numWarps, k.knobs.npid > 1 ? 8 : 4);
    // NPID stays a runtime argument.
    EXPECT_EQ(k.spec.npid, 0);
    LaunchGeometry g = launchGeometry(k.spec, c, k.knobs);
    EXPECT_EQ(g.grid[0], unsigned(pairs * k.knobs.npid));
  }
  // Boundary: 197 programs split, 198 do not.
  EXPECT_EQ(
      planOk(naiveCall(197, 1, 2048, 1408, 128, 1)).kernels[0].spec.splitK, 2);
  EXPECT_EQ(planOk(naiveCall(198, 1, 2048, 1408, 128, 1)).kernels[0].knobs.npid,
            1);
  // One N tile: nothing to split, 4 warps.
  DispatchPlan one = planOk(naiveCall(1, 1, 2048, 128, 128, 1));
  EXPECT_EQ(one.kernels[0].knobs.npid, 1);
  EXPECT_EQ(one.kernels[0].spec.numWarps, 4);
}

TEST(DispatcherTest, NpidCountsSortedProgramsOverSlicesAndAdapters) {
  // Sorted: programs = EM/BLOCK_M x slices x active adapters.
  for (int tokens : {1, 4, 64, 512, 4096}) {
    MoeLoraCall c = sortedCall(tokens, 64);
    DispatchPlan p = planOk(c);
    ASSERT_EQ(p.path, DispatchPath::OneShot);
    long programs = long(c.EM / 64) * c.numSlices * c.numActiveLoras;
    long nTiles = ceilDiv(c.N, 128);
    long expected = clusterFor(
        programs < kTarget ? std::min(ceilDiv(kTarget, programs), nTiles) : 1);
    SCOPED_TRACE(::testing::Message()
                 << "tokens=" << tokens << " programs=" << programs);
    EXPECT_EQ(p.kernels[0].knobs.npid, expected);
    EXPECT_EQ(p.kernels[0].spec.splitK, expected);
    EXPECT_EQ(p.kernels[0].spec.numWarps, expected > 1 ? 8 : 4);
  }
}

TEST(DispatcherTest, NpidUsesDeviceSmCount) {
  // 150 programs: short of 1.5 x 132 = 198, but not of 1.5 x 64 = 96.
  MoeLoraCall c = naiveCall(150, 1, 2048, 1408, 128, 1);
  EXPECT_GT(planOk(c, false, nullptr, kH100).kernels[0].knobs.npid, 1);
  DeviceInfo small{80, 64, "small"};
  EXPECT_EQ(planOk(c, false, nullptr, small).kernels[0].knobs.npid, 1);
  EXPECT_EQ(planOk(c, false, nullptr, small).kernels[0].spec.sm, 80);
}

TEST(DispatcherTest, OneShotSpecDoesNotDependOnBatchSize) {
  // Large batches (NPID 1) share one kernel.
  std::set<std::string> keys;
  for (int tokens : {64, 100, 512, 4096})
    keys.insert(planOk(sortedCall(tokens)).kernels[0].spec.cacheKey());
  EXPECT_EQ(keys.size(), 1u);
}

TEST(DispatcherTest, ShapeFlagsReachTheSpec) {
  MoeLoraCall c = naiveCall(64);
  c.dtype = DType::F16;
  c.mulRoutedWeight = true;
  c.addInputs = false;
  c.numSlices = 3;
  DispatchPlan p = planOk(c);
  ASSERT_EQ(p.kernels.size(), 1u);
  const KernelSpec &s = p.kernels[0].spec;
  EXPECT_EQ(s.dtype, DType::F16);
  EXPECT_TRUE(s.mulRoutedWeight);
  EXPECT_FALSE(s.addInputs);
  EXPECT_EQ(s.numSlices, 3);
  EXPECT_EQ(s.rank, 16);
}

TEST(DispatcherTest, SortedWithoutCapacityIsNotACrash) {
  // A sorted call whose EM holds no block (EM = 0, or EM < BLOCK_M) must be
  // rejected or planned as empty, never divide by zero. moelora_warmup
  // reaches this with sorted_token_ids set and EM = 0 (it validates shapes
  // only). Run in a child process: a SIGFPE would kill the whole suite.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int em : {0, 8}) {
    SCOPED_TRACE(::testing::Message() << "EM=" << em);
    EXPECT_EXIT(
        {
          MoeLoraCall c = sortedCall(4, 16);
          c.EM = em;
          auto p = planFusedMoeLora(c, false, kH100, nullptr);
          (void)p; // an error or any plan is fine: it returned
          std::exit(0);
        },
        ::testing::ExitedWithCode(0), "");
  }
}

//===----------------------------------------------------------------------===//
// Tuned table
//===----------------------------------------------------------------------===//

const char *kTunedJson = R"({
  "format": "moelora-tuned", "version": 1, "gpu": "NVIDIA H100 80GB HBM3",
  "entries": [
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 4096,
     "config": {"BLOCK_SIZE_N": 32, "num_warps": 4, "NPID": 1}},
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 128,
     "config": {"BLOCK_SIZE_N": 16, "num_warps": 2, "NPID": 5}},
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 512,
     "config": {"BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 256, "num_warps": 8,
                "num_stages": 4, "NPID": 3, "min_blocks_per_sm": 1}},
    {"path": "small_batch", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": false, "num_slices": 2, "max_pairs": 64,
     "config": {"BLOCK_SIZE_N": 32, "tiles_per_item": 7}},
    {"path": "small_batch", "dtype": "bf16", "rank": 16, "K": 7168,
     "N": 4096, "sorted": false, "num_slices": 1, "max_pairs": 64,
     "config": {"SPLIT_K": 1}},
    {"path": "two_kernel", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"BLOCK_SIZE_N": 128, "num_warps": 8}}
  ]})";

TunedTable parsedTable(const char *text = kTunedJson) {
  auto t = TunedTable::parse(text, "test-table.json");
  EXPECT_TRUE(t) << t.error().message;
  return t ? *t : TunedTable{};
}

// A table with cluster sizes (made on sm_90) used on an older GPU plans no
// clusters rather than a kernel that cannot be generated.
TEST(DispatcherTunedTest, TunedSplitKNeedsSm90) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "old", "entries": [
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"SPLIT_K": 4}}]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  MoeLoraCall c = sortedCall(40, 16);
  DispatchPlan hopper = planOk(c, false, &*t, DeviceInfo{90, 132, "old"});
  EXPECT_EQ(hopper.kernels[0].spec.splitK, 4);
  EXPECT_EQ(hopper.kernels[0].knobs.npid, 4);
  DispatchPlan ampere = planOk(c, false, &*t, DeviceInfo{80, 108, "old"});
  ASSERT_TRUE(ampere.fromTunedTable);
  EXPECT_EQ(ampere.kernels[0].spec.splitK, 1);
  EXPECT_TRUE(validateSpec(ampere.kernels[0].spec).empty());
}

// A tuned 16-block (non-portable) cluster reaches the plan as measured, with
// NPID following it; the rule alone stays within portable sizes.
TEST(DispatcherTunedTest, TunedSplitKMayBeTheNonPortableCluster) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"SPLIT_K": 16}},
    {"path": "small_batch", "dtype": "bf16", "rank": 16, "K": 7168,
     "N": 4096, "sorted": false, "num_slices": 1, "max_pairs": 64,
     "config": {"SPLIT_K": 16}}]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  DispatchPlan os = planOk(sortedCall(40, 16), false, &*t);
  ASSERT_EQ(os.path, DispatchPath::OneShot);
  EXPECT_EQ(os.kernels[0].spec.splitK, 16);
  EXPECT_EQ(os.kernels[0].knobs.npid, 16);
  EXPECT_TRUE(validateSpec(os.kernels[0].spec).empty());
  MoeLoraCall decode = naiveCall(1, 8, 7168, 4096, 16, 1);
  EXPECT_LE(planOk(decode).kernels[0].spec.splitK, kMaxPortableClusterBlocks);
  DispatchPlan sb = planOk(decode, false, &*t);
  ASSERT_EQ(sb.path, DispatchPath::SmallBatch);
  EXPECT_EQ(sb.kernels[0].spec.splitK, 16);
  EXPECT_TRUE(validateSpec(sb.kernels[0].spec).empty());
}

TEST(DispatcherTunedTest, EntryOverridesOneShotConfig) {
  TunedTable t = parsedTable();
  MoeLoraCall c = sortedCall(40); // 320 pairs: the 512 bucket
  DispatchPlan p = planOk(c, false, &t);
  ASSERT_EQ(p.path, DispatchPath::OneShot);
  EXPECT_TRUE(p.fromTunedTable);
  const PlannedKernel &k = p.kernels[0];
  EXPECT_EQ(k.spec.blockN, 64);
  EXPECT_EQ(k.spec.blockK, 256);
  EXPECT_EQ(k.spec.numWarps, 8);
  EXPECT_EQ(k.spec.numStages, 4);
  EXPECT_EQ(k.knobs.npid, 3);
  EXPECT_EQ(k.spec.minBlocksPerSm, 1);
  // Untuned fields keep their rule values.
  EXPECT_EQ(k.spec.blockM, 16);
  EXPECT_EQ(k.spec.k, 2048);
  // The grid follows the tuned NPID.
  LaunchGeometry g = launchGeometry(k.spec, c, k.knobs);
  EXPECT_EQ(g.grid[0], unsigned(c.EM / 16 * 3 * 2)); // NPID x 2 slices
  EXPECT_EQ(g.block, 8u * 32);
}

TEST(DispatcherTunedTest, SmallestMatchingBucketWins) {
  TunedTable t = parsedTable();
  struct Case {
    int tokens;
    int blockN;
    int npid;
  } cases[] = {
      {16, 16, 5},  // 128 pairs: the 128 bucket, not 512 or 4096
      {17, 64, 3},  // 136 pairs: 512
      {64, 64, 3},  // 512 pairs: 512 (inclusive)
      {65, 32, 1},  // 520 pairs: 4096
      {512, 32, 1}, // 4096 pairs: 4096
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(k.tokens);
    DispatchPlan p = planOk(sortedCall(k.tokens), false, &t);
    ASSERT_EQ(p.path, DispatchPath::OneShot);
    EXPECT_TRUE(p.fromTunedTable);
    EXPECT_EQ(p.kernels[0].spec.blockN, k.blockN);
    EXPECT_EQ(p.kernels[0].knobs.npid, k.npid);
  }
  // Beyond every bucket: the rules.
  DispatchPlan big = planOk(sortedCall(513), false, &t);
  EXPECT_FALSE(big.fromTunedTable);
  EXPECT_EQ(big.kernels[0].spec.blockN, 128);
}

TEST(DispatcherTunedTest, OtherGpuOrShapeIsIgnored) {
  TunedTable t = parsedTable();
  DispatchPlan untuned = planOk(sortedCall(40));
  auto same = [&](const DispatchPlan &p) {
    ASSERT_EQ(p.kernels.size(), 1u);
    EXPECT_FALSE(p.fromTunedTable);
    EXPECT_EQ(p.kernels[0].spec.cacheKey(), untuned.kernels[0].spec.cacheKey());
    EXPECT_EQ(p.kernels[0].knobs.npid, untuned.kernels[0].knobs.npid);
  };
  DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  DispatchPlan other = planOk(sortedCall(40), false, &t, a100);
  EXPECT_FALSE(other.fromTunedTable);
  EXPECT_EQ(other.kernels[0].spec.blockN, 128);
  DeviceInfo renamed = kH100;
  renamed.name = "NVIDIA H100 80GB HBM3 "; // exact match only
  EXPECT_FALSE(planOk(sortedCall(40), false, &t, renamed).fromTunedTable);
  {
    MoeLoraCall c = sortedCall(40);
    c.dtype = DType::F16;
    EXPECT_FALSE(planOk(c, false, &t).fromTunedTable);
  }
  {
    MoeLoraCall c = sortedCall(40);
    c.K = 4096;
    EXPECT_FALSE(planOk(c, false, &t).fromTunedTable);
  }
  {
    MoeLoraCall c = sortedCall(40);
    c.numSlices = 1;
    EXPECT_FALSE(planOk(c, false, &t).fromTunedTable);
  }
  {
    MoeLoraCall c = naiveCall(40); // one_shot entries are for sorted
    EXPECT_FALSE(planOk(c, false, &t).fromTunedTable);
  }
  TunedTable empty;
  empty.gpu = kH100.name;
  same(planOk(sortedCall(40), false, &empty));
}

TEST(DispatcherTunedTest, SmallBatchAndTwoKernelEntries) {
  TunedTable t = parsedTable();
  DispatchPlan sb = planOk(naiveCall(1), false, &t);
  ASSERT_EQ(sb.path, DispatchPath::SmallBatch);
  EXPECT_TRUE(sb.fromTunedTable);
  EXPECT_EQ(sb.kernels[0].spec.blockN, 32);
  EXPECT_EQ(sb.kernels[0].knobs.tilesPerItem, 7);

  // A tuned SPLIT_K without tiles_per_item: the n-chunks follow the tuned
  // cluster size (the rule alone would pick SPLIT_K 4 and 32 tiles).
  MoeLoraCall longK = naiveCall(4, 8, 7168, 4096, 16, 1);
  EXPECT_EQ(planOk(longK).kernels[0].spec.splitK, 4);
  EXPECT_EQ(planOk(longK).kernels[0].knobs.tilesPerItem, 32);
  DispatchPlan plain = planOk(longK, false, &t);
  EXPECT_TRUE(plain.fromTunedTable);
  EXPECT_EQ(plain.kernels[0].spec.splitK, 1);
  EXPECT_EQ(plain.kernels[0].knobs.tilesPerItem, 8); // 64 tiles x 32 / 264

  DispatchPlan tk = planOk(sortedCall(64), /*sharded=*/true, &t);
  ASSERT_EQ(tk.path, DispatchPath::TwoKernel);
  EXPECT_TRUE(tk.fromTunedTable);
  ASSERT_EQ(tk.kernels.size(), 2u);
  EXPECT_EQ(tk.kernels[1].spec.family, KernelFamily::Expand);
  EXPECT_EQ(tk.kernels[1].spec.blockN, 128);
  EXPECT_EQ(tk.kernels[1].spec.numWarps, 8);
}

// A one_shot entry's fuse_slices reaches the one-shot kernel; without one
// the one-shot keeps a program per slice.
TEST(DispatcherTunedTest, OneShotEntryChoosesSliceFusion) {
  const TunedTable t = oneEntryTable("one_shot", R"("fuse_slices": true)");
  DispatchPlan fused = planOk(sortedCall(512, 64), false, &t);
  ASSERT_EQ(fused.path, DispatchPath::OneShot);
  EXPECT_TRUE(fused.kernels[0].spec.fusesSlices());
  EXPECT_TRUE(validateSpec(fused.kernels[0].spec).empty());
  DispatchPlan rule = planOk(sortedCall(512, 64));
  ASSERT_EQ(rule.path, DispatchPath::OneShot);
  EXPECT_FALSE(rule.kernels[0].spec.fusesSlices());
}

// A one_shot entry's wgmma reaches the one-shot kernel where its tile allows
// it (sorted, BLOCK_SIZE_M 64, sm_90); elsewhere the same entry runs the
// mma.sync shrink instead of failing.
TEST(DispatcherTunedTest, OneShotEntryChoosesWgmmaWhereTheTileAllows) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"wgmma": true, "BLOCK_SIZE_K": 64, "num_warps": 8}},
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": false, "num_slices": 2, "max_pairs": 100000,
     "config": {"wgmma": true}}]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  DispatchPlan wg = planOk(sortedCall(512, 64), false, &*t);
  ASSERT_EQ(wg.path, DispatchPath::OneShot);
  EXPECT_TRUE(wg.kernels[0].spec.wgmma);
  EXPECT_EQ(wg.kernels[0].spec.ptxTarget(), "sm_90a");
  EXPECT_TRUE(validateSpec(wg.kernels[0].spec).empty());
  // BLOCK_SIZE_M 16: no warpgroup tile.
  DispatchPlan m16 = planOk(sortedCall(512, 16), false, &*t);
  ASSERT_EQ(m16.path, DispatchPath::OneShot);
  EXPECT_FALSE(m16.kernels[0].spec.wgmma);
  // Naive metadata (BLOCK_M 16) through its own entry.
  DispatchPlan naive = planOk(naiveCall(200), false, &*t);
  ASSERT_EQ(naive.path, DispatchPath::OneShot);
  EXPECT_FALSE(naive.kernels[0].spec.wgmma);
  // No wgmma before sm_90.
  DeviceInfo a100 = kH100;
  a100.sm = 80;
  DispatchPlan old = planOk(sortedCall(512, 64), false, &*t, a100);
  ASSERT_EQ(old.path, DispatchPath::OneShot);
  EXPECT_FALSE(old.kernels[0].spec.wgmma);
  EXPECT_TRUE(validateSpec(old.kernels[0].spec).empty());
  // Without the table: mma.sync.
  EXPECT_FALSE(planOk(sortedCall(512, 64)).kernels[0].spec.wgmma);
}

// few_rows reaches the one-shot kernel (one_shot entry) or the two-kernel
// path's expand (two_kernel entry), never the shrink; without the table,
// no kernel has it.
TEST(DispatcherTunedTest, FewRowsReachesTheKernelThatExpands) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"few_rows": true, "BLOCK_SIZE_K": 64, "num_warps": 8}},
    {"path": "two_kernel", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"few_rows": true, "few_rows_tile": 32, "BLOCK_SIZE_N": 64,
                "num_warps": 8}}]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  DispatchPlan one = planOk(sortedCall(512, 64), false, &*t);
  ASSERT_EQ(one.path, DispatchPath::OneShot);
  EXPECT_TRUE(one.kernels[0].spec.fewRowsExpand());
  EXPECT_EQ(one.kernels[0].spec.fewRowsTile, 16);
  EXPECT_TRUE(validateSpec(one.kernels[0].spec).empty());
  EXPECT_FALSE(planOk(sortedCall(512, 64)).kernels[0].spec.fewRows);
  DispatchPlan two = planOk(sortedCall(512, 64), true, &*t);
  ASSERT_EQ(two.path, DispatchPath::TwoKernel);
  ASSERT_EQ(two.kernels.size(), 2u);
  EXPECT_FALSE(two.kernels[0].spec.fewRows);
  EXPECT_TRUE(validateSpec(two.kernels[0].spec).empty());
  EXPECT_TRUE(two.kernels[1].spec.fewRowsExpand());
  EXPECT_EQ(two.kernels[1].spec.fewRowsTile, 32);
  EXPECT_THAT(two.kernels[1].spec.cacheKey(), ::testing::HasSubstr(";frt=32"));
  EXPECT_TRUE(validateSpec(two.kernels[1].spec).empty());
}

// Tuned entries are not keyed by BLOCK_SIZE_M: a 32-row few-rows tile on a
// call whose BLOCK_SIZE_M 32 has no 32-row shape takes the 16-row one.
TEST(DispatcherTunedTest, FewRowsTileFallsBackTo16WithoutA32RowShape) {
  const TunedTable t = oneEntryTable(
      "one_shot", R"("few_rows": true, "few_rows_tile": 32, "num_warps": 8)");
  DispatchPlan wide = planOk(sortedCall(512, 64), false, &t);
  ASSERT_EQ(wide.path, DispatchPath::OneShot);
  EXPECT_EQ(wide.kernels[0].spec.fewRowsTile, 32);
  EXPECT_TRUE(wide.kernels[0].spec.fewRowsExpand());
  DispatchPlan narrow = planOk(sortedCall(512, 32), false, &t);
  ASSERT_EQ(narrow.path, DispatchPath::OneShot);
  EXPECT_EQ(narrow.kernels[0].spec.fewRowsTile, 16);
  EXPECT_TRUE(narrow.kernels[0].spec.fewRowsExpand());
  EXPECT_TRUE(validateSpec(narrow.kernels[0].spec).empty());
}

// A wgmma entry whose tile the call does not allow (BLOCK_SIZE_M 128 wants
// 8 warps) falls back to mma.sync, whose padded tiles are larger: the plan
// must still fit the device's shared memory (six stages of 144 x 136 bf16
// would not; 144 x 128, wgmma's, would).
TEST(DispatcherTunedTest, WgmmaFallbackFitsSharedMemoryAgain) {
  const TunedTable t = oneEntryTable(
      "one_shot",
      R"("wgmma": true, "num_warps": 4, "num_stages": 6, "BLOCK_SIZE_K": 128)");
  DispatchPlan p = planOk(sortedCall(512, 128), false, &t);
  ASSERT_EQ(p.path, DispatchPath::OneShot);
  const KernelSpec &s = p.kernels[0].spec;
  EXPECT_FALSE(s.wgmma);
  EXPECT_TRUE(validateSpec(s).empty()) << validateSpec(s);
  EXPECT_LE(OneShotSharedLayout(s).sharedBytes(s), maxDynamicSharedBytes(90))
      << s.cacheKey();
}

// A two_kernel entry's wgmma is its shrink's (sorted, BLOCK_SIZE_M 64,
// sm_90); its wgmma_expand is the expand's.
TEST(DispatcherTunedTest, TwoKernelEntryChoosesTheWgmmaShrink) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {"path": "two_kernel", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"wgmma": true}}]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  DispatchPlan p = planOk(sortedCall(512, 64), /*sharded=*/true, &*t);
  ASSERT_EQ(p.path, DispatchPath::TwoKernel);
  EXPECT_TRUE(p.kernels[0].spec.wgmma);
  EXPECT_TRUE(validateSpec(p.kernels[0].spec).empty());
  EXPECT_FALSE(p.kernels[1].spec.wgmma);
  // BLOCK_SIZE_M 16: mma.sync.
  DispatchPlan m16 = planOk(sortedCall(512, 16), true, &*t);
  EXPECT_FALSE(m16.kernels[0].spec.wgmma);
  EXPECT_TRUE(validateSpec(m16.kernels[0].spec).empty());
  // Without the entry: mma.sync.
  EXPECT_FALSE(planOk(sortedCall(512, 64), true).kernels[0].spec.wgmma);
}

// A two_kernel entry's wgmma_expand is its expand's, where the expand's tile
// allows it (BLOCK_SIZE_M 64 or 128, rank above 32) and its r tile and
// stages fit; the shrink is untouched.
TEST(DispatcherTunedTest, TwoKernelEntryChoosesTheWgmmaExpand) {
  auto table = [](int rank) {
    return TunedTable::parse(
        fmt::format(R"({{"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {{"path": "two_kernel", "dtype": "bf16", "rank": {}, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {{"wgmma_expand": true}}}}]}})",
                    rank),
        "t.json");
  };
  auto r64 = table(64);
  ASSERT_TRUE(r64) << r64.error().message;
  const MoeLoraCall call = sortedCall(512, 64, 8, 2048, 1408, 64);
  DispatchPlan p = planOk(call, /*sharded=*/true, &*r64);
  ASSERT_EQ(p.path, DispatchPath::TwoKernel);
  const KernelSpec &e = p.kernels[1].spec;
  EXPECT_TRUE(e.wgmmaExpand);
  EXPECT_FALSE(p.kernels[0].spec.wgmmaExpand);
  EXPECT_TRUE(validateSpec(e).empty());
  EXPECT_LE(expandKernelSharedBytes(e), maxDynamicSharedBytes(90));
  // BLOCK_SIZE_M 16, rank 16, no entry: mma.sync.
  EXPECT_FALSE(planOk(sortedCall(512, 16, 8, 2048, 1408, 64), true, &*r64)
                   .kernels[1]
                   .spec.wgmmaExpand);
  auto r16 = table(16);
  ASSERT_TRUE(r16) << r16.error().message;
  EXPECT_FALSE(
      planOk(sortedCall(512, 64), true, &*r16).kernels[1].spec.wgmmaExpand);
  EXPECT_FALSE(planOk(call, true).kernels[1].spec.wgmmaExpand);
}

// bulk_output: the one-shot's, or a two_kernel entry's expand's (never the
// shrink's), on sm_90 and where the call's output rows are 16-byte aligned
// (otherwise nothing is staged and the plan's kernels are the ones without
// it); an older GPU reading the same table runs without it.
TEST(DispatcherTunedTest, BulkOutputAppliesWhereTheOutputIsStaged) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"bulk_output": true}},
    {"path": "two_kernel", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {"bulk_output": true}}]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  alignas(16) static uint16_t buffer[16];
  MoeLoraCall call = sortedCall(512, 64);
  call.out = buffer;
  call.outStride = int64_t(call.numSlices) * call.N;
  DispatchPlan one = planOk(call, /*sharded=*/false, &*t);
  ASSERT_EQ(one.path, DispatchPath::OneShot);
  EXPECT_TRUE(one.kernels[0].spec.bulksOutput());
  EXPECT_TRUE(validateSpec(one.kernels[0].spec).empty());
  DispatchPlan two = planOk(call, /*sharded=*/true, &*t);
  ASSERT_EQ(two.path, DispatchPath::TwoKernel);
  EXPECT_FALSE(two.kernels[0].spec.bulkOutput);
  EXPECT_TRUE(two.kernels[1].spec.bulksOutput());
  // A 2-byte aligned output: no staged tile, so no bulk rows.
  MoeLoraCall odd = call;
  odd.out = buffer + 1;
  EXPECT_FALSE(planOk(odd, false, &*t).kernels[0].spec.bulksOutput());
  // sm_80 reads the entry and ignores it.
  const DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  EXPECT_FALSE(planOk(call, false, &*t, a100).kernels[0].spec.bulkOutput);
  // Without the entry: 16-byte chunks.
  EXPECT_FALSE(planOk(call).kernels[0].spec.bulkOutput);
}

// early_expand: a one_shot entry's, on sm_90, where the final spec allows
// it (with the few-rows expand too); a two_kernel entry may not hold it.
TEST(DispatcherTunedTest, EarlyExpandAppliesWhereTheSpecAllows) {
  const TunedTable t =
      oneEntryTable("one_shot", R"("early_expand": true, "num_warps": 8)");
  MoeLoraCall call = sortedCall(512, 64);
  DispatchPlan one = planOk(call, /*sharded=*/false, &t);
  ASSERT_EQ(one.path, DispatchPath::OneShot);
  EXPECT_TRUE(one.kernels[0].spec.expandsEarly());
  EXPECT_TRUE(validateSpec(one.kernels[0].spec).empty());
  // With the few-rows expand as well.
  const TunedTable fr =
      oneEntryTable("one_shot", R"("early_expand": true, "few_rows": true)");
  const KernelSpec withFewRows = planOk(call, false, &fr).kernels[0].spec;
  EXPECT_TRUE(withFewRows.fewRowsExpand());
  EXPECT_TRUE(withFewRows.expandsEarly());
  // Not with a persistent grid: the entry's early_expand wins.
  const TunedTable ps =
      oneEntryTable("one_shot", R"("early_expand": true, "persistent": true)");
  const KernelSpec withPersistent = planOk(call, false, &ps).kernels[0].spec;
  EXPECT_TRUE(withPersistent.expandsEarly());
  EXPECT_FALSE(withPersistent.persistent);
  // sm_80 reads the entry and ignores it; without the entry, none.
  const DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  EXPECT_FALSE(planOk(call, false, &t, a100).kernels[0].spec.earlyExpand);
  EXPECT_FALSE(planOk(call).kernels[0].spec.earlyExpand);
  // Only a one_shot entry may ask for it.
  auto two = parseOneEntryTable("two_kernel", R"("early_expand": true)");
  ASSERT_FALSE(two);
  EXPECT_THAT(two.error().message,
              HasSubstr("early_expand on path two_kernel: allowed on "
                        "one_shot only"));
}

// reduce_scatter: a one_shot entry's, on sm_90, where the plan has a
// cluster; it moves no few-rows shape (the dispatcher keeps the flag only
// where the shape stays); a two_kernel entry may not hold it.
TEST(DispatcherTunedTest, ReduceScatterAppliesToOneShotClusters) {
  const MoeLoraCall call = sortedCall(512, 64);
  const TunedTable t =
      oneEntryTable("one_shot", R"("reduce_scatter": true, "SPLIT_K": 4)");
  const KernelSpec s = planOk(call, false, &t).kernels[0].spec;
  EXPECT_EQ(s.splitK, 4);
  EXPECT_TRUE(s.scattersClusterSum());
  EXPECT_TRUE(validateSpec(s).empty());
  // With early_expand and the few-rows expand: all three, the few-rows
  // shape as without reduce_scatter.
  const TunedTable all =
      oneEntryTable("one_shot", R"("reduce_scatter": true, "SPLIT_K": 4,
        "early_expand": true, "few_rows": true)");
  const TunedTable noScatter = oneEntryTable(
      "one_shot", R"("SPLIT_K": 4, "early_expand": true, "few_rows": true)");
  const KernelSpec a = planOk(call, false, &all).kernels[0].spec;
  const KernelSpec b = planOk(call, false, &noScatter).kernels[0].spec;
  EXPECT_TRUE(a.scattersClusterSum());
  EXPECT_TRUE(a.expandsEarly());
  EXPECT_TRUE(a.fewRowsExpand());
  EXPECT_TRUE(b.expandsEarly());
  EXPECT_EQ(fewRowsShapeIfEnabled(a), fewRowsShapeIfEnabled(b));
  // Without a cluster the flag changes nothing (not in the key).
  const TunedTable one =
      oneEntryTable("one_shot", R"("reduce_scatter": true, "SPLIT_K": 1)");
  EXPECT_FALSE(planOk(call, false, &one).kernels[0].spec.scattersClusterSum());
  // sm_80 reads the entry and ignores it; without the entry, none.
  const DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  EXPECT_FALSE(planOk(call, false, &t, a100).kernels[0].spec.reduceScatter);
  EXPECT_FALSE(planOk(call).kernels[0].spec.reduceScatter);
  auto two = parseOneEntryTable("two_kernel", R"("reduce_scatter": true)");
  ASSERT_FALSE(two);
  EXPECT_THAT(two.error().message,
              HasSubstr("reduce_scatter on path two_kernel: allowed on "
                        "one_shot only"));
}

// bulk_shrink: the one-shot's, or a two_kernel entry's shrink's (never the
// expand's), on sm_90 where the final spec allows it: not with the entry's
// wgmma, not where K has a tail.
TEST(DispatcherTunedTest, BulkShrinkAppliesWhereTheSpecAllows) {
  auto table = [](bool wgmma) {
    return TunedTable::parse(
        fmt::format(R"({{"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {{"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {{"bulk_shrink": true, "wgmma": {}}}}},
    {{"path": "two_kernel", "dtype": "bf16", "rank": 16, "K": 2048,
     "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {{"bulk_shrink": true}}}}]}})",
                    wgmma),
        "t.json");
  };
  auto t = table(false);
  ASSERT_TRUE(t) << t.error().message;
  const MoeLoraCall call = sortedCall(512, 64);
  DispatchPlan one = planOk(call, /*sharded=*/false, &*t);
  ASSERT_EQ(one.path, DispatchPath::OneShot);
  EXPECT_TRUE(one.kernels[0].spec.bulkShrink);
  EXPECT_TRUE(validateSpec(one.kernels[0].spec).empty());
  DispatchPlan two = planOk(call, /*sharded=*/true, &*t);
  ASSERT_EQ(two.path, DispatchPath::TwoKernel);
  EXPECT_TRUE(two.kernels[0].spec.bulkShrink);
  EXPECT_FALSE(two.kernels[1].spec.bulkShrink);
  // The entry's wgmma tiles are swizzled: no bulk rows.
  auto w = table(true);
  ASSERT_TRUE(w) << w.error().message;
  const DispatchPlan wp = planOk(call, false, &*w);
  const KernelSpec &ws = wp.kernels[0].spec;
  EXPECT_TRUE(ws.wgmma);
  EXPECT_FALSE(ws.bulkShrink);
  // sm_80 reads the entry and ignores it; without the entry, chunks.
  const DeviceInfo a100{80, 108, "NVIDIA A100-SXM4-80GB"};
  EXPECT_FALSE(planOk(call, false, &*t, a100).kernels[0].spec.bulkShrink);
  EXPECT_FALSE(planOk(call).kernels[0].spec.bulkShrink);
}

/// The two slices' lora_a host bases, 16-byte aligned.
const void *const kHostBases[2] = {reinterpret_cast<const void *>(0x100000),
                                   reinterpret_cast<const void *>(0x200000)};

/// sortedCall(512, 64) with dense lora_a strides and kHostBases.
MoeLoraCall callWithHostBases() {
  MoeLoraCall c = sortedCall(512, 64);
  c.aStrideR = c.K;
  c.aStrideE = int64_t(c.rank) * c.K;
  c.aStrideL = int64_t(c.numExperts) * c.aStrideE;
  c.loraAHostPtrs = kHostBases;
  return c;
}

// tma_weights (one_shot: the kernel's; two_kernel: its shrink's) applies
// where the entry's wgmma does and the call gives lora_a's host base
// pointers, 16-byte aligned with 16-byte aligned strides; elsewhere the
// same entry runs the cp.async wgmma kernel.
TEST(DispatcherTunedTest, TmaWeightsNeedsWgmmaAndTheHostBasePointers) {
  for (const char *path : {"one_shot", "two_kernel"}) {
    SCOPED_TRACE(path);
    const TunedTable t =
        oneEntryTable(path, R"("wgmma": true, "tma_weights": true)");
    const bool sharded = std::string(path) == "two_kernel";
    const void *const *bases = kHostBases;
    MoeLoraCall c = callWithHostBases();
    DispatchPlan p = planOk(c, sharded, &t);
    ASSERT_EQ(p.path,
              sharded ? DispatchPath::TwoKernel : DispatchPath::OneShot);
    EXPECT_TRUE(p.kernels[0].spec.wgmma);
    EXPECT_TRUE(p.kernels[0].spec.tmaWeights);
    EXPECT_TRUE(validateSpec(p.kernels[0].spec).empty());
    // Without the host pointers, with a misaligned base or stride: cp.async.
    MoeLoraCall none = c;
    none.loraAHostPtrs = nullptr;
    const void *odd[2] = {bases[0], reinterpret_cast<const void *>(0x200008)};
    MoeLoraCall misaligned = c;
    misaligned.loraAHostPtrs = odd;
    MoeLoraCall stride = c;
    stride.aStrideE += 4;
    for (const MoeLoraCall &without : {none, misaligned, stride}) {
      DispatchPlan q = planOk(without, sharded, &t);
      EXPECT_TRUE(q.kernels[0].spec.wgmma);
      EXPECT_FALSE(q.kernels[0].spec.tmaWeights);
    }
    // BLOCK_SIZE_M 16 (no wgmma tile): neither.
    MoeLoraCall m16 = sortedCall(512, 16);
    m16.aStrideR = c.aStrideR;
    m16.aStrideE = c.aStrideE;
    m16.aStrideL = c.aStrideL;
    m16.loraAHostPtrs = bases;
    DispatchPlan q = planOk(m16, sharded, &t);
    EXPECT_FALSE(q.kernels[0].spec.wgmma);
    EXPECT_FALSE(q.kernels[0].spec.tmaWeights);
  }
}

// persistent (one_shot) applies where the final spec allows it: sorted
// calls, and not beside tensor-map copies of A.
TEST(DispatcherTunedTest, PersistentWhereTheOneShotAllowsIt) {
  auto table = [](bool sorted, bool tma) {
    return TunedTable::parse(
        fmt::format(R"({{"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {{"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": {}, "num_slices": 2, "max_pairs": 100000,
     "config": {{"wgmma": {}, "tma_weights": {}, "persistent": true}}}}]}})",
                    sorted, tma, tma),
        "t.json");
  };
  auto sorted = table(true, false);
  ASSERT_TRUE(sorted) << sorted.error().message;
  DispatchPlan p = planOk(sortedCall(512, 64), false, &*sorted);
  ASSERT_EQ(p.path, DispatchPath::OneShot);
  EXPECT_TRUE(p.kernels[0].spec.persistent);
  EXPECT_TRUE(validateSpec(p.kernels[0].spec).empty());
  // Without the entry: no persistent grid.
  EXPECT_FALSE(planOk(sortedCall(512, 64)).kernels[0].spec.persistent);
  // Beside tensor-map copies (the call gives the host bases): not taken.
  auto tma = table(true, true);
  ASSERT_TRUE(tma) << tma.error().message;
  const void *bases[2] = {reinterpret_cast<const void *>(0x100000),
                          reinterpret_cast<const void *>(0x200000)};
  MoeLoraCall c = sortedCall(512, 64);
  c.aStrideR = c.K;
  c.aStrideE = int64_t(c.rank) * c.K;
  c.aStrideL = int64_t(c.numExperts) * c.aStrideE;
  c.loraAHostPtrs = bases;
  DispatchPlan q = planOk(c, false, &*tma);
  EXPECT_TRUE(q.kernels[0].spec.tmaWeights);
  EXPECT_FALSE(q.kernels[0].spec.persistent);
  // Naive metadata: not taken.
  auto naive = table(false, false);
  ASSERT_TRUE(naive) << naive.error().message;
  DispatchPlan n = planOk(naiveCall(200), false, &*naive);
  ASSERT_EQ(n.path, DispatchPath::OneShot);
  EXPECT_FALSE(n.kernels[0].spec.persistent);
}

// wgmma_expand (one_shot) applies where the entry's wgmma does and the rank
// allows it (BLOCK_R a multiple of 64); r's tile fits the shared memory the
// tile was fitted to.
TEST(DispatcherTunedTest, WgmmaExpandWhereTheRankAllowsIt) {
  auto table = [](int rank, bool wgmma) {
    return TunedTable::parse(
        fmt::format(R"({{"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {{"path": "one_shot", "dtype": "bf16", "rank": {}, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {{"wgmma": {}, "wgmma_expand": true}}}}]}})",
                    rank, wgmma),
        "t.json");
  };
  auto r64 = table(64, true);
  ASSERT_TRUE(r64) << r64.error().message;
  DispatchPlan p = planOk(sortedCall(512, 64, 8, 2048, 1408, 64), false, &*r64);
  ASSERT_EQ(p.path, DispatchPath::OneShot);
  const KernelSpec &s = p.kernels[0].spec;
  EXPECT_TRUE(s.wgmma);
  EXPECT_TRUE(s.wgmmaExpand);
  EXPECT_TRUE(validateSpec(s).empty());
  EXPECT_LE(OneShotSharedLayout(s).sharedBytes(s), maxDynamicSharedBytes(90));
  // Without the entry: mma.sync.
  EXPECT_FALSE(planOk(sortedCall(512, 64, 8, 2048, 1408, 64))
                   .kernels[0]
                   .spec.wgmmaExpand);
  // Rank 16 (BLOCK_R 16): the wgmma shrink, the mma.sync expand.
  auto r16 = table(16, true);
  ASSERT_TRUE(r16) << r16.error().message;
  DispatchPlan q = planOk(sortedCall(512, 64), false, &*r16);
  EXPECT_TRUE(q.kernels[0].spec.wgmma);
  EXPECT_FALSE(q.kernels[0].spec.wgmmaExpand);
  // Without wgmma: neither.
  auto noWgmma = table(64, false);
  ASSERT_TRUE(noWgmma) << noWgmma.error().message;
  DispatchPlan n =
      planOk(sortedCall(512, 64, 8, 2048, 1408, 64), false, &*noWgmma);
  EXPECT_FALSE(n.kernels[0].spec.wgmma);
  EXPECT_FALSE(n.kernels[0].spec.wgmmaExpand);
}

// producer_warp (one_shot: the kernel's; two_kernel: its shrink's) applies
// where the entry's wgmma does, with or without tma_weights; a tile without
// wgmma takes neither.
TEST(DispatcherTunedTest, ProducerWarpFollowsWgmma) {
  for (const char *path : {"one_shot", "two_kernel"}) {
    SCOPED_TRACE(path);
    const TunedTable t = oneEntryTable(
        path, R"("wgmma": true, "tma_weights": true, "producer_warp": true)");
    const bool sharded = std::string(path) == "two_kernel";
    MoeLoraCall c = callWithHostBases();
    DispatchPlan p = planOk(c, sharded, &t);
    const KernelSpec &s = p.kernels[0].spec;
    EXPECT_TRUE(s.wgmma);
    EXPECT_TRUE(s.tmaWeights);
    EXPECT_TRUE(s.producerWarp);
    EXPECT_EQ(s.launchThreads(), s.threads() + 32);
    EXPECT_TRUE(validateSpec(s).empty());
    // Without the host pointers: the producer warp copies A by cp.async.
    MoeLoraCall none = c;
    none.loraAHostPtrs = nullptr;
    DispatchPlan q = planOk(none, sharded, &t);
    EXPECT_FALSE(q.kernels[0].spec.tmaWeights);
    EXPECT_TRUE(q.kernels[0].spec.producerWarp);
    // BLOCK_SIZE_M 16 (no wgmma tile): neither.
    DispatchPlan m16 = planOk(sortedCall(512, 16), sharded, &t);
    EXPECT_FALSE(m16.kernels[0].spec.wgmma);
    EXPECT_FALSE(m16.kernels[0].spec.producerWarp);
    EXPECT_EQ(m16.kernels[0].spec.launchThreads(),
              m16.kernels[0].spec.threads());
  }
  // Where the tile allows wgmma but not a producer warp (one stage, or 16
  // warps: 544 threads), the entry runs the wgmma kernel without it.
  for (const char *knob : {R"("num_stages": 1)", R"("num_warps": 16)"}) {
    SCOPED_TRACE(knob);
    const TunedTable t = oneEntryTable(
        "one_shot",
        fmt::format(R"("wgmma": true, "producer_warp": true, {})", knob));
    DispatchPlan p = planOk(sortedCall(512, 64), false, &t);
    EXPECT_TRUE(p.kernels[0].spec.wgmma);
    EXPECT_FALSE(p.kernels[0].spec.producerWarp);
    EXPECT_TRUE(validateSpec(p.kernels[0].spec).empty());
  }
}

// A tuned 16-block cluster that fits nowhere on the GPU (DeviceInfo::
// clusterFits) is planned as the same entry with SPLIT_K 8 would be: the
// small-batch tiles per item and the one-shot's NPID follow the 8-block
// cluster.
TEST(DispatcherTunedTest, SixteenBlockClusterThatFitsNowhereIsPlannedAsEight) {
  auto table = [](int splitK) {
    auto t = TunedTable::parse(
        fmt::format(R"({{"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {{"path": "small_batch", "dtype": "bf16", "rank": 16, "K": 4096,
     "N": 8192, "sorted": false, "num_slices": 1, "max_pairs": 8,
     "config": {{"SPLIT_K": {0}, "num_warps": 8}}}},
    {{"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 4096, "N": 8192,
     "sorted": true, "num_slices": 1, "max_pairs": 100000,
     "config": {{"SPLIT_K": {0}, "num_warps": 8}}}}]}})",
                    splitK),
        "t.json");
    EXPECT_TRUE(t) << t.error().message;
    return *t;
  };
  const TunedTable sixteen = table(16), eight = table(8);
  DeviceInfo fits = kH100, fitsNowhere = kH100;
  int asked = 0;
  fits.clusterFits = [&](const KernelSpec &) { return ++asked, true; };
  fitsNowhere.clusterFits = [](const KernelSpec &) { return false; };
  for (const MoeLoraCall &c : {naiveCall(1, 1, 4096, 8192, 16, 1),
                               sortedCall(64, 64, 8, 4096, 8192, 16, 1)}) {
    DispatchPlan kept = planOk(c, false, &sixteen, fits);
    DispatchPlan fell = planOk(c, false, &sixteen, fitsNowhere);
    DispatchPlan asEight = planOk(c, false, &eight, kH100);
    ASSERT_EQ(kept.kernels.size(), 1u);
    EXPECT_EQ(kept.kernels[0].spec.splitK, 16);
    EXPECT_EQ(fell.kernels[0].spec, asEight.kernels[0].spec);
    EXPECT_EQ(fell.kernels[0].knobs.npid, asEight.kernels[0].knobs.npid);
    EXPECT_EQ(fell.kernels[0].knobs.tilesPerItem,
              asEight.kernels[0].knobs.tilesPerItem);
  }
  EXPECT_EQ(asked, 2);
  // The small-batch case's tiles per item differ between the two cluster
  // sizes, so the comparison above could fail.
  EXPECT_NE(planOk(naiveCall(1, 1, 4096, 8192, 16, 1), false, &sixteen, fits)
                .kernels[0]
                .knobs.tilesPerItem,
            planOk(naiveCall(1, 1, 4096, 8192, 16, 1), false, &eight, kH100)
                .kernels[0]
                .knobs.tilesPerItem);
}

// A two_kernel entry's fuse_slices overrides the rule either way.
TEST(DispatcherTunedTest, TwoKernelEntryChoosesSliceFusion) {
  for (bool fuse : {false, true}) {
    auto t = TunedTable::parse(
        fmt::format(R"({{"format": "moelora-tuned", "version": 1,
      "gpu": "NVIDIA H100 80GB HBM3", "entries": [
      {{"path": "two_kernel", "dtype": "bf16", "rank": 16, "K": 2048,
       "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
       "config": {{"fuse_slices": {}}}}}]}})",
                    fuse),
        "t.json");
    ASSERT_TRUE(t) << t.error().message;
    for (int tokens : {64, 4096}) {
      MoeLoraCall c = sortedCall(tokens, 64);
      DispatchPlan p = planOk(c, /*sharded=*/true, &*t);
      ASSERT_EQ(p.path, DispatchPath::TwoKernel);
      EXPECT_EQ(p.kernels[0].spec.fusesSlices(), fuse) << tokens;
      EXPECT_TRUE(validateSpec(p.kernels[0].spec).empty());
    }
  }
}

} // namespace

namespace {

// A "fused" entry gives its bucket's one-shot calls to the two-kernel path
// (with the workspace it needs), or keeps them one-shot; calls outside the
// bucket, naive decode calls served by small_batch, and fully sharded calls
// are unaffected.
TEST(DispatcherTunedTest, FusedEntryChoosesThePath) {
  auto t = TunedTable::parse(R"({"format": "moelora-tuned", "version": 1,
    "gpu": "NVIDIA H100 80GB HBM3", "entries": [
    {"path": "fused", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 512, "use": "two_kernel"},
    {"path": "fused", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 4096, "use": "one_shot"},
    {"path": "fused", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": false, "num_slices": 2, "max_pairs": 4096, "use": "two_kernel"}
    ]})",
                             "t.json");
  ASSERT_TRUE(t) << t.error().message;
  MoeLoraCall c = sortedCall(40); // 320 pairs: the 512 bucket
  DispatchPlan rules = planOk(c);
  ASSERT_EQ(rules.path, DispatchPath::OneShot);
  DispatchPlan routed = planOk(c, false, &*t);
  ASSERT_EQ(routed.path, DispatchPath::TwoKernel);
  EXPECT_TRUE(routed.fromTunedTable);
  ASSERT_EQ(routed.kernels.size(), 2u);
  EXPECT_EQ(routed.kernels[0].spec.family, KernelFamily::Shrink);
  EXPECT_EQ(routed.kernels[1].spec.family, KernelFamily::Expand);
  EXPECT_EQ(routed.workspaceBytes, intermediateBytes(c));
  // As the fully sharded call plans it.
  DispatchPlan sharded = planOk(c, true);
  EXPECT_EQ(routed.kernels[0].spec, sharded.kernels[0].spec);
  EXPECT_EQ(routed.kernels[1].spec, sharded.kernels[1].spec);
  // 520 pairs: the 4096 bucket says one_shot.
  DispatchPlan kept = planOk(sortedCall(65), false, &*t);
  EXPECT_EQ(kept.path, DispatchPath::OneShot);
  EXPECT_EQ(kept.workspaceBytes, 0u);
  // Another shape: the rules.
  EXPECT_EQ(planOk(sortedCall(40, 16, 8, 4096), false, &*t).path,
            DispatchPath::OneShot);
  // Naive decode calls go to small_batch before any path choice...
  EXPECT_EQ(planOk(naiveCall(1), false, &*t).path, DispatchPath::SmallBatch);
  // ...and the naive entry applies to the naive calls the rules give the
  // one-shot kernel.
  MoeLoraCall naive = naiveCall(200);
  ASSERT_EQ(planOk(naive).path, DispatchPath::OneShot);
  EXPECT_EQ(planOk(naive, false, &*t).path, DispatchPath::TwoKernel);
}

} // namespace

namespace {

// The sorted grids follow the caller's EM; one whose grid passes what CUDA
// launches is refused with the figures, not wrapped (fuzzing finding F6:
// EM 2122252288 at block_size_m 64 planned an expand grid of 4244504576).
TEST(DispatcherTest, GridBeyondTheDriverIsAnError) {
  MoeLoraCall c = sortedCall(3, 64, 9, 2, 4859, 64, 4);
  c.numExperts = 1;
  c.maxLoras = 7;
  c.numActiveLoras = 5;
  c.EM = 2122252288;
  auto p = planFusedMoeLora(c, true, kH100, nullptr);
  ASSERT_FALSE(p);
  EXPECT_THAT(p.error().message, HasSubstr("EM = 2122252288"));
  EXPECT_THAT(p.error().message, HasSubstr("2147483647 x 65535 x 65535"));
  // At the capacity the metadata needs, the same call plans.
  c.EM = alignCapacity(c.numPairs(), c.numExperts, 64);
  auto q = planFusedMoeLora(c, true, kH100, nullptr);
  ASSERT_TRUE(q) << q.error().message;
  for (const PlannedKernel &k : q->kernels)
    EXPECT_TRUE(launchGeometry(k.spec, c, k.knobs).withinDriverLimits());
}

TEST(LaunchGeometryTest, BlocksAreCountedIn64Bits) {
  MoeLoraCall c = sortedCall(3, 16, 2, 2048, 1408, 256, 8);
  c.EM = 2147483632; // 2^31 - 16: 134217727 row blocks
  KernelSpec s;
  s.family = KernelFamily::Shrink;
  s.sorted = true;
  s.blockM = 16;
  s.blockN = 64;
  s.rank = 256;
  s.numSlices = 8;
  LaunchGeometry g = launchGeometry(s, c, LaunchKnobs{});
  EXPECT_EQ(g.blocksX, uint64_t(134217727) * 4 * 8);
  EXPECT_FALSE(g.withinDriverLimits());
}

} // namespace
