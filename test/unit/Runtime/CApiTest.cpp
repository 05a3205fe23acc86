//===- CApiTest.cpp - moelora.h without a GPU -----------------------------===//
//
// Argument validation (status + a message naming the argument), planning
// without a device, empty work, and the no-driver status. Pointers are fake
// non-null values: nothing is dereferenced on the host.
//
//===----------------------------------------------------------------------===//

#include "LaunchTestShapes.h"
#include "RuntimeTestUtil.h"

#include "moelora/Reference/Reference.h"
#include "moelora/Runtime/CudaDriver.h"
#include "moelora/Runtime/Dispatcher.h"
#include "moelora/moelora.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>

using namespace moelora;
using namespace moelora::test;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
namespace fs = std::filesystem;

namespace {

template <typename T = void> T *fakePtr(uintptr_t v) {
  return reinterpret_cast<T *>(v);
}

bool haveDriver() { return bool(CudaDriver::get()); }

/// Tests whose expectations assume the runtime's no-GPU behaviour: plans for
/// the fallback device (sm_90, 132 SMs, "unknown") and images without loads.
#define MOELORA_SKIP_WITH_DRIVER()                                             \
  if (haveDriver())                                                            \
  GTEST_SKIP() << "expects the no-GPU runtime; a CUDA driver is present"

std::string lastError() { return moelora_last_error(); }

/// Stores an integer in the enum field as a C caller (or ctypes) would:
/// assigning moelora_dtype(7) in C++ is itself undefined behaviour.
void storeDtype(moelora_fused_args &a, int32_t value) {
  static_assert(sizeof(a.dtype) == sizeof(value));
  std::memcpy(&a.dtype, &value, sizeof(value));
}

/// A valid naive call (qwen3moe W13 prefill-ish: one-shot).
moelora_fused_args naiveArgs(int tokens = 64, int rank = 16) {
  moelora_fused_args a;
  moelora_fused_args_init(&a);
  const int K = 2048, N = 1408, E = 64, topK = 8, slices = 2, loras = 4;
  a.dtype = MOELORA_DTYPE_BF16;
  a.x = fakePtr(0x100000);
  a.x_stride[0] = K;
  a.x_stride[1] = 1;
  a.lora_a_ptrs = fakePtr(0x200000);
  a.lora_a_stride[0] = int64_t(E) * rank * K;
  a.lora_a_stride[1] = int64_t(rank) * K;
  a.lora_a_stride[2] = K;
  a.lora_a_stride[3] = 1;
  a.lora_b_ptrs = fakePtr(0x300000);
  a.lora_b_stride[0] = int64_t(E) * N * rank;
  a.lora_b_stride[1] = int64_t(N) * rank;
  a.lora_b_stride[2] = rank;
  a.lora_b_stride[3] = 1;
  a.output = fakePtr(0x400000);
  a.output_stride[0] = int64_t(topK) * slices * N;
  a.output_stride[1] = int64_t(slices) * N;
  a.output_stride[2] = 1;
  a.topk_weights = fakePtr<const float>(0x500000);
  a.topk_ids = fakePtr<const int32_t>(0x600000);
  a.token_lora_mapping = fakePtr<const int32_t>(0x700000);
  a.lora_ids = fakePtr<const int32_t>(0x800000);
  a.adapter_enabled = fakePtr<const int32_t>(0x900000);
  a.num_tokens = tokens;
  a.top_k = topK;
  a.num_experts = E;
  a.K = K;
  a.N = N;
  a.rank = rank;
  a.num_slices = slices;
  a.max_loras = loras;
  a.num_active_loras = loras;
  a.add_inputs = 1;
  a.workspace = fakePtr(0xa00000);
  return a;
}

/// A valid sorted call (metadata from moe_lora_align_block_size).
moelora_fused_args sortedArgs(int tokens = 64, int bm = 16) {
  moelora_fused_args a = naiveArgs(tokens);
  a.topk_ids = nullptr;
  a.sorted_token_ids = fakePtr<const int32_t>(0xb00000);
  a.expert_ids = fakePtr<const int32_t>(0xc00000);
  a.num_tokens_post_padded = fakePtr<const int32_t>(0xd00000);
  a.block_size_m = bm;
  a.EM = moelora_align_capacity(tokens, a.top_k, a.num_experts, bm);
  return a;
}

/// The MoeLoraCall shape the C ABI builds from `a` (for expected plans).
MoeLoraCall shapeOf(const moelora_fused_args &a) {
  MoeLoraCall c;
  c.dtype = a.dtype == MOELORA_DTYPE_BF16 ? DType::BF16 : DType::F16;
  c.numTokens = a.num_tokens;
  c.topK = a.top_k;
  c.numExperts = a.num_experts;
  c.K = a.K;
  c.N = a.N;
  c.rank = a.rank;
  c.numSlices = a.num_slices;
  c.maxLoras = a.max_loras;
  c.numActiveLoras = a.num_active_loras;
  c.sorted = a.sorted_token_ids != nullptr || a.EM > 0;
  c.EM = a.EM;
  c.blockSizeM = a.block_size_m;
  c.mulRoutedWeight = a.mul_routed_weight != 0;
  c.addInputs = a.add_inputs != 0;
  return c;
}

/// Runtimes on a private cache dir, no JIT hook unless a test installs one.
class CApiTest : public ::testing::Test {
protected:
  void SetUp() override { setJitHook(nullptr); }
  void TearDown() override {
    for (moelora_runtime *rt : runtimes)
      moelora_runtime_destroy(rt);
    setJitHook(nullptr);
  }

  moelora_runtime_options options() {
    moelora_runtime_options o;
    moelora_runtime_options_init(&o);
    cacheDir = dir / "cache";
    o.cache_dir = cacheDir.c_str();
    return o;
  }
  moelora_runtime *create(const moelora_runtime_options &o) {
    moelora_runtime *rt = nullptr;
    moelora_status s = moelora_runtime_create(&o, &rt);
    EXPECT_EQ(s, MOELORA_OK) << lastError();
    if (rt)
      runtimes.push_back(rt);
    return rt;
  }
  moelora_runtime *create() { return create(options()); }
  moelora_stats stats(moelora_runtime *rt) {
    moelora_stats s;
    std::memset(&s, 0xff, sizeof(s));
    EXPECT_EQ(moelora_get_stats(rt, &s), MOELORA_OK) << lastError();
    return s;
  }

  TempDir dir;
  std::string cacheDir;
  std::vector<moelora_runtime *> runtimes;
};

//===----------------------------------------------------------------------===//
// Version, creation, stats
//===----------------------------------------------------------------------===//

TEST_F(CApiTest, AbiVersion) {
  EXPECT_EQ(moelora_abi_version(), uint32_t(MOELORA_ABI_VERSION));
  EXPECT_EQ(moelora_abi_version(), 1u);
}

TEST_F(CApiTest, InitFunctionsFillDefaults) {
  moelora_runtime_options o;
  std::memset(&o, 0xab, sizeof(o));
  moelora_runtime_options_init(&o);
  EXPECT_EQ(o.struct_size, sizeof(o));
  EXPECT_EQ(o.cache_dir, nullptr);
  EXPECT_EQ(o.enable_jit, 1);
  EXPECT_EQ(o.enable_disk_cache, 1);
  EXPECT_EQ(o.num_bundle_paths, 0);
  EXPECT_EQ(o.tuned_table_path, nullptr);

  moelora_fused_args a;
  std::memset(&a, 0xab, sizeof(a));
  moelora_fused_args_init(&a);
  EXPECT_EQ(a.struct_size, sizeof(a));
  EXPECT_EQ(a.dtype, MOELORA_DTYPE_BF16);
  EXPECT_EQ(a.x, nullptr);
  EXPECT_EQ(a.top_k, 1);
  EXPECT_EQ(a.num_slices, 1);
  EXPECT_EQ(a.add_inputs, 1);
  EXPECT_EQ(a.EM, 0);

  moelora_align_args g;
  std::memset(&g, 0xab, sizeof(g));
  moelora_align_args_init(&g);
  EXPECT_EQ(g.struct_size, sizeof(g));
  EXPECT_EQ(g.block_size_m, 16);
  EXPECT_EQ(g.topk_ids, nullptr);

  // NULL is ignored, not a crash.
  moelora_runtime_options_init(nullptr);
  moelora_fused_args_init(nullptr);
  moelora_align_args_init(nullptr);
}

TEST_F(CApiTest, CreateWithoutGpuSucceeds) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  EXPECT_STREQ(moelora_last_error(), "");
  moelora_stats s = stats(rt);
  EXPECT_EQ(s.memory_hits, 0u);
  EXPECT_EQ(s.disk_hits, 0u);
  EXPECT_EQ(s.bundle_hits, 0u);
  EXPECT_EQ(s.jit_generations, 0u);
  EXPECT_EQ(s.misses, 0u);
  EXPECT_EQ(s.launches, 0u);
  EXPECT_EQ(s.jit_ms_total, 0.0);
}

TEST_F(CApiTest, CreateWithNullOptionsUsesDefaults) {
  ScopedEnv env("MOELORA_CACHE_DIR", dir / "env-cache");
  moelora_runtime *rt = nullptr;
  ASSERT_EQ(moelora_runtime_create(nullptr, &rt), MOELORA_OK) << lastError();
  ASSERT_NE(rt, nullptr);
  runtimes.push_back(rt);
}

TEST_F(CApiTest, CreateRejectsBadArguments) {
  moelora_runtime_options o = options();
  EXPECT_EQ(moelora_runtime_create(&o, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("out"));

  moelora_runtime *rt = fakePtr<moelora_runtime>(0x1);
  o.struct_size = sizeof(o) - 4;
  EXPECT_EQ(moelora_runtime_create(&o, &rt), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("struct_size"));
  EXPECT_EQ(rt, nullptr) << "*out must be cleared on failure";

  o = options();
  o.num_bundle_paths = 1;
  o.bundle_paths = nullptr;
  EXPECT_EQ(moelora_runtime_create(&o, &rt), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("bundle_paths"));

  const char *paths[] = {nullptr};
  o.bundle_paths = paths;
  EXPECT_EQ(moelora_runtime_create(&o, &rt), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("bundle_paths[0]"));

  o.num_bundle_paths = -1;
  EXPECT_EQ(moelora_runtime_create(&o, &rt), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("num_bundle_paths"));
  EXPECT_EQ(rt, nullptr);
}

TEST_F(CApiTest, CreateFailsOnAMissingBundleOrTable) {
  moelora_runtime_options o = options();
  std::string missing = dir / "no-bundle";
  const char *paths[] = {missing.c_str()};
  o.bundle_paths = paths;
  o.num_bundle_paths = 1;
  moelora_runtime *rt = nullptr;
  EXPECT_NE(moelora_runtime_create(&o, &rt), MOELORA_OK);
  EXPECT_EQ(rt, nullptr);
  EXPECT_THAT(lastError(), HasSubstr(missing));

  o = options();
  std::string table = dir / "no-table.json";
  o.tuned_table_path = table.c_str();
  EXPECT_NE(moelora_runtime_create(&o, &rt), MOELORA_OK);
  EXPECT_EQ(rt, nullptr);
  EXPECT_THAT(lastError(), HasSubstr(table));
}

TEST_F(CApiTest, GetStatsRejectsNulls) {
  moelora_stats s;
  EXPECT_EQ(moelora_get_stats(nullptr, &s), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("rt"));
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(moelora_get_stats(rt, nullptr), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("stats"));
}

TEST_F(CApiTest, DestroyNullIsANoOp) { moelora_runtime_destroy(nullptr); }

TEST_F(CApiTest, NullRuntimeIsRejectedEverywhere) {
  moelora_fused_args a = naiveArgs();
  moelora_plan plan;
  moelora_align_args g;
  moelora_align_args_init(&g);
  auto check = [](moelora_status s, const char *what) {
    EXPECT_EQ(s, MOELORA_ERROR_INVALID_ARGUMENT) << what;
    EXPECT_THAT(lastError(), HasSubstr("rt")) << what;
  };
  check(moelora_fused_moe_lora(nullptr, &a, nullptr), "fused");
  check(moelora_plan_fused(nullptr, &a, &plan), "plan");
  check(moelora_shrink(nullptr, &a, nullptr), "shrink");
  check(moelora_expand(nullptr, &a, 0, nullptr), "expand");
  check(moelora_warmup(nullptr, &a, 1), "warmup");
  check(moelora_align_block_size(nullptr, &g, nullptr), "align");
}

//===----------------------------------------------------------------------===//
// Rejected arguments of moelora_fused_moe_lora / moelora_plan_fused
//===----------------------------------------------------------------------===//

struct BadArgCase {
  const char *name;
  bool sorted; ///< start from sortedArgs()
  std::function<void(moelora_fused_args &)> mutate;
  std::vector<const char *> mentions; ///< the message names the argument
};

/// Parameterized names end in the case's name; this is what a failure (and
/// ctest's test name) says of the parameter: not "72-byte object <...>".
void PrintTo(const BadArgCase &c, std::ostream *os) {
  *os << c.name << (c.sorted ? " (sorted)" : " (naive)");
}

class CApiBadArgTest : public CApiTest,
                       public ::testing::WithParamInterface<BadArgCase> {
protected:
  moelora_fused_args args() const {
    moelora_fused_args a = GetParam().sorted ? sortedArgs() : naiveArgs();
    GetParam().mutate(a);
    return a;
  }
  void expectRejected(moelora_status s, const char *entry) {
    EXPECT_EQ(s, MOELORA_ERROR_INVALID_ARGUMENT)
        << entry << ": " << lastError();
    for (const char *m : GetParam().mentions)
      EXPECT_THAT(lastError(), HasSubstr(m)) << entry;
  }
};

TEST_P(CApiBadArgTest, FusedRejects) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = args();
  expectRejected(moelora_fused_moe_lora(rt, &a, nullptr), "fused_moe_lora");
  EXPECT_EQ(stats(rt).launches, 0u);
}

TEST_P(CApiBadArgTest, PlanRejects) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = args();
  moelora_plan plan;
  std::memset(&plan, 0x5a, sizeof(plan));
  moelora_plan before = plan;
  expectRejected(moelora_plan_fused(rt, &a, &plan), "plan_fused");
  EXPECT_EQ(std::memcmp(&plan, &before, sizeof(plan)), 0)
      << "the plan was changed on failure";
}

TEST_P(CApiBadArgTest, HalvesRejectAndWorkspaceIsZero) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = args();
  expectRejected(moelora_shrink(rt, &a, nullptr), "shrink");
  expectRejected(moelora_expand(rt, &a, 0, nullptr), "expand");
  EXPECT_EQ(moelora_workspace_bytes(&a), 0u);
  // The size cannot carry a status; the last error says what was wrong.
  EXPECT_STRNE(moelora_last_error(), "");
}

// Sanity: the unmutated baselines are valid (so every case above fails for
// its own reason).
TEST_F(CApiTest, BaselinesAreValid) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  for (bool sorted : {false, true}) {
    moelora_fused_args a = sorted ? sortedArgs() : naiveArgs();
    moelora_plan plan;
    EXPECT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    EXPECT_EQ(plan.path, MOELORA_PATH_ONE_SHOT);
    // topk_weights is only needed with mul_routed_weight.
    a.topk_weights = nullptr;
    EXPECT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    // struct_size larger than ours (a newer caller) is accepted.
    a.struct_size = sizeof(a) + 16;
    EXPECT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    // So is a caller built before lora_a_host_ptrs was appended.
    a.struct_size = offsetof(moelora_fused_args, lora_a_host_ptrs);
    EXPECT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
  }
}

// lora_a_host_ptrs lets a table's tma_weights through (the plan's kernel
// key says ';tma=a'); without it, or from a caller built before the field
// (its smaller struct_size), the same entry plans the cp.async kernel.
TEST_F(CApiTest, LoraAHostPtrsAdmitTheTensorMapKernel) {
  // The table serves the GPU the runtime plans for: this machine's, or
  // (without one) the one MOELORA_TARGET_GPU names.
  ::setenv("MOELORA_TARGET_GPU", "Test GPU", 1);
  struct Unset {
    ~Unset() { ::unsetenv("MOELORA_TARGET_GPU"); }
  } unset;
  moelora_runtime_info info;
  info.struct_size = sizeof(info);
  ASSERT_EQ(moelora_get_runtime_info(create(), &info), MOELORA_OK);
  if (info.has_device && info.compute_capability != 90)
    GTEST_SKIP() << "wgmma needs sm_90; this GPU is sm_"
                 << info.compute_capability;
  const std::string table = dir / "tma.json";
  std::ofstream(table) << fmt::format(
      R"({{"format": "moelora-tuned", "version": 1, "gpu": "{}", "entries": [
    {{"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
     "sorted": true, "num_slices": 2, "max_pairs": 100000,
     "config": {{"wgmma": true, "tma_weights": true}}}}]}})",
      info.device_name);
  moelora_runtime_options o = options();
  o.tuned_table_path = table.c_str();
  moelora_runtime *rt = create(o);
  ASSERT_NE(rt, nullptr);
  const void *bases[2] = {fakePtr(0x1000000), fakePtr(0x2000000)};
  auto key = [&](const moelora_fused_args &a) {
    moelora_plan plan;
    EXPECT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    EXPECT_EQ(plan.path, MOELORA_PATH_ONE_SHOT);
    return std::string(plan.launches[0].cache_key);
  };
  moelora_fused_args a = sortedArgs(64, 64);
  a.lora_a_host_ptrs = bases;
  EXPECT_THAT(key(a), HasSubstr(";mma=wgmma;ptx=sm_90a;tma=a"));
  moelora_fused_args none = a;
  none.lora_a_host_ptrs = nullptr;
  EXPECT_THAT(key(none), Not(HasSubstr("tma=a")));
  moelora_fused_args old = a;
  old.struct_size = offsetof(moelora_fused_args, lora_a_host_ptrs);
  EXPECT_THAT(key(old), Not(HasSubstr("tma=a")));
  EXPECT_THAT(key(old), HasSubstr(";mma=wgmma"));
}

std::string caseName(const ::testing::TestParamInfo<BadArgCase> &i) {
  return i.param.name;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CApiBadArgTest,
    ::testing::Values(
        BadArgCase{"StructSize",
                   false,
                   // Smaller than the first release's struct.
                   [](auto &a) {
                     a.struct_size =
                         offsetof(moelora_fused_args, lora_a_host_ptrs) - 8;
                   },
                   {"struct_size"}},
        BadArgCase{"StructSizeZero",
                   false,
                   [](auto &a) { a.struct_size = 0; },
                   {"struct_size"}},
        // Read as the integer the caller stored, then validated (loading 7
        // as moelora_dtype would be undefined behaviour: UBSan).
        BadArgCase{"Dtype",
                   false,
                   [](auto &a) { storeDtype(a, 7); },
                   {"dtype = 7", "MOELORA_DTYPE_FP16"}},
        BadArgCase{"DtypeNegative",
                   false,
                   [](auto &a) { storeDtype(a, -1); },
                   {"dtype = -1"}},
        BadArgCase{"DtypeLarge",
                   false,
                   [](auto &a) { storeDtype(a, 0x40000000); },
                   {"dtype = 1073741824"}},
        BadArgCase{"NegativeNumTokens",
                   false,
                   [](auto &a) { a.num_tokens = -1; },
                   {"num_tokens", "-1"}},
        BadArgCase{
            "TopKZero", false, [](auto &a) { a.top_k = 0; }, {"top_k", "0"}},
        BadArgCase{
            "RankZero", false, [](auto &a) { a.rank = 0; }, {"rank", "0"}},
        BadArgCase{"KZero", false, [](auto &a) { a.K = 0; }, {"K = 0"}},
        BadArgCase{"NegativeN", false, [](auto &a) { a.N = -4; }, {"N = -4"}},
        BadArgCase{"NumExpertsZero",
                   false,
                   [](auto &a) { a.num_experts = 0; },
                   {"num_experts"}},
        BadArgCase{"NumExpertsTooMany",
                   false,
                   [](auto &a) { a.num_experts = 4096; },
                   {"num_experts", "4096"}},
        BadArgCase{"NegativeNumSlices",
                   false,
                   [](auto &a) { a.num_slices = -1; },
                   {"num_slices"}},
        BadArgCase{"MaxLorasZero",
                   false,
                   [](auto &a) { a.max_loras = 0; },
                   {"max_loras"}},
        BadArgCase{"NumActiveLorasAboveMaxPlusOne",
                   false,
                   [](auto &a) { a.num_active_loras = a.max_loras + 2; },
                   {"num_active_loras", "6"}},
        // Grids past CUDA's 2^31 - 1 blocks (they would wrap).
        BadArgCase{"PairsAboveTheGrids",
                   false,
                   [](auto &a) {
                     a.num_tokens = 1281;
                     a.top_k = 1 << 20;
                   },
                   {"num_tokens * top_k = 1343225856", "<= 2097152"}},
        BadArgCase{"PairsJustAboveTheGrids",
                   false,
                   [](auto &a) {
                     // Naive, rank 4096, 8 slices: the shrink grid would
                     // be 2^24 * 8 * 64 = 2^33 blocks (wrapping to 0).
                     a.num_tokens = 1 << 21;
                     a.top_k = 8;
                   },
                   {"num_tokens * top_k = 16777216", "<= 2097152"}},
        // EM is the caller's buffer width: bounded on its own (F6).
        BadArgCase{
            "EMAboveTheSortedGrids",
            true,
            [](auto &a) { a.EM = (1 << 19) * a.block_size_m + a.block_size_m; },
            {"EM = ", "row blocks)"}},
        // Within every grid bound, but max_loras x EM ids pass int32, the
        // kernels' metadata index.
        BadArgCase{"SortedMetadataAboveInt32",
                   true,
                   [](auto &a) {
                     a.max_loras = 1024;
                     a.num_active_loras = 1024;
                     a.EM = (1 << 18) * a.block_size_m;
                   },
                   {"max_loras * EM = 1024 * ", "int32"}},
        // Bounds the planner's arithmetic (found by test/fuzz/FuzzCApi.cpp).
        BadArgCase{"RankAboveAnyExpand",
                   false,
                   [](auto &a) { a.rank = 1 << 30; },
                   {"rank = 1073741824", "<= 4096"}},
        BadArgCase{"NumSlicesAboveTheSpecLimit",
                   false,
                   [](auto &a) { a.num_slices = 9; },
                   {"num_slices = 9", "<= 8"}},
        // The sorted grid's z dimension is num_active_loras <= max_loras + 1.
        BadArgCase{"MaxLorasAboveTheGrid",
                   true,
                   [](auto &a) {
                     a.max_loras = INT32_MAX;
                     a.num_active_loras = INT32_MAX;
                   },
                   {"max_loras = 2147483647", "<= 65534"}},
        BadArgCase{"NegativeNumActiveLoras",
                   false,
                   [](auto &a) { a.num_active_loras = -1; },
                   {"num_active_loras"}}),
    caseName);

INSTANTIATE_TEST_SUITE_P(
    Pointers, CApiBadArgTest,
    ::testing::Values(
        BadArgCase{"NullX", false, [](auto &a) { a.x = nullptr; }, {"x: NULL"}},
        BadArgCase{"NullLoraA",
                   false,
                   [](auto &a) { a.lora_a_ptrs = nullptr; },
                   {"lora_a_ptrs", "NULL"}},
        BadArgCase{"NullLoraB",
                   false,
                   [](auto &a) { a.lora_b_ptrs = nullptr; },
                   {"lora_b_ptrs", "NULL"}},
        BadArgCase{"NullOutput",
                   false,
                   [](auto &a) { a.output = nullptr; },
                   {"output", "NULL"}},
        BadArgCase{"NullTokenLoraMapping",
                   false,
                   [](auto &a) { a.token_lora_mapping = nullptr; },
                   {"token_lora_mapping", "NULL"}},
        BadArgCase{"NullLoraIds",
                   false,
                   [](auto &a) { a.lora_ids = nullptr; },
                   {"lora_ids", "NULL"}},
        BadArgCase{"NullAdapterEnabled",
                   false,
                   [](auto &a) { a.adapter_enabled = nullptr; },
                   {"adapter_enabled", "NULL"}},
        BadArgCase{"NullTopkIdsNaive",
                   false,
                   [](auto &a) { a.topk_ids = nullptr; },
                   {"topk_ids", "NULL"}},
        BadArgCase{"NullTopkWeightsWithMulRoutedWeight",
                   false,
                   [](auto &a) {
                     a.mul_routed_weight = 1;
                     a.topk_weights = nullptr;
                   },
                   {"topk_weights", "NULL"}},
        BadArgCase{"SortedNullExpertIds",
                   true,
                   [](auto &a) { a.expert_ids = nullptr; },
                   {"expert_ids", "NULL"}},
        BadArgCase{"SortedNullNumTokensPostPadded",
                   true,
                   [](auto &a) { a.num_tokens_post_padded = nullptr; },
                   {"num_tokens_post_padded", "NULL"}},
        BadArgCase{"SortedByEmNullSortedTokenIds",
                   true,
                   [](auto &a) { a.sorted_token_ids = nullptr; },
                   {"sorted_token_ids", "NULL"}}),
    caseName);

INSTANTIATE_TEST_SUITE_P(
    SortedMetadata, CApiBadArgTest,
    ::testing::Values(
        BadArgCase{"BlockSizeM48",
                   true,
                   [](auto &a) {
                     a.block_size_m = 48;
                     a.EM = 48 * 40;
                   },
                   {"shrink_block_size_m", "48"}},
        BadArgCase{"BlockSizeM8",
                   true,
                   [](auto &a) {
                     a.block_size_m = 8;
                     a.EM = 8 * 200;
                   },
                   {"shrink_block_size_m", "8"}},
        BadArgCase{"BlockSizeM512",
                   true,
                   [](auto &a) {
                     a.block_size_m = 512;
                     a.EM = moelora_align_capacity(a.num_tokens, a.top_k,
                                                   a.num_experts, 512);
                   },
                   {"shrink_block_size_m", "512", "16..256"}},
        BadArgCase{"BlockSizeM0",
                   true,
                   [](auto &a) { a.block_size_m = 0; },
                   {"shrink_block_size_m"}},
        BadArgCase{"EmNotMultipleOfBlockSizeM",
                   true,
                   [](auto &a) { a.EM += 8; },
                   {"EM", "block_size_m"}},
        BadArgCase{
            "EmZeroWithSortedIds", true, [](auto &a) { a.EM = 0; }, {"EM = 0"}},
        BadArgCase{"EmNegativeWithSortedIds",
                   true,
                   [](auto &a) { a.EM = -16; },
                   {"EM = -16"}}),
    caseName);

INSTANTIATE_TEST_SUITE_P(
    Strides, CApiBadArgTest,
    ::testing::Values(BadArgCase{"OutputStride0",
                                 false,
                                 [](auto &a) { a.output_stride[0] += 8; },
                                 {"output_stride", "top_k"}},
                      BadArgCase{"OutputStride2",
                                 false,
                                 [](auto &a) { a.output_stride[2] = 2; },
                                 {"output_stride[2]"}},
                      BadArgCase{"OutputStride0Overflows",
                                 false,
                                 [](auto &a) {
                                   // top_k 8 * (2^61 + 1) wraps to 8.
                                   a.output_stride[1] = (int64_t(1) << 61) + 1;
                                   a.output_stride[0] = 8;
                                 },
                                 {"output_stride", "top_k"}},
                      BadArgCase{"NegativeXStride",
                                 false,
                                 [](auto &a) { a.x_stride[0] = -2048; },
                                 {"x_stride[0] = -2048", ">= 0"}},
                      BadArgCase{"NegativeLoraBStride",
                                 false,
                                 [](auto &a) { a.lora_b_stride[1] = -16; },
                                 {"lora_b_stride[1] = -16"}},
                      BadArgCase{"NegativeOutputStrides",
                                 false,
                                 [](auto &a) {
                                   a.output_stride[1] = -2816;
                                   a.output_stride[0] = -2816 * 8;
                                 },
                                 {"output_stride[0]", ">= 0"}},
                      BadArgCase{"XStride1",
                                 false,
                                 [](auto &a) { a.x_stride[1] = 2; },
                                 {"x_stride[1]"}},
                      BadArgCase{"LoraAStride3",
                                 false,
                                 [](auto &a) { a.lora_a_stride[3] = 2; },
                                 {"lora_a_stride[3]"}},
                      BadArgCase{"LoraBStride3",
                                 false,
                                 [](auto &a) { a.lora_b_stride[3] = 0; },
                                 {"lora_b_stride[3]"}},
                      BadArgCase{"OddK",
                                 false,
                                 [](auto &a) {
                                   a.K = 2047;
                                   a.x_stride[0] = 2048;
                                 },
                                 {"K = 2047", "even"}},
                      BadArgCase{"OddRank",
                                 false,
                                 [](auto &a) { a.rank = 15; },
                                 {"rank = 15", "even"}},
                      BadArgCase{"XStride0NotVectorMultiple",
                                 false,
                                 [](auto &a) { a.x_stride[0] = 2052; },
                                 {"x_stride[0] = 2052", "multiple of 8"}},
                      BadArgCase{"LoraAStrideNotVectorMultiple",
                                 false,
                                 [](auto &a) { a.lora_a_stride[1] += 4; },
                                 {"lora_a_stride[1]", "multiple of 8"}},
                      BadArgCase{"LoraBStrideNotVectorMultiple",
                                 false,
                                 [](auto &a) { a.lora_b_stride[2] = 18; },
                                 {"lora_b_stride[2]", "multiple of 8"}},
                      BadArgCase{"MisalignedX",
                                 false,
                                 [](auto &a) { a.x = fakePtr(0x100008); },
                                 {"x:", "16-byte aligned"}},
                      BadArgCase{"MisalignedXSmallVector",
                                 false,
                                 [](auto &a) {
                                   // K = 2052: 4-element vectors, 8-byte
                                   // alignment.
                                   a.K = 2052;
                                   a.x_stride[0] = 2052;
                                   a.lora_a_stride[0] = int64_t(64) * 16 * 2052;
                                   a.lora_a_stride[1] = int64_t(16) * 2052;
                                   a.lora_a_stride[2] = 2052;
                                   a.x = fakePtr(0x100004);
                                 },
                                 {"x:", "8-byte aligned"}}),
    caseName);

TEST_F(CApiTest, NullArgs) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_plan plan;
  EXPECT_EQ(moelora_fused_moe_lora(rt, nullptr, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("args"));
  EXPECT_EQ(moelora_plan_fused(rt, nullptr, &plan),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("args"));
  EXPECT_EQ(moelora_shrink(rt, nullptr, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(moelora_expand(rt, nullptr, 0, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(moelora_workspace_bytes(nullptr), 0u);
  EXPECT_THAT(moelora_last_error(), HasSubstr("args"));
  moelora_fused_args a = naiveArgs();
  EXPECT_EQ(moelora_plan_fused(rt, &a, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("plan"));
}

TEST_F(CApiTest, PairCountOverflowIsRejected) {
  // num_tokens * top_k is computed in int (MoeLoraCall::numPairs): a product
  // past INT32_MAX must be rejected, not wrap into a negative pair count
  // that plans a garbage grid.
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = naiveArgs();
  a.num_tokens = 300000000;
  a.top_k = 8;
  moelora_plan plan;
  std::memset(&plan, 0, sizeof(plan));
  moelora_status s = moelora_plan_fused(rt, &a, &plan);
  EXPECT_EQ(s, MOELORA_ERROR_INVALID_ARGUMENT)
      << "planned path " << plan.path << " grid " << plan.launches[0].grid[0];
  EXPECT_THAT(lastError(),
              ::testing::AnyOf(HasSubstr("num_tokens"), HasSubstr("top_k")));
}

TEST_F(CApiTest, ExpandRejectsNegativeColumnOffset) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = naiveArgs();
  EXPECT_EQ(moelora_expand(rt, &a, -1, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("out_col_offset"));
}

TEST_F(CApiTest, LastErrorIsPerThreadAndClearedBySuccess) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args bad = naiveArgs();
  bad.top_k = 0;
  ASSERT_EQ(moelora_fused_moe_lora(rt, &bad, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  ASSERT_THAT(lastError(), HasSubstr("top_k"));
  std::string other = "unset";
  std::thread([&] { other = moelora_last_error(); }).join();
  EXPECT_EQ(other, "") << "another thread saw this thread's error";
  moelora_fused_args empty = naiveArgs(0);
  ASSERT_EQ(moelora_fused_moe_lora(rt, &empty, nullptr), MOELORA_OK);
  EXPECT_STREQ(moelora_last_error(), "");
}

//===----------------------------------------------------------------------===//
// Empty work and the no-driver case
//===----------------------------------------------------------------------===//

TEST_F(CApiTest, EmptyWorkIsOkWithoutLaunchOrGpu) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  std::vector<std::pair<const char *, moelora_fused_args>> cases;
  {
    // No tokens: nothing is read, so the pointers may all be NULL.
    moelora_fused_args a;
    moelora_fused_args_init(&a);
    a.num_tokens = 0;
    a.K = 2048;
    a.N = 1408;
    a.rank = 16;
    cases.push_back({"num_tokens 0, NULL pointers", a});
  }
  {
    moelora_fused_args a = naiveArgs();
    a.num_active_loras = 0;
    cases.push_back({"num_active_loras 0", a});
  }
  {
    moelora_fused_args a = naiveArgs();
    a.num_slices = 0;
    cases.push_back({"num_slices 0", a});
  }
  {
    moelora_fused_args a = naiveArgs();
    a.N = 0;
    cases.push_back({"N 0", a});
  }
  {
    moelora_fused_args a = sortedArgs(0);
    a.fully_sharded = 1;
    cases.push_back({"sorted, fully sharded, num_tokens 0", a});
  }
  // Empty torch tensors have data_ptr() == 0: every tensor of a call
  // without tokens may be NULL, on each path.
  auto nullTensors = [](moelora_fused_args a) {
    a.x = a.lora_a_ptrs = a.lora_b_ptrs = nullptr;
    a.output = a.workspace = nullptr;
    a.topk_weights = nullptr;
    a.topk_ids = a.sorted_token_ids = a.expert_ids = nullptr;
    a.num_tokens_post_padded = a.token_lora_mapping = nullptr;
    a.lora_ids = a.adapter_enabled = nullptr;
    return a;
  };
  {
    // Sorted by EM alone (vLLM's metadata buffers are not empty without
    // tokens, but a caller may pass empty ones).
    moelora_fused_args a = nullTensors(sortedArgs(0));
    cases.push_back({"sorted, num_tokens 0, NULL tensors", a});
    a.mul_routed_weight = 1;
    cases.push_back({"sorted, mul_routed_weight, num_tokens 0, NULL", a});
  }
  {
    moelora_fused_args a = nullTensors(naiveArgs(0, 256));
    cases.push_back({"two-kernel R 256, num_tokens 0, NULL tensors", a});
    a.fully_sharded = 1;
    cases.push_back({"fully sharded naive, num_tokens 0, NULL tensors", a});
  }
  {
    // Nothing to do with tokens: no workspace either (R 256 would need one).
    moelora_fused_args a = nullTensors(naiveArgs(64, 256));
    a.num_active_loras = 0;
    cases.push_back({"two-kernel, num_active_loras 0, NULL tensors", a});
  }
  for (auto &[what, a] : cases) {
    SCOPED_TRACE(what);
    EXPECT_EQ(moelora_fused_moe_lora(rt, &a, nullptr), MOELORA_OK)
        << lastError();
    EXPECT_STREQ(moelora_last_error(), "");
    EXPECT_EQ(moelora_shrink(rt, &a, nullptr), MOELORA_OK) << lastError();
    EXPECT_EQ(moelora_expand(rt, &a, 0, nullptr), MOELORA_OK) << lastError();
    EXPECT_EQ(moelora_expand(rt, &a, 64, nullptr), MOELORA_OK) << lastError();
    moelora_plan plan;
    ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    EXPECT_EQ(plan.path, MOELORA_PATH_NONE);
    EXPECT_EQ(plan.num_launches, 0);
    EXPECT_EQ(plan.workspace_bytes, 0u);
    EXPECT_EQ(moelora_workspace_bytes(&a), 0u);
    EXPECT_STREQ(moelora_last_error(), "");
    EXPECT_EQ(moelora_warmup(rt, &a, 1), MOELORA_OK) << lastError();
  }
  moelora_stats s = stats(rt);
  EXPECT_EQ(s.launches, 0u);
  EXPECT_EQ(s.jit_generations + s.misses + s.disk_hits + s.bundle_hits, 0u)
      << "empty work looked up a kernel";
}

TEST_F(CApiTest, ValidCallWithoutDriverIsNoDevice) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  struct Case {
    const char *what;
    moelora_fused_args args;
  } cases[] = {{"small batch", naiveArgs(1)},
               {"one-shot naive", naiveArgs(64)},
               {"one-shot sorted", sortedArgs(64)},
               {"two-kernel R=256", naiveArgs(64, 256)},
               {"fully sharded", [] {
                  moelora_fused_args a = sortedArgs(64);
                  a.fully_sharded = 1;
                  return a;
                }()}};
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    // The driver is checked before any kernel is looked up: NO_DEVICE even
    // though no bundle or generator could provide the kernel here.
    EXPECT_EQ(moelora_fused_moe_lora(rt, &c.args, nullptr),
              MOELORA_ERROR_NO_DEVICE)
        << lastError();
    EXPECT_THAT(lastError(), HasSubstr("driver"));
    EXPECT_THAT(lastError(), HasSubstr("libcuda"));
    EXPECT_EQ(moelora_shrink(rt, &c.args, nullptr), MOELORA_ERROR_NO_DEVICE)
        << lastError();
    EXPECT_EQ(moelora_expand(rt, &c.args, 0, nullptr), MOELORA_ERROR_NO_DEVICE)
        << lastError();
  }
  moelora_stats s = stats(rt);
  EXPECT_EQ(s.launches, 0u);
  EXPECT_EQ(s.misses, 0u);
}

TEST_F(CApiTest, ValidCallWithoutDriverIsNoDeviceEvenWithJit) {
  MOELORA_SKIP_WITH_DRIVER();
  FakeJit jit;
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = naiveArgs(64);
  EXPECT_EQ(moelora_fused_moe_lora(rt, &a, nullptr), MOELORA_ERROR_NO_DEVICE);
  EXPECT_THAT(lastError(), StartsWith("no CUDA driver"));
  EXPECT_EQ(stats(rt).launches, 0u);
}

/// In a fresh child process (death-test style "threadsafe" re-executes the
/// binary, so CudaDriver::get() has not run yet), loads the fake driver in
/// `mode`, then runs one valid fused call and exits with its status; the
/// message goes to stderr for the matcher.
void runWithFakeDriver(const char *mode) {
  ::setenv("MOELORA_FAKE_CUDA_MODE", mode, 1);
  if (!dlopen(MOELORA_FAKE_LIBCUDA, RTLD_NOW | RTLD_GLOBAL)) {
    std::fprintf(stderr, "cannot load the fake driver: %s\n", dlerror());
    std::_Exit(90);
  }
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  o.enable_disk_cache = 0; // the child writes nothing
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(&o, &rt) != MOELORA_OK) {
    std::fprintf(stderr, "create: %s\n", moelora_last_error());
    std::_Exit(91);
  }
  moelora_fused_args a = naiveArgs(64);
  moelora_status s = moelora_fused_moe_lora(rt, &a, nullptr);
  std::fprintf(stderr, "status %d: %s\n", int(s), moelora_last_error());
  std::fflush(stderr);
  std::_Exit(int(s));
}

/// In a child: the fake host-memory device whose GPCs fit `active` 16-block
/// clusters at once. A tuned small_batch entry asks for SPLIT_K 16; prints
/// the planned kernel's key to stderr and exits 0 (else the failing step).
void planSixteenBlockClusterOnFakeGpu(const char *active,
                                      const std::string &table) {
  ::setenv("MOELORA_FAKE_CUDA_MODE", "host-memory", 1);
  ::setenv("MOELORA_FAKE_ACTIVE_CLUSTERS", active, 1);
  if (!dlopen(MOELORA_FAKE_LIBCUDA, RTLD_NOW | RTLD_GLOBAL)) {
    std::fprintf(stderr, "cannot load the fake driver: %s\n", dlerror());
    std::_Exit(90);
  }
  FakeJit jit; // images without LLVM; the fake driver loads any text
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  o.enable_disk_cache = 0;
  o.tuned_table_path = table.c_str();
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(&o, &rt) != MOELORA_OK) {
    std::fprintf(stderr, "create: %s\n", moelora_last_error());
    std::_Exit(91);
  }
  // Decode (small_batch) and a sorted call (one_shot, whose cluster is its
  // row block's NPID programs).
  for (moelora_fused_args a : {naiveArgs(1), sortedArgs(64, 64)}) {
    moelora_plan plan;
    if (moelora_plan_fused(rt, &a, &plan) != MOELORA_OK) {
      std::fprintf(stderr, "plan: %s\n", moelora_last_error());
      std::_Exit(92);
    }
    std::fprintf(stderr, "path %d tuned %d npid %d grid %u key %s\n",
                 int(plan.path), plan.from_tuned_table, plan.npid,
                 plan.launches[0].grid[0], plan.launches[0].cache_key);
  }
  std::fflush(stderr);
  std::_Exit(0);
}

/// In a child: the fake host-memory device (132 SMs) fits `clusters`
/// clusters and, where `blocksPerSm` is set, that many blocks per SM. Loads
/// a persistent one-shot without a cluster, with 2-block clusters, and a
/// plain one; prints each one's resident programs and the grid a sorted
/// call over 3 lora slots gets, and exits 0 (else the failing step).
void residentProgramsOnFakeGpu(const char *clusters, const char *blocksPerSm) {
  ::setenv("MOELORA_FAKE_CUDA_MODE", "host-memory", 1);
  ::setenv("MOELORA_FAKE_ACTIVE_CLUSTERS", clusters, 1);
  if (blocksPerSm)
    ::setenv("MOELORA_FAKE_BLOCKS_PER_SM", blocksPerSm, 1);
  if (!dlopen(MOELORA_FAKE_LIBCUDA, RTLD_NOW | RTLD_GLOBAL))
    std::_Exit(90);
  auto drv = CudaDriver::get();
  if (!drv) {
    std::fprintf(stderr, "driver: %s\n", drv.error().message.c_str());
    std::_Exit(91);
  }
  CUcontext ctx = nullptr;
  (*drv)->cuDevicePrimaryCtxRetain(&ctx, 0);
  (*drv)->cuCtxSetCurrent(ctx);
  const MoeLoraCall c = test::call(256, 8, /*sorted=*/true, 64);
  for (int splitK : {1, 2, 0}) {
    KernelSpec s = test::spec(KernelFamily::OneShot, c, 64, 64, 4);
    s.splitK = std::max(1, splitK);
    s.persistent = splitK > 0;
    auto k = loadKernelFromPtx(**drv, s, "any text", 32768);
    if (!k) {
      std::fprintf(stderr, "load: %s\n", k.error().message.c_str());
      std::_Exit(92);
    }
    LaunchKnobs knobs;
    knobs.npid = s.splitK;
    knobs.persistentPrograms = k->residentPrograms;
    std::fprintf(stderr, "sk%d resident %ld grid %u;", splitK,
                 k->residentPrograms, launchGeometry(s, c, knobs).grid[0]);
  }
  std::fflush(stderr);
  std::_Exit(0);
}

/// In a child: the runtime's tensor maps for a two-slice tma_weights
/// one-shot (R 24, BLOCK_R 32) and a shrink (BLOCK_N 64), encoded through
/// the fake driver, which stores its arguments in the maps; prints them.
void encodeTensorMapsOnFakeGpu() {
  ::setenv("MOELORA_FAKE_CUDA_MODE", "host-memory", 1);
  if (!dlopen(MOELORA_FAKE_LIBCUDA, RTLD_NOW | RTLD_GLOBAL))
    std::_Exit(90);
  auto drv = CudaDriver::get();
  if (!drv) {
    std::fprintf(stderr, "driver: %s\n", drv.error().message.c_str());
    std::_Exit(91);
  }
  const void *bases[2] = {fakePtr(0x1000000), fakePtr(0x2000000)};
  MoeLoraCall c;
  c.dtype = DType::F16;
  c.K = 1000;
  c.rank = 24;
  c.numSlices = 2;
  c.numExperts = 5;
  c.maxLoras = 3;
  c.aStrideR = 1008; // padded rows
  c.aStrideE = 24 * 1008;
  c.aStrideL = 5 * 24 * 1008;
  c.loraAHostPtrs = bases;
  for (KernelFamily family : {KernelFamily::OneShot, KernelFamily::Shrink}) {
    KernelSpec s;
    s.family = family;
    s.dtype = DType::F16;
    s.rank = 24;
    s.blockM = 64;
    s.blockN = 64;
    s.blockK = 64;
    s.numSlices = 2;
    s.wgmma = true;
    s.tmaWeights = true;
    WeightTensorMaps maps;
    if (Status st = encodeWeightTensorMaps(**drv, s, c, maps); !st) {
      std::fprintf(stderr, "encode: %s\n", st.error().message.c_str());
      std::_Exit(92);
    }
    for (int m = 0; m < maps.count; ++m) {
      uint64_t v[16];
      std::memcpy(v, &maps.maps[m], sizeof(v));
      std::fprintf(stderr, "map%d", m);
      for (uint64_t x : v)
        std::fprintf(stderr, " %llx", (unsigned long long)x);
      std::fprintf(stderr, ";");
    }
  }
  MoeLoraCall unaligned = c;
  unaligned.aStrideR = 1004;
  KernelSpec s;
  s.wgmma = s.tmaWeights = true;
  WeightTensorMaps maps;
  Status st = encodeWeightTensorMaps(**drv, s, unaligned, maps);
  std::fprintf(stderr, "unaligned: %s\n",
               st ? "ok" : st.error().message.c_str());
  std::fflush(stderr);
  std::_Exit(0);
}

// The maps the launcher encodes: lora_a as (K, R, experts, adapters)
// innermost first, strides in bytes, a box of 64 columns by the weight
// tile's rows (one-shot: BLOCK_R 32; shrink: BLOCK_N 64), the 128-byte
// swizzle (3) and zeros outside (oob fill 0), per slice base; a call whose
// strides the copy engine cannot take is refused with a message.
TEST(CApiDeathTest, TensorMapsDescribeLoraA) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // type 6 = FLOAT16; dims 3e8 (1000) 18 (24) 5 3; strides 7e0 (1008 * 2)
  // bd00 3b100; box 40 (64) and the rows.
  const std::string fields = "3e8 18 5 3 7e0 bd00 3b100 40 ";
  EXPECT_EXIT(encodeTensorMapsOnFakeGpu(), ::testing::ExitedWithCode(0),
              "map0 6 4 1000000 " + fields + "20 1 1 3 0;map1 6 4 2000000 " +
                  fields + "20 1 1 3 0;map0 6 4 1000000 " + fields +
                  "40 1 1 3 0;map1 6 4 "
                  "2000000 " +
                  fields + "40 1 1 3 0;unaligned: .*16-byte aligned");
}

// A persistent kernel asks the driver at load time how many of its programs
// fit at once: blocks per SM times the SMs, or clusters times their
// blocks; 0 where the driver cannot say (the launcher then starts two per
// SM). Each of 3 lora slots gets a third, in whole clusters.
TEST(CApiDeathTest, PersistentKernelsAskForTheirResidentPrograms) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // (EM / 64) x NPID x 2 slices programs per slot: 95 x 2 (x 2 with
  // 2-block clusters).
  EXPECT_EXIT(residentProgramsOnFakeGpu("200", "3"),
              ::testing::ExitedWithCode(0),
              "sk1 resident 396 grid 132;sk2 resident 400 grid 132;"
              "sk0 resident 0 grid 190;");
  EXPECT_EXIT(residentProgramsOnFakeGpu("0", nullptr),
              ::testing::ExitedWithCode(0),
              "sk1 resident 0 grid 88;sk2 resident 0 grid 88;"
              "sk0 resident 0 grid 190;");
}

TEST(CApiDeathTest, SixteenBlockClusterFallsBackToEightWhereItFitsNowhere) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string table = ::testing::TempDir() + "/moelora-cluster16.json";
  writeText(table, R"({"format": "moelora-tuned", "version": 1,
    "gpu": "Fake GPU", "entries": [
      {"path": "small_batch", "dtype": "bf16", "rank": 16, "K": 2048,
       "N": 1408, "sorted": false, "num_slices": 2, "max_pairs": 8,
       "config": {"SPLIT_K": 16, "num_warps": 8}},
      {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048,
       "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 100000,
       "config": {"SPLIT_K": 16, "num_warps": 8}}]})");
  // Where 16 blocks fit, the entry is kept; where they fit nowhere (a GPU
  // with smaller GPCs, a MIG slice), 8-block clusters instead of a launch
  // that the driver would refuse. small_batch: 16 work items (8 pairs, 2
  // slices), one cluster each; one_shot: a cluster of NPID programs per row
  // block (71 row blocks, 2 slices).
  EXPECT_EXIT(planSixteenBlockClusterOnFakeGpu("3", table),
              ::testing::ExitedWithCode(0),
              "path 1 tuned 1 npid 0 grid 256 key small_batch;[^ ]*;SK=16;.*"
              "path 2 tuned 1 npid 16 grid 2272 key one_shot;[^ ]*;SK=16;");
  EXPECT_EXIT(planSixteenBlockClusterOnFakeGpu("0", table),
              ::testing::ExitedWithCode(0),
              "path 1 tuned 1 npid 0 grid 128 key small_batch;[^ ]*;SK=8;.*"
              "path 2 tuned 1 npid 8 grid 1136 key one_shot;[^ ]*;SK=8;");
}

TEST(CApiDeathTest, DriverWithoutDevicesIsNoDevice) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(runWithFakeDriver("zero-devices"),
              ::testing::ExitedWithCode(MOELORA_ERROR_NO_DEVICE),
              "no CUDA device");
}

TEST(CApiDeathTest, DriverWhoseInitFindsNoDeviceIsNoDevice) {
  // cuInit answers CUDA_ERROR_NO_DEVICE on a machine with a driver and no
  // visible GPU (CUDA_VISIBLE_DEVICES="", a container without devices):
  // moelora.h promises MOELORA_ERROR_NO_DEVICE ("no CUDA driver or device").
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(runWithFakeDriver("init-no-device"),
              ::testing::ExitedWithCode(MOELORA_ERROR_NO_DEVICE),
              "CUDA_ERROR_NO_DEVICE");
}

//===----------------------------------------------------------------------===//
// Plans
//===----------------------------------------------------------------------===//

/// The plan the dispatcher makes for `a` on the runtime's fallback device.
DispatchPlan expectedPlan(const moelora_fused_args &a) {
  auto p =
      planFusedMoeLora(shapeOf(a), a.fully_sharded != 0, DeviceInfo{}, nullptr);
  EXPECT_TRUE(p) << p.error().message;
  return p ? *p : DispatchPlan{};
}

void expectLaunchMatches(const moelora_kernel_launch &l, const PlannedKernel &k,
                         const moelora_fused_args &a) {
  EXPECT_EQ(std::string(l.cache_key), k.spec.cacheKey());
  EXPECT_EQ(std::string(l.entry), k.spec.entryName());
  MoeLoraCall c = shapeOf(a);
  LaunchGeometry g = launchGeometry(k.spec, c, k.knobs);
  EXPECT_EQ(l.grid[0], g.grid[0]);
  EXPECT_EQ(l.grid[1], g.grid[1]);
  EXPECT_EQ(l.grid[2], g.grid[2]);
  EXPECT_EQ(l.block, unsigned(k.spec.launchThreads()));
  EXPECT_GT(l.grid[0], 0u);
}

/// Shapes at the edges of what the kernels tile: each is valid work that
/// plans like the dispatcher says (the GPU suite checks their results).
TEST_F(CApiTest, DegenerateShapesArePlanned) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  /// `a` with every A/B/x stride recomputed for its K, N, rank, E and
  /// max_loras (contiguous tensors) and the output's for top_k, slices, N.
  auto contiguous = [](moelora_fused_args a) {
    const int64_t E = a.num_experts, K = a.K, N = a.N, R = a.rank;
    a.x_stride[0] = K;
    a.lora_a_stride[0] = E * R * K;
    a.lora_a_stride[1] = R * K;
    a.lora_a_stride[2] = K;
    a.lora_b_stride[0] = E * N * R;
    a.lora_b_stride[1] = N * R;
    a.lora_b_stride[2] = R;
    a.output_stride[1] = int64_t(a.num_slices) * N;
    a.output_stride[0] = a.top_k * a.output_stride[1];
    return a;
  };
  struct Case {
    std::string what;
    moelora_fused_args args;
  };
  std::vector<Case> cases;
  for (int path = 0; path < 4; ++path) {
    // small batch (naive, 1 token), one-shot naive, one-shot sorted,
    // two-kernel (fully sharded, sorted).
    const char *pathName[] = {"small batch", "one-shot naive",
                              "one-shot sorted", "two-kernel"};
    auto base = [&](moelora_fused_args a) {
      if (path == 2 || path == 3) {
        a.topk_ids = nullptr;
        a.sorted_token_ids = fakePtr<const int32_t>(0xb00000);
        a.expert_ids = fakePtr<const int32_t>(0xc00000);
        a.num_tokens_post_padded = fakePtr<const int32_t>(0xd00000);
        a.block_size_m = 16;
        a.EM = moelora_align_capacity(a.num_tokens, a.top_k, a.num_experts, 16);
      }
      a.fully_sharded = path == 3;
      return contiguous(a);
    };
    const int tokens = path == 0 ? 1 : 64;
    auto add = [&](const std::string &what, moelora_fused_args a) {
      cases.push_back({std::string(pathName[path]) + ": " + what, base(a)});
    };
    moelora_fused_args a = naiveArgs(tokens);
    a.max_loras = 1;
    a.num_active_loras = 1;
    add("max_loras 1", a);
    a.num_active_loras = 2; // lora_ids has max_loras + 1 entries
    add("max_loras 1, num_active_loras 2", a);
    a = naiveArgs(tokens);
    a.top_k = 1;
    add("top_k 1", a);
    a = naiveArgs(tokens);
    a.num_experts = 1;
    add("one expert", a);
    a = naiveArgs(tokens);
    a.K = 16; // below every BLOCK_K
    add("K 16", a);
    a.K = 2;
    add("K 2", a);
    a = naiveArgs(tokens);
    a.N = 8; // below every BLOCK_N
    add("N 8", a);
    a.N = 1;
    add("N 1", a);
    a = naiveArgs(tokens);
    a.rank = 2;
    add("rank 2", a);
    a = naiveArgs(tokens);
    a.num_slices = 1;
    a.num_experts = 1;
    a.max_loras = 1;
    a.num_active_loras = 1;
    a.top_k = 1;
    a.K = 8;
    a.N = 8;
    add("everything minimal", a);
  }
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    const moelora_fused_args &a = c.args;
    moelora_plan plan;
    ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    DispatchPlan want = expectedPlan(a);
    EXPECT_EQ(int(plan.path), int(want.path));
    EXPECT_NE(plan.path, MOELORA_PATH_NONE);
    ASSERT_EQ(plan.num_launches, int(want.kernels.size()));
    for (int i = 0; i < plan.num_launches; ++i)
      expectLaunchMatches(plan.launches[i], want.kernels[size_t(i)], a);
    if (want.path == DispatchPath::TwoKernel) {
      EXPECT_EQ(moelora_workspace_bytes(&a), want.workspaceBytes);
    }
    // Valid: without a driver the launch entry points get as far as the
    // device.
    EXPECT_EQ(moelora_fused_moe_lora(rt, &a, nullptr), MOELORA_ERROR_NO_DEVICE)
        << lastError();
  }
}

TEST_F(CApiTest, PlanSmallBatch) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = naiveArgs(1);
  moelora_plan plan;
  ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
  EXPECT_EQ(plan.path, MOELORA_PATH_SMALL_BATCH);
  ASSERT_EQ(plan.num_launches, 1);
  DispatchPlan want = expectedPlan(a);
  ASSERT_EQ(want.kernels.size(), 1u);
  expectLaunchMatches(plan.launches[0], want.kernels[0], a);
  EXPECT_THAT(plan.launches[0].entry, StartsWith("moelora_small_batch_bf16"));
  EXPECT_THAT(plan.launches[0].cache_key, StartsWith("small_batch;bf16;sm_90"));
  // 16 items of 22 tiles on the fallback 132 SMs (sm_90): 8-block
  // clusters, one chunk of 22 tiles per item.
  EXPECT_EQ(plan.tiles_per_item, 22);
  EXPECT_EQ(plan.launches[0].grid[0], 128u);
  EXPECT_EQ(plan.workspace_bytes, 0u);
  EXPECT_EQ(plan.from_tuned_table, 0);
  // No generator and no bundle: the plan still works, without shared bytes.
  EXPECT_EQ(plan.launches[0].shared_bytes, 0u);
}

TEST_F(CApiTest, PlanOneShotNaiveAndSorted) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  for (bool sorted : {false, true})
    for (int tokens : {33, 64, 1024}) { // naive R 16: one-shot from 33
      SCOPED_TRACE(::testing::Message()
                   << "sorted=" << sorted << " tokens=" << tokens);
      moelora_fused_args a =
          sorted ? sortedArgs(tokens, 32) : naiveArgs(tokens);
      moelora_plan plan;
      ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
      EXPECT_EQ(plan.path, MOELORA_PATH_ONE_SHOT);
      ASSERT_EQ(plan.num_launches, 1);
      DispatchPlan want = expectedPlan(a);
      ASSERT_EQ(want.kernels.size(), 1u);
      expectLaunchMatches(plan.launches[0], want.kernels[0], a);
      EXPECT_EQ(plan.npid, want.kernels[0].knobs.npid);
      EXPECT_GE(plan.npid, 1);
      unsigned mBlocks = sorted ? unsigned(a.EM / 32) : unsigned(tokens * 8);
      EXPECT_EQ(plan.launches[0].grid[0], mBlocks * plan.npid * 2);
      EXPECT_EQ(plan.launches[0].grid[1], 1u);
      EXPECT_EQ(plan.launches[0].grid[2], sorted ? 4u : 1u);
      EXPECT_EQ(plan.launches[0].block, plan.npid > 1 ? 256u : 128u);
      EXPECT_THAT(plan.launches[0].cache_key,
                  HasSubstr(sorted ? "sorted=1" : "sorted=0"));
    }
}

TEST_F(CApiTest, PlanTwoKernel) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  for (int variant = 0; variant < 2; ++variant) {
    moelora_fused_args a = variant == 0 ? sortedArgs(64) : naiveArgs(64, 256);
    if (variant == 0)
      a.fully_sharded = 1;
    SCOPED_TRACE(variant == 0 ? "fully sharded" : "R = 256");
    moelora_plan plan;
    ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
    EXPECT_EQ(plan.path, MOELORA_PATH_TWO_KERNEL);
    ASSERT_EQ(plan.num_launches, 2);
    DispatchPlan want = expectedPlan(a);
    ASSERT_EQ(want.kernels.size(), 2u);
    expectLaunchMatches(plan.launches[0], want.kernels[0], a);
    expectLaunchMatches(plan.launches[1], want.kernels[1], a);
    EXPECT_THAT(plan.launches[0].cache_key, StartsWith("shrink;"));
    EXPECT_THAT(plan.launches[1].cache_key, StartsWith("expand;"));
    // The expand's programs per row block, as the dispatcher chose them.
    EXPECT_EQ(plan.npid, want.kernels[1].knobs.npid);
    EXPECT_GE(plan.npid, 1);
    size_t bytes = size_t(a.num_slices) * a.num_tokens * a.top_k * a.rank * 2;
    EXPECT_EQ(plan.workspace_bytes, bytes);
    EXPECT_EQ(moelora_workspace_bytes(&a), bytes);
    EXPECT_STREQ(moelora_last_error(), "");
  }
}

TEST_F(CApiTest, PlanReportsSharedBytesWhenTheImageResolves) {
  MOELORA_SKIP_WITH_DRIVER();
  FakeJit jit;
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = sortedArgs(64);
  a.fully_sharded = 1;
  moelora_plan plan;
  ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
  DispatchPlan want = expectedPlan(a);
  ASSERT_EQ(want.kernels.size(), 2u);
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(plan.launches[i].shared_bytes,
              uint32_t(fakeImage(want.kernels[i].spec).sharedBytes));
  EXPECT_EQ(jit.calls(), 2);
  moelora_stats s = stats(rt);
  EXPECT_EQ(s.jit_generations, 2u);
  EXPECT_GE(s.jit_ms_total, 0.0);
  // Planning again: memory hits, no generation.
  ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK);
  EXPECT_EQ(jit.calls(), 2);
  EXPECT_EQ(stats(rt).memory_hits, 2u);
}

TEST_F(CApiTest, PlanUsesTheTunedTable) {
  MOELORA_SKIP_WITH_DRIVER();
  // Without a GPU the runtime plans for its fallback device ("unknown").
  moelora_fused_args a = sortedArgs(64);
  std::string table = dir / "tuned.json";
  writeText(table, R"({"format": "moelora-tuned", "version": 1,
    "gpu": "unknown", "entries": [
      {"path": "one_shot", "dtype": "bf16", "rank": 16, "K": 2048,
       "N": 1408, "sorted": true, "num_slices": 2, "max_pairs": 4096,
       "config": {"BLOCK_SIZE_N": 64, "num_warps": 8, "NPID": 3}}]})");
  moelora_runtime_options o = options();
  o.tuned_table_path = table.c_str();
  moelora_runtime *rt = create(o);
  ASSERT_NE(rt, nullptr);
  moelora_plan plan;
  ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
  EXPECT_EQ(plan.path, MOELORA_PATH_ONE_SHOT);
  EXPECT_EQ(plan.from_tuned_table, 1);
  EXPECT_EQ(plan.npid, 3);
  EXPECT_THAT(plan.launches[0].cache_key, HasSubstr("BN=64"));
  EXPECT_EQ(plan.launches[0].block, 256u);
  EXPECT_EQ(plan.launches[0].grid[0], unsigned(a.EM / 16 * 3 * 2));
}

TEST_F(CApiTest, PlanErrorsForBadTunedTable) {
  std::string table = dir / "bad.json";
  writeText(table, R"({"format": "moelora-tuned", "gpu": "x",
    "entries": [{"path": "one_shot", "dtype": "int8"}]})");
  moelora_runtime_options o = options();
  o.tuned_table_path = table.c_str();
  moelora_runtime *rt = nullptr;
  EXPECT_NE(moelora_runtime_create(&o, &rt), MOELORA_OK);
  EXPECT_EQ(rt, nullptr);
  EXPECT_THAT(lastError(), HasSubstr(table));
  EXPECT_THAT(lastError(), HasSubstr("dtype"));
}

//===----------------------------------------------------------------------===//
// Warm-up, bundles through the C ABI
//===----------------------------------------------------------------------===//

TEST_F(CApiTest, WarmupGeneratesEveryVariantOnce) {
  MOELORA_SKIP_WITH_DRIVER();
  FakeJit jit;
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  // Shapes only: pointers may be NULL.
  moelora_fused_args calls[2];
  moelora_fused_args_init(&calls[0]);
  calls[0].num_tokens = 64;
  calls[0].top_k = 8;
  calls[0].num_experts = 64;
  calls[0].K = 2048;
  calls[0].N = 1408;
  calls[0].rank = 16;
  calls[0].num_slices = 2;
  calls[0].max_loras = 4;
  calls[0].num_active_loras = 4;
  calls[0].block_size_m = 16;
  calls[0].EM = moelora_align_capacity(64, 8, 64, 16); // sorted
  calls[1] = calls[0];
  calls[1].EM = 0; // naive, 512 pairs: one-shot
  ASSERT_EQ(moelora_warmup(rt, calls, 2), MOELORA_OK) << lastError();
  // sorted one-shot + align_block_size + naive one-shot.
  EXPECT_EQ(jit.calls(), 3);
  EXPECT_EQ(stats(rt).jit_generations, 3u);
  ASSERT_EQ(moelora_warmup(rt, calls, 2), MOELORA_OK) << lastError();
  EXPECT_EQ(jit.calls(), 3);
  EXPECT_EQ(stats(rt).memory_hits, 3u);
  // The variants are on disk for the next process.
  size_t files = 0;
  for (const auto &e : fs::directory_iterator(cacheDir))
    files += e.path().extension() == ".ptx";
  EXPECT_EQ(files, 3u);
  EXPECT_EQ(moelora_warmup(rt, nullptr, 0), MOELORA_OK);
}

// A caller built before lora_a_host_ptrs was appended passes an array of
// its smaller structs: each element is read at its own size (the second
// call's rank 0 is found in calls[1], not 8 bytes off).
TEST_F(CApiTest, WarmupReadsAnArrayOfTheCallersStructSize) {
  MOELORA_SKIP_WITH_DRIVER();
  FakeJit jit;
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  constexpr size_t kOld = offsetof(moelora_fused_args, lora_a_host_ptrs);
  std::vector<char> bytes(2 * kOld);
  moelora_fused_args a = naiveArgs(64);
  a.struct_size = kOld;
  std::memcpy(bytes.data(), &a, kOld);
  std::memcpy(bytes.data() + kOld, &a, kOld);
  const auto *calls =
      reinterpret_cast<const moelora_fused_args *>(bytes.data());
  ASSERT_EQ(moelora_warmup(rt, calls, 2), MOELORA_OK) << lastError();
  EXPECT_EQ(jit.calls(), 1); // the same variant twice
  moelora_fused_args bad = a;
  bad.rank = 0;
  std::memcpy(bytes.data() + kOld, &bad, kOld);
  EXPECT_EQ(moelora_warmup(rt, calls, 2), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("calls[1]: rank = 0"));
  // Smaller than the first release's struct: refused at calls[0].
  a.struct_size = kOld - 8;
  std::memcpy(bytes.data(), &a, sizeof(a.struct_size));
  EXPECT_EQ(moelora_warmup(rt, calls, 2), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("calls[0]: args.struct_size"));
}

TEST_F(CApiTest, WarmupWithoutGeneratorIsNotFound) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_fused_args a = naiveArgs(64);
  EXPECT_EQ(moelora_warmup(rt, &a, 1), MOELORA_ERROR_NOT_FOUND);
  EXPECT_THAT(lastError(), HasSubstr("kernel variant not found"));
  EXPECT_THAT(lastError(),
              HasSubstr(expectedPlan(a).kernels[0].spec.cacheKey()));
  EXPECT_EQ(stats(rt).misses, 1u);

  moelora_runtime_options o = options();
  o.enable_jit = 0;
  FakeJit jit; // registered, but this runtime has JIT off
  moelora_runtime *off = create(o);
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(moelora_warmup(off, &a, 1), MOELORA_ERROR_NOT_FOUND);
  EXPECT_THAT(lastError(), HasSubstr("JIT is off"));
  EXPECT_EQ(jit.calls(), 0);
}

TEST_F(CApiTest, WarmupRejectsBadArguments) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(moelora_warmup(rt, nullptr, 1), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("calls"));
  moelora_fused_args a[2] = {naiveArgs(), naiveArgs()};
  EXPECT_EQ(moelora_warmup(rt, a, -1), MOELORA_ERROR_INVALID_ARGUMENT);
  a[1].rank = 0;
  EXPECT_EQ(moelora_warmup(rt, a, 2), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("calls[1]"));
  EXPECT_THAT(lastError(), HasSubstr("rank"));
  a[1] = sortedArgs();
  a[1].block_size_m = 24;
  EXPECT_EQ(moelora_warmup(rt, a, 2), MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("shrink_block_size_m"));
}

TEST(CApiDeathTest, WarmupOfSortedCallWithoutCapacityIsNotACrash) {
  // moelora_warmup validates shapes only; a sorted call (sorted_token_ids
  // set) with EM = 0 reaches the dispatcher, whose NPID rule divides by the
  // number of programs (EM / BLOCK_M * ...). Run in a child process so a
  // SIGFPE does not take the suite down.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        FakeJit jit;
        moelora_runtime_options o;
        moelora_runtime_options_init(&o);
        o.enable_disk_cache = 0; // the child writes nothing
        moelora_runtime *rt = nullptr;
        if (moelora_runtime_create(&o, &rt) != MOELORA_OK)
          std::exit(2);
        moelora_fused_args a = sortedArgs(4);
        a.EM = 0;
        moelora_status s = moelora_warmup(rt, &a, 1);
        (void)s; // any status: it must return
        moelora_runtime_destroy(rt);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_F(CApiTest, BundleServesPlansWithJitOff) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_fused_args a = naiveArgs(1);
  DispatchPlan want = expectedPlan(a);
  ASSERT_EQ(want.kernels.size(), 1u);
  const KernelSpec &spec = want.kernels[0].spec;
  KernelImage img = fakeImage(spec);
  std::string bundle = dir / "bundle";
  fs::create_directories(bundle);
  writeText(bundle + "/k.ptx", img.ptx);
  writeText(bundle + "/k.json",
            nlohmann::json{{"cache_key", spec.cacheKey()},
                           {"content_hash", img.contentHash},
                           {"shared_bytes", 12345},
                           {"threads", img.threads}}
                .dump());
  writeText(
      bundle + "/manifest.json",
      nlohmann::json{{"format", "moelora-bundle"},
                     {"version", 1},
                     {"kernels", nlohmann::json::array({nlohmann::json{
                                     {"cache_key", spec.cacheKey()},
                                     {"entry", spec.entryName()},
                                     {"ptx", "k.ptx"},
                                     {"json", "k.json"},
                                     {"content_hash", img.contentHash}}})}}
          .dump());
  moelora_runtime_options o = options();
  o.enable_jit = 0;
  o.enable_disk_cache = 0;
  const char *paths[] = {bundle.c_str()};
  o.bundle_paths = paths;
  o.num_bundle_paths = 1;
  moelora_runtime *rt = create(o);
  ASSERT_NE(rt, nullptr);
  moelora_plan plan;
  ASSERT_EQ(moelora_plan_fused(rt, &a, &plan), MOELORA_OK) << lastError();
  EXPECT_EQ(plan.launches[0].shared_bytes, 12345u);
  moelora_stats s = stats(rt);
  EXPECT_EQ(s.bundle_hits, 1u);
  EXPECT_EQ(s.jit_generations, 0u);
  EXPECT_EQ(moelora_warmup(rt, &a, 1), MOELORA_OK) << lastError();
  EXPECT_FALSE(fs::exists(cacheDir)) << "disk cache off, yet it was written";
}

//===----------------------------------------------------------------------===//
// align_block_size
//===----------------------------------------------------------------------===//

TEST_F(CApiTest, AlignCapacityMatchesFormula) {
  for (int tokens : {0, 1, 7, 64, 1000, 8192})
    for (int topK : {1, 2, 8})
      for (int experts : {1, 8, 64, 256})
        for (int bm : {16, 32, 64, 128}) {
          int64_t n = int64_t(tokens) * topK + int64_t(experts) * (bm - 1);
          int64_t em = (n + bm - 1) / bm * bm;
          ASSERT_EQ(moelora_align_capacity(tokens, topK, experts, bm), em)
              << tokens << " " << topK << " " << experts << " " << bm;
          ASSERT_EQ(em % bm, 0);
        }
  EXPECT_EQ(moelora_align_capacity(10, 8, 64, 0), 0);
  EXPECT_EQ(moelora_align_capacity(10, 8, 64, -16), 0);
}

moelora_align_args validAlign() {
  moelora_align_args g;
  moelora_align_args_init(&g);
  g.topk_ids = fakePtr<const int32_t>(0x10000);
  g.token_lora_mapping = fakePtr<const int32_t>(0x20000);
  g.sorted_token_ids = fakePtr<int32_t>(0x30000);
  g.expert_ids = fakePtr<int32_t>(0x40000);
  g.num_tokens_post_padded = fakePtr<int32_t>(0x50000);
  g.num_tokens = 64;
  g.top_k = 8;
  g.num_experts = 64;
  g.max_loras = 4;
  g.block_size_m = 16;
  g.EM = moelora_align_capacity(64, 8, 64, 16);
  return g;
}

TEST_F(CApiTest, AlignRejectsBadArguments) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(moelora_align_block_size(rt, nullptr, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("args"));

  struct Case {
    const char *what;
    std::function<void(moelora_align_args &)> mutate;
    std::vector<const char *> mentions;
  } cases[] = {
      {"struct_size", [](auto &g) { g.struct_size = 4; }, {"struct_size"}},
      {"block_size_m 12",
       [](auto &g) { g.block_size_m = 12; },
       {"block_size_m = 12"}},
      {"block_size_m 512",
       [](auto &g) {
         g.block_size_m = 512;
         g.EM = moelora_align_capacity(64, 8, 64, 512);
       },
       {"block_size_m = 512", "16..256"}},
      {"block_size_m 8",
       [](auto &g) {
         g.block_size_m = 8;
         g.EM = moelora_align_capacity(64, 8, 64, 8);
       },
       {"block_size_m = 8"}},
      {"EM mismatch", [](auto &g) { g.EM += 16; }, {"EM", "capacity"}},
      {"EM for another block size",
       [](auto &g) { g.EM = moelora_align_capacity(64, 8, 64, 32); },
       {"EM"}},
      {"num_tokens", [](auto &g) { g.num_tokens = -1; }, {"num_tokens"}},
      {"top_k", [](auto &g) { g.top_k = 0; }, {"top_k"}},
      {"max_loras", [](auto &g) { g.max_loras = 0; }, {"max_loras"}},
      {"num_experts",
       [](auto &g) { g.num_experts = 2048; },
       {"num_experts = 2048"}},
      {"topk_ids", [](auto &g) { g.topk_ids = nullptr; }, {"topk_ids", "NULL"}},
      {"token_lora_mapping",
       [](auto &g) { g.token_lora_mapping = nullptr; },
       {"token_lora_mapping", "NULL"}},
      {"sorted_token_ids",
       [](auto &g) { g.sorted_token_ids = nullptr; },
       {"sorted_token_ids", "NULL"}},
      {"expert_ids",
       [](auto &g) { g.expert_ids = nullptr; },
       {"expert_ids", "NULL"}},
      {"num_tokens_post_padded",
       [](auto &g) { g.num_tokens_post_padded = nullptr; },
       {"num_tokens_post_padded", "NULL"}},
  };
  for (const Case &c : cases) {
    SCOPED_TRACE(c.what);
    moelora_align_args g = validAlign();
    c.mutate(g);
    EXPECT_EQ(moelora_align_block_size(rt, &g, nullptr),
              MOELORA_ERROR_INVALID_ARGUMENT)
        << lastError();
    for (const char *m : c.mentions)
      EXPECT_THAT(lastError(), HasSubstr(m));
  }
  EXPECT_EQ(stats(rt).launches, 0u);
}

TEST_F(CApiTest, ValidAlignWithoutDriverIsNoDevice) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_align_args g = validAlign();
  EXPECT_EQ(moelora_align_block_size(rt, &g, nullptr), MOELORA_ERROR_NO_DEVICE)
      << lastError();
  EXPECT_THAT(lastError(), HasSubstr("driver"));
  EXPECT_EQ(stats(rt).launches, 0u);
}

/// An align call without tokens, as torch passes it: the inputs are empty
/// tensors (data_ptr() == 0), the outputs are not (EM >= num_experts'
/// padding).
moelora_align_args emptyAlign() {
  moelora_align_args g = validAlign();
  g.num_tokens = 0;
  g.topk_ids = nullptr;
  g.token_lora_mapping = nullptr;
  g.EM = moelora_align_capacity(0, g.top_k, g.num_experts, g.block_size_m);
  return g;
}

TEST_F(CApiTest, AlignWithoutTokensNeedsNoInputs) {
  MOELORA_SKIP_WITH_DRIVER();
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_align_args g = emptyAlign();
  EXPECT_EQ(g.EM, 64 * 15); // num_experts * (BLOCK_M - 1), a multiple of 16
  // Valid: it gets as far as the device (it writes the outputs).
  EXPECT_EQ(moelora_align_block_size(rt, &g, nullptr), MOELORA_ERROR_NO_DEVICE)
      << lastError();
  EXPECT_THAT(lastError(), HasSubstr("driver"));
  // The outputs are still needed, and the capacity still checked.
  for (auto mutate : std::vector<std::function<void(moelora_align_args &)>>{
           [](auto &g) { g.sorted_token_ids = nullptr; },
           [](auto &g) { g.expert_ids = nullptr; },
           [](auto &g) { g.num_tokens_post_padded = nullptr; },
           [](auto &g) { g.EM = 0; }}) {
    moelora_align_args bad = emptyAlign();
    mutate(bad);
    EXPECT_EQ(moelora_align_block_size(rt, &bad, nullptr),
              MOELORA_ERROR_INVALID_ARGUMENT);
  }
  EXPECT_EQ(stats(rt).launches, 0u);
  EXPECT_EQ(stats(rt).misses, 0u) << "empty align looked up a kernel";
}

TEST_F(CApiTest, AlignRejectsAPairCountPastInt32) {
  moelora_runtime *rt = create();
  ASSERT_NE(rt, nullptr);
  moelora_align_args g = validAlign();
  g.num_tokens = 300000000;
  g.top_k = 8;
  g.EM = 0; // moelora_align_capacity cannot say it either
  EXPECT_EQ(moelora_align_capacity(g.num_tokens, g.top_k, g.num_experts, 16),
            0);
  EXPECT_EQ(moelora_align_block_size(rt, &g, nullptr),
            MOELORA_ERROR_INVALID_ARGUMENT);
  EXPECT_THAT(lastError(), HasSubstr("num_tokens * top_k = 2400000000"));
}

/// In a child: the fake driver's host-memory device, on which memsets write
/// host arrays. An align call without tokens must write what the kernel
/// (and the reference) writes for zero pairs; fused calls without work must
/// not launch (launches fail on this device). Exits 0 when all is right,
/// else prints what was wrong.
void alignWithoutTokensOnHostMemoryDevice() {
  ::setenv("MOELORA_FAKE_CUDA_MODE", "host-memory", 1);
  if (!dlopen(MOELORA_FAKE_LIBCUDA, RTLD_NOW | RTLD_GLOBAL)) {
    std::fprintf(stderr, "cannot load the fake driver: %s\n", dlerror());
    std::_Exit(90);
  }
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  o.enable_disk_cache = 0;
  o.enable_jit = 0;
  o.tuned_table_path = "";
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(&o, &rt) != MOELORA_OK) {
    std::fprintf(stderr, "create: %s\n", moelora_last_error());
    std::_Exit(91);
  }
  int failures = 0;
  auto expect = [&](bool ok, const std::string &what) {
    if (!ok) {
      std::fprintf(stderr, "FAIL %s\n", what.c_str());
      ++failures;
    }
  };
  for (int bm : {16, 64}) {
    moelora_align_args g = emptyAlign();
    g.block_size_m = bm;
    g.EM = moelora_align_capacity(0, g.top_k, g.num_experts, bm);
    const size_t rows = size_t(g.max_loras), em = size_t(g.EM),
                 blocks = em / size_t(bm);
    // Guard words around each output: nothing past its end is written.
    std::vector<int32_t> sorted(rows * em + 1, 12345),
        experts(rows * blocks + 1, 12345), post(rows + 1, 12345);
    g.sorted_token_ids = sorted.data();
    g.expert_ids = experts.data();
    g.num_tokens_post_padded = post.data();
    moelora_status s = moelora_align_block_size(rt, &g, nullptr);
    const std::string at = "bm " + std::to_string(bm) + ": ";
    expect(s == MOELORA_OK, at + "status " + std::to_string(int(s)) + ": " +
                                moelora_last_error());
    // The reference for zero pairs (sorted: the pad value 0).
    AlignBlockSizeResult want = referenceAlignBlockSize(
        {}, {}, 0, g.top_k, g.num_experts, g.max_loras, bm);
    expect(want.EM == g.EM, "reference EM");
    expect(std::equal(want.sortedTokenIds.begin(), want.sortedTokenIds.end(),
                      sorted.begin()),
           at + "sorted_token_ids");
    expect(std::equal(want.expertIds.begin(), want.expertIds.end(),
                      experts.begin()),
           at + "expert_ids");
    expect(std::equal(want.numTokensPostPadded.begin(),
                      want.numTokensPostPadded.end(), post.begin()),
           at + "num_tokens_post_padded");
    expect(sorted.back() == 12345 && experts.back() == 12345 &&
               post.back() == 12345,
           at + "wrote past an output");
  }
  // Fused calls without work: OK, no launch, no kernel looked up (JIT off
  // and no bundle: a lookup would fail).
  moelora_fused_args empty = naiveArgs(0);
  empty.x = empty.output = nullptr;
  empty.topk_ids = nullptr;
  for (int sharded : {0, 1}) {
    empty.fully_sharded = sharded;
    expect(moelora_fused_moe_lora(rt, &empty, nullptr) == MOELORA_OK,
           std::string("empty fused: ") + moelora_last_error());
    expect(moelora_shrink(rt, &empty, nullptr) == MOELORA_OK,
           std::string("empty shrink: ") + moelora_last_error());
    expect(moelora_expand(rt, &empty, 0, nullptr) == MOELORA_OK,
           std::string("empty expand: ") + moelora_last_error());
  }
  moelora_stats st;
  moelora_get_stats(rt, &st);
  expect(st.launches == 0 && st.misses == 0, "a launch or a lookup");
  moelora_runtime_destroy(rt);
  std::fflush(stderr);
  std::_Exit(failures ? 1 : 0);
}

TEST(CApiDeathTest, AlignWithoutTokensWritesTheEmptyMetadata) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(alignWithoutTokensOnHostMemoryDevice(),
              ::testing::ExitedWithCode(0), "");
}

} // namespace
