//===- ModuleCacheTest.cpp - Keys, disk cache, bundles, concurrency -------===//
//
// The module cache without a GPU (driver == nullptr): images only. Kernel
// images come from a counting fake JIT hook (RuntimeTestUtil.h).
//
//===----------------------------------------------------------------------===//

#include "RuntimeTestUtil.h"

#include "moelora/Runtime/CudaDriver.h"
#include "moelora/Runtime/ModuleCache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <latch>
#include <random>
#include <set>
#include <thread>
#include <vector>

using namespace moelora;
using namespace moelora::test;
using ::testing::HasSubstr;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

//===----------------------------------------------------------------------===//
// Cache keys
//===----------------------------------------------------------------------===//

/// One mutation per KernelSpec field of the cache key: each sets the field to
/// a value different from the one it has (for any spec).
const std::vector<std::pair<const char *, std::function<void(KernelSpec &)>>> &
fieldMutations() {
  static const std::vector<
      std::pair<const char *, std::function<void(KernelSpec &)>>>
      m = {
          {"family",
           [](KernelSpec &s) {
             s.family = KernelFamily((int(s.family) + 1) % 5);
           }},
          {"dtype",
           [](KernelSpec &s) {
             s.dtype = s.dtype == DType::F16 ? DType::BF16 : DType::F16;
           }},
          {"sm", [](KernelSpec &s) { s.sm += 10; }},
          {"rank", [](KernelSpec &s) { s.rank += 16; }},
          {"k", [](KernelSpec &s) { s.k = s.k ? *s.k + 64 : 4096; }},
          {"k=unknown",
           [](KernelSpec &s) {
             if (s.k)
               s.k.reset();
             else
               s.k = 1024;
           }},
          {"blockM", [](KernelSpec &s) { s.blockM *= 2; }},
          {"blockN", [](KernelSpec &s) { s.blockN *= 2; }},
          {"blockK", [](KernelSpec &s) { s.blockK *= 2; }},
          {"groupSizeM", [](KernelSpec &s) { s.groupSizeM += 1; }},
          {"splitK", [](KernelSpec &s) { s.splitK += 1; }},
          {"numWarps", [](KernelSpec &s) { s.numWarps *= 2; }},
          {"numStages", [](KernelSpec &s) { s.numStages += 1; }},
          {"sorted", [](KernelSpec &s) { s.sorted = !s.sorted; }},
          {"mulRoutedWeight",
           [](KernelSpec &s) { s.mulRoutedWeight = !s.mulRoutedWeight; }},
          {"addInputs", [](KernelSpec &s) { s.addInputs = !s.addInputs; }},
          {"numSlices", [](KernelSpec &s) { s.numSlices += 1; }},
          {"npid", [](KernelSpec &s) { s.npid += 1; }},
          {"minBlocksPerSm", [](KernelSpec &s) { s.minBlocksPerSm += 1; }},
          {"alignedOutput",
           [](KernelSpec &s) { s.alignedOutput = !s.alignedOutput; }},
          {"wgmma", [](KernelSpec &s) { s.wgmma = !s.wgmma; }},
      };
  return m;
}

KernelSpec randomSpec(std::mt19937 &rng) {
  auto pick = [&](std::initializer_list<int> v) {
    return *(v.begin() +
             std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng));
  };
  KernelSpec s;
  s.family = KernelFamily(pick({0, 1, 2, 3, 4}));
  s.dtype = pick({0, 1}) ? DType::BF16 : DType::F16;
  s.sm = pick({80, 90});
  s.rank = pick({8, 16, 64});
  int k = pick({-1, 256, 2048});
  if (k > 0)
    s.k = k;
  s.blockM = pick({16, 64});
  s.blockN = pick({64, 128});
  s.blockK = pick({64, 128});
  s.groupSizeM = pick({1, 8});
  s.splitK = pick({1, 2});
  s.numWarps = pick({4, 8});
  s.numStages = pick({2, 3});
  s.sorted = pick({0, 1});
  s.mulRoutedWeight = pick({0, 1});
  s.addInputs = pick({0, 1});
  s.numSlices = pick({1, 2});
  s.npid = pick({0, 2});
  s.wgmma = pick({0, 1});
  return s;
}

// The kernel-choice flags, each where it changes the kernel (a sorted sm_90
// one-shot with an aligned output; its few-rows and cluster fields set so
// that each flag applies): the in-memory key, the disk key and equality
// all tell them apart.
TEST(SpecKeyTest, EveryKernelChoiceFlagChangesTheKeys) {
  KernelSpec base;
  base.family = KernelFamily::OneShot;
  base.sm = 90;
  base.rank = 64;
  base.k = 2048;
  base.blockM = 64;
  base.blockN = 64;
  base.blockK = 64;
  base.numWarps = 8;
  base.numStages = 3;
  base.sorted = true;
  base.addInputs = true;
  base.numSlices = 2;
  const std::vector<std::pair<const char *, std::function<void(KernelSpec &)>>>
      flags = {
          {"fuseSlices", [](KernelSpec &s) { s.fuseSlices = true; }},
          {"fewRows", [](KernelSpec &s) { s.fewRows = true; }},
          {"tmaWeights",
           [](KernelSpec &s) {
             s.wgmma = true;
             s.tmaWeights = true;
           }},
          {"producerWarp",
           [](KernelSpec &s) {
             s.wgmma = true;
             s.producerWarp = true;
           }},
          {"persistent", [](KernelSpec &s) { s.persistent = true; }},
          {"wgmmaExpand",
           [](KernelSpec &s) {
             s.wgmma = true;
             s.wgmmaExpand = true;
           }},
          {"bulkOutput", [](KernelSpec &s) { s.bulkOutput = true; }},
          {"bulkShrink", [](KernelSpec &s) { s.bulkShrink = true; }},
          {"earlyExpand", [](KernelSpec &s) { s.earlyExpand = true; }},
          {"reduceScatter",
           [](KernelSpec &s) {
             s.splitK = 2;
             s.npid = 2;
             s.reduceScatter = true;
           }},
      };
  for (const auto &[name, set] : flags) {
    SCOPED_TRACE(name);
    KernelSpec with = base;
    set(with);
    // What the flag needs besides itself (wgmma) is in the base too.
    KernelSpec without = base;
    without.wgmma = with.wgmma;
    without.splitK = with.splitK;
    without.npid = with.npid;
    EXPECT_NE(with.cacheKey(), without.cacheKey());
    EXPECT_FALSE(with == without);
    EXPECT_FALSE(SpecKey(with) == SpecKey(without));
    EXPECT_NE(SpecKeyHash()(SpecKey(with)), SpecKeyHash()(SpecKey(without)));
  }
}

TEST(SpecKeyTest, EveryFieldChangesKeyHashAndCacheKey) {
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 50; ++iter) {
    const KernelSpec base = iter == 0 ? sampleSpec() : randomSpec(rng);
    const SpecKey baseKey(base);
    const std::string baseText = base.cacheKey();
    for (const auto &[field, mutate] : fieldMutations()) {
      KernelSpec changed = base;
      mutate(changed);
      SCOPED_TRACE(std::string(field) + " of " + baseText);
      EXPECT_NE(changed.cacheKey(), baseText);
      EXPECT_FALSE(SpecKey(changed) == baseKey);
      EXPECT_NE(SpecKeyHash()(SpecKey(changed)), SpecKeyHash()(baseKey));
    }
    // origin is where a spec was written, not what it compiles to.
    KernelSpec moved = base;
    moved.origin = "elsewhere.yaml:7";
    EXPECT_EQ(moved.cacheKey(), baseText);
    EXPECT_TRUE(SpecKey(moved) == baseKey);
    EXPECT_EQ(SpecKeyHash()(SpecKey(moved)), SpecKeyHash()(baseKey));
  }
}

// few_rows_tile is a kernel of its own only where the few-rows expand is
// (fewRowsExpand()): then 16 and 32 differ in the key, its hash and the
// cache key; without the flag they are one kernel.
TEST(SpecKeyTest, FewRowsTileCountsOnlyWithTheFewRowsExpand) {
  KernelSpec s = sampleSpec();
  s.sorted = true;
  s.blockM = 64;
  s.numWarps = 8;
  s.fewRows = true;
  KernelSpec t32 = s;
  t32.fewRowsTile = 32;
  ASSERT_TRUE(s.fewRowsExpand() && t32.fewRowsExpand());
  EXPECT_FALSE(SpecKey(s) == SpecKey(t32));
  EXPECT_NE(SpecKeyHash()(SpecKey(s)), SpecKeyHash()(SpecKey(t32)));
  EXPECT_NE(s.cacheKey(), t32.cacheKey());
  s.fewRows = t32.fewRows = false;
  EXPECT_TRUE(SpecKey(s) == SpecKey(t32));
  EXPECT_EQ(s.cacheKey(), t32.cacheKey());
}

TEST(SpecKeyTest, EqualityAgreesWithCacheKeyOverRandomSpecs) {
  // Small value sets so that random pairs are often equal too.
  std::mt19937 rng(99);
  int equalPairs = 0, differentPairs = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    KernelSpec a = randomSpec(rng);
    KernelSpec b = a;
    // Re-draw 0..2 fields of b (a re-draw may give the same value back).
    int redraws = std::uniform_int_distribution<int>(0, 2)(rng);
    for (int i = 0; i < redraws; ++i) {
      KernelSpec donor = randomSpec(rng);
      switch (std::uniform_int_distribution<int>(0, 16)(rng)) {
      case 0:
        b.family = donor.family;
        break;
      case 1:
        b.dtype = donor.dtype;
        break;
      case 2:
        b.sm = donor.sm;
        break;
      case 3:
        b.rank = donor.rank;
        break;
      case 4:
        b.k = donor.k;
        break;
      case 5:
        b.blockM = donor.blockM;
        break;
      case 6:
        b.blockN = donor.blockN;
        break;
      case 7:
        b.blockK = donor.blockK;
        break;
      case 8:
        b.groupSizeM = donor.groupSizeM;
        break;
      case 9:
        b.splitK = donor.splitK;
        break;
      case 10:
        b.numWarps = donor.numWarps;
        break;
      case 11:
        b.numStages = donor.numStages;
        break;
      case 12:
        b.sorted = donor.sorted;
        break;
      case 13:
        b.mulRoutedWeight = donor.mulRoutedWeight;
        break;
      case 14:
        b.addInputs = donor.addInputs;
        break;
      case 15:
        b.numSlices = donor.numSlices;
        break;
      default:
        b.npid = donor.npid;
        break;
      }
    }
    const bool sameText = a.cacheKey() == b.cacheKey();
    const bool sameKey = SpecKey(a) == SpecKey(b);
    ASSERT_EQ(sameKey, sameText) << a.cacheKey() << "\nvs\n" << b.cacheKey();
    ASSERT_EQ(a == b, sameText);
    if (sameKey) {
      ASSERT_EQ(SpecKeyHash()(SpecKey(a)), SpecKeyHash()(SpecKey(b)));
      ++equalPairs;
    } else {
      ++differentPairs;
    }
  }
  // Both outcomes were exercised.
  EXPECT_GT(equalPairs, 100);
  EXPECT_GT(differentPairs, 100);
}

TEST(SpecKeyTest, DistinctRandomSpecsHaveDistinctKeysAndHashes) {
  std::mt19937 rng(7);
  std::set<std::string> texts;
  std::set<size_t> hashes;
  std::set<decltype(SpecKey(KernelSpec()).fields)> keys;
  for (int i = 0; i < 3000; ++i) {
    KernelSpec s = randomSpec(rng);
    texts.insert(s.cacheKey());
    keys.insert(SpecKey(s).fields);
    hashes.insert(SpecKeyHash()(SpecKey(s)));
  }
  EXPECT_EQ(keys.size(), texts.size());
  EXPECT_EQ(hashes.size(), texts.size());
}

TEST(SpecKeyTest, CacheKeyIsStable) {
  KernelSpec s = sampleSpec();
  // The text is part of every on-disk cache and bundle: it must not drift.
  EXPECT_EQ(s.cacheKey(), "one_shot;bf16;sm_90;R=16;K=2048;BM=16;BN=128;BK=128;"
                          "GM=1;SK=1;W=4;S=3;sorted=0;mrw=0;add=1;slices=2;"
                          "npid=0;even_k=1;mbs=0;oa=1;fs=0;abi=3");
  EXPECT_EQ(s.cacheKey(), KernelSpec(s).cacheKey());
  EXPECT_EQ(SpecKeyHash()(SpecKey(s)), SpecKeyHash()(SpecKey(KernelSpec(s))));
  // The in-memory key tells a slice-fused shrink from the plain one.
  KernelSpec shrink = s, fused = s;
  shrink.family = fused.family = KernelFamily::Shrink;
  fused.fuseSlices = true;
  EXPECT_FALSE(SpecKey(shrink) == SpecKey(fused));
  EXPECT_EQ(s.entryName(), KernelSpec(s).entryName());
}

// few_rows is in every key exactly where it changes the kernel (a sorted
// BLOCK_M 64 one-shot has a few-rows shape; a BLOCK_M 16 one has none): a
// cache that served one variant for the other would launch the wrong code
// or look up an entry name its PTX does not hold.
TEST(SpecKeyTest, FewRowsIsInTheKeyWhereItChangesTheKernel) {
  KernelSpec plain = sampleSpec();
  plain.sorted = true;
  plain.blockM = 64;
  plain.blockN = 64;
  plain.numWarps = 8;
  KernelSpec fewRows = plain;
  fewRows.fewRows = true;
  ASSERT_TRUE(fewRows.fewRowsExpand());
  EXPECT_NE(fewRows.cacheKey(), plain.cacheKey());
  EXPECT_NE(fewRows.entryName(), plain.entryName());
  EXPECT_FALSE(SpecKey(fewRows) == SpecKey(plain));
  EXPECT_NE(SpecKeyHash()(SpecKey(fewRows)), SpecKeyHash()(SpecKey(plain)));
  KernelSpec noShape = sampleSpec(); // BLOCK_M 16
  KernelSpec noShapeFlag = noShape;
  noShapeFlag.fewRows = true;
  ASSERT_FALSE(noShapeFlag.fewRowsExpand());
  EXPECT_EQ(noShapeFlag.cacheKey(), noShape.cacheKey());
  EXPECT_TRUE(SpecKey(noShapeFlag) == SpecKey(noShape));
}

//===----------------------------------------------------------------------===//
// Disk cache
//===----------------------------------------------------------------------===//

class ModuleCacheDiskTest : public ::testing::Test {
protected:
  void SetUp() override { setJitHook(nullptr); }
  void TearDown() override { setJitHook(nullptr); }

  ModuleCacheOptions diskOptions() const {
    ModuleCacheOptions o;
    o.diskDir = dir.path();
    return o;
  }
  std::string ptxPath(const KernelSpec &s) const {
    return dir / (s.entryName() + ".ptx");
  }
  std::string jsonPath(const KernelSpec &s) const {
    return dir / (s.entryName() + ".json");
  }
  /// Files whose name contains ".tmp" (leftovers of non-atomic writes).
  std::vector<std::string> tempFiles() const {
    std::vector<std::string> out;
    for (const auto &e : fs::directory_iterator(dir.path()))
      if (e.path().filename().string().find(".tmp") != std::string::npos)
        out.push_back(e.path().string());
    return out;
  }
  /// A new cache on the same directory resolves `spec` from disk.
  void expectServedFromDisk(const KernelSpec &spec, FakeJit &jit) {
    int before = jit.calls();
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.init());
    auto img = cache.image(spec);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_EQ(jit.calls(), before);
    EXPECT_EQ(cache.stats().diskHits, 1u);
    EXPECT_EQ(cache.stats().jitGenerations, 0u);
    EXPECT_EQ((*img)->ptx, fakeImage(spec).ptx);
  }

  TempDir dir;
};

TEST_F(ModuleCacheDiskTest, GeneratesOnceThenServesFromDisk) {
  FakeJit jit;
  const KernelSpec spec = sampleSpec();
  const KernelImage expected = fakeImage(spec);
  {
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.init());
    EXPECT_EQ(cache.diskDir(), dir.path());
    auto img = cache.image(spec);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_EQ(jit.calls(), 1);
    EXPECT_EQ(cache.stats().jitGenerations, 1u);
    EXPECT_EQ(cache.stats().diskHits, 0u);
    EXPECT_EQ(cache.stats().memoryHits, 0u);
    EXPECT_EQ((*img)->ptx, expected.ptx);
    EXPECT_EQ((*img)->sharedBytes, expected.sharedBytes);

    ASSERT_TRUE(fs::exists(ptxPath(spec)));
    ASSERT_TRUE(fs::exists(jsonPath(spec)));
    EXPECT_EQ(readText(ptxPath(spec)), expected.ptx);
    json meta = json::parse(readText(jsonPath(spec)));
    EXPECT_EQ(meta.at("cache_key"), spec.cacheKey());
    EXPECT_EQ(meta.at("entry"), spec.entryName());
    EXPECT_EQ(meta.at("content_hash"), expected.contentHash);
    EXPECT_EQ(meta.at("shared_bytes"), expected.sharedBytes);
    EXPECT_EQ(meta.at("threads"), expected.threads);
    EXPECT_EQ(meta.at("generator"), std::string(generatorStamp()));
    EXPECT_EQ(generatorStamp().size(), 16u);
    EXPECT_THAT(tempFiles(), ::testing::IsEmpty());

    // Second request: memory, same object, no generation.
    auto again = cache.image(spec);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->get(), img->get());
    EXPECT_EQ(cache.stats().memoryHits, 1u);
    EXPECT_EQ(jit.calls(), 1);
  }
  {
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.init());
    auto img = cache.image(spec);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_EQ(jit.calls(), 1) << "a disk hit must not call the generator";
    EXPECT_EQ(cache.stats().diskHits, 1u);
    EXPECT_EQ(cache.stats().jitGenerations, 0u);
    EXPECT_EQ((*img)->ptx, expected.ptx);
    EXPECT_EQ((*img)->sharedBytes, expected.sharedBytes);
    EXPECT_EQ((*img)->threads, expected.threads);
    EXPECT_EQ((*img)->contentHash, expected.contentHash);
    EXPECT_EQ((*img)->spec.cacheKey(), spec.cacheKey());
  }
}

TEST_F(ModuleCacheDiskTest, DiskHitNeedsNoGenerator) {
  const KernelSpec spec = sampleSpec();
  {
    FakeJit jit;
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.image(spec));
  }
  ASSERT_FALSE(hasJitHook());
  ModuleCache cache(nullptr, diskOptions());
  auto img = cache.image(spec);
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_EQ(cache.stats().diskHits, 1u);
}

TEST_F(ModuleCacheDiskTest, DistinctSpecsGetDistinctEntries) {
  FakeJit jit;
  KernelSpec a = sampleSpec();
  KernelSpec b = a;
  b.numWarps = 8;
  ModuleCache cache(nullptr, diskOptions());
  auto ia = cache.image(a);
  auto ib = cache.image(b);
  ASSERT_TRUE(ia && ib);
  EXPECT_EQ(jit.calls(), 2);
  EXPECT_NE(ia->get(), ib->get());
  EXPECT_NE((*ia)->ptx, (*ib)->ptx);
  EXPECT_TRUE(fs::exists(ptxPath(a)));
  EXPECT_TRUE(fs::exists(ptxPath(b)));
}

TEST_F(ModuleCacheDiskTest, CorruptPtxIsRegeneratedAndRewritten) {
  FakeJit jit;
  const KernelSpec spec = sampleSpec();
  {
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.image(spec));
  }
  ASSERT_EQ(jit.calls(), 1);
  std::string ptx = readText(ptxPath(spec));
  ptx[ptx.size() / 2] ^= 0x20; // one flipped bit, same length
  writeText(ptxPath(spec), ptx);
  {
    ModuleCache cache(nullptr, diskOptions());
    auto img = cache.image(spec);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_EQ(jit.calls(), 2) << "a corrupt entry must be regenerated";
    EXPECT_EQ(cache.stats().diskHits, 0u);
    EXPECT_EQ(cache.stats().jitGenerations, 1u);
    EXPECT_EQ((*img)->ptx, fakeImage(spec).ptx) << "corrupt PTX was served";
  }
  EXPECT_EQ(readText(ptxPath(spec)), fakeImage(spec).ptx);
  EXPECT_THAT(tempFiles(), ::testing::IsEmpty());
  expectServedFromDisk(spec, jit);
}

TEST_F(ModuleCacheDiskTest, CorruptJsonIsRegeneratedAndRewritten) {
  FakeJit jit;
  const KernelSpec spec = sampleSpec();
  {
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.image(spec));
  }
  const std::string goodJson = readText(jsonPath(spec));
  KernelSpec other = spec;
  other.rank = 32;
  const std::vector<std::pair<const char *, std::string>> corruptions = {
      {"truncated", goodJson.substr(0, goodJson.size() / 2)},
      {"garbage", "\x01\x02 not json at all {"},
      {"empty", ""},
      {"missing shared_bytes",
       [&] {
         json j = json::parse(goodJson);
         j.erase("shared_bytes");
         return j.dump();
       }()},
      {"wrong hash",
       [&] {
         json j = json::parse(goodJson);
         j["content_hash"] = "0123456789abcdef";
         return j.dump();
       }()},
      {"another key",
       [&] {
         json j = json::parse(goodJson);
         j["cache_key"] = other.cacheKey();
         return j.dump();
       }()},
      // Written by another build of the generator (an upgrade): the PTX
      // under the same key may differ, so the entry is stale.
      {"another generator",
       [&] {
         json j = json::parse(goodJson);
         j["generator"] = "0000000000000000";
         return j.dump();
       }()},
      {"no generator (older format)",
       [&] {
         json j = json::parse(goodJson);
         j.erase("generator");
         return j.dump();
       }()},
  };
  int expectedCalls = 1;
  for (const auto &[what, text] : corruptions) {
    SCOPED_TRACE(what);
    writeText(jsonPath(spec), text);
    {
      ModuleCache cache(nullptr, diskOptions());
      auto img = cache.image(spec);
      ASSERT_TRUE(img) << img.error().message;
      EXPECT_EQ(jit.calls(), ++expectedCalls);
      EXPECT_EQ(cache.stats().diskHits, 0u);
      EXPECT_EQ((*img)->sharedBytes, fakeImage(spec).sharedBytes);
    }
    // Rewritten valid.
    json j = json::parse(readText(jsonPath(spec)));
    EXPECT_EQ(j.at("cache_key"), spec.cacheKey());
    EXPECT_EQ(j.at("content_hash"), contentHash(readText(ptxPath(spec))));
    EXPECT_EQ(j.at("generator"), std::string(generatorStamp()));
    EXPECT_THAT(tempFiles(), ::testing::IsEmpty());
    expectServedFromDisk(spec, jit);
  }
}

TEST_F(ModuleCacheDiskTest, UnusableEntryWithoutGeneratorSaysWhy) {
  // A runtime without a generator (the engine's wheel) given a cache made by
  // another build: the entry is there but stale, and the error says so
  // instead of only "not found".
  const KernelSpec spec = sampleSpec();
  {
    FakeJit jit;
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.image(spec));
  }
  json j = json::parse(readText(jsonPath(spec)));
  j["generator"] = "0000000000000000";
  writeText(jsonPath(spec), j.dump());
  setJitHook(nullptr);
  ModuleCache cache(nullptr, diskOptions());
  auto img = cache.image(spec);
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr("kernel variant not found"));
  EXPECT_THAT(img.error().message, HasSubstr("no generator"));
  EXPECT_THAT(img.error().message, HasSubstr(jsonPath(spec)));
  EXPECT_THAT(img.error().message,
              HasSubstr("written by another moelora build"));
  EXPECT_EQ(cache.stats().diskHits, 0u);
  // The entry is left as it was (nothing could replace it).
  EXPECT_EQ(json::parse(readText(jsonPath(spec))).at("generator"),
            "0000000000000000");
}

TEST_F(ModuleCacheDiskTest, NoEntryWithoutGeneratorIsPlainNotFound) {
  setJitHook(nullptr);
  ModuleCache cache(nullptr, diskOptions());
  auto img = cache.image(sampleSpec());
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr("kernel variant not found"));
  EXPECT_THAT(img.error().message,
              ::testing::Not(HasSubstr("disk cache's entry")));
}

TEST_F(ModuleCacheDiskTest, MissingPtxIsRegenerated) {
  FakeJit jit;
  const KernelSpec spec = sampleSpec();
  {
    ModuleCache cache(nullptr, diskOptions());
    ASSERT_TRUE(cache.image(spec));
  }
  fs::remove(ptxPath(spec));
  {
    ModuleCache cache(nullptr, diskOptions());
    auto img = cache.image(spec);
    ASSERT_TRUE(img) << img.error().message;
    EXPECT_EQ(jit.calls(), 2);
  }
  expectServedFromDisk(spec, jit);
}

TEST_F(ModuleCacheDiskTest, DiskOffWritesNothing) {
  FakeJit jit;
  ModuleCacheOptions o = diskOptions();
  o.diskDir = dir / "never-created";
  o.useDisk = false;
  ModuleCache cache(nullptr, o);
  ASSERT_TRUE(cache.image(sampleSpec()));
  EXPECT_EQ(jit.calls(), 1);
  EXPECT_FALSE(fs::exists(o.diskDir));
  // And a new cache with the disk off regenerates.
  ModuleCache again(nullptr, o);
  ASSERT_TRUE(again.image(sampleSpec()));
  EXPECT_EQ(jit.calls(), 2);
}

TEST_F(ModuleCacheDiskTest, DiskDirIsCreatedOnDemand) {
  FakeJit jit;
  ModuleCacheOptions o;
  o.diskDir = dir / "a/b/c";
  ModuleCache cache(nullptr, o);
  ASSERT_TRUE(cache.image(sampleSpec()));
  EXPECT_TRUE(
      fs::exists(fs::path(o.diskDir) / (sampleSpec().entryName() + ".ptx")));
}

TEST_F(ModuleCacheDiskTest, GeneratorErrorIsReturnedAndNothingWritten) {
  FakeJit jit;
  jit.setFail(true);
  ModuleCache cache(nullptr, diskOptions());
  auto img = cache.image(sampleSpec());
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr("fake generator failed"));
  EXPECT_THAT(img.error().message, HasSubstr(sampleSpec().cacheKey()));
  EXPECT_FALSE(fs::exists(ptxPath(sampleSpec())));
  EXPECT_FALSE(fs::exists(jsonPath(sampleSpec())));
  EXPECT_EQ(cache.stats().jitGenerations, 0u);
}

TEST_F(ModuleCacheDiskTest, KernelWithoutDriverIsAClearError) {
  FakeJit jit;
  ModuleCache cache(nullptr, diskOptions());
  auto k = cache.kernel(sampleSpec());
  ASSERT_FALSE(k);
  EXPECT_THAT(k.error().message, HasSubstr("no CUDA driver"));
  EXPECT_THAT(k.error().message, HasSubstr(sampleSpec().entryName()));
}

//===----------------------------------------------------------------------===//
// Default directory
//===----------------------------------------------------------------------===//

TEST(DefaultCacheDirTest, Precedence) {
  ScopedEnv moe("MOELORA_CACHE_DIR", "/x/moe");
  ScopedEnv xdg("XDG_CACHE_HOME", "/x/xdg");
  ScopedEnv home("HOME", "/x/home");
  EXPECT_EQ(defaultCacheDir(), "/x/moe");
  {
    ScopedEnv unset("MOELORA_CACHE_DIR", std::nullopt);
    EXPECT_EQ(defaultCacheDir(), "/x/xdg/moelora");
    {
      ScopedEnv noXdg("XDG_CACHE_HOME", std::nullopt);
      EXPECT_EQ(defaultCacheDir(), "/x/home/.cache/moelora");
      ScopedEnv noHome("HOME", std::nullopt);
      EXPECT_EQ(defaultCacheDir(),
                (fs::temp_directory_path() / "moelora-cache").string());
    }
  }
  {
    // Empty values count as unset.
    ScopedEnv empty("MOELORA_CACHE_DIR", "");
    EXPECT_EQ(defaultCacheDir(), "/x/xdg/moelora");
    ScopedEnv emptyXdg("XDG_CACHE_HOME", "");
    EXPECT_EQ(defaultCacheDir(), "/x/home/.cache/moelora");
  }
  EXPECT_EQ(defaultCacheDir(), "/x/moe");
}

TEST(DefaultCacheDirTest, CacheUsesDefaultWhenDirEmpty) {
  TempDir dir;
  ScopedEnv moe("MOELORA_CACHE_DIR", dir / "env-cache");
  FakeJit jit;
  ModuleCache cache(nullptr, ModuleCacheOptions{});
  EXPECT_EQ(cache.diskDir(), dir / "env-cache");
  ASSERT_TRUE(cache.image(sampleSpec()));
  EXPECT_TRUE(fs::exists(fs::path(dir / "env-cache") /
                         (sampleSpec().entryName() + ".json")));
}

//===----------------------------------------------------------------------===//
// Concurrency
//===----------------------------------------------------------------------===//

TEST(ModuleCacheConcurrencyTest, ConcurrentFirstRequestsGenerateOnce) {
  TempDir dir;
  FakeJit jit(std::chrono::milliseconds(50));
  ModuleCacheOptions o;
  o.diskDir = dir.path();
  ModuleCache cache(nullptr, o);
  constexpr int kThreads = 32;
  std::latch start(kThreads);
  std::vector<const KernelImage *> got(kThreads, nullptr);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      auto img = cache.image(sampleSpec());
      if (img)
        got[i] = img->get();
      else
        errors[i] = img.error().message;
    });
  for (auto &t : threads)
    t.join();
  EXPECT_EQ(jit.calls(), 1);
  EXPECT_EQ(cache.stats().jitGenerations, 1u);
  EXPECT_EQ(cache.stats().memoryHits, uint64_t(kThreads - 1));
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(errors[i], "") << "thread " << i;
    EXPECT_NE(got[i], nullptr);
    EXPECT_EQ(got[i], got[0]) << "thread " << i;
  }
  // One writer, no temporaries left.
  for (const auto &e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos)
        << e.path();
}

TEST(ModuleCacheConcurrencyTest, DistinctSpecsGenerateInParallel) {
  TempDir dir;
  FakeJit jit(std::chrono::milliseconds(50));
  ModuleCacheOptions o;
  o.diskDir = dir.path();
  ModuleCache cache(nullptr, o);
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      KernelSpec s = sampleSpec();
      s.rank = 16 * (i + 1);
      start.arrive_and_wait();
      if (cache.image(s))
        ++ok;
    });
  for (auto &t : threads)
    t.join();
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - t0)
                  .count();
  EXPECT_EQ(ok.load(), kThreads);
  EXPECT_EQ(jit.calls(), kThreads);
  // Generation runs outside the cache lock: 8 x 50 ms would take 400 ms.
  EXPECT_LT(ms, 300.0);
}

//===----------------------------------------------------------------------===//
// Bundles
//===----------------------------------------------------------------------===//

class ModuleCacheBundleTest : public ::testing::Test {
protected:
  void SetUp() override {
    setJitHook(nullptr);
    bundle = root / "bundle";
    fs::create_directories(bundle);
  }
  void TearDown() override { setJitHook(nullptr); }

  /// Writes `specs` as a moelora-gen bundle; returns the manifest.
  json writeBundle(const std::vector<KernelSpec> &specs) {
    json kernels = json::array();
    for (const KernelSpec &s : specs) {
      KernelImage img = fakeImage(s);
      std::string entry = s.entryName();
      writeText((fs::path(bundle) / (entry + ".ptx")).string(), img.ptx);
      json meta = {{"cache_key", s.cacheKey()},
                   {"entry", entry},
                   {"content_hash", img.contentHash},
                   {"shared_bytes", img.sharedBytes},
                   {"threads", img.threads}};
      writeText((fs::path(bundle) / (entry + ".json")).string(), meta.dump(1));
      kernels.push_back({{"cache_key", s.cacheKey()},
                         {"entry", entry},
                         {"ptx", entry + ".ptx"},
                         {"json", entry + ".json"},
                         {"content_hash", img.contentHash}});
    }
    json manifest = {
        {"format", "moelora-bundle"}, {"version", 1}, {"kernels", kernels}};
    writeManifest(manifest.dump(1));
    return manifest;
  }
  void writeManifest(const std::string &text) {
    writeText((fs::path(bundle) / "manifest.json").string(), text);
  }
  ModuleCacheOptions bundleOptions(bool useJit = true) const {
    ModuleCacheOptions o;
    o.diskDir = root / "disk";
    o.useJit = useJit;
    o.bundles = {bundle};
    return o;
  }

  TempDir root;
  std::string bundle;
};

TEST_F(ModuleCacheBundleTest, ServedFromBundleWithoutGenerator) {
  const KernelSpec spec = sampleSpec();
  KernelSpec other = spec;
  other.numSlices = 1;
  writeBundle({spec, other});
  FakeJit jit; // present, but a bundle hit must not use it
  ModuleCache cache(nullptr, bundleOptions());
  Status s = cache.init();
  ASSERT_TRUE(s) << s.error().message;
  auto img = cache.image(spec);
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_EQ(jit.calls(), 0);
  EXPECT_EQ(cache.stats().bundleHits, 1u);
  EXPECT_EQ(cache.stats().jitGenerations, 0u);
  EXPECT_EQ((*img)->ptx, fakeImage(spec).ptx);
  EXPECT_EQ((*img)->sharedBytes, fakeImage(spec).sharedBytes);
  EXPECT_EQ((*img)->threads, spec.launchThreads());
  EXPECT_EQ((*img)->contentHash, fakeImage(spec).contentHash);
  auto img2 = cache.image(other);
  ASSERT_TRUE(img2) << img2.error().message;
  EXPECT_EQ(cache.stats().bundleHits, 2u);
  EXPECT_EQ((*img2)->ptx, fakeImage(other).ptx);
  // A variant the bundle lacks falls through to the generator.
  KernelSpec missing = spec;
  missing.rank = 64;
  ASSERT_TRUE(cache.image(missing));
  EXPECT_EQ(jit.calls(), 1);
}

TEST_F(ModuleCacheBundleTest, ServedFromBundleWithJitOff) {
  writeBundle({sampleSpec()});
  ModuleCache cache(nullptr, bundleOptions(/*useJit=*/false));
  ASSERT_TRUE(cache.init());
  auto img = cache.image(sampleSpec());
  ASSERT_TRUE(img) << img.error().message;
  EXPECT_EQ(cache.stats().bundleHits, 1u);
}

TEST_F(ModuleCacheBundleTest, ManifestHashMismatchNamesTheKey) {
  const KernelSpec spec = sampleSpec();
  json manifest = writeBundle({spec});
  manifest["kernels"][0]["content_hash"] = "00000000deadbeef";
  writeManifest(manifest.dump());
  ModuleCache cache(nullptr, bundleOptions());
  ASSERT_TRUE(cache.init());
  auto img = cache.image(spec);
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr(spec.cacheKey()));
  EXPECT_THAT(img.error().message, HasSubstr("hash"));
  EXPECT_EQ(cache.stats().bundleHits, 0u);
}

TEST_F(ModuleCacheBundleTest, TamperedPtxNamesTheKey) {
  const KernelSpec spec = sampleSpec();
  writeBundle({spec});
  std::string ptxFile = (fs::path(bundle) / (spec.entryName() + ".ptx"));
  writeText(ptxFile, readText(ptxFile) + "// tampered\n");
  ModuleCache cache(nullptr, bundleOptions());
  ASSERT_TRUE(cache.init());
  auto img = cache.image(spec);
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr(spec.cacheKey()));
  EXPECT_EQ(cache.stats().bundleHits, 0u);
}

TEST_F(ModuleCacheBundleTest, MissingPtxFileNamesTheKey) {
  const KernelSpec spec = sampleSpec();
  writeBundle({spec});
  fs::remove(fs::path(bundle) / (spec.entryName() + ".ptx"));
  ModuleCache cache(nullptr, bundleOptions());
  ASSERT_TRUE(cache.init());
  auto img = cache.image(spec);
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr(spec.cacheKey()));
}

TEST_F(ModuleCacheBundleTest, BadManifestNamesTheBundle) {
  const std::vector<std::pair<const char *, std::string>> bad = {
      {"not json", "{ this is not json"},
      {"wrong format", R"({"format": "other", "version": 1, "kernels": []})"},
      {"no kernels", R"({"format": "moelora-bundle", "version": 1})"},
      {"kernel without ptx",
       R"({"format": "moelora-bundle", "version": 1, "kernels": [
            {"cache_key": "k", "entry": "e", "json": "e.json",
             "content_hash": "0000000000000000"}]})"},
  };
  for (const auto &[what, text] : bad) {
    SCOPED_TRACE(what);
    writeManifest(text);
    ModuleCache cache(nullptr, bundleOptions());
    Status s = cache.init();
    ASSERT_FALSE(s);
    EXPECT_THAT(s.error().message, HasSubstr(bundle));
    EXPECT_THAT(s.error().message, HasSubstr("manifest"));
  }
}

TEST_F(ModuleCacheBundleTest, MissingBundleNamesTheBundle) {
  ModuleCacheOptions o = bundleOptions();
  o.bundles = {root / "no-such-bundle"};
  ModuleCache cache(nullptr, o);
  Status s = cache.init();
  ASSERT_FALSE(s);
  EXPECT_THAT(s.error().message, HasSubstr(root / "no-such-bundle"));
}

TEST_F(ModuleCacheBundleTest, JitOffAndNoBundleIsNotFound) {
  writeBundle({});
  FakeJit jit; // registered, but JIT is off for this cache
  ModuleCache cache(nullptr, bundleOptions(/*useJit=*/false));
  ASSERT_TRUE(cache.init());
  auto img = cache.image(sampleSpec());
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr("kernel variant not found"));
  EXPECT_THAT(img.error().message, HasSubstr(sampleSpec().cacheKey()));
  EXPECT_THAT(img.error().message, HasSubstr("JIT is off"));
  EXPECT_EQ(jit.calls(), 0);
  EXPECT_EQ(cache.stats().misses, 1u);
}

TEST_F(ModuleCacheBundleTest, NoGeneratorIsNotFound) {
  writeBundle({});
  setJitHook(nullptr);
  EXPECT_FALSE(hasJitHook());
  ModuleCache cache(nullptr, bundleOptions(/*useJit=*/true));
  ASSERT_TRUE(cache.init());
  auto img = cache.image(sampleSpec());
  ASSERT_FALSE(img);
  EXPECT_THAT(img.error().message, HasSubstr("kernel variant not found"));
  EXPECT_THAT(img.error().message, HasSubstr(sampleSpec().cacheKey()));
  EXPECT_THAT(img.error().message, HasSubstr("no generator"));
  EXPECT_EQ(cache.stats().misses, 1u);
}

TEST(JitHookTest, SetAndClear) {
  setJitHook(nullptr);
  EXPECT_FALSE(hasJitHook());
  {
    FakeJit jit;
    EXPECT_TRUE(hasJitHook());
  }
  EXPECT_FALSE(hasJitHook());
}

TEST(ContentHashTest, SixteenHexDigitsAndSensitive) {
  std::string h = contentHash("abc");
  EXPECT_EQ(h.size(), 16u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(h, contentHash("abc"));
  EXPECT_NE(h, contentHash("abd"));
  EXPECT_NE(contentHash(""), contentHash(std::string(1, '\0')));
}

//===----------------------------------------------------------------------===//
// The driver on a machine without one
//===----------------------------------------------------------------------===//

TEST(CudaDriverTest, MissingDriverIsAClearError) {
  auto drv = CudaDriver::get();
  if (drv)
    GTEST_SKIP() << "a CUDA driver and device are present";
  EXPECT_FALSE(drv.error().message.empty());
  // Either no libcuda at all, or a driver without a device.
  const std::string &m = drv.error().message;
  EXPECT_TRUE(m.rfind("no CUDA driver", 0) == 0 ||
              m.find("no CUDA device") != std::string::npos)
      << m;
  // The answer is cached: the same error again.
  auto again = CudaDriver::get();
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message, m);
}

} // namespace
