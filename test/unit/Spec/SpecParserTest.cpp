//===- SpecParserTest.cpp - YAML specs, sweeps, errors, default set -------===//

#include "moelora/Spec/SpecParser.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <tuple>

#include <unistd.h>

using namespace moelora;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace fs = std::filesystem;

namespace {

const std::string kAllFields =
    "name, kernel, dtype, target, rank, K, BLOCK_SIZE_M, BLOCK_SIZE_N, "
    "BLOCK_SIZE_K, GROUP_SIZE_M, SPLIT_K, num_warps, num_stages, metadata, "
    "MUL_ROUTED_WEIGHT, ADD_INPUTS, num_slices, NPID, min_blocks_per_sm, "
    "out_aligned, fuse_slices, wgmma, few_rows, few_rows_tile, tma_weights, "
    "producer_warp, persistent, wgmma_expand, bulk_output, bulk_shrink, "
    "early_expand, reduce_scatter";
const std::string kFamilies =
    "one_shot, small_batch, shrink, expand, align_block_size";

SpecSet parseOk(const std::string &text) {
  Expected<SpecSet> r = parseSpecText(text, "t.yaml");
  if (!r) {
    ADD_FAILURE() << "unexpected error: " << r.error().message;
    return {};
  }
  return r.take();
}

std::string parseError(const std::string &text) {
  Expected<SpecSet> r = parseSpecText(text, "t.yaml");
  if (r) {
    ADD_FAILURE() << "expected an error, got " << r->specs.size() << " specs";
    return "";
  }
  return r.error().message;
}

std::string sourcePath(const std::string &rel) {
  return std::string(MOELORA_SOURCE_DIR) + "/" + rel;
}

//===----------------------------------------------------------------------===//
// Valid specs
//===----------------------------------------------------------------------===//

TEST(SpecParserTest, SingleEntryAllFields) {
  SpecSet set = parseOk(R"(name: w2_down
kernel: shrink
dtype: fp16
target: sm_90
rank: 256
K: 1408
BLOCK_SIZE_M: 32
BLOCK_SIZE_N: 64
BLOCK_SIZE_K: 128
GROUP_SIZE_M: 8
SPLIT_K: 4
num_warps: 8
num_stages: 5
metadata: sorted
MUL_ROUTED_WEIGHT: true
ADD_INPUTS: false
num_slices: 3
NPID: 2
)");
  ASSERT_EQ(set.specs.size(), 1u);
  EXPECT_TRUE(set.rejected.empty());
  const KernelSpec &s = set.specs[0];
  EXPECT_EQ(s.family, KernelFamily::Shrink);
  EXPECT_EQ(s.dtype, DType::F16);
  EXPECT_EQ(s.sm, 90);
  EXPECT_EQ(s.rank, 256);
  EXPECT_EQ(s.k, 1408);
  EXPECT_EQ(s.blockM, 32);
  EXPECT_EQ(s.blockN, 64);
  EXPECT_EQ(s.blockK, 128);
  EXPECT_EQ(s.groupSizeM, 8);
  EXPECT_EQ(s.splitK, 4);
  EXPECT_EQ(s.numWarps, 8);
  EXPECT_EQ(s.numStages, 5);
  EXPECT_TRUE(s.sorted);
  EXPECT_TRUE(s.mulRoutedWeight);
  EXPECT_FALSE(s.addInputs);
  EXPECT_EQ(s.numSlices, 3);
  EXPECT_EQ(s.npid, 2);
  EXPECT_EQ(s.origin, "t.yaml:1");
}

TEST(SpecParserTest, OmittedFieldsTakeKernelSpecDefaults) {
  SpecSet set = parseOk("kernel: one_shot\nrank: 32\n");
  ASSERT_EQ(set.specs.size(), 1u);
  KernelSpec expected;
  expected.rank = 32;
  EXPECT_TRUE(set.specs[0] == expected);
  EXPECT_FALSE(set.specs[0].k.has_value());
}

// min_blocks_per_sm, when absent, is the family's: 2 for the decode GEMV,
// none for the tensor-core families; written values (0 included) are kept.
TEST(SpecParserTest, MinBlocksPerSmDefaultsPerFamily) {
  SpecSet set = parseOk("kernel: [one_shot, small_batch, shrink, expand]\n"
                        "rank: 16\nBLOCK_SIZE_N: 64\n");
  ASSERT_EQ(set.specs.size(), 4u);
  EXPECT_EQ(set.specs[0].minBlocksPerSm, 0);
  EXPECT_EQ(set.specs[1].minBlocksPerSm, 2);
  EXPECT_EQ(set.specs[2].minBlocksPerSm, 0);
  EXPECT_EQ(set.specs[3].minBlocksPerSm, 0);
  set = parseOk("kernel: small_batch\nrank: 16\nmin_blocks_per_sm: [0, 1]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_EQ(set.specs[0].minBlocksPerSm, 0);
  EXPECT_EQ(set.specs[1].minBlocksPerSm, 1);
  set = parseOk("defaults:\n  min_blocks_per_sm: 3\n"
                "kernels:\n  - kernel: one_shot\n    rank: 16\n");
  EXPECT_EQ(set.specs[0].minBlocksPerSm, 3);
}

TEST(SpecParserTest, OutAlignedDefaultsToTrueAndSweeps) {
  SpecSet set = parseOk("kernel: one_shot\nrank: 16\n");
  EXPECT_TRUE(set.specs[0].alignedOutput);
  set = parseOk("kernel: expand\nrank: 16\nBLOCK_SIZE_N: 64\n"
                "out_aligned: [true, false]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_TRUE(set.specs[0].alignedOutput);
  EXPECT_FALSE(set.specs[1].alignedOutput);
}

TEST(SpecParserTest, KernelsListWithOrigins) {
  SpecSet set = parseOk(R"(kernels:
  - kernel: one_shot
    rank: 16
  - kernel: expand
    rank: 256
)");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_EQ(set.specs[0].family, KernelFamily::OneShot);
  EXPECT_EQ(set.specs[0].origin, "t.yaml:2");
  EXPECT_EQ(set.specs[1].family, KernelFamily::Expand);
  EXPECT_EQ(set.specs[1].origin, "t.yaml:4");
}

TEST(SpecParserTest, BooleanSpellings) {
  SpecSet set = parseOk(R"(kernel: one_shot
rank: 16
MUL_ROUTED_WEIGHT: [true, True, TRUE, false, False, FALSE]
)");
  ASSERT_EQ(set.specs.size(), 2u); // duplicates collapse
  EXPECT_TRUE(set.specs[0].mulRoutedWeight);
  EXPECT_FALSE(set.specs[1].mulRoutedWeight);
}

/// The cartesian product follows the schema's field order (first field
/// outermost), not the order the keys are written in.
TEST(SpecParserTest, SweepCountAndOrder) {
  SpecSet set = parseOk(R"(kernel: one_shot
BLOCK_SIZE_N: [32, 64]
rank: [8, 16]
dtype: [bf16, fp16]
K: 4096
)");
  EXPECT_TRUE(set.rejected.empty());
  ASSERT_EQ(set.specs.size(), 8u);
  std::vector<std::tuple<DType, int, int>> expected;
  for (DType d : {DType::BF16, DType::F16})
    for (int r : {8, 16})
      for (int bn : {32, 64})
        expected.emplace_back(d, r, bn);
  for (size_t i = 0; i < expected.size(); ++i) {
    const KernelSpec &s = set.specs[i];
    EXPECT_EQ(std::make_tuple(s.dtype, s.rank, s.blockN), expected[i])
        << "point " << i;
    EXPECT_EQ(s.k, 4096);
    EXPECT_EQ(s.origin, "t.yaml:1");
  }
}

TEST(SpecParserTest, SweepOverEveryListableField) {
  SpecSet set = parseOk(R"(kernel: [shrink, expand]
dtype: [bf16, fp16]
target: [sm_80, sm_90]
rank: [16, 256]
K: [2048, 4096]
BLOCK_SIZE_M: [32, 64]
BLOCK_SIZE_N: [32, 64]
BLOCK_SIZE_K: [32, 64]
GROUP_SIZE_M: [1, 8]
num_warps: [4]
num_stages: [2, 3]
metadata: [naive, sorted]
MUL_ROUTED_WEIGHT: [false, true]
ADD_INPUTS: [false, true]
num_slices: [1, 2]
NPID: [0, 1]
)");
  EXPECT_EQ(set.specs.size(), 1u << 15);
  EXPECT_TRUE(set.rejected.empty());
  // First point: every field at its first value; last: every field last.
  EXPECT_EQ(set.specs.front().family, KernelFamily::Shrink);
  EXPECT_EQ(set.specs.front().npid, 0);
  EXPECT_EQ(set.specs[1].npid, 1);
  EXPECT_EQ(set.specs.back().family, KernelFamily::Expand);
  EXPECT_EQ(set.specs.back().numSlices, 2);
}

TEST(SpecParserTest, DefaultsMergeUnderEntries) {
  SpecSet set = parseOk(R"(defaults:
  dtype: [bf16, fp16]
  target: sm_80
  rank: [8, 16]
kernels:
  - kernel: one_shot
    target: sm_90
    rank: 32
  - kernel: align_block_size
    BLOCK_SIZE_M: 64
)");
  ASSERT_EQ(set.specs.size(), 4u);
  EXPECT_TRUE(set.rejected.empty());
  // Entry values override defaults.
  EXPECT_EQ(set.specs[0].dtype, DType::BF16);
  EXPECT_EQ(set.specs[1].dtype, DType::F16);
  for (int i : {0, 1}) {
    EXPECT_EQ(set.specs[i].sm, 90);
    EXPECT_EQ(set.specs[i].rank, 32);
    EXPECT_EQ(set.specs[i].origin, "t.yaml:6");
  }
  // align_block_size takes no rank: the default rank sweep does not apply
  // (and does not duplicate it), the rest of the defaults do.
  for (int i : {2, 3}) {
    EXPECT_EQ(set.specs[i].family, KernelFamily::AlignBlockSize);
    EXPECT_EQ(set.specs[i].rank, 0);
    EXPECT_EQ(set.specs[i].sm, 80);
    EXPECT_EQ(set.specs[i].blockM, 64);
    EXPECT_EQ(set.specs[i].origin, "t.yaml:9");
  }
  EXPECT_EQ(set.specs[2].dtype, DType::BF16);
  EXPECT_EQ(set.specs[3].dtype, DType::F16);
}

TEST(SpecParserTest, DuplicatePointsAreKeptOnce) {
  SpecSet set = parseOk(R"(kernels:
  - kernel: one_shot
    rank: [16, 16, 32]
  - kernel: one_shot
    rank: 16
)");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_EQ(set.specs[0].origin, "t.yaml:2");
}

//===----------------------------------------------------------------------===//
// Field errors: each fails the whole parse, with file:line:col, the field and
// the allowed values.
//===----------------------------------------------------------------------===//

TEST(SpecParserErrorTest, UnknownField) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_M: 32\n"),
            "t.yaml:3:1: BLOCK_M: unknown field; allowed: " + kAllFields);
  EXPECT_EQ(parseError(R"(kernels:
  - kernel: one_shot
    rank: 16
    blocksize: 3
)"),
            "t.yaml:4:5: blocksize: unknown field; allowed: " + kAllFields);
}

TEST(SpecParserErrorTest, UnknownFieldInDefaults) {
  EXPECT_EQ(parseError(R"(defaults:
  warps: 4
kernels:
  - kernel: one_shot
    rank: 16
)"),
            "t.yaml:2:3: warps: unknown field; allowed: " + kAllFields);
}

TEST(SpecParserErrorTest, UnknownTopLevelField) {
  EXPECT_EQ(parseError(R"(kernels:
  - kernel: one_shot
    rank: 16
default:
  dtype: bf16
)"),
            "t.yaml:4:1: default: unknown top-level field; allowed: kernels, "
            "defaults");
}

TEST(SpecParserErrorTest, BadFamily) {
  EXPECT_EQ(parseError("kernel: oneshot\nrank: 16\n"),
            "t.yaml:1:9: kernel: unknown value 'oneshot'; allowed: " +
                kFamilies);
}

TEST(SpecParserErrorTest, BadDTypeInsideSweepList) {
  // The column is the offending list element's.
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\ndtype: [bf16, f32]\n"),
            "t.yaml:3:15: dtype: unknown value 'f32'; allowed: fp16, bf16");
}

TEST(SpecParserErrorTest, BadTarget) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\ntarget: sm_75\n"),
            "t.yaml:3:9: target: unknown value 'sm_75'; allowed: sm_80, "
            "sm_86, sm_89, sm_90");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\ntarget: 90\n"),
            "t.yaml:3:9: target: unknown value '90'; allowed: sm_80, "
            "sm_86, sm_89, sm_90");
}

TEST(SpecParserErrorTest, BlockNotPowerOfTwo) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_N: 48\n"),
            "t.yaml:3:15: BLOCK_SIZE_N: 48 is not a power of two; allowed: "
            "power of two >= 16");
}

TEST(SpecParserErrorTest, BlockBelowSixteen) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_K: 8\n"),
            "t.yaml:3:15: BLOCK_SIZE_K: 8 is below the minimum 16; allowed: "
            "power of two >= 16");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: [16, 0]\n"),
            "t.yaml:3:20: BLOCK_SIZE_M: 0 is below the minimum 16; allowed: "
            "power of two >= 16");
}

TEST(SpecParserErrorTest, BadNumWarps) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nnum_warps: 3\n"),
            "t.yaml:3:12: num_warps: 3 is not a supported warp count; "
            "allowed: 1, 2, 4, 8, 16");
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\nnum_warps: 32\n"),
              StartsWith("t.yaml:3:12: num_warps: 32 "));
}

TEST(SpecParserErrorTest, NumStagesOutOfRange) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nnum_stages: 9\n"),
            "t.yaml:3:13: num_stages: 9 is out of range; allowed: 1..8");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nnum_stages: 0\n"),
            "t.yaml:3:13: num_stages: 0 is out of range; allowed: 1..8");
}

TEST(SpecParserErrorTest, MinBlocksPerSmOutOfRange) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nmin_blocks_per_sm: 33\n"),
            "t.yaml:3:20: min_blocks_per_sm: 33 is out of range; allowed: "
            "0..32 (0 = no hint; absent = the kernel family's default)");
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\nmin_blocks_per_sm: -1\n"),
              StartsWith("t.yaml:3:20: min_blocks_per_sm: -1 is out of range"));
}

TEST(SpecParserErrorTest, NumSlicesOutOfRange) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nnum_slices: 9\n"),
            "t.yaml:3:13: num_slices: 9 is out of range; allowed: 1..8");
}

TEST(SpecParserErrorTest, WrongTypeStringWhereInt) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: sixteen\n"),
            "t.yaml:2:7: rank: wrong type: expected an integer, got "
            "'sixteen'; allowed: integer >= 1");
  // Quoted numbers are strings in YAML.
  EXPECT_EQ(parseError("kernel: one_shot\nrank: \"16\"\n"),
            "t.yaml:2:7: rank: wrong type: expected an integer, got the "
            "string '16'; allowed: integer >= 1");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16.0\n"),
            "t.yaml:2:7: rank: wrong type: expected an integer, got '16.0'; "
            "allowed: integer >= 1");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nK: {a: 1}\n"),
            "t.yaml:3:4: K: wrong type: expected a scalar, got a mapping; "
            "allowed: integer >= 1");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: [[16]]\n"),
            "t.yaml:2:8: rank: wrong type: expected a scalar, got a list; "
            "allowed: integer >= 1");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 99999999999\n"),
            "t.yaml:2:7: rank: 99999999999 is out of range; allowed: integer "
            ">= 1");
}

TEST(SpecParserErrorTest, WrongTypeBoolean) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nADD_INPUTS: yes\n"),
            "t.yaml:3:13: ADD_INPUTS: wrong type: expected a boolean, got "
            "'yes'; allowed: true, false");
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\nADD_INPUTS: 1\n"),
              StartsWith("t.yaml:3:13: ADD_INPUTS: wrong type"));
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nout_aligned: 16\n"),
            "t.yaml:3:14: out_aligned: wrong type: expected a boolean, got "
            "'16'; allowed: true, false");
}

TEST(SpecParserErrorTest, NegativeNpid) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nNPID: -1\n"),
            "t.yaml:3:7: NPID: -1 is negative; allowed: integer >= 0 (0 = "
            "runtime argument)");
}

TEST(SpecParserErrorTest, EmptyValueAndEmptyList) {
  // An empty value is reported at its key.
  EXPECT_EQ(parseError("kernel: one_shot\nrank:\nK: 16\n"),
            "t.yaml:2:1: rank: missing value; allowed: integer >= 1");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: []\n"),
            "t.yaml:2:7: rank: empty list (a sweep needs at least one "
            "value); allowed: integer >= 1");
}

TEST(SpecParserErrorTest, DuplicateField) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nrank: 32\n"),
            "t.yaml:3:1: rank: duplicate field; allowed: each field at most "
            "once per mapping");
}

TEST(SpecParserErrorTest, NameIsNotSwept) {
  EXPECT_EQ(parseError("name: [a, b]\nkernel: one_shot\nrank: 16\n"),
            "t.yaml:1:7: name: expected a single string (names are not "
            "swept), got a list; allowed: a string");
}

TEST(SpecParserErrorTest, MalformedYaml) {
  EXPECT_EQ(parseError("kernel: one_shot\n rank: 16\n"),
            "t.yaml:2:6: invalid YAML: illegal map value");
  std::string err = parseError("kernel: one_shot\nrank: [16, 32\n");
  EXPECT_TRUE(std::regex_match(
      err, std::regex("t\\.yaml:[0-9]+:[0-9]+: invalid YAML: .+")))
      << err;
}

TEST(SpecParserErrorTest, FileShape) {
  EXPECT_THAT(parseError(""), StartsWith("t.yaml:1:1: kernels: "));
  EXPECT_THAT(parseError("- kernel: one_shot\n"),
              StartsWith("t.yaml:1:1: kernels: the top level must be a "
                         "mapping, got a list; allowed: "));
  EXPECT_EQ(parseError("kernels: []\n"),
            "t.yaml:1:10: kernels: empty list; allowed: a non-empty list of "
            "kernel entries");
  EXPECT_EQ(parseError("kernels:\n  - one_shot\n"),
            "t.yaml:2:5: kernels: each entry must be a mapping, got a "
            "scalar; allowed: " +
                kAllFields);
  EXPECT_THAT(parseError("defaults: {rank: 16}\n"),
              StartsWith("t.yaml:1:1: kernels: missing required field"));
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\n---\nkernel: "
                         "expand\nrank: 16\n"),
              HasSubstr("invalid YAML: expected one document, found 2"));
}

TEST(SpecParserErrorTest, MissingKernel) {
  EXPECT_EQ(parseError(R"(kernels:
  - name: x
    rank: 16
)"),
            "t.yaml:2:5: kernel: missing required field; allowed: " +
                kFamilies);
}

TEST(SpecParserErrorTest, MissingRank) {
  EXPECT_EQ(parseError("kernel: shrink\nK: 2048\n"),
            "t.yaml:1:1: rank: missing required field (kernel shrink); "
            "allowed: integer >= 1");
  // align_block_size needs none.
  SpecSet set = parseOk("kernel: align_block_size\nBLOCK_SIZE_M: 64\n");
  ASSERT_EQ(set.specs.size(), 1u);
  EXPECT_EQ(set.specs[0].rank, 0);
}

TEST(SpecParserErrorTest, ErrorInDefaultsPointsAtDefaults) {
  EXPECT_EQ(parseError(R"(defaults:
  num_warps: 5
kernels:
  - kernel: one_shot
    rank: 16
)"),
            "t.yaml:2:14: num_warps: 5 is not a supported warp count; "
            "allowed: 1, 2, 4, 8, 16");
}

//===----------------------------------------------------------------------===//
// Bounds: sweeps and documents (test/fuzz/RESULTS.md, F1 and F2).
//===----------------------------------------------------------------------===//

/// `count` values for a sweep list: "[v, v, ...]".
std::string list(int count, const std::string &value) {
  std::string s = "[";
  for (int i = 0; i < count; ++i)
    s += (i ? ", " : "") + value;
  return s + "]";
}

/// The fuzzer's finding F1: 365 bytes asking for 35 million specs (minutes
/// and tens of GB before the bound) are an error naming the entry, its
/// lists and the limit.
TEST(SpecParserBoundTest, SweepOfTheFuzzerFindingIsAnError) {
  EXPECT_EQ(parseError(R"(kernel: one_shot
rank: 16
BLOCK_SIZE_M: [16, 32, 64, 128, 256, 512]
BLOCK_SIZE_N: [16, 32, 64, 128, 256, 512]
BLOCK_SIZE_K: [16, 32, 64, 128, 256, 512]
GROUP_SIZE_M: [1, 2, 3, 4, 5, 6, 7, 8]
SPLIT_K: [1, 2, 3, 4, 5, 6, 7, 8]
num_warps: [1, 2, 4, 8, 16]
num_stages: [1, 2, 3, 4, 5, 6, 7, 8]
NPID: [0, 1, 2, 3, 4, 5, 6, 7]
min_blocks_per_sm: [0, 1, 2, 3, 4, 5, 6, 7]
)"),
            "t.yaml:1:1: kernels: the entry sweeps 35389440 points "
            "(BLOCK_SIZE_M 6 x BLOCK_SIZE_N 6 x BLOCK_SIZE_K 6 x "
            "GROUP_SIZE_M 8 x SPLIT_K 8 x num_warps 5 x num_stages 8 x "
            "NPID 8 x min_blocks_per_sm 8); allowed: at most 100000 points "
            "per entry (split the sweep into several entries)");
}

/// Lists inherited from `defaults:` count; the entry is named and located;
/// a product just above the limit is reported exactly.
TEST(SpecParserBoundTest, SweepJustAboveTheLimitNamesTheEntry) {
  const std::string text = "defaults:\n  K: " + list(11, "2048") +
                           "\nkernels:\n  - kernel: one_shot\n    rank: 16\n"
                           "  - name: big\n    kernel: shrink\n    rank: " +
                           list(9091, "16") + "\n";
  EXPECT_EQ(parseError(text),
            "t.yaml:6:5: kernels: entry 'big' sweeps 100001 points (rank 9091 "
            "x K 11); allowed: at most 100000 points per entry (split the "
            "sweep into several entries)");
}

/// Nineteen lists of 16 values ask for 2^76 points: the product is
/// checked for overflow (a wrapped one could pass the limit).
TEST(SpecParserBoundTest, SweepProductDoesNotOverflow) {
  const std::string text =
      "kernel: " + list(16, "one_shot") + "\ndtype: " + list(16, "bf16") +
      "\ntarget: " + list(16, "sm_90") + "\nrank: " + list(16, "16") +
      "\nK: " + list(16, "64") + "\nBLOCK_SIZE_M: " + list(16, "16") +
      "\nBLOCK_SIZE_N: " + list(16, "16") +
      "\nBLOCK_SIZE_K: " + list(16, "16") + "\nGROUP_SIZE_M: " + list(16, "1") +
      "\nSPLIT_K: " + list(16, "1") + "\nnum_warps: " + list(16, "4") +
      "\nnum_stages: " + list(16, "2") + "\nmetadata: " + list(16, "naive") +
      "\nMUL_ROUTED_WEIGHT: " + list(16, "false") +
      "\nADD_INPUTS: " + list(16, "false") + "\nnum_slices: " + list(16, "1") +
      "\nNPID: " + list(16, "0") + "\nmin_blocks_per_sm: " + list(16, "0") +
      "\nout_aligned: " + list(16, "true") + "\n";
  std::string err = parseError(text);
  EXPECT_THAT(err, StartsWith("t.yaml:1:1: kernels: the entry sweeps more "
                              "than 100000 points (kernel 16 x dtype 16 x "));
  EXPECT_THAT(err, HasSubstr("out_aligned 16); allowed: at most 100000 "));
}

/// A sweep at the limit is expanded (duplicate points kept once).
TEST(SpecParserBoundTest, SweepAtTheLimitIsExpanded) {
  const std::string text = "kernel: one_shot\nrank: " + list(100, "16") +
                           "\nK: " + list(1000, "64") + "\n";
  SpecSet set = parseOk(text);
  EXPECT_EQ(set.specs.size(), 1u);
  EXPECT_TRUE(set.rejected.empty());
}

/// A file's entries together: every entry is within its limit, the file is
/// not, and the error comes before any entry is expanded.
TEST(SpecParserBoundTest, FileAboveItsLimitIsAnError) {
  std::string text = "kernels:\n";
  for (int i = 0; i < 11; ++i)
    text += "  - kernel: one_shot\n    rank: " + list(100, "16") +
            "\n    K: " + list(1000, "64") + "\n";
  EXPECT_EQ(parseError(text),
            "t.yaml:32:5: kernels: the entries up to this one sweep 1100000 "
            "points; allowed: at most 1000000 points per file");
}

/// The fuzzer's finding F2: yaml-cpp 0.7's LoadAll never returned on these
/// three bytes (and took all memory); the parser reports where yaml-cpp
/// stops advancing.
TEST(SpecParserBoundTest, YamlThatStopsTheParserIsAnError) {
  EXPECT_EQ(parseError("\n,\n"),
            "t.yaml:2:1: invalid YAML: unexpected ',' (the YAML parser "
            "cannot continue)");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\n---\n,\n"),
            "t.yaml:4:1: invalid YAML: unexpected ',' (the YAML parser "
            "cannot continue)");
}

/// Documents are still counted: the second one is located, many are
/// reported as many.
TEST(SpecParserBoundTest, DocumentsAreCounted) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\n---\nkernel: "
                       "expand\nrank: 16\n---\nkernel: shrink\n"),
            "t.yaml:4:1: invalid YAML: expected one document, found 3");
  std::string many = "kernel: one_shot\nrank: 16\n";
  for (int i = 0; i < 1500; ++i)
    many += "---\nkernel: expand\n";
  EXPECT_EQ(parseError(many), "t.yaml:4:1: invalid YAML: expected one "
                              "document, found more than 1000");
  // An empty first document is the file without entries, as before.
  EXPECT_THAT(parseError("---\n---\nkernel: one_shot\n"),
              StartsWith("t.yaml:1:1: kernels: the file has no kernel "
                         "entries"));
  // A syntax error in a later document fails the parse.
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\n---\n]\n"),
              StartsWith("t.yaml:4:1: invalid YAML: "));
}

//===----------------------------------------------------------------------===//
// Cross-field rules: rejections in sweeps, errors for single points.
//===----------------------------------------------------------------------===//

TEST(SpecParserRuleTest, OneShotRankAbove128IsRejectedInSweep) {
  SpecSet set = parseOk(R"(kernels:
  - kernel: one_shot
    rank: [64, 128, 256]
)");
  ASSERT_EQ(set.specs.size(), 2u);
  ASSERT_EQ(set.rejected.size(), 1u);
  const RejectedSpec &r = set.rejected[0];
  EXPECT_EQ(r.spec.rank, 256);
  EXPECT_EQ(r.spec.origin, "t.yaml:2");
  EXPECT_THAT(r.reason, StartsWith("rank: "));
  EXPECT_THAT(r.reason,
              HasSubstr("one_shot supports rank <= 128; use shrink/expand"));
  EXPECT_THAT(r.reason, HasSubstr("allowed: 1..128 for one_shot"));
}

TEST(SpecParserRuleTest, OneShotRankAbove128IsAnErrorWhenSingle) {
  EXPECT_EQ(parseError(R"(kernels:
  - kernel: one_shot
    rank: 256
)"),
            "t.yaml:2:5: rank: 256 is too large: one_shot supports rank <= "
            "128; use shrink/expand; allowed: 1..128 for one_shot");
}

// Rows are read in pairs of elements at least: an odd rank or K would read
// past a row's end. A sweep skips such points; a single entry is an error.
TEST(SpecParserRuleTest, OddRankOrKIsRejected) {
  EXPECT_EQ(parseError("kernel: small_batch\nrank: 5\n"),
            "t.yaml:1:1: rank: 5 is odd: rows are read in pairs of elements; "
            "allowed: an even rank (2, 4, 8, 16, 32, 64, ...)");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nK: 1407\n"),
            "t.yaml:1:1: K: 1407 is odd: rows are read in pairs of elements; "
            "allowed: an even K, or no K (any K at run time)");
  SpecSet set = parseOk("kernel: shrink\nrank: [3, 4]\nK: [1001, 1002]\n");
  ASSERT_EQ(set.specs.size(), 1u);
  EXPECT_EQ(set.specs[0].rank, 4);
  EXPECT_EQ(set.specs[0].k, 1002);
}

TEST(SpecParserRuleTest, SplitKOnlyForShrinkAndClusters) {
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nSPLIT_K: 4\n"),
            "t.yaml:1:1: SPLIT_K: SPLIT_K > 1 is only supported by shrink, "
            "small_batch and one_shot (got 4 for expand); allowed: 1 for "
            "expand");
  SpecSet set = parseOk("kernel: shrink\nrank: 16\nSPLIT_K: 4\n");
  ASSERT_EQ(set.specs.size(), 1u);
  EXPECT_EQ(set.specs[0].splitK, 4);
}

TEST(SpecParserRuleTest, FuseSlicesOnlyForShrinkAndOneShot) {
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nfuse_slices: true\n"),
            "t.yaml:1:1: fuse_slices: true is only supported by shrink and "
            "one_shot (got expand); allowed: false for expand");
  EXPECT_EQ(parseError("kernel: shrink\nrank: 16\nfuse_slices: 2\n"),
            "t.yaml:3:14: fuse_slices: wrong type: expected a boolean, got "
            "'2'; allowed: true, false (shrink and one_shot only)");
  EXPECT_TRUE(parseOk("kernel: one_shot\nrank: 16\nnum_slices: 2\n"
                      "fuse_slices: true\n")
                  .specs.at(0)
                  .fusesSlices());
  SpecSet set = parseOk("kernel: shrink\nrank: 16\nnum_slices: 2\n"
                        "fuse_slices: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].fusesSlices());
  EXPECT_TRUE(set.specs[1].fusesSlices());
  // One slice: nothing to fuse, the same kernel twice, kept once.
  set = parseOk("kernel: shrink\nrank: 16\nfuse_slices: [false, true]\n");
  EXPECT_EQ(set.specs.size(), 1u);
}

// few_rows_tile: the few-rows tile's rows, 16 (the default, the key as
// before) or 32 (its own key).
TEST(SpecParserRuleTest, FewRowsTile) {
  const std::string base = "kernel: one_shot\nrank: 16\nmetadata: sorted\n"
                           "BLOCK_SIZE_M: 64\nnum_warps: 8\nfew_rows: true\n";
  SpecSet set = parseOk(base + "few_rows_tile: [16, 32]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_EQ(set.specs[0].fewRowsTile, 16);
  EXPECT_EQ(set.specs[1].fewRowsTile, 32);
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_THAT(set.specs[1].cacheKey(), HasSubstr(";fr=1;frt=32"));
  EXPECT_THAT(parseError(base + "few_rows_tile: 24\n"),
              HasSubstr("few_rows_tile: 24 is not a few-rows tile; allowed: "
                        "16, 32"));
  EXPECT_THAT(parseError("kernel: shrink\nrank: 16\nfew_rows_tile: 32\n"),
              HasSubstr("few_rows_tile: 32 is only supported by one_shot and "
                        "expand (got shrink); allowed: 16 for shrink"));
}

// tma_weights: the wgmma shrinks' A tiles by bulk tensor copies; its own
// key and entry name, the other keys as before; only with wgmma, only
// one_shot and shrink, a shrink's BLOCK_SIZE_N within a box (256 rows).
TEST(SpecParserRuleTest, TmaWeightsRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                           "BLOCK_SIZE_K: 64\nwgmma: true\n";
  SpecSet set = parseOk(base + "tma_weights: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].tmaWeights);
  EXPECT_TRUE(set.specs[1].tmaWeights);
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";tma=a");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_wg_tma_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                       "tma_weights: true\n"),
            "t.yaml:1:1: tma_weights: true needs wgmma: true (the tensor "
            "copies write wgmma's swizzled tiles); allowed: false without "
            "wgmma");
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\ntma_weights: true\n"),
            "t.yaml:1:1: tma_weights: true is only supported by one_shot and "
            "shrink (got expand); allowed: false for expand");
  const std::string shrink = "kernel: shrink\nrank: 512\nBLOCK_SIZE_M: 64\n"
                             "BLOCK_SIZE_K: 64\nnum_warps: 8\nwgmma: true\n"
                             "tma_weights: true\n";
  EXPECT_TRUE(parseOk(shrink + "BLOCK_SIZE_N: 256\n").specs.at(0).tmaWeights);
  EXPECT_EQ(parseError(shrink + "BLOCK_SIZE_N: 512\n"),
            "t.yaml:1:1: BLOCK_SIZE_N: 512 with tma_weights: a tensor copy's "
            "box has at most 256 rows; allowed: <= 256 with tma_weights");
}

// producer_warp: one more warp issues the wgmma shrink's copies; its own
// key and entry name, a block of num_warps + 1 warps; only with wgmma, only
// one_shot and shrink, two or more stages.
// persistent: a sorted one_shot's resident grid; its own key and entry name;
// not with naive metadata, other families, tma_weights or producer_warp.
TEST(SpecParserRuleTest, PersistentRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nmetadata: sorted\n"
                           "BLOCK_SIZE_M: 64\nBLOCK_SIZE_K: 64\n";
  SpecSet set = parseOk(base + "persistent: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].persistent);
  EXPECT_TRUE(set.specs[1].persistent);
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";grid=p");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_ps_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nmetadata: naive\n"
                       "persistent: true\n"),
            "t.yaml:1:1: persistent: true needs metadata: sorted (the loop "
            "walks the row blocks of sorted_token_ids); allowed: false with "
            "metadata: naive");
  EXPECT_EQ(parseError("kernel: shrink\nrank: 16\nmetadata: sorted\n"
                       "persistent: true\n"),
            "t.yaml:1:1: persistent: true is only supported by one_shot (got "
            "shrink); allowed: false for shrink");
  EXPECT_EQ(parseError(base + "num_warps: 4\nwgmma: true\ntma_weights: true\n"
                              "persistent: true\n"),
            "t.yaml:1:1: persistent: true with tma_weights or producer_warp "
            "(their stage barriers serve one row block per kernel); allowed: "
            "false with tma_weights or producer_warp");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nmetadata: sorted\n"
                       "persistent: 3\n"),
            "t.yaml:4:13: persistent: wrong type: expected a boolean, got '3'; "
            "allowed: true, false (true: a sorted one_shot runs a resident "
            "grid whose blocks loop over the row blocks)");
}

// wgmma_expand: a wgmma one_shot's expand on wgmma; its own key and entry
// name; only one_shot with wgmma, BLOCK_R a multiple of 64, a rank of whole
// 16-byte chunks, 8 to 256 columns per warpgroup.
TEST(SpecParserRuleTest, WgmmaExpandRules) {
  const std::string base = "kernel: one_shot\nrank: 64\nmetadata: sorted\n"
                           "BLOCK_SIZE_M: 64\nBLOCK_SIZE_K: 64\nwgmma: true\n";
  SpecSet set = parseOk(base + "wgmma_expand: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].wgmmaExpand);
  EXPECT_TRUE(set.specs[1].wgmmaExpand);
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";xmma=wgmma");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_wg_xwg_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  EXPECT_EQ(set.specs[1].ptxTarget(), "sm_90a");
  // rank 100: BLOCK_R 128, two atoms; rank 128 likewise.
  EXPECT_TRUE(parseOk("kernel: one_shot\nrank: 128\nBLOCK_SIZE_M: 64\n"
                      "BLOCK_SIZE_K: 64\nwgmma: true\nwgmma_expand: true\n")
                  .specs.at(0)
                  .wgmmaExpand);
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 64\nwgmma_expand: true\n"),
            "t.yaml:1:1: wgmma_expand: true needs wgmma: true (the warpgroup "
            "layout and the sm_90a target); allowed: false without wgmma");
  // The two-kernel expand: warpgroups of its own, BLOCK_M 64 or 128, sm_90.
  const std::string expand = "kernel: expand\nrank: 64\nmetadata: sorted\n"
                             "wgmma_expand: true\n";
  SpecSet e = parseOk(expand + "BLOCK_SIZE_M: 64\n");
  EXPECT_TRUE(e.specs.at(0).wgmmaExpand);
  EXPECT_EQ(e.specs.at(0).ptxTarget(), "sm_90a");
  EXPECT_THAT(e.specs.at(0).entryName(), HasSubstr("_xwg_h"));
  EXPECT_EQ(parseError(expand + "BLOCK_SIZE_M: 16\n"),
            "t.yaml:1:1: BLOCK_SIZE_M: 16 with wgmma_expand: warpgroup tiles "
            "are 64 rows; allowed: 64 or 128 with wgmma_expand");
  EXPECT_EQ(parseError(expand + "BLOCK_SIZE_M: 128\nnum_warps: 4\n"),
            "t.yaml:1:1: num_warps: 4 with wgmma_expand and BLOCK_SIZE_M 128: "
            "every 16 rows need a warp; allowed: >= 8 with wgmma_expand and "
            "BLOCK_SIZE_M 128");
  EXPECT_EQ(parseError(expand + "BLOCK_SIZE_M: 64\ntarget: sm_80\n"),
            "t.yaml:1:1: wgmma_expand: true needs sm_90 (wgmma is an sm_90a "
            "instruction; got sm_80); allowed: false for sm_80");
  EXPECT_EQ(parseError("kernel: shrink\nrank: 64\nwgmma_expand: true\n"),
            "t.yaml:1:1: wgmma_expand: true is only supported by one_shot and "
            "expand (got shrink); allowed: false for shrink");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 32\nBLOCK_SIZE_M: 64\n"
                       "BLOCK_SIZE_K: 64\nwgmma: true\nwgmma_expand: true\n"),
            "t.yaml:1:1: wgmma_expand: true with rank 32 (BLOCK_R 32): r's "
            "shared tile is made of 64-column swizzled atoms; allowed: true "
            "with rank > 32, false otherwise");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 100\nBLOCK_SIZE_M: 64\n"
                       "BLOCK_SIZE_K: 64\nwgmma: true\nwgmma_expand: true\n"),
            "t.yaml:1:1: wgmma_expand: true with rank 100: B's rows are "
            "copied in 16-byte chunks; allowed: true with rank a multiple of "
            "8");
  // BLOCK_M 64 over 16 warps: four warpgroups along N, 512 / 4 = 128
  // columns each (allowed); one warpgroup of 512 columns is not.
  EXPECT_TRUE(parseOk(base + "num_warps: 16\nBLOCK_SIZE_N: 512\n"
                             "wgmma_expand: true\n")
                  .specs.at(0)
                  .wgmmaExpand);
  EXPECT_EQ(parseError(base + "num_warps: 4\nBLOCK_SIZE_N: 512\n"
                              "wgmma_expand: true\n"),
            "t.yaml:1:1: BLOCK_SIZE_N: 512 over 1 warpgroups with "
            "wgmma_expand leaves 512 columns per warpgroup, more than one "
            "wgmma's 256; allowed: <= 256 with wgmma_expand and num_warps 4");
}

// bulk_output: staged output rows by bulk copies; its own key and entry
// name where the kernel stages its output (sm_90 one_shot and expand with
// aligned rows), none elsewhere (canonical, like fuse_slices); only
// one_shot and expand, only sm_90, PTX 8.0.
TEST(SpecParserRuleTest, BulkOutputRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nmetadata: sorted\n"
                           "BLOCK_SIZE_M: 64\nADD_INPUTS: true\n";
  SpecSet set = parseOk(base + "bulk_output: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].bulksOutput());
  EXPECT_TRUE(set.specs[1].bulksOutput());
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";out=bulk");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_bo_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  EXPECT_EQ(set.specs[1].ptxTarget(), "sm_90");
  // Unaligned output rows stage nothing: the flag changes no kernel, so
  // the sweep's two points are one spec.
  SpecSet unaligned =
      parseOk(base + "out_aligned: false\nbulk_output: [false, true]\n");
  ASSERT_EQ(unaligned.specs.size(), 1u);
  EXPECT_FALSE(unaligned.specs[0].bulksOutput());
  EXPECT_TRUE(parseOk("kernel: expand\nrank: 16\nbulk_output: true\n")
                  .specs.at(0)
                  .bulksOutput());
  EXPECT_EQ(parseError("kernel: shrink\nrank: 16\nbulk_output: true\n"),
            "t.yaml:1:1: bulk_output: true is only supported by one_shot "
            "and expand (got shrink); allowed: false for shrink");
  EXPECT_EQ(parseError(base + "target: sm_80\nbulk_output: true\n"),
            "t.yaml:1:1: bulk_output: true with target sm_80: bulk copies "
            "need sm_90; allowed: true with sm_90, false otherwise");
}

// early_expand: the one-shot's first expand stages before r's reduction;
// its own key and entry name where there are stages to issue ahead (none
// with one stage, like fuse_slices without slices); only one_shot, with or
// without the few-rows expand, not with a producer warp, a persistent grid
// or bulk output rows.
TEST(SpecParserRuleTest, EarlyExpandRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nK: 2048\n"
                           "metadata: sorted\nBLOCK_SIZE_M: 64\n";
  SpecSet set = parseOk(base + "early_expand: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].expandsEarly());
  EXPECT_TRUE(set.specs[1].expandsEarly());
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";xe=early");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_xe_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nearly_expand: true\n"),
            "t.yaml:1:1: early_expand: true is only supported by one_shot "
            "(got expand); allowed: false for expand");
  const std::string without =
      "t.yaml:1:1: early_expand: true with producer_warp, persistent or "
      "bulk_output (its early stages are plain cp.async copies); allowed: "
      "true without them";
  EXPECT_TRUE(parseOk(base + "few_rows: true\nearly_expand: true\n")
                  .specs.at(0)
                  .expandsEarly());
  EXPECT_EQ(parseError(base + "persistent: true\nearly_expand: true\n"),
            without);
  EXPECT_EQ(parseError(base + "ADD_INPUTS: true\nbulk_output: true\n"
                              "early_expand: true\n"),
            without);
  EXPECT_EQ(parseError(base + "num_stages: 1\nearly_expand: true\n"),
            "t.yaml:1:1: num_stages: 1 with early_expand: the stages issued "
            "early are num_stages - 1; allowed: >= 2 with early_expand");
}

// reduce_scatter: r's cluster sum as a reduce-scatter; its own key and entry
// name where there is a cluster (none without: the flag changes nothing);
// only one_shot.
TEST(SpecParserRuleTest, ReduceScatterRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nK: 2048\n"
                           "metadata: sorted\nBLOCK_SIZE_M: 64\n";
  SpecSet set = parseOk(base + "SPLIT_K: 4\nNPID: 4\n"
                               "reduce_scatter: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].scattersClusterSum());
  EXPECT_TRUE(set.specs[1].scattersClusterSum());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";cs=scatter");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_rs_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  const KernelSpec one = parseOk(base + "reduce_scatter: true\n").specs.at(0);
  EXPECT_FALSE(one.scattersClusterSum());
  EXPECT_EQ(one.cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nreduce_scatter: true\n"),
            "t.yaml:1:1: reduce_scatter: true is only supported by one_shot "
            "(got expand); allowed: false for expand");
}

// bulk_shrink: the shrink's x and A rows by bulk copies; its own key and
// entry name; only sm_90 mma.sync one_shot and shrink with EVEN_K and A
// tiles within the rank.
TEST(SpecParserRuleTest, BulkShrinkRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nK: 2048\n"
                           "metadata: sorted\nBLOCK_SIZE_M: 64\n";
  SpecSet set = parseOk(base + "bulk_shrink: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_TRUE(set.specs[1].bulkShrink);
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";in=bulk");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_bs_h"));
  EXPECT_TRUE(parseOk("kernel: shrink\nrank: 64\nK: 4096\nBLOCK_SIZE_N: 64\n"
                      "bulk_shrink: true\n")
                  .specs.at(0)
                  .bulkShrink);
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nbulk_shrink: true\n"),
            "t.yaml:1:1: bulk_shrink: true is only supported by one_shot "
            "and shrink (got expand); allowed: false for expand");
  EXPECT_EQ(parseError(base + "BLOCK_SIZE_K: 64\nwgmma: true\n"
                              "bulk_shrink: true\n"),
            "t.yaml:1:1: bulk_shrink: true with wgmma, tma_weights or "
            "producer_warp (bulk rows fill mma.sync's padded tiles on their "
            "own stage barriers); allowed: true with mma.sync tiles, false "
            "otherwise");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nK: 1000\n"
                       "bulk_shrink: true\n"),
            "t.yaml:1:1: bulk_shrink: true without K a multiple of "
            "BLOCK_SIZE_K (bulk copies fill no zeros past K); allowed: true "
            "with a known K that BLOCK_SIZE_K divides");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 24\nK: 2048\n"
                       "bulk_shrink: true\n"),
            "t.yaml:1:1: bulk_shrink: true with rank 24: A tiles of 32 rows "
            "would hold rows past the rank, which must read zeros; allowed: "
            "true with rank a power of two >= 16");
}

TEST(SpecParserRuleTest, ProducerWarpRules) {
  const std::string base = "kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                           "BLOCK_SIZE_K: 64\nnum_warps: 4\nwgmma: true\n";
  SpecSet set = parseOk(base + "producer_warp: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_FALSE(set.specs[0].producerWarp);
  EXPECT_TRUE(set.specs[1].producerWarp);
  EXPECT_EQ(set.specs[0].cacheKey(), parseOk(base).specs[0].cacheKey());
  EXPECT_EQ(set.specs[1].cacheKey(), set.specs[0].cacheKey() + ";ws=p");
  EXPECT_THAT(set.specs[1].entryName(), HasSubstr("_wg_pw_h"));
  EXPECT_FALSE(set.specs[0] == set.specs[1]);
  EXPECT_EQ(set.specs[0].launchThreads(), 128);
  EXPECT_EQ(set.specs[1].threads(), 128);
  EXPECT_EQ(set.specs[1].launchThreads(), 160);
  SpecSet both = parseOk(base + "tma_weights: true\nproducer_warp: true\n");
  EXPECT_THAT(both.specs.at(0).entryName(), HasSubstr("_wg_tma_pw_h"));
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                       "producer_warp: true\n"),
            "t.yaml:1:1: producer_warp: true needs wgmma: true (the "
            "warp-specialised pipeline feeds wgmma's tiles); allowed: false "
            "without wgmma");
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nproducer_warp: true\n"),
            "t.yaml:1:1: producer_warp: true is only supported by one_shot "
            "and shrink (got expand); allowed: false for expand");
  EXPECT_EQ(parseError(base + "num_stages: 1\nproducer_warp: true\n"),
            "t.yaml:1:1: num_stages: 1 with producer_warp: the producer "
            "fills one stage while another is used; allowed: >= 2 with "
            "producer_warp");
  const std::string shrink = "kernel: shrink\nrank: 64\nBLOCK_SIZE_M: 64\n"
                             "BLOCK_SIZE_K: 64\nnum_warps: 4\nwgmma: true\n"
                             "producer_warp: true\n";
  EXPECT_TRUE(parseOk(shrink + "BLOCK_SIZE_N: 16\n").specs.at(0).producerWarp);
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 64\nBLOCK_SIZE_M: 128\n"
                       "BLOCK_SIZE_K: 128\nnum_warps: 16\nwgmma: true\n"
                       "producer_warp: true\n"),
            "t.yaml:1:1: num_warps: 16 with producer_warp: 544 threads per "
            "block leave each at most 96 registers; allowed: <= 8 with "
            "producer_warp");
}

// wgmma: one_shot and shrink on sm_90, 64-row warpgroup tiles (BLOCK_SIZE_M
// 64 or 128 with a warp per 16 rows), 64-column swizzled atoms (BLOCK_SIZE_K
// >= 64), rows copied in 16-byte chunks (K % 8 == 0), at most 256 columns
// per shrink warpgroup. The PTX target is sm_90a.
TEST(SpecParserRuleTest, WgmmaRules) {
  const std::string ok = "kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                         "BLOCK_SIZE_K: 64\nwgmma: true\n";
  SpecSet set = parseOk(ok);
  ASSERT_EQ(set.specs.size(), 1u);
  EXPECT_TRUE(set.specs[0].wgmma);
  EXPECT_EQ(set.specs[0].ptxTarget(), "sm_90a");
  EXPECT_THAT(set.specs[0].cacheKey(), HasSubstr(";mma=wgmma;ptx=sm_90a"));
  set = parseOk("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                "BLOCK_SIZE_K: 64\nwgmma: [false, true]\n");
  ASSERT_EQ(set.specs.size(), 2u);
  EXPECT_NE(set.specs[0].cacheKey(), set.specs[1].cacheKey());
  // Without wgmma the key is what it was before the field existed.
  EXPECT_EQ(set.specs[0].cacheKey().find("mma="), std::string::npos);
  EXPECT_EQ(parseError("kernel: expand\nrank: 16\nBLOCK_SIZE_M: 64\n"
                       "wgmma: true\n"),
            "t.yaml:1:1: wgmma: true is only supported by one_shot and "
            "shrink (got expand); allowed: false for expand");
  EXPECT_TRUE(parseOk("kernel: shrink\nrank: 16\nBLOCK_SIZE_M: 64\n"
                      "BLOCK_SIZE_N: 16\nBLOCK_SIZE_K: 64\nwgmma: true\n")
                  .specs.at(0)
                  .wgmma);
  EXPECT_EQ(parseError(ok + "target: sm_80\n"),
            "t.yaml:1:1: wgmma: true needs sm_90 (wgmma is an sm_90a "
            "instruction; got sm_80); allowed: false for sm_80");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 32\n"
                       "BLOCK_SIZE_K: 64\nwgmma: true\n"),
            "t.yaml:1:1: BLOCK_SIZE_M: 32 with wgmma: warpgroup tiles are 64 "
            "rows; allowed: 64 or 128 with wgmma");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 128\n"
                       "BLOCK_SIZE_K: 64\nnum_warps: 4\nwgmma: true\n"),
            "t.yaml:1:1: num_warps: 4 with wgmma and BLOCK_SIZE_M 128: every "
            "16 rows need a warp; allowed: >= 8 with wgmma and BLOCK_SIZE_M "
            "128");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                       "BLOCK_SIZE_K: 32\nwgmma: true\n"),
            "t.yaml:1:1: BLOCK_SIZE_K: 32 with wgmma: the shared tiles are "
            "64-column swizzled atoms; allowed: power of two >= 64 with "
            "wgmma");
  EXPECT_EQ(parseError("kernel: shrink\nrank: 16\nBLOCK_SIZE_M: 64\n"
                       "BLOCK_SIZE_N: 512\nBLOCK_SIZE_K: 64\nwgmma: true\n"),
            "t.yaml:1:1: BLOCK_SIZE_N: 512 over 1 warpgroups with wgmma "
            "leaves 512 columns per warpgroup, more than one wgmma's 256; "
            "allowed: <= 256 with wgmma and num_warps 4");
  EXPECT_EQ(parseError(ok + "K: 1004\n"),
            "t.yaml:1:1: K: 1004 with wgmma: rows are copied in 16-byte "
            "chunks; allowed: a multiple of 8 with wgmma");
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nwgmma: 1\n"),
            "t.yaml:3:8: wgmma: wrong type: expected a boolean, got '1'; "
            "allowed: true, false (true: one_shot or shrink on sm_90 with "
            "BLOCK_SIZE_M 64 or 128)");
}

// The one-shot's shrink splits BLOCK_K over the warps along N; fused, r
// holds every slice's BLOCK_R columns.
TEST(SpecParserRuleTest, OneShotWarpsNeedAK16StepAndFusedRFits) {
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 16\n"
                       "BLOCK_SIZE_K: 64\nnum_warps: 8\n"),
            "t.yaml:1:1: BLOCK_SIZE_K: 64 over 8 warps along N leaves 8 per "
            "warp, less than one k16 MMA step (BLOCK_SIZE_M 16, num_warps 8); "
            "allowed: power of two >= 128 with BLOCK_SIZE_M 16 and "
            "num_warps 8");
  EXPECT_EQ(parseOk("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 64\n"
                    "BLOCK_SIZE_K: 64\nnum_warps: 8\n")
                .specs.size(),
            1u);
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 128\nnum_slices: 2\n"
                       "fuse_slices: true\n"),
            "t.yaml:1:1: fuse_slices: true with 2 slices of BLOCK_R 128: r "
            "would be 256 columns, more than the one_shot's 128; allowed: "
            "false, or num_slices x BLOCK_R <= 128");
  EXPECT_EQ(parseOk("kernel: one_shot\nrank: 64\nnum_slices: 2\n"
                    "fuse_slices: true\n")
                .specs.size(),
            1u);
}

TEST(SpecParserRuleTest, SmallBatchNeedsAThreadPerRankRow) {
  EXPECT_EQ(parseError("kernel: small_batch\nrank: 64\nnum_warps: 1\n"),
            "t.yaml:1:1: num_warps: 1 warps (32 threads) are fewer than the "
            "rank's 64 rows (small_batch needs a thread per rank row); "
            "allowed: num_warps >= 2 for rank 64");
  EXPECT_EQ(
      parseOk("kernel: small_batch\nrank: 64\nnum_warps: 2\n").specs.size(),
      1u);
}

// The shrink's SPLIT_K is a thread-block cluster too (deterministic sums):
// sm_90 only, 2..16, power of 2.
TEST(SpecParserRuleTest, ShrinkSplitKIsACluster) {
  SpecSet set = parseOk("kernel: shrink\nrank: 16\nSPLIT_K: [2, 8, 16]\n");
  ASSERT_EQ(set.specs.size(), 3u);
  EXPECT_THAT(parseError("kernel: shrink\nrank: 16\nSPLIT_K: 32\n"),
              HasSubstr("32 on sm_90 is not one"));
  EXPECT_EQ(parseError("kernel: shrink\nrank: 16\ntarget: sm_80\n"
                       "SPLIT_K: 4\n"),
            "t.yaml:1:1: SPLIT_K: shrink splits K over a thread-block "
            "cluster: 4 on sm_80 is not one; allowed: 1, or 2, 4, 8, 16 on "
            "sm_90 for shrink");
  EXPECT_THAT(parseError("kernel: shrink\nrank: 16\nSPLIT_K: 3\n"),
              HasSubstr("3 on sm_90 is not one"));
}

// small_batch's SPLIT_K is a thread-block cluster: sm_90, 2..16 (16: the
// non-portable size), power of 2.
TEST(SpecParserRuleTest, SmallBatchSplitKIsACluster) {
  SpecSet set = parseOk("kernel: small_batch\nrank: 16\nSPLIT_K: [2, 8, 16]\n");
  ASSERT_EQ(set.specs.size(), 3u);
  EXPECT_EQ(set.specs[1].splitK, 8);
  EXPECT_EQ(set.specs[2].splitK, 16);
  const std::string allowed =
      "allowed: 1, or 2, 4, 8, 16 on sm_90 for small_batch";
  EXPECT_EQ(parseError("kernel: small_batch\nrank: 16\nSPLIT_K: 32\n"),
            "t.yaml:1:1: SPLIT_K: small_batch splits K over a thread-block "
            "cluster: 32 on sm_90 is not one; " +
                allowed);
  EXPECT_THAT(parseError("kernel: small_batch\nrank: 16\nSPLIT_K: 6\n"),
              HasSubstr(allowed));
  EXPECT_THAT(parseError("kernel: small_batch\nrank: 16\ntarget: sm_80\n"
                         "SPLIT_K: 4\n"),
              HasSubstr("4 on sm_80 is not one"));
}

// one_shot's SPLIT_K is the cluster of a row block's NPID programs.
TEST(SpecParserRuleTest, OneShotSplitKIsTheNpidCluster) {
  SpecSet set = parseOk("kernel: one_shot\nrank: 16\nSPLIT_K: [2, 4, 8, 16]\n");
  ASSERT_EQ(set.specs.size(), 4u);
  EXPECT_EQ(
      parseOk("kernel: one_shot\nrank: 16\nSPLIT_K: 4\nNPID: 4\n").specs.size(),
      1u);
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nSPLIT_K: 4\nNPID: 3\n"),
            "t.yaml:1:1: NPID: 3 with SPLIT_K 4: a one_shot cluster is its "
            "row block's NPID programs; allowed: 0 or 4 (= SPLIT_K)");
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\ntarget: sm_80\n"
                         "SPLIT_K: 2\n"),
              HasSubstr("allowed: 1, or 2, 4, 8, 16 on sm_90 for one_shot"));
  EXPECT_THAT(parseError("kernel: one_shot\nrank: 16\nSPLIT_K: 32\n"),
              HasSubstr("32 on sm_90 is not one"));
}

TEST(SpecParserRuleTest, SmallBatchNeedsNaiveMetadata) {
  EXPECT_EQ(parseError("kernel: small_batch\nrank: 16\nmetadata: sorted\n"),
            "t.yaml:1:1: metadata: small_batch requires naive metadata (got "
            "sorted); allowed: naive for small_batch");
}

TEST(SpecParserRuleTest, SmallBatchRankLimit) {
  SpecSet set = parseOk("kernel: small_batch\nrank: [64, 128]\n");
  ASSERT_EQ(set.specs.size(), 1u);
  ASSERT_EQ(set.rejected.size(), 1u);
  EXPECT_THAT(set.rejected[0].reason,
              StartsWith("rank: 128 is too large: small_batch supports rank "
                         "<= 64; allowed: 1..64 for small_batch"));
}

TEST(SpecParserRuleTest, AlignBlockSizeTakesNoExplicitRank) {
  EXPECT_EQ(parseError("kernel: align_block_size\nrank: 16\n"),
            "t.yaml:1:1: rank: align_block_size takes no rank (got 16); "
            "allowed: omit rank for align_block_size");
}

TEST(SpecParserRuleTest, IgnoredDefaultRankDoesNotMakeASweep) {
  // The rank list in defaults does not apply to align_block_size, so this
  // entry is a single point and its rule violation is an error.
  EXPECT_EQ(parseError(R"(defaults:
  rank: [8, 16]
kernels:
  - kernel: align_block_size
    SPLIT_K: 2
)"),
            "t.yaml:4:5: SPLIT_K: SPLIT_K > 1 is only supported by shrink, "
            "small_batch and one_shot (got 2 for align_block_size); allowed: "
            "1 for align_block_size");
}

TEST(SpecParserRuleTest, FamilySweepWithAlignBlockSize) {
  // Explicit rank: the align_block_size point is rejected.
  SpecSet explicitRank =
      parseOk("kernel: [one_shot, align_block_size]\nrank: 16\n");
  ASSERT_EQ(explicitRank.specs.size(), 1u);
  EXPECT_EQ(explicitRank.specs[0].family, KernelFamily::OneShot);
  ASSERT_EQ(explicitRank.rejected.size(), 1u);
  EXPECT_THAT(explicitRank.rejected[0].reason,
              StartsWith("rank: align_block_size takes no rank"));
  // Rank from defaults: it applies to one_shot only.
  SpecSet inherited = parseOk(R"(defaults:
  rank: [16, 32]
kernels:
  - kernel: [one_shot, align_block_size]
)");
  ASSERT_EQ(inherited.specs.size(), 3u);
  EXPECT_TRUE(inherited.rejected.empty());
  EXPECT_EQ(inherited.specs[2].family, KernelFamily::AlignBlockSize);
  EXPECT_EQ(inherited.specs[2].rank, 0);
}

TEST(SpecParserRuleTest, EveryWarpNeedsAnMmaTileAlongN) {
  // BLOCK_SIZE_M 16 gives one warp row; 4 warps share 16 columns: 4 each.
  EXPECT_EQ(parseError("kernel: one_shot\nrank: 16\nBLOCK_SIZE_M: 16\n"
                       "BLOCK_SIZE_N: 16\nnum_warps: 4\n"),
            "t.yaml:1:1: BLOCK_SIZE_N: 16 columns over 4 warps along N "
            "leaves 4 per warp, less than one 8-column MMA tile "
            "(BLOCK_SIZE_M 16, num_warps 4); allowed: power of two >= 32 "
            "with BLOCK_SIZE_M 16 and num_warps 4");
  // With BLOCK_SIZE_M 64 the 4 warps go along M: 16 columns each is fine.
  EXPECT_EQ(parseOk("kernel: expand\nrank: 16\nBLOCK_SIZE_M: 64\n"
                    "BLOCK_SIZE_N: 16\nnum_warps: 4\n")
                .specs.size(),
            1u);
  // The rule is for the MMA families only.
  EXPECT_EQ(parseOk("kernel: small_batch\nrank: 16\nBLOCK_SIZE_N: 16\n"
                    "num_warps: 8\n")
                .specs.size(),
            1u);
}

TEST(SpecParserRuleTest, ValidateSpecDirectly) {
  KernelSpec s;
  EXPECT_EQ(validateSpec(s), "");
  s.blockM = 48;
  EXPECT_THAT(validateSpec(s), StartsWith("BLOCK_SIZE_M: 48 is not a power "
                                          "of two; allowed: "));
  s = KernelSpec();
  s.sm = 75;
  EXPECT_THAT(validateSpec(s), StartsWith("target: sm_75 is not a supported "
                                          "target; allowed: sm_80"));
  s = KernelSpec();
  s.rank = 0;
  EXPECT_THAT(validateSpec(s), StartsWith("rank: one_shot needs rank >= 1"));
  s = KernelSpec();
  s.numWarps = 6;
  EXPECT_THAT(validateSpec(s), StartsWith("num_warps: 6 "));
  s = KernelSpec();
  s.family = KernelFamily::AlignBlockSize;
  EXPECT_THAT(validateSpec(s), StartsWith("rank: align_block_size takes no "
                                          "rank"));
  s.rank = 0;
  EXPECT_EQ(validateSpec(s), "");
}

//===----------------------------------------------------------------------===//
// Files and directories
//===----------------------------------------------------------------------===//

/// A fresh directory under the system temp dir, removed afterwards.
class TempDir {
public:
  TempDir() {
    const ::testing::TestInfo *t =
        ::testing::UnitTest::GetInstance()->current_test_info();
    path =
        fs::temp_directory_path() / (std::string("moelora_spec_") + t->name() +
                                     "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string write(const std::string &rel, const std::string &text) const {
    fs::path p = path / rel;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path path;
};

TEST(SpecFileTest, ErrorsNameTheFile) {
  TempDir dir;
  std::string f = dir.write("bad.yaml", "kernel: one_shot\nrank: x\n");
  Expected<SpecSet> r = parseSpecFile(f);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, StartsWith(f + ":2:7: rank: wrong type"));
  Expected<SpecSet> viaPaths = parseSpecPaths({dir.path.string()});
  ASSERT_FALSE(viaPaths);
  EXPECT_EQ(viaPaths.error().message, r.error().message);
}

TEST(SpecFileTest, MissingPath) {
  std::string missing = sourcePath("specs/does_not_exist.yaml");
  Expected<SpecSet> r = parseSpecPaths({sourcePath("specs/default"), missing});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, missing + ": no such file or directory");
  Expected<SpecSet> f = parseSpecFile(missing);
  ASSERT_FALSE(f);
  EXPECT_THAT(f.error().message, StartsWith(missing + ": "));
}

TEST(SpecFileTest, DirectoriesAreWalkedRecursivelyInSortedOrder) {
  TempDir dir;
  // b.yml and sub/c.yaml repeat a.yaml's kernel: the first file in sorted
  // order keeps it. notes.txt is not a spec and is not read.
  dir.write("b.yml", "kernel: one_shot\nrank: [16, 32]\n");
  dir.write("a.yaml", "kernel: one_shot\nrank: 16\n");
  dir.write("sub/c.yaml", "kernel: one_shot\nrank: [16, 64]\n");
  dir.write("notes.txt", "not: [yaml\n");
  Expected<SpecSet> r = parseSpecPaths({dir.path.string()});
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_EQ(r->specs.size(), 3u);
  EXPECT_EQ(r->specs[0].rank, 16);
  EXPECT_EQ(r->specs[0].origin, (dir.path / "a.yaml").string() + ":1");
  EXPECT_EQ(r->specs[1].rank, 32);
  EXPECT_EQ(r->specs[2].rank, 64);
  EXPECT_EQ(r->specs[2].origin, (dir.path / "sub/c.yaml").string() + ":1");

  // Naming a directory and a file inside it reads the file once.
  Expected<SpecSet> twice =
      parseSpecPaths({dir.path.string(), (dir.path / "a.yaml").string()});
  ASSERT_TRUE(twice) << twice.error().message;
  EXPECT_EQ(twice->specs.size(), 3u);
}

TEST(SpecFileTest, ExampleSweepHasTwoRejections) {
  Expected<SpecSet> r =
      parseSpecFile(sourcePath("specs/examples/sweep_one_shot.yaml"));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->specs.size(), 6u);
  ASSERT_EQ(r->rejected.size(), 2u);
  const KernelSpec &bad = r->rejected[0].spec;
  EXPECT_EQ(bad.blockM, 16);
  EXPECT_EQ(bad.blockN, 32);
  EXPECT_EQ(bad.numWarps, 8);
  EXPECT_THAT(r->rejected[0].reason, StartsWith("BLOCK_SIZE_N: 32 columns "
                                                "over 8 warps"));
  const KernelSpec &noK = r->rejected[1].spec;
  EXPECT_EQ(noK.blockM, 16);
  EXPECT_EQ(noK.blockN, 64);
  EXPECT_EQ(noK.numWarps, 8);
  EXPECT_THAT(r->rejected[1].reason,
              StartsWith("BLOCK_SIZE_K: 64 over 8 warps along N leaves 8"));
}

//===----------------------------------------------------------------------===//
// The default kernel set
//===----------------------------------------------------------------------===//

// Per preset file: three one_shot entries (W13 naive, W13 sorted, W2 sorted)
// x 2 dtypes x 5 ranks = 30, small_batch 2 x 4 ranks x 2 SPLIT_K = 16,
// shrink 10, expand 10, align_block_size 2 => 68. expand and
// align_block_size do not depend on K, so the three files share those 12
// kernels: 3 * 68 - 2 * 12 = 180 after merging.
constexpr size_t kPerPresetSpecs = 68;
constexpr size_t kDefaultSetSpecs = 180;

TEST(DefaultSpecsTest, EachPresetFileIsValid) {
  for (const char *preset : {"qwen3moe", "mixtral", "glm5_1"}) {
    Expected<SpecSet> r = parseSpecFile(
        sourcePath(std::string("specs/default/") + preset + ".yaml"));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->specs.size(), kPerPresetSpecs) << preset;
    EXPECT_TRUE(r->rejected.empty()) << preset;
  }
}

TEST(DefaultSpecsTest, DirectoryParsesWithoutRejections) {
  Expected<SpecSet> r = parseSpecPaths({sourcePath("specs/default")});
  ASSERT_TRUE(r) << r.error().message;
  for (const RejectedSpec &rej : r->rejected)
    ADD_FAILURE() << rej.spec.origin << ": " << rej.reason;
  ASSERT_EQ(r->specs.size(), kDefaultSetSpecs);

  std::map<KernelFamily, size_t> perFamily;
  for (const KernelSpec &s : r->specs) {
    ++perFamily[s.family];
    EXPECT_EQ(validateSpec(s), "") << s.cacheKey();
    EXPECT_EQ(s.sm, 90);
    EXPECT_THAT(s.origin, HasSubstr("specs/default/"));
  }
  EXPECT_EQ(perFamily[KernelFamily::OneShot], 90u);
  EXPECT_EQ(perFamily[KernelFamily::SmallBatch], 48u);
  EXPECT_EQ(perFamily[KernelFamily::Shrink], 30u);
  EXPECT_EQ(perFamily[KernelFamily::Expand], 10u);
  EXPECT_EQ(perFamily[KernelFamily::AlignBlockSize], 2u);
}

TEST(DefaultSpecsTest, EntryNamesAreUniqueCIdentifiers) {
  Expected<SpecSet> r = parseSpecPaths({sourcePath("specs/default")});
  ASSERT_TRUE(r) << r.error().message;
  const std::regex ident("[A-Za-z_][A-Za-z0-9_]*");
  std::set<std::string> names, keys;
  for (const KernelSpec &s : r->specs) {
    std::string name = s.entryName();
    EXPECT_TRUE(std::regex_match(name, ident)) << name;
    EXPECT_TRUE(names.insert(name).second) << "duplicate entry " << name;
    EXPECT_TRUE(keys.insert(s.cacheKey()).second) << s.cacheKey();
  }
  EXPECT_EQ(names.size(), kDefaultSetSpecs);
}

TEST(DefaultSpecsTest, CacheKeysAreStableAcrossParses) {
  Expected<SpecSet> a = parseSpecPaths({sourcePath("specs/default")});
  Expected<SpecSet> b = parseSpecPaths({sourcePath("specs/default")});
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->specs.size(), b->specs.size());
  for (size_t i = 0; i < a->specs.size(); ++i) {
    EXPECT_EQ(a->specs[i].cacheKey(), b->specs[i].cacheKey());
    EXPECT_EQ(a->specs[i].entryName(), b->specs[i].entryName());
  }
}

} // namespace
