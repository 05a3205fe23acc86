//===- KernelLauncherTest.cpp - Grids per family, argument packing --------===//
//
// launchGeometry against kernel-contract.md's grids, and GemmArgPack's
// values read back in KernelAbi order.
//
//===----------------------------------------------------------------------===//

#include "LaunchTestShapes.h"

#include "moelora/Runtime/KernelLauncher.h"
#include "moelora/Spec/KernelAbi.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

using namespace moelora;

namespace {

using test::call;
using test::spec;

unsigned ceilDiv(long a, long b) { return unsigned((a + b - 1) / b); }

TEST(LaunchGeometryTest, OneShot) {
  for (bool sorted : {false, true})
    for (int npid : {1, 3}) {
      SCOPED_TRACE(::testing::Message()
                   << "sorted=" << sorted << " npid=" << npid);
      MoeLoraCall c = call(64, 8, sorted, 32);
      KernelSpec s = spec(KernelFamily::OneShot, c, sorted ? 32 : 16, 128,
                          npid > 1 ? 8 : 4);
      LaunchKnobs k;
      k.npid = npid;
      LaunchGeometry g = launchGeometry(s, c, k);
      // (M_blocks * NPID * num_slices, 1, grid_lora_dim): slices innermost.
      unsigned mBlocks = sorted ? unsigned(c.EM / 32) : unsigned(c.numPairs());
      EXPECT_EQ(g.grid[0], mBlocks * npid * 2);
      EXPECT_EQ(g.grid[1], 1u);
      EXPECT_EQ(g.grid[2], sorted ? 3u : 1u);
      EXPECT_EQ(g.block, unsigned(s.numWarps * 32));
      EXPECT_FALSE(g.empty());
      // A producer warp is launched beside the num_warps warps; the grid
      // is the same.
      KernelSpec ws = s;
      ws.wgmma = true;
      ws.producerWarp = true;
      LaunchGeometry gw = launchGeometry(ws, c, k);
      EXPECT_EQ(gw.block, unsigned(s.numWarps * 32 + 32));
      EXPECT_THAT(gw.grid, ::testing::ElementsAreArray(g.grid));
    }
  // NPID 0 (unset) launches like 1.
  MoeLoraCall c = call(4, 2, false);
  LaunchKnobs k;
  k.npid = 0;
  EXPECT_EQ(
      launchGeometry(spec(KernelFamily::OneShot, c, 16, 128, 4), c, k).grid[0],
      16u);
}

// A persistent one-shot starts each lora slot's share of the resident
// programs (whole clusters, at least one), never more than the row blocks'
// programs; grid z stays the lora slots.
TEST(LaunchGeometryTest, PersistentOneShotStartsTheResidentPrograms) {
  MoeLoraCall c = call(64, 8, /*sorted=*/true, 64);
  const unsigned programs = unsigned(c.EM / 64) * 2 * 2; // NPID 2, 2 slices
  struct Case {
    int splitK;
    long resident; // persistentPrograms (0: two per SM)
    int smCount;
    unsigned want;
  } cases[] = {
      {1, 0, 132, 264 / 3},       // two per SM, over 3 slots
      {1, 30, 132, 10},           // 30 over 3 slots
      {1, 1, 132, 1},             // at least one per slot
      {2, 30, 132, 10},           // 5 clusters of 2 per slot
      {4, 30, 132, 8},            // 2 clusters of 4 per slot (30 / 3 / 4)
      {8, 30, 132, 8},            // at least one cluster
      {1, 100000, 132, programs}, // never more than the row blocks'
  };
  for (const Case &k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "splitK=" << k.splitK << " resident=" << k.resident);
    KernelSpec s = spec(KernelFamily::OneShot, c, 64, 64, 4);
    s.splitK = k.splitK;
    LaunchKnobs knobs;
    knobs.npid = 2;
    if (k.splitK > 1)
      knobs.npid = k.splitK;
    knobs.smCount = k.smCount;
    knobs.persistentPrograms = k.resident;
    const LaunchGeometry plain = launchGeometry(s, c, knobs);
    s.persistent = true;
    const LaunchGeometry g = launchGeometry(s, c, knobs);
    EXPECT_EQ(g.grid[0], std::min(k.want, plain.grid[0]));
    EXPECT_EQ(g.grid[0] % unsigned(k.splitK), 0u);
    EXPECT_EQ(g.grid[2], 3u);
    EXPECT_EQ(g.block, plain.block);
  }
  // No pairs: nothing to launch.
  MoeLoraCall none = c;
  none.numTokens = 0;
  KernelSpec s = spec(KernelFamily::OneShot, none, 64, 64, 4);
  s.persistent = true;
  EXPECT_TRUE(launchGeometry(s, none, LaunchKnobs{}).empty());
}

TEST(LaunchGeometryTest, SmallBatchIsPersistent) {
  struct Case {
    int tokens, topK, tilesPerItem, smCount;
  } cases[] = {{1, 8, 1, 132}, {1, 8, 2, 132},  {1, 8, 22, 132},
               {2, 8, 3, 132}, {16, 8, 1, 132}, {1, 1, 5, 8}};
  for (const Case &k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "tokens=" << k.tokens << " tpi=" << k.tilesPerItem
                 << " sms=" << k.smCount);
    MoeLoraCall c = call(k.tokens, k.topK, false);
    KernelSpec s = spec(KernelFamily::SmallBatch, c, 16, 64, 4);
    LaunchKnobs knobs;
    knobs.tilesPerItem = k.tilesPerItem;
    knobs.smCount = k.smCount;
    LaunchGeometry g = launchGeometry(s, c, knobs);
    // work = pairs x slices x ceil(n_tiles / tiles_per_item)
    long work = long(c.numPairs()) * c.numSlices *
                ceilDiv(ceilDiv(c.N, 64), k.tilesPerItem);
    EXPECT_EQ(g.grid[0], unsigned(std::min<long>(work, 2L * k.smCount)));
    EXPECT_EQ(g.grid[1], 1u);
    EXPECT_EQ(g.grid[2], 1u);
    EXPECT_EQ(g.block, 128u);
  }
}

TEST(LaunchGeometryTest, ShrinkAndExpand) {
  for (bool sorted : {false, true})
    for (int splitK : {1, 4}) {
      SCOPED_TRACE(::testing::Message()
                   << "sorted=" << sorted << " splitK=" << splitK);
      MoeLoraCall c = call(100, 8, sorted, 64);
      c.rank = 192;
      unsigned mBlocks = sorted ? unsigned(c.EM / 64) : unsigned(c.numPairs());
      KernelSpec sh = spec(KernelFamily::Shrink, c, sorted ? 64 : 16, 64, 4);
      sh.splitK = splitK;
      LaunchGeometry g = launchGeometry(sh, c, LaunchKnobs{});
      // (SPLIT_K * M_blocks * ceil(R / BLOCK_N) * num_slices, 1, lora dim)
      EXPECT_EQ(g.grid[0], splitK * mBlocks * ceilDiv(192, 64) * 2);
      EXPECT_EQ(g.grid[1], 1u);
      EXPECT_EQ(g.grid[2], sorted ? 3u : 1u);

      KernelSpec ex = spec(KernelFamily::Expand, c, sorted ? 64 : 16, 64, 4);
      ex.k.reset();
      LaunchKnobs k;
      k.npid = 3;
      g = launchGeometry(ex, c, k);
      // (M_blocks * NPID * num_slices, 1, lora dim): each program walks
      // its share of the N tiles.
      EXPECT_EQ(g.grid[0], mBlocks * 3 * 2);
      // A compile-time NPID in the spec wins over the knob (the kernel
      // ignores its argument then).
      ex.npid = 2;
      EXPECT_EQ(launchGeometry(ex, c, k).grid[0], mBlocks * 2 * 2);
      EXPECT_EQ(g.grid[1], 1u);
      EXPECT_EQ(g.grid[2], sorted ? 3u : 1u);
    }
}

TEST(LaunchGeometryTest, AlignBlockSizeOneProgramPerAdapter) {
  MoeLoraCall c = call(10, 8, true);
  LaunchGeometry g =
      launchGeometry(alignBlockSizeSpec(90, 16), c, LaunchKnobs{});
  EXPECT_EQ(g.grid[0], 4u);
  EXPECT_EQ(g.grid[1], 1u);
  EXPECT_EQ(g.grid[2], 1u);
}

TEST(LaunchGeometryTest, EmptyWorkIsAnEmptyGrid) {
  for (KernelFamily f : {KernelFamily::OneShot, KernelFamily::SmallBatch,
                         KernelFamily::Shrink, KernelFamily::Expand}) {
    SCOPED_TRACE(toString(f));
    MoeLoraCall c = call(0, 8, false);
    EXPECT_TRUE(
        launchGeometry(spec(f, c, 16, 64, 4), c, LaunchKnobs{}).empty());
    MoeLoraCall d = call(8, 8, false);
    d.numSlices = 0;
    EXPECT_TRUE(
        launchGeometry(spec(f, d, 16, 64, 4), d, LaunchKnobs{}).empty());
    MoeLoraCall e = call(8, 8, false);
    EXPECT_FALSE(
        launchGeometry(spec(f, e, 16, 64, 4), e, LaunchKnobs{}).empty());
  }
}

//===----------------------------------------------------------------------===//
// Argument packing
//===----------------------------------------------------------------------===//

template <typename T> T slot(GemmArgPack &p, int i) {
  T v;
  std::memcpy(&v, p.data()[i], sizeof(T));
  return v;
}
const void *ptrAt(GemmArgPack &p, int i) { return slot<const void *>(p, i); }
const void *fake(uintptr_t v) { return reinterpret_cast<const void *>(v); }

MoeLoraCall packedCall() {
  MoeLoraCall c = call(37, 8, true, 32);
  c.x = fake(0x1000);
  c.loraAPtrs = fake(0x2000);
  c.loraBPtrs = fake(0x3000);
  c.out = const_cast<void *>(fake(0x4000));
  c.topkWeights = static_cast<const float *>(fake(0x5000));
  c.sortedTokenIds = static_cast<const int32_t *>(fake(0x6000));
  c.expertIds = static_cast<const int32_t *>(fake(0x7000));
  c.numTokensPostPadded = static_cast<const int32_t *>(fake(0x8000));
  c.tokenLoraMapping = static_cast<const int32_t *>(fake(0x9000));
  c.loraIds = static_cast<const int32_t *>(fake(0xa000));
  c.adapterEnabled = static_cast<const int32_t *>(fake(0xb000));
  c.xStride = 2056;
  c.aStrideL = 11;
  c.aStrideE = 12;
  c.aStrideR = 13;
  c.bStrideL = 21;
  c.bStrideE = 22;
  c.bStrideN = 23;
  c.outStride = 3 * 1408 + 8;
  c.maxLoras = 6;
  return c;
}

TEST(GemmArgPackTest, ParamTypesMatchKernelAbi) {
  const auto &params = kernelParams(KernelFamily::OneShot);
  ASSERT_EQ(params.size(), size_t(kNumGemmParams));
  EXPECT_EQ(&kernelParams(KernelFamily::Shrink), &params);
  EXPECT_EQ(params[kX].name, "x");
  EXPECT_EQ(params[kOut].name, "out");
  EXPECT_EQ(params[kNpid].name, "npid");
  EXPECT_EQ(params[kOutColOffset].name, "out_col_offset");
  EXPECT_EQ(kernelParams(KernelFamily::AlignBlockSize).size(),
            size_t(kNumAlignParams));
}

TEST(GemmArgPackTest, OneShotValuesInAbiOrder) {
  MoeLoraCall c = packedCall();
  KernelSpec s = spec(KernelFamily::OneShot, c, 32, 128, 8);
  LaunchKnobs k;
  k.npid = 3;
  k.tilesPerItem = 5;
  k.outColOffset = 0;
  GemmArgPack pack(s, c, k, nullptr);
  // Every slot has its own storage.
  for (int i = 0; i < kNumGemmParams; ++i)
    for (int j = i + 1; j < kNumGemmParams; ++j)
      ASSERT_NE(pack.data()[i], pack.data()[j]);
  EXPECT_EQ(ptrAt(pack, kX), c.x);
  EXPECT_EQ(slot<int64_t>(pack, kXStride), 2056);
  EXPECT_EQ(ptrAt(pack, kAPtrs), c.loraAPtrs);
  EXPECT_EQ(slot<int64_t>(pack, kAStrideL), 11);
  EXPECT_EQ(slot<int64_t>(pack, kAStrideE), 12);
  EXPECT_EQ(slot<int64_t>(pack, kAStrideR), 13);
  EXPECT_EQ(ptrAt(pack, kBPtrs), c.loraBPtrs);
  EXPECT_EQ(slot<int64_t>(pack, kBStrideL), 21);
  EXPECT_EQ(slot<int64_t>(pack, kBStrideE), 22);
  EXPECT_EQ(slot<int64_t>(pack, kBStrideN), 23);
  EXPECT_EQ(ptrAt(pack, kOut), c.out);
  EXPECT_EQ(slot<int64_t>(pack, kOutStride), c.outStride);
  EXPECT_EQ(ptrAt(pack, kTopkWeights), c.topkWeights);
  EXPECT_EQ(ptrAt(pack, kSortedTokenIds), c.sortedTokenIds);
  EXPECT_EQ(ptrAt(pack, kExpertIds), c.expertIds);
  EXPECT_EQ(ptrAt(pack, kNumTokensPostPadded), c.numTokensPostPadded);
  EXPECT_EQ(ptrAt(pack, kTokenLoraMapping), c.tokenLoraMapping);
  EXPECT_EQ(ptrAt(pack, kLoraIds), c.loraIds);
  EXPECT_EQ(ptrAt(pack, kAdapterEnabled), c.adapterEnabled);
  EXPECT_EQ(slot<int64_t>(pack, kInterSliceStride), 0);
  EXPECT_EQ(slot<int32_t>(pack, kNumPairs), 37 * 8);
  EXPECT_EQ(slot<int32_t>(pack, kTopK), 8);
  EXPECT_EQ(slot<int32_t>(pack, kN), 1408);
  EXPECT_EQ(slot<int32_t>(pack, kK), 2048);
  EXPECT_EQ(slot<int32_t>(pack, kEM), c.EM);
  EXPECT_EQ(slot<int32_t>(pack, kMaxLoras), 6);
  EXPECT_EQ(slot<int32_t>(pack, kNpid), 3);
  EXPECT_EQ(slot<int32_t>(pack, kTilesPerItem), 5);
  EXPECT_EQ(slot<int32_t>(pack, kOutColOffset), 0);
}

// tma_weights kernels take one tensor map per slice after the GEMM list;
// the pack points each parameter at its map's 128 bytes (passed by value).
TEST(GemmArgPackTest, TensorMapsFollowTheGemmParameters) {
  MoeLoraCall c = packedCall();
  c.numSlices = 3;
  KernelSpec s = spec(KernelFamily::OneShot, c, 64, 128, 4);
  s.wgmma = true;
  s.tmaWeights = true;
  const std::vector<KernelParam> params = kernelParams(s);
  ASSERT_EQ(params.size(), size_t(kNumGemmParams + 3));
  EXPECT_EQ(weightTensorMapParams(s), 3);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(params[kNumGemmParams + i].name,
              "a_tensor_map_" + std::to_string(i));
    EXPECT_EQ(params[kNumGemmParams + i].type, ParamType::TensorMap);
  }
  WeightTensorMaps maps;
  maps.count = 3;
  GemmArgPack pack(s, c, LaunchKnobs{}, nullptr, &maps);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(pack.data()[kNumGemmParams + i], &maps.maps[i]);
  static_assert(sizeof(CUtensorMap) == kTensorMapBytes);
  // Without tma_weights the list is the family's.
  s.tmaWeights = false;
  EXPECT_EQ(kernelParams(s).size(), size_t(kNumGemmParams));
}

TEST(GemmArgPackTest, UnsetKnobsPackAsOne) {
  MoeLoraCall c = packedCall();
  LaunchKnobs k;
  k.npid = 0;
  k.tilesPerItem = 0;
  GemmArgPack pack(spec(KernelFamily::SmallBatch, c, 16, 64, 4), c, k, nullptr);
  EXPECT_EQ(slot<int32_t>(pack, kNpid), 1);
  EXPECT_EQ(slot<int32_t>(pack, kTilesPerItem), 1);
}

TEST(GemmArgPackTest, ShrinkWritesTheIntermediate) {
  MoeLoraCall c = packedCall();
  IntermediateBuffer inter{const_cast<void *>(fake(0xc000)),
                           int64_t(c.numPairs()) * c.rank, c.rank};
  GemmArgPack pack(spec(KernelFamily::Shrink, c, 32, 16, 4), c, LaunchKnobs{},
                   &inter);
  // Rows come from x; the output is the intermediate.
  EXPECT_EQ(ptrAt(pack, kX), c.x);
  EXPECT_EQ(slot<int64_t>(pack, kXStride), c.xStride);
  EXPECT_EQ(ptrAt(pack, kOut), inter.data);
  EXPECT_EQ(slot<int64_t>(pack, kOutStride), c.rank);
  EXPECT_EQ(slot<int64_t>(pack, kInterSliceStride), int64_t(37 * 8 * 16));
  EXPECT_EQ(ptrAt(pack, kAPtrs), c.loraAPtrs);
  EXPECT_EQ(ptrAt(pack, kTopkWeights), c.topkWeights);
}

TEST(GemmArgPackTest, ExpandReadsTheIntermediate) {
  MoeLoraCall c = packedCall();
  IntermediateBuffer inter{const_cast<void *>(fake(0xc000)),
                           int64_t(c.numPairs()) * c.rank, c.rank};
  LaunchKnobs k;
  k.outColOffset = 4096;
  KernelSpec s = spec(KernelFamily::Expand, c, 32, 64, 4);
  s.k.reset();
  GemmArgPack pack(s, c, k, &inter);
  EXPECT_EQ(ptrAt(pack, kX), inter.data);
  EXPECT_EQ(slot<int64_t>(pack, kXStride), c.rank);
  EXPECT_EQ(ptrAt(pack, kOut), c.out);
  EXPECT_EQ(slot<int64_t>(pack, kOutStride), c.outStride);
  EXPECT_EQ(slot<int64_t>(pack, kInterSliceStride), int64_t(37 * 8 * 16));
  EXPECT_EQ(ptrAt(pack, kBPtrs), c.loraBPtrs);
  EXPECT_EQ(slot<int32_t>(pack, kOutColOffset), 4096);
  EXPECT_EQ(slot<int32_t>(pack, kN), 1408);
}

} // namespace

namespace {

// sm_90 kernels (griddepcontrol at entry) launch as programmatic dependents;
// sm_80 kernels, or PDL turned off (MOELORA_PDL=0), launch plainly. The rest
// of the configuration is the geometry's.
TEST(LaunchConfigTest, ProgrammaticSerializationOnlyWhereTheKernelWaits) {
  MoeLoraCall c = call(7, 2, false);
  KernelSpec s = spec(KernelFamily::OneShot, c, 16, 128, 4);
  LaunchKnobs knobs;
  LaunchGeometry g = launchGeometry(s, c, knobs);
  auto stream = reinterpret_cast<CUstream>(uintptr_t(0x1234));
  for (int sm : {80, 89, 90})
    for (bool pdl : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "sm=" << sm << " pdl=" << pdl);
      s.sm = sm;
      LaunchConfig lc;
      makeLaunchConfig(s, g, 4096, stream, pdl, lc);
      EXPECT_EQ(lc.config.gridDimX, g.grid[0]);
      EXPECT_EQ(lc.config.gridDimY, g.grid[1]);
      EXPECT_EQ(lc.config.gridDimZ, g.grid[2]);
      EXPECT_EQ(lc.config.blockDimX, g.block);
      EXPECT_EQ(lc.config.blockDimY, 1u);
      EXPECT_EQ(lc.config.sharedMemBytes, 4096u);
      EXPECT_EQ(lc.config.hStream, stream);
      EXPECT_EQ(lc.config.attrs, lc.attributes);
      const bool want = pdl && sm >= 90;
      ASSERT_EQ(lc.config.numAttrs, want ? 1u : 0u);
      if (want) {
        EXPECT_EQ(lc.attributes[0].id,
                  CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION);
        EXPECT_EQ(lc.attributes[0].value.programmaticStreamSerializationAllowed,
                  1);
      }
    }
}

// A cluster kernel (SPLIT_K > 1) carries the scheduling policy asked for,
// after the PDL attribute; a kernel without clusters, or no policy, none.
TEST(LaunchConfigTest, ClusterPolicyOnlyOnClusterKernels) {
  MoeLoraCall c = call(7, 2, false);
  KernelSpec s = spec(KernelFamily::OneShot, c, 16, 128, 4);
  s.sm = 90;
  LaunchKnobs knobs;
  for (int splitK : {1, 4})
    for (CUclusterSchedulingPolicy policy :
         {CU_CLUSTER_SCHEDULING_POLICY_DEFAULT,
          CU_CLUSTER_SCHEDULING_POLICY_SPREAD,
          CU_CLUSTER_SCHEDULING_POLICY_LOAD_BALANCING})
      for (bool pdl : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "splitK=" << splitK << " policy="
                                          << int(policy) << " pdl=" << pdl);
        s.splitK = splitK;
        LaunchGeometry g = launchGeometry(s, c, knobs);
        LaunchConfig lc;
        makeLaunchConfig(s, g, 4096, nullptr, pdl, lc, policy);
        const bool wantPolicy =
            splitK > 1 && policy != CU_CLUSTER_SCHEDULING_POLICY_DEFAULT;
        ASSERT_EQ(lc.config.numAttrs, unsigned(pdl) + unsigned(wantPolicy));
        if (wantPolicy) {
          const CUlaunchAttribute &a = lc.attributes[lc.config.numAttrs - 1];
          EXPECT_EQ(a.id,
                    CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE);
          EXPECT_EQ(a.value.clusterSchedulingPolicyPreference, policy);
        }
      }
}

} // namespace
