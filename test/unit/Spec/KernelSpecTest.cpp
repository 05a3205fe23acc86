//===- KernelSpecTest.cpp - Names, keys and derived values ----------------===//

#include "moelora/Spec/KernelSpec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <regex>
#include <set>
#include <vector>

using namespace moelora;
using ::testing::StartsWith;

namespace {

/// The spec of the cache-key example in the brief (one_shot W13 decode).
KernelSpec exampleSpec() {
  KernelSpec s;
  s.family = KernelFamily::OneShot;
  s.dtype = DType::BF16;
  s.sm = 90;
  s.rank = 16;
  s.k = 2048;
  s.blockM = 16;
  s.blockN = 128;
  s.blockK = 128;
  s.numWarps = 4;
  s.numStages = 3;
  s.addInputs = true;
  s.numSlices = 2;
  return s;
}

bool isCIdentifier(const std::string &s) {
  static const std::regex re("[A-Za-z_][A-Za-z0-9_]*");
  return std::regex_match(s, re);
}

TEST(KernelSpecTest, FamilyNamesRoundTrip) {
  for (KernelFamily f :
       {KernelFamily::OneShot, KernelFamily::SmallBatch, KernelFamily::Shrink,
        KernelFamily::Expand, KernelFamily::AlignBlockSize})
    EXPECT_EQ(parseKernelFamily(toString(f)), f);
  EXPECT_EQ(toString(KernelFamily::OneShot), "one_shot");
  EXPECT_EQ(toString(KernelFamily::SmallBatch), "small_batch");
  EXPECT_EQ(toString(KernelFamily::Shrink), "shrink");
  EXPECT_EQ(toString(KernelFamily::Expand), "expand");
  EXPECT_EQ(toString(KernelFamily::AlignBlockSize), "align_block_size");
  EXPECT_FALSE(parseKernelFamily("oneshot"));
  EXPECT_FALSE(parseKernelFamily("One_Shot"));
  EXPECT_FALSE(parseKernelFamily(""));
}

TEST(KernelSpecTest, DTypeNamesRoundTrip) {
  EXPECT_EQ(toString(DType::F16), "fp16");
  EXPECT_EQ(toString(DType::BF16), "bf16");
  EXPECT_EQ(parseDType("fp16"), DType::F16);
  EXPECT_EQ(parseDType("bf16"), DType::BF16);
  EXPECT_FALSE(parseDType("f16"));
  EXPECT_FALSE(parseDType("float16"));
}

TEST(KernelSpecTest, ParseTarget) {
  EXPECT_EQ(parseTarget("sm_80"), 80);
  EXPECT_EQ(parseTarget("sm_90"), 90);
  EXPECT_EQ(parseTarget("sm_100"), 100);
  EXPECT_FALSE(parseTarget("sm_"));
  EXPECT_FALSE(parseTarget("sm90"));
  EXPECT_FALSE(parseTarget("sm_90a"));
  EXPECT_FALSE(parseTarget("sm_-9"));
  EXPECT_FALSE(parseTarget("compute_90"));
}

TEST(KernelSpecTest, BlockR) {
  KernelSpec s;
  const std::pair<int, int> cases[] = {
      {0, 16},  {1, 16},  {8, 16},    {16, 16},   {17, 32},
      {32, 32}, {33, 64}, {100, 128}, {128, 128}, {129, 256}};
  for (auto [rank, expected] : cases) {
    s.rank = rank;
    EXPECT_EQ(s.blockR(), expected) << "rank " << rank;
  }
}

TEST(KernelSpecTest, EvenK) {
  KernelSpec s;
  s.blockK = 128;
  s.k.reset();
  EXPECT_FALSE(s.evenK()) << "unknown K must use masked loads";
  s.k = 2048;
  EXPECT_TRUE(s.evenK());
  s.k = 1408; // 11 * 128
  EXPECT_TRUE(s.evenK());
  s.blockK = 256;
  EXPECT_FALSE(s.evenK());
  s.k = 100;
  s.blockK = 16;
  EXPECT_FALSE(s.evenK());
}

TEST(KernelSpecTest, CacheKeyText) {
  KernelSpec s = exampleSpec();
  EXPECT_EQ(
      s.cacheKey(),
      "one_shot;bf16;sm_90;R=16;K=2048;BM=16;BN=128;BK=128;GM=1;SK=1;"
      "W=4;S=3;sorted=0;mrw=0;add=1;slices=2;npid=0;even_k=1;mbs=0;oa=1;fs=0;"
      "abi=3");
  s.k.reset();
  s.family = KernelFamily::Expand;
  s.dtype = DType::F16;
  s.sorted = true;
  s.mulRoutedWeight = true;
  s.addInputs = false;
  s.minBlocksPerSm = 2;
  EXPECT_EQ(
      s.cacheKey(),
      "expand;fp16;sm_90;R=16;K=*;BM=16;BN=128;BK=128;GM=1;SK=1;"
      "W=4;S=3;sorted=1;mrw=1;add=0;slices=2;npid=0;even_k=0;mbs=2;oa=1;fs=0;"
      "abi=3");
  // The occupancy hint changes the PTX, so it is part of the identity.
  KernelSpec noHint = s;
  noHint.minBlocksPerSm = 0;
  EXPECT_FALSE(s == noHint);
  EXPECT_NE(s.entryName(), noHint.entryName());
  EXPECT_THAT(s.entryName(), ::testing::HasSubstr("_b2_h"));
}

// The staged (aligned) and element-wise epilogues are different kernels;
// only the one-shot and expand families stage their output.
TEST(KernelSpecTest, AlignedOutputIsPartOfTheIdentity) {
  KernelSpec s = exampleSpec();
  EXPECT_TRUE(s.stagesOutput());
  KernelSpec unaligned = s;
  unaligned.alignedOutput = false;
  EXPECT_FALSE(unaligned.stagesOutput());
  EXPECT_FALSE(s == unaligned);
  EXPECT_THAT(unaligned.cacheKey(), ::testing::HasSubstr(";oa=0;"));
  EXPECT_THAT(unaligned.entryName(), ::testing::HasSubstr("_ua_h"));
  EXPECT_THAT(s.entryName(), ::testing::Not(::testing::HasSubstr("_ua")));
  for (KernelFamily f : {KernelFamily::SmallBatch, KernelFamily::Shrink}) {
    s.family = f;
    EXPECT_FALSE(s.stagesOutput()) << toString(f);
  }
  s.family = KernelFamily::Expand;
  EXPECT_TRUE(s.stagesOutput());
}

// fuse_slices changes only a shrink or one_shot of several slices (the
// one_shot is the example spec's family); elsewhere the flag
// is canonicalised away, so it cannot split one kernel into two cache slots.
TEST(KernelSpecTest, FuseSlicesIsIdentityOnlyWhereItChangesTheKernel) {
  KernelSpec s = exampleSpec();
  s.family = KernelFamily::Shrink;
  s.numSlices = 2;
  KernelSpec fused = s;
  fused.fuseSlices = true;
  EXPECT_TRUE(fused.fusesSlices());
  EXPECT_EQ(fused.gridSlices(), 1);
  EXPECT_EQ(s.gridSlices(), 2);
  EXPECT_FALSE(s == fused);
  EXPECT_THAT(fused.cacheKey(), ::testing::HasSubstr(";fs=1;"));
  EXPECT_THAT(s.cacheKey(), ::testing::HasSubstr(";fs=0;"));
  EXPECT_THAT(fused.entryName(), ::testing::HasSubstr("_fs_h"));
  KernelSpec oneShot = exampleSpec(), oneShotFused = exampleSpec();
  oneShotFused.fuseSlices = true;
  ASSERT_EQ(oneShot.numSlices, 2);
  EXPECT_TRUE(oneShotFused.fusesSlices());
  EXPECT_FALSE(oneShot == oneShotFused);

  for (auto change :
       {+[](KernelSpec &k) { k.numSlices = 1; },
        +[](KernelSpec &k) { k.family = KernelFamily::Expand; },
        +[](KernelSpec &k) { k.family = KernelFamily::SmallBatch; }}) {
    KernelSpec a = s, b = fused;
    change(a);
    change(b);
    EXPECT_FALSE(b.fusesSlices());
    EXPECT_EQ(b.gridSlices(), b.numSlices);
    EXPECT_TRUE(a == b);
    EXPECT_EQ(a.cacheKey(), b.cacheKey());
    EXPECT_EQ(a.entryName(), b.entryName());
  }
}

TEST(KernelSpecTest, OriginIsNotIdentity) {
  KernelSpec a = exampleSpec();
  KernelSpec b = exampleSpec();
  a.origin = "a.yaml:3";
  b.origin = "b.yaml:40";
  EXPECT_EQ(a.cacheKey(), b.cacheKey());
  EXPECT_EQ(a.entryName(), b.entryName());
  EXPECT_TRUE(a == b);
  b.rank = 32;
  EXPECT_FALSE(a == b);
}

/// Changing any one field must change the key, the name and equality: a
/// field left out of the key would make two different kernels share a cache
/// slot or a symbol.
TEST(KernelSpecTest, EveryFieldIsPartOfTheIdentity) {
  std::vector<std::function<void(KernelSpec &)>> mutations = {
      [](KernelSpec &s) { s.family = KernelFamily::Shrink; },
      [](KernelSpec &s) { s.dtype = DType::F16; },
      [](KernelSpec &s) { s.sm = 80; },
      [](KernelSpec &s) { s.rank = 32; },
      [](KernelSpec &s) { s.k = 4096; },
      [](KernelSpec &s) { s.k.reset(); },
      [](KernelSpec &s) { s.blockM = 32; },
      [](KernelSpec &s) { s.blockN = 64; },
      [](KernelSpec &s) { s.blockK = 64; },
      [](KernelSpec &s) { s.groupSizeM = 8; },
      [](KernelSpec &s) { s.splitK = 2; },
      [](KernelSpec &s) { s.numWarps = 8; },
      [](KernelSpec &s) { s.numStages = 4; },
      [](KernelSpec &s) { s.sorted = true; },
      [](KernelSpec &s) { s.mulRoutedWeight = true; },
      [](KernelSpec &s) { s.addInputs = false; },
      [](KernelSpec &s) { s.numSlices = 1; },
      [](KernelSpec &s) { s.npid = 2; },
  };
  const KernelSpec base = exampleSpec();
  std::set<std::string> keys = {base.cacheKey()};
  std::set<std::string> names = {base.entryName()};
  for (size_t i = 0; i < mutations.size(); ++i) {
    KernelSpec s = base;
    mutations[i](s);
    EXPECT_FALSE(s == base) << "mutation " << i;
    EXPECT_TRUE(keys.insert(s.cacheKey()).second) << "mutation " << i;
    EXPECT_TRUE(names.insert(s.entryName()).second) << "mutation " << i;
  }
}

TEST(KernelSpecTest, EntryNameShape) {
  KernelSpec s = exampleSpec();
  std::string name = s.entryName();
  EXPECT_TRUE(isCIdentifier(name)) << name;
  EXPECT_THAT(name, StartsWith("moelora_one_shot_bf16_sm90_r16_k2048_"
                               "m16n128k128_w4s3_naive_add_s2_h"));
  // "_h" + 8 hex digits of the key hash close the name.
  std::string tail = name.substr(name.rfind("_h") + 2);
  EXPECT_TRUE(std::regex_match(tail, std::regex("[0-9a-f]{8}"))) << tail;

  s.k.reset();
  s.sorted = true;
  s.mulRoutedWeight = true;
  s.addInputs = false;
  s.groupSizeM = 8;
  s.splitK = 4;
  s.npid = 2;
  name = s.entryName();
  EXPECT_TRUE(isCIdentifier(name)) << name;
  EXPECT_THAT(name,
              StartsWith("moelora_one_shot_bf16_sm90_r16_kany_"
                         "m16n128k128_g8_sk4_w4s3_sorted_mrw_s2_npid2_h"));
}

/// Entry names end up in bundles and caches on disk: the same spec must
/// give the same name in every build and on every machine.
TEST(KernelSpecTest, EntryNameIsStable) {
  KernelSpec a = exampleSpec();
  KernelSpec b = exampleSpec();
  EXPECT_EQ(a.entryName(), b.entryName());
  EXPECT_EQ(a.cacheKey(), b.cacheKey());
  EXPECT_EQ(a.entryName(), "moelora_one_shot_bf16_sm90_r16_k2048_m16n128k128_"
                           "w4s3_naive_add_s2_h586561fc");
}

TEST(KernelSpecTest, Threads) {
  KernelSpec s;
  s.numWarps = 8;
  EXPECT_EQ(s.threads(), 256);
}

} // namespace
