//===- TunedTableTest.cpp - moelora-tune's JSON, parsing and lookup -------===//

#include "RuntimeTestUtil.h"

#include "moelora/Runtime/TunedTable.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <ostream>

using namespace moelora;
using namespace moelora::test;
using ::testing::HasSubstr;
using json = nlohmann::json;

namespace {

json validTable() {
  return json::parse(R"({
    "format": "moelora-tuned", "version": 1, "gpu": "NVIDIA H100 80GB HBM3",
    "entries": [
      {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048,
       "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 512,
       "config": {"BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64, "num_warps": 4,
                  "num_stages": 3, "NPID": 2}},
      {"path": "small_batch", "dtype": "fp16", "rank": 64, "K": 4096,
       "N": 7168, "max_pairs": 16,
       "config": {"tiles_per_item": 3}}
    ]})");
}

TEST(TunedTableTest, ParsesEveryField) {
  auto t = TunedTable::parse(validTable().dump(), "t.json");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->gpu, "NVIDIA H100 80GB HBM3");
  ASSERT_EQ(t->entries.size(), 2u);
  const TunedEntry &a = t->entries[0];
  EXPECT_EQ(a.path, "one_shot");
  EXPECT_EQ(a.dtype, DType::BF16);
  EXPECT_EQ(a.rank, 16);
  EXPECT_EQ(a.K, 2048);
  EXPECT_EQ(a.N, 1408);
  EXPECT_TRUE(a.sorted);
  EXPECT_EQ(a.numSlices, 2);
  EXPECT_EQ(a.maxPairs, 512);
  EXPECT_EQ(a.config.blockN, 64);
  EXPECT_EQ(a.config.blockK, 64);
  EXPECT_EQ(a.config.numWarps, 4);
  EXPECT_EQ(a.config.numStages, 3);
  EXPECT_EQ(a.config.npid, 2);
  EXPECT_EQ(a.config.tilesPerItem, 0);
  // Optional fields default: num_slices 1, sorted false, config 0 = rule.
  const TunedEntry &b = t->entries[1];
  EXPECT_EQ(b.dtype, DType::F16);
  EXPECT_FALSE(b.sorted);
  EXPECT_EQ(b.numSlices, 1);
  EXPECT_EQ(b.config.tilesPerItem, 3);
  EXPECT_EQ(b.config.blockN, 0);
  EXPECT_EQ(b.config.npid, 0);
  // min_blocks_per_sm: absent is -1 (the family's default), 0 is a value.
  EXPECT_EQ(b.config.minBlocksPerSm, -1);
  json j = validTable();
  j["entries"][1]["config"]["min_blocks_per_sm"] = 0;
  auto zero = TunedTable::parse(j.dump(), "t.json");
  ASSERT_TRUE(zero) << zero.error().message;
  EXPECT_EQ(zero->entries[1].config.minBlocksPerSm, 0);
  // fuse_slices (two_kernel): absent is -1 (the rule), else 0 / 1.
  EXPECT_EQ(a.config.fuseSlices, -1);
  for (bool fuse : {false, true}) {
    json k = validTable();
    k["entries"][0]["path"] = "two_kernel";
    k["entries"][0]["config"]["fuse_slices"] = fuse;
    auto f = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(f) << f.error().message;
    EXPECT_EQ(f->entries[0].config.fuseSlices, fuse ? 1 : 0);
  }
  // wgmma (one_shot): absent is -1, else 0 / 1.
  EXPECT_EQ(a.config.wgmma, -1);
  for (bool wg : {false, true}) {
    json k = validTable();
    k["entries"][0]["config"]["wgmma"] = wg;
    auto w = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(w->entries[0].config.wgmma, wg ? 1 : 0);
    k["entries"][0]["path"] = "two_kernel"; // its shrink's
    auto s = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EQ(s->entries[0].config.wgmma, wg ? 1 : 0);
  }
  // tma_weights (one_shot; two_kernel: its shrink's): absent is -1.
  EXPECT_EQ(a.config.tmaWeights, -1);
  for (bool tma : {false, true}) {
    json k = validTable();
    k["entries"][0]["config"]["wgmma"] = true;
    k["entries"][0]["config"]["tma_weights"] = tma;
    auto w = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(w->entries[0].config.tmaWeights, tma ? 1 : 0);
  }
  // producer_warp likewise.
  EXPECT_EQ(a.config.producerWarp, -1);
  for (bool pw : {false, true}) {
    json k = validTable();
    k["entries"][0]["config"]["wgmma"] = true;
    k["entries"][0]["config"]["producer_warp"] = pw;
    auto w = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(w->entries[0].config.producerWarp, pw ? 1 : 0);
  }
  // persistent: one_shot only; absent is -1, else 0 / 1.
  EXPECT_EQ(a.config.persistent, -1);
  for (bool ps : {false, true}) {
    json k = validTable();
    k["entries"][0]["config"]["persistent"] = ps;
    auto w = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(w) << w.error().message;
    EXPECT_EQ(w->entries[0].config.persistent, ps ? 1 : 0);
  }
  // wgmma_expand (one_shot; two_kernel: its expand's): absent is -1, else
  // 0 / 1.
  EXPECT_EQ(a.config.wgmmaExpand, -1);
  for (const char *path : {"one_shot", "two_kernel"})
    for (bool x : {false, true}) {
      json k = validTable();
      k["entries"][0]["path"] = path;
      k["entries"][0]["config"]["wgmma_expand"] = x;
      auto w = TunedTable::parse(k.dump(), "t.json");
      ASSERT_TRUE(w) << w.error().message;
      EXPECT_EQ(w->entries[0].config.wgmmaExpand, x ? 1 : 0);
    }
  // few_rows (one_shot; two_kernel: its expand's): absent is -1, else 0 / 1.
  EXPECT_EQ(a.config.fewRows, -1);
  for (bool fr : {false, true}) {
    json k = validTable();
    k["entries"][0]["config"]["few_rows"] = fr;
    auto o = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_EQ(o->entries[0].config.fewRows, fr ? 1 : 0);
    k["entries"][0]["path"] = "two_kernel";
    auto t = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(t) << t.error().message;
    EXPECT_EQ(t->entries[0].config.fewRows, fr ? 1 : 0);
  }
  // few_rows_tile: absent is 0 (the kernel's 16), else 16 or 32.
  EXPECT_EQ(a.config.fewRowsTile, 0);
  for (int tile : {16, 32}) {
    json k = validTable();
    k["entries"][0]["config"]["few_rows_tile"] = tile;
    auto o = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(o) << o.error().message;
    EXPECT_EQ(o->entries[0].config.fewRowsTile, tile);
  }
  // SPLIT_K up to 16 (the non-portable cluster) on small_batch / one_shot.
  for (int path : {0, 1}) {
    json k = validTable();
    k["entries"][path]["config"]["SPLIT_K"] = 16;
    k["entries"][path]["config"].erase("NPID");
    auto c = TunedTable::parse(k.dump(), "t.json");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->entries[path].config.splitK, 16);
  }
  // Not a boolean: an error naming the key and the allowed values.
  json bad = validTable();
  bad["entries"][0]["config"]["few_rows"] = 1;
  auto e = TunedTable::parse(bad.dump(), "t.json");
  ASSERT_FALSE(e);
  EXPECT_THAT(e.error().message, ::testing::HasSubstr("few_rows"));
  EXPECT_THAT(e.error().message, ::testing::HasSubstr("true or false"));
}

// A partial sweep's table replaces the base entries of the same bucket and
// adds the new ones; the other base entries stay, in order.
TEST(TunedTableTest, MergeReplacesSameBucketAndAppendsNew) {
  json base = validTable();
  json update = validTable();
  update["entries"][0]["config"] = {{"BLOCK_SIZE_N", 128},
                                    {"min_blocks_per_sm", 1}};
  update["entries"][1]["max_pairs"] = 64; // another bucket: appended
  auto merged = mergeTunedTables(base.dump(), update.dump(), "merge");
  ASSERT_TRUE(merged) << merged.error().message;
  auto t = TunedTable::parse(*merged, "merged");
  ASSERT_TRUE(t) << t.error().message;
  ASSERT_EQ(t->entries.size(), 3u);
  EXPECT_EQ(t->entries[0].path, "small_batch"); // kept base entry
  EXPECT_EQ(t->entries[0].maxPairs, 16);
  EXPECT_EQ(t->entries[1].path, "one_shot"); // replaced
  EXPECT_EQ(t->entries[1].config.blockN, 128);
  EXPECT_EQ(t->entries[1].config.minBlocksPerSm, 1);
  EXPECT_EQ(t->entries[1].config.numStages, 0); // the update's config whole
  EXPECT_EQ(t->entries[2].maxPairs, 64);
  // Merging a table into itself changes nothing but the order.
  auto same = mergeTunedTables(base.dump(), base.dump(), "merge");
  ASSERT_TRUE(same);
  EXPECT_EQ(TunedTable::parse(*same, "same")->entries.size(), 2u);
}

TEST(TunedTableTest, MergeRejectsOtherGpuOrBadTable) {
  json other = validTable();
  other["gpu"] = "NVIDIA A100-SXM4-80GB";
  auto r = mergeTunedTables(validTable().dump(), other.dump(), "merge");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("different GPUs"));
  auto bad = mergeTunedTables(validTable().dump(), "{", "merge");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr("merge (update)"));
}

/// The fuzzer's input of finding F3 (test/fuzz/RESULTS.md): an error
/// naming the origin and the field, also through a merge; integers of the
/// types' full range are read exactly.
TEST(TunedTableTest, NumbersAreCheckedBeforeConversion) {
  const std::string f3 =
      R"({"format": "moelora-tuned", "version": 1, "gpu": "NVIDIA H200", )"
      R"("entries": [{"path": "one_shot", "dtype": "bf16", )"
      R"("rank": 10000000000.0, "K": 2048, "N": 1408, "sorted": true, )"
      R"("num_slices": 2, "max_pairs": 512, "config": {"num_warps": 4}}]})";
  auto t = TunedTable::parse(f3, "h200.json");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().message,
            "h200.json: entry 0: rank = 10000000000.0: allowed: an integer "
            "in -2147483648..2147483647");
  json base = json::parse(f3);
  base["entries"][0]["rank"] = 16;
  auto merged = mergeTunedTables(base.dump(), f3, "merge");
  ASSERT_FALSE(merged);
  EXPECT_THAT(merged.error().message,
              HasSubstr("merge (update): entry 0: rank = 10000000000.0"));

  json j = validTable();
  j["entries"][0]["rank"] = 2147483647;
  j["entries"][0]["K"] = -2147483648LL;
  j["entries"][0]["max_pairs"] = 9223372036854775807LL;
  auto edges = TunedTable::parse(j.dump(), "t.json");
  ASSERT_TRUE(edges) << edges.error().message;
  EXPECT_EQ(edges->entries[0].rank, 2147483647);
  EXPECT_EQ(edges->entries[0].K, -2147483647 - 1);
  EXPECT_EQ(edges->entries[0].maxPairs, 9223372036854775807L);
}

TEST(TunedTableTest, FindMatchesExactShapeAndGpu) {
  auto t = TunedTable::parse(validTable().dump(), "t.json");
  ASSERT_TRUE(t);
  const std::string gpu = "NVIDIA H100 80GB HBM3";
  const TunedEntry *e =
      t->find(gpu, "one_shot", DType::BF16, 16, 2048, 1408, 2, true, 512);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e, &t->entries[0]);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::BF16, 16, 2048, 1408, 2, true, 1),
            e);
  // Each differing key misses.
  EXPECT_EQ(t->find("NVIDIA A100", "one_shot", DType::BF16, 16, 2048, 1408, 2,
                    true, 512),
            nullptr);
  EXPECT_EQ(
      t->find(gpu, "two_kernel", DType::BF16, 16, 2048, 1408, 2, true, 512),
      nullptr);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::F16, 16, 2048, 1408, 2, true, 512),
            nullptr);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::BF16, 32, 2048, 1408, 2, true, 512),
            nullptr);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::BF16, 16, 4096, 1408, 2, true, 512),
            nullptr);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::BF16, 16, 2048, 1024, 2, true, 512),
            nullptr);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::BF16, 16, 2048, 1408, 1, true, 512),
            nullptr);
  EXPECT_EQ(
      t->find(gpu, "one_shot", DType::BF16, 16, 2048, 1408, 2, false, 512),
      nullptr);
  EXPECT_EQ(t->find(gpu, "one_shot", DType::BF16, 16, 2048, 1408, 2, true, 513),
            nullptr);
}

TEST(TunedTableTest, LoadReadsAFileAndNamesAMissingOne) {
  TempDir dir;
  writeText(dir / "tuned.json", validTable().dump());
  auto t = TunedTable::load(dir / "tuned.json");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->entries.size(), 2u);

  auto missing = TunedTable::load(dir / "absent.json");
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error().message, HasSubstr(dir / "absent.json"));

  writeText(dir / "bad.json", "{\"format\": \"nope\"}");
  auto bad = TunedTable::load(dir / "bad.json");
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message, HasSubstr(dir / "bad.json"));
}

struct ParseErrorCase {
  const char *name;
  std::function<std::string()> text;
  const char *mentions; ///< besides the origin
};

/// What a failure (and ctest's test name) says of the parameter: the case,
/// not a byte dump ("48-byte object <...>").
void PrintTo(const ParseErrorCase &c, std::ostream *os) { *os << c.name; }

class TunedTableParseErrorTest
    : public ::testing::TestWithParam<ParseErrorCase> {};

TEST_P(TunedTableParseErrorTest, ErrorNamesTheOrigin) {
  const ParseErrorCase &c = GetParam();
  auto t = TunedTable::parse(c.text(), "/tables/h100-tuned.json");
  ASSERT_FALSE(t) << "accepted: " << c.text();
  EXPECT_THAT(t.error().message, HasSubstr("/tables/h100-tuned.json"));
  EXPECT_THAT(t.error().message, HasSubstr(c.mentions));
}

std::string without(std::initializer_list<const char *> path) {
  json j = validTable();
  json *node = &j;
  auto it = path.begin();
  for (; std::next(it) != path.end(); ++it)
    node = std::string(*it) == "0" ? &(*node)[0] : &(*node)[*it];
  node->erase(*it);
  return j.dump();
}

std::string with(const char *field, json value) {
  json j = validTable();
  j["entries"][0][field] = std::move(value);
  return j.dump();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, TunedTableParseErrorTest,
    ::testing::Values(
        ParseErrorCase{"NotJson", [] { return std::string("{ nope"); }, ""},
        ParseErrorCase{"Empty", [] { return std::string(); }, ""},
        ParseErrorCase{"WrongFormat",
                       [] {
                         json j = validTable();
                         j["format"] = "moelora-bundle";
                         return j.dump();
                       },
                       "format"},
        ParseErrorCase{"NoFormat", [] { return without({"format"}); },
                       "format"},
        ParseErrorCase{"NotAnObject", [] { return std::string("[1, 2]"); }, ""},
        ParseErrorCase{"BadDtype", [] { return with("dtype", "fp32"); },
                       "dtype"},
        ParseErrorCase{"UnknownPath", [] { return with("path", "oneshot"); },
                       "allowed: one_shot, small_batch, two_kernel"},
        ParseErrorCase{"DtypeNotString", [] { return with("dtype", 16); }, ""},
        ParseErrorCase{"MissingGpu", [] { return without({"gpu"}); }, "gpu"},
        ParseErrorCase{"MissingEntries", [] { return without({"entries"}); },
                       "entries"},
        ParseErrorCase{"MissingPath",
                       [] {
                         return without({"entries", "0", "path"});
                       },
                       "path"},
        ParseErrorCase{"MissingRank",
                       [] {
                         return without({"entries", "0", "rank"});
                       },
                       "rank"},
        ParseErrorCase{"MissingK",
                       [] {
                         return without({"entries", "0", "K"});
                       },
                       "K"},
        ParseErrorCase{"MissingN",
                       [] {
                         return without({"entries", "0", "N"});
                       },
                       "N"},
        ParseErrorCase{"MissingMaxPairs",
                       [] {
                         return without({"entries", "0", "max_pairs"});
                       },
                       "max_pairs"},
        ParseErrorCase{"MinBlocksPerSmOutOfRange",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["min_blocks_per_sm"] = 33;
                         return j.dump();
                       },
                       "min_blocks_per_sm = 33: allowed: 0..32"},
        ParseErrorCase{"FuseSlicesNotABool",
                       [] {
                         json j = validTable();
                         j["entries"][0]["path"] = "two_kernel";
                         j["entries"][0]["config"]["fuse_slices"] = 1;
                         return j.dump();
                       },
                       "fuse_slices = 1 on path two_kernel: allowed: true or "
                       "false, on one_shot and two_kernel (its shrink) only"},
        ParseErrorCase{"FuseSlicesOnSmallBatch",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["fuse_slices"] = true;
                         return j.dump();
                       },
                       "fuse_slices = true on path small_batch"},
        ParseErrorCase{"PersistentOnTwoKernel",
                       [] {
                         json j = validTable();
                         j["entries"][0]["path"] = "two_kernel";
                         j["entries"][0]["config"]["persistent"] = true;
                         return j.dump();
                       },
                       "persistent on path two_kernel: allowed on one_shot "
                       "only"},
        ParseErrorCase{"WgmmaExpandOnSmallBatch",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["wgmma_expand"] = true;
                         return j.dump();
                       },
                       "wgmma_expand = true on path small_batch: allowed: true "
                       "or false, on one_shot and two_kernel (its expand) "
                       "only"},
        ParseErrorCase{"WgmmaNotABool",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["wgmma"] = "yes";
                         return j.dump();
                       },
                       "wgmma = \"yes\" on path one_shot: allowed: true or "
                       "false, on one_shot and two_kernel (its shrink) only"},
        ParseErrorCase{"UnknownConfigKey",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["fewRows"] = true;
                         return j.dump();
                       },
                       "config: fewRows: unknown key; allowed: BLOCK_SIZE_N, "
                       "BLOCK_SIZE_K, num_warps, num_stages, NPID, "
                       "tiles_per_item, SPLIT_K, min_blocks_per_sm, "
                       "few_rows_tile, fuse_slices, wgmma, few_rows"},
        ParseErrorCase{"FewRowsTileNot16Or32",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["few_rows_tile"] = 24;
                         return j.dump();
                       },
                       "few_rows_tile = 24 on path one_shot: allowed: 16 or "
                       "32, on one_shot and two_kernel (its expand) only"},
        ParseErrorCase{"FewRowsTileOnSmallBatch",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["few_rows_tile"] = 32;
                         return j.dump();
                       },
                       "few_rows_tile = 32 on path small_batch: allowed: 16 "
                       "or 32, on one_shot and two_kernel (its expand) only"},
        ParseErrorCase{"FewRowsNotABool",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["few_rows"] = 1;
                         return j.dump();
                       },
                       "few_rows = 1 on path one_shot: allowed: true or "
                       "false, on one_shot and two_kernel (its expand) only"},
        ParseErrorCase{"WgmmaOnSmallBatch",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["wgmma"] = true;
                         return j.dump();
                       },
                       "wgmma = true on path small_batch"},
        ParseErrorCase{"NegativeTilesPerItem",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["tiles_per_item"] = -1;
                         return j.dump();
                       },
                       "tiles_per_item = -1"},
        ParseErrorCase{"SplitKNotACluster",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["SPLIT_K"] = 3;
                         return j.dump();
                       },
                       "SPLIT_K = 3 on path small_batch"},
        ParseErrorCase{"SplitKAboveTheLargestCluster",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["SPLIT_K"] = 32;
                         return j.dump();
                       },
                       "SPLIT_K = 32 on path small_batch: allowed: 1, 2, 4, "
                       "8, 16"},
        ParseErrorCase{"OneShotSplitKAboveTheLargestCluster",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["SPLIT_K"] = 32;
                         j["entries"][0]["config"].erase("NPID");
                         return j.dump();
                       },
                       "SPLIT_K = 32 on path one_shot"},
        ParseErrorCase{"OneShotNpidIsNotTheCluster",
                       [] {
                         json j = validTable();
                         j["entries"][0]["config"]["SPLIT_K"] = 2;
                         j["entries"][0]["config"]["NPID"] = 4;
                         return j.dump();
                       },
                       "NPID = 4 with SPLIT_K = 2"},
        ParseErrorCase{"SplitKOnTwoKernel",
                       [] {
                         json j = validTable();
                         j["entries"][0]["path"] = "two_kernel";
                         j["entries"][0]["config"]["SPLIT_K"] = 2;
                         return j.dump();
                       },
                       "SPLIT_K = 2 on path two_kernel"},
        ParseErrorCase{"MissingConfig",
                       [] {
                         return without({"entries", "0", "config"});
                       },
                       "config"},
        ParseErrorCase{"MissingDtype",
                       [] {
                         return without({"entries", "0", "dtype"});
                       },
                       "dtype"},
        ParseErrorCase{"RankNotANumber", [] { return with("rank", "16"); }, ""},
        ParseErrorCase{"MissingRankIsNamed",
                       [] {
                         return without({"entries", "0", "rank"});
                       },
                       "entry 0: rank: missing"},
        // Finding F3 of test/fuzz/RESULTS.md: get<int>() of a float beyond
        // int was undefined behaviour; integers beyond it wrapped.
        ParseErrorCase{"RankFloatBeyondInt", [] { return with("rank", 1e10); },
                       "entry 0: rank = 10000000000.0: allowed: an integer "
                       "in -2147483648..2147483647"},
        ParseErrorCase{"RankFloatWithinInt", [] { return with("rank", 16.0); },
                       "entry 0: rank = 16.0: allowed: an integer"},
        ParseErrorCase{"KIntegerBeyondInt",
                       [] { return with("K", json(4294967312LL)); },
                       "entry 0: K = 4294967312: allowed: an integer"},
        ParseErrorCase{"NNegativeBeyondInt",
                       [] { return with("N", json(-2147483649LL)); },
                       "entry 0: N = -2147483649: allowed: an integer"},
        ParseErrorCase{"NumSlicesFloat",
                       [] { return with("num_slices", -1e300); },
                       "entry 0: num_slices = -1e+300: allowed: an integer"},
        ParseErrorCase{"MaxPairsFloatBeyondLong",
                       [] { return with("max_pairs", 1e30); },
                       "entry 0: max_pairs = 1e+30: allowed: an integer in "
                       "-9223372036854775808..9223372036854775807"},
        ParseErrorCase{"MaxPairsUnsignedBeyondLong",
                       [] {
                         return with("max_pairs",
                                     json(uint64_t(18446744073709551615ULL)));
                       },
                       "entry 0: max_pairs = 18446744073709551615: allowed: "
                       "an integer"},
        ParseErrorCase{"ConfigFloatBeyondInt",
                       [] {
                         json j = validTable();
                         j["entries"][1]["config"]["BLOCK_SIZE_N"] = 1e10;
                         return j.dump();
                       },
                       "entry 1: config: BLOCK_SIZE_N = 10000000000.0: "
                       "allowed: an integer"},
        ParseErrorCase{"ConfigNotAnObject",
                       [] {
                         return with("config", json::array({1, 2}));
                       },
                       "entry 0: config: expected an object"},
        ParseErrorCase{"EntryNotAnObject",
                       [] {
                         json j = validTable();
                         j["entries"][1] = 7;
                         return j.dump();
                       },
                       "entry 1: expected an object"}),
    [](const ::testing::TestParamInfo<ParseErrorCase> &i) {
      return std::string(i.param.name);
    });

} // namespace

namespace {

json fusedEntry(json use) {
  json e = {{"path", "fused"}, {"dtype", "bf16"},  {"rank", 64},
            {"K", 4096},       {"N", 14336},       {"sorted", true},
            {"num_slices", 2}, {"max_pairs", 128}, {"use", std::move(use)}};
  return e;
}

std::string tableWith(const json &entry) {
  json j = validTable();
  j["entries"].push_back(entry);
  return j.dump();
}

// A "fused" entry chooses the path of its bucket's one-shot calls; it has
// "use" and no kernel config, and only it has "use".
TEST(TunedTableTest, FusedEntryChoosesAPath) {
  auto t = TunedTable::parse(tableWith(fusedEntry("two_kernel")), "t.json");
  ASSERT_TRUE(t) << t.error().message;
  const TunedEntry *e =
      t->find(t->gpu, "fused", DType::BF16, 64, 4096, 14336, 2, true, 100);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->use, "two_kernel");
  // Not a config entry of another path.
  EXPECT_EQ(
      t->find(t->gpu, "two_kernel", DType::BF16, 64, 4096, 14336, 2, true, 100),
      nullptr);
  json withEmptyConfig = fusedEntry("one_shot");
  withEmptyConfig["config"] = json::object();
  auto u = TunedTable::parse(tableWith(withEmptyConfig), "t.json");
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->entries.back().use, "one_shot");
}

TEST(TunedTableTest, FusedEntryErrorsNameTheField) {
  struct {
    json entry;
    const char *mentions;
  } bad[] = {
      {fusedEntry("small_batch"), "use = \"small_batch\": allowed: "
                                  "\"one_shot\", \"two_kernel\""},
      {fusedEntry(7), "use = 7"},
      {[] {
         json e = fusedEntry("two_kernel");
         e.erase("use");
         return e;
       }(),
       "use = missing"},
      {[] {
         json e = fusedEntry("two_kernel");
         e["config"] = {{"num_warps", 4}};
         return e;
       }(),
       "config: path fused takes none"},
  };
  for (const auto &b : bad) {
    auto t = TunedTable::parse(tableWith(b.entry), "/t/h200.json");
    ASSERT_FALSE(t) << b.entry.dump();
    // The appended entry's index.
    EXPECT_THAT(t.error().message,
                HasSubstr(fmt::format("/t/h200.json: entry {}",
                                      validTable()["entries"].size())));
    EXPECT_THAT(t.error().message, HasSubstr(b.mentions));
  }
  json j = validTable();
  j["entries"][0]["use"] = "two_kernel";
  auto t = TunedTable::parse(j.dump(), "/t/h200.json");
  ASSERT_FALSE(t);
  EXPECT_THAT(t.error().message, HasSubstr("use: only path fused takes it"));
}

} // namespace
