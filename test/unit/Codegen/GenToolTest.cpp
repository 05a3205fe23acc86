//===- GenToolTest.cpp - moelora-gen's command line and bundles -----------===//
//
// Runs the built tool as a user would: usage and input errors, the bundle it
// writes (manifest, PTX, metadata, hashes), --target / --ptx-version /
// --ptxas / --dump-ir / --strict, and that a failed run leaves no bundle
// behind (and keeps a previous one). ptxas is replaced by small scripts so
// that these tests do not need CUDA.
//
//===----------------------------------------------------------------------===//

#include "moelora/Spec/KernelAbi.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <regex>
#include <sstream>

#include <sys/wait.h>
#include <unistd.h>

using namespace moelora;
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kTool = MOELORA_BINARY_DIR "/tools/moelora-gen/moelora-gen";

const char *kOneShotSpec = R"(kernel: one_shot
dtype: bf16
target: sm_90
rank: 16
K: 2048
BLOCK_SIZE_M: 16
BLOCK_SIZE_N: 64
BLOCK_SIZE_K: 128
num_warps: 4
num_stages: 2
)";

const char *kTwoKernelSpec = R"(kernels:
  - kernel: one_shot
    dtype: bf16
    target: sm_90
    rank: 16
    K: 2048
    BLOCK_SIZE_M: 16
    BLOCK_SIZE_N: 64
    BLOCK_SIZE_K: 128
    num_warps: 4
    num_stages: 2
  - kernel: small_batch
    dtype: fp16
    target: sm_90
    rank: 8
    K: 1024
    BLOCK_SIZE_N: 64
    BLOCK_SIZE_K: 256
    num_warps: 4
    num_stages: 1
)";

/// Prints a ptxas -v report like the real one, for the stats parser.
const char *kFakePtxas = R"(#!/bin/sh
echo "ptxas info    : 0 bytes gmem"
echo "ptxas info    : Compiling entry function 'k' for 'sm_90'"
echo "ptxas info    : Function properties for k"
echo "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads"
echo "ptxas info    : Used 40 registers, used 1 barriers, 400 bytes cmem[0]"
)";

const char *kFailingPtxas = R"(#!/bin/sh
echo "ptxas fatal   : fake assembler refuses" >&2
exit 3
)";

std::string readFile(const fs::path &path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// A path as one shell word.
std::string q(const fs::path &path) {
  return fmt::format("'{}'", path.string());
}

std::string xxh3Hex(const std::string &text) {
  return fmt::format("{:016x}", XXH3_64bits(text.data(), text.size()));
}

struct ToolRun {
  int status = -1; ///< exit code; -1 when it did not exit normally
  std::string out, err;
};

class GenToolTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (access(kTool.c_str(), X_OK) != 0)
      GTEST_SKIP() << kTool << " is not built";
    dir = fs::temp_directory_path() /
          fmt::format(
              "moelora-gentool-{}-{}", getpid(),
              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!dir.empty())
      fs::remove_all(dir);
  }

  fs::path write(const std::string &name, const std::string &text,
                 bool executable = false) {
    fs::path p = dir / name;
    std::ofstream(p) << text;
    if (executable)
      fs::permissions(p, fs::perms::owner_all, fs::perm_options::add);
    return p;
  }

  /// Runs the tool with `args` (a shell word list) and `env` assignments;
  /// stdout and stderr are kept apart to check what goes where.
  ToolRun run(const std::string &args, const std::string &env = "") {
    std::string cmd =
        fmt::format("{} '{}' {} >'{}' 2>'{}'", env, kTool, args,
                    (dir / "stdout").string(), (dir / "stderr").string());
    int status = std::system(cmd.c_str());
    ToolRun r;
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = readFile(dir / "stdout");
    r.err = readFile(dir / "stderr");
    return r;
  }

  /// No `<out>.tmp-*` / `<out>.old-*` directory left next to the output.
  void expectNoLeftovers() {
    for (const auto &e : fs::directory_iterator(dir)) {
      std::string name = e.path().filename().string();
      EXPECT_THAT(name, Not(HasSubstr(".tmp-"))) << "left behind";
      EXPECT_THAT(name, Not(HasSubstr(".old-"))) << "left behind";
    }
  }

  fs::path dir;
};

//===----------------------------------------------------------------------===//
// Command line and input errors
//===----------------------------------------------------------------------===//

TEST_F(GenToolTest, NoArgumentsPrintsUsage) {
  ToolRun r = run("");
  EXPECT_NE(r.status, 0);
  EXPECT_THAT(r.err, HasSubstr("Usage:"));
  EXPECT_THAT(r.err, HasSubstr("--output"));
  EXPECT_THAT(r.err, HasSubstr("--ptxas"));
}

TEST_F(GenToolTest, HelpGoesToStdoutAndSucceeds) {
  ToolRun r = run("--help");
  EXPECT_EQ(r.status, 0);
  EXPECT_THAT(r.out, HasSubstr("Usage:"));
}

TEST_F(GenToolTest, MissingOutputIsAnError) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  ToolRun r = run(q(spec));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("--output"));
}

TEST_F(GenToolTest, BadSpecNamesFileLineColumnAndField) {
  fs::path spec = write("bad.yaml", "kernels:\n  - kernel: one_shot\n"
                                    "    rank: 16\n    BLOK_SIZE_M: 16\n");
  ToolRun r = run(fmt::format("{} -o {}", q(spec), q(dir / "out")));
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("moelora-gen: error:"));
  EXPECT_THAT(r.err,
              ContainsRegex("bad\\.yaml:4:5: BLOK_SIZE_M: unknown field"));
  EXPECT_FALSE(fs::exists(dir / "out"));
  expectNoLeftovers();
}

TEST_F(GenToolTest, MissingInputFileIsAnError) {
  ToolRun r =
      run(fmt::format("{} -o {}", q(dir / "nope.yaml"), q(dir / "out")));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("nope.yaml"));
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST_F(GenToolTest, BadTargetListsTheAllowedOnes) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  for (const char *target : {"sm_75", "foo"}) {
    ToolRun r = run(
        fmt::format("{} -o {} --target {}", q(spec), q(dir / "out"), target));
    EXPECT_EQ(r.status, 2) << target;
    EXPECT_THAT(r.err, HasSubstr(target));
    EXPECT_THAT(r.err, HasSubstr("allowed: sm_80, sm_86, sm_89, sm_90"));
    EXPECT_FALSE(fs::exists(dir / "out"));
  }
}

TEST_F(GenToolTest, BadPtxVersionIsAnInputError) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  // Not a PTX ISA version at all: LLVM would warn and ignore it.
  ToolRun r =
      run(fmt::format("{} -o {} --ptx-version 5", q(spec), q(dir / "out")));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("--ptx-version 5"));
  EXPECT_THAT(r.err, HasSubstr("allowed:"));
  // Too old for sm_90: LLVM would abort in the middle of generation.
  r = run(fmt::format("{} -o {} --ptx-version 70", q(spec), q(dir / "out")));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("sm_90 needs PTX ISA 7.8"));
  EXPECT_FALSE(fs::exists(dir / "out"));
  expectNoLeftovers();
}

//===----------------------------------------------------------------------===//
// The bundle
//===----------------------------------------------------------------------===//

TEST_F(GenToolTest, WritesABundleWithMetadataAndManifest) {
  fs::path spec = write("good.yaml", kTwoKernelSpec);
  fs::path out = dir / "bundle";
  ToolRun r = run(fmt::format("{} -o {} -j 2", q(spec), q(out)));
  ASSERT_EQ(r.status, 0) << r.err;
  // The summary table and totals on stdout, progress on stderr.
  EXPECT_THAT(r.out, HasSubstr("2 kernels"));
  EXPECT_THAT(r.out, HasSubstr("gen ms"));
  EXPECT_THAT(r.err, HasSubstr("[2/2]"));

  json manifest = json::parse(readFile(out / "manifest.json"));
  EXPECT_EQ(manifest["format"], "moelora-bundle");
  EXPECT_EQ(manifest["version"], 1);
  ASSERT_EQ(manifest["kernels"].size(), 2u);
  std::set<std::string> families;
  for (const json &k : manifest["kernels"]) {
    std::string ptx = readFile(out / k["ptx"].get<std::string>());
    ASSERT_FALSE(ptx.empty());
    EXPECT_EQ(k["content_hash"], xxh3Hex(ptx));
    json meta = json::parse(readFile(out / k["json"].get<std::string>()));
    EXPECT_EQ(meta["content_hash"], xxh3Hex(ptx));
    EXPECT_EQ(meta["cache_key"], k["cache_key"]);
    EXPECT_EQ(meta["entry"], k["entry"]);
    EXPECT_EQ(k["ptx"], k["entry"].get<std::string>() + ".ptx");
    EXPECT_THAT(ptx, HasSubstr(".entry " + meta["entry"].get<std::string>()));

    for (const char *field :
         {"entry", "family", "cache_key", "params", "threads", "shared_bytes",
          "constexpr", "dtype", "target", "ptx_target", "ptx_version",
          "spec_origin", "content_hash", "generation_ms"})
      EXPECT_TRUE(meta.contains(field)) << field;
    EXPECT_FALSE(meta.contains("ptxas")) << "only with --ptxas";
    for (const char *field :
         {"BLOCK_SIZE_M", "BLOCK_SIZE_N", "BLOCK_SIZE_K", "GROUP_SIZE_M",
          "SPLIT_K", "num_warps", "num_stages", "EVEN_K", "BLOCK_R", "rank",
          "K", "MUL_ROUTED_WEIGHT", "ADD_INPUTS", "num_slices", "NPID",
          "fuse_slices", "wgmma", "metadata"})
      EXPECT_TRUE(meta["constexpr"].contains(field)) << field;

    std::string family = meta["family"];
    families.insert(family);
    EXPECT_EQ(meta["threads"], 128);
    EXPECT_EQ(meta["target"], "sm_90");
    EXPECT_EQ(meta["ptx_target"], "sm_90");
    EXPECT_EQ(meta["constexpr"]["wgmma"], false);
    EXPECT_EQ(meta["dtype"], family == "one_shot" ? "bf16" : "fp16");
    EXPECT_THAT(meta["spec_origin"].get<std::string>(),
                ContainsRegex("good\\.yaml:[0-9]+$"));
    EXPECT_THAT(
        ptx, HasSubstr(".version " + meta["ptx_version"].get<std::string>()));
    EXPECT_EQ(meta["constexpr"]["K"], family == "one_shot" ? 2048 : 1024);
    EXPECT_EQ(meta["constexpr"]["EVEN_K"], true);
    EXPECT_EQ(meta["constexpr"]["BLOCK_R"], 16);
    EXPECT_EQ(meta["constexpr"]["metadata"], "naive");

    // The parameter list is KernelAbi.h's.
    const auto &abi = kernelParams(*parseKernelFamily(family));
    ASSERT_EQ(meta["params"].size(), abi.size());
    for (size_t i = 0; i < abi.size(); ++i) {
      EXPECT_EQ(meta["params"][i]["name"], std::string(abi[i].name));
      EXPECT_EQ(meta["params"][i]["type"], std::string(toString(abi[i].type)));
    }
  }
  EXPECT_EQ(families, (std::set<std::string>{"one_shot", "small_batch"}));
  expectNoLeftovers();
}

TEST_F(GenToolTest, UnsetKIsNullInTheMetadata) {
  fs::path spec = write("expand.yaml", "kernel: expand\nrank: 16\n"
                                       "BLOCK_SIZE_M: 64\nBLOCK_SIZE_N: 64\n"
                                       "BLOCK_SIZE_K: 16\nmetadata: sorted\n");
  ToolRun r = run(fmt::format("{} -o {} -q", q(spec), q(dir / "out")));
  ASSERT_EQ(r.status, 0) << r.err;
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  json meta = json::parse(readFile(
      dir / "out" / manifest["kernels"][0]["json"].get<std::string>()));
  EXPECT_TRUE(meta["constexpr"]["K"].is_null());
  EXPECT_EQ(meta["constexpr"]["EVEN_K"], false);
  EXPECT_EQ(meta["constexpr"]["metadata"], "sorted");
}

TEST_F(GenToolTest, QuietPrintsNothingOnSuccess) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  ToolRun r = run(fmt::format("{} -o {} -q", q(spec), q(dir / "out")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
}

TEST_F(GenToolTest, TrailingSlashOnTheOutputIsTheSameDirectory) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  ToolRun r = run(fmt::format("{} -o {}/ -q", q(spec), q(dir / "out")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "out" / "manifest.json"));
  expectNoLeftovers();
}

TEST_F(GenToolTest, TargetOverrideRetargetsAndMergesDuplicates) {
  // Two points that differ only in their target are one kernel for sm_80.
  fs::path spec = write("two.yaml", "kernel: one_shot\ntarget: [sm_86, sm_90]\n"
                                    "rank: 16\nK: 2048\nBLOCK_SIZE_N: 64\n");
  ToolRun r =
      run(fmt::format("{} -o {} --target sm_80", q(spec), q(dir / "out")));
  ASSERT_EQ(r.status, 0) << r.err;
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  ASSERT_EQ(manifest["kernels"].size(), 1u);
  const json &k = manifest["kernels"][0];
  EXPECT_THAT(k["cache_key"].get<std::string>(), HasSubstr(";sm_80;"));
  json meta = json::parse(readFile(dir / "out" / k["json"].get<std::string>()));
  EXPECT_EQ(meta["target"], "sm_80");
  EXPECT_THAT(readFile(dir / "out" / k["ptx"].get<std::string>()),
              HasSubstr(".target sm_80"));
}

TEST_F(GenToolTest, PtxVersionOption) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  ToolRun r =
      run(fmt::format("{} -o {} --ptx-version 80 -q", q(spec), q(dir / "out")));
  ASSERT_EQ(r.status, 0) << r.err;
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  const json &k = manifest["kernels"][0];
  json meta = json::parse(readFile(dir / "out" / k["json"].get<std::string>()));
  EXPECT_EQ(meta["ptx_version"], "8.0");
  EXPECT_THAT(readFile(dir / "out" / k["ptx"].get<std::string>()),
              HasSubstr(".version 8.0"));
}

TEST_F(GenToolTest, DumpIrWritesEveryStage) {
  fs::path spec = write("good.yaml", kTwoKernelSpec);
  fs::path out = dir / "bundle";
  ToolRun r = run(fmt::format("{} -o {} --dump-ir -q", q(spec), q(out)));
  ASSERT_EQ(r.status, 0) << r.err;
  int mlir = 0, ll = 0;
  for (const auto &e : fs::directory_iterator(out / "ir")) {
    mlir += e.path().extension() == ".mlir";
    ll += e.path().extension() == ".ll";
    EXPECT_GT(fs::file_size(e.path()), 0u) << e.path();
  }
  EXPECT_EQ(mlir, 4); // as built and lowered to the LLVM dialect, per kernel
  EXPECT_EQ(ll, 4);   // before and after O3, per kernel
}

//===----------------------------------------------------------------------===//
// Sweeps: rejected points
//===----------------------------------------------------------------------===//

// BLOCK_SIZE_N 32 with BLOCK_SIZE_M 16 and 8 warps is the rejected point.
const char *kSweepWithARejection = R"(kernel: one_shot
rank: 16
K: 2048
BLOCK_SIZE_M: 16
BLOCK_SIZE_N: [32, 64]
BLOCK_SIZE_K: 128
num_warps: 8
num_stages: 2
)";

TEST_F(GenToolTest, RejectedSweepPointsAreListedNotFatal) {
  fs::path spec = write("sweep.yaml", kSweepWithARejection);
  ToolRun r = run(fmt::format("{} -o {} -q", q(spec), q(dir / "out")));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("rejected"));
  EXPECT_THAT(r.err, HasSubstr("sweep.yaml:1"));
  EXPECT_THAT(r.err, HasSubstr("BLOCK_SIZE_N"));
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  EXPECT_EQ(manifest["kernels"].size(), 1u);
}

TEST_F(GenToolTest, StrictFailsOnARejectedPoint) {
  fs::path spec = write("sweep.yaml", kSweepWithARejection);
  ToolRun r = run(fmt::format("{} -o {} --strict", q(spec), q(dir / "out")));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("--strict"));
  EXPECT_FALSE(fs::exists(dir / "out"));
  expectNoLeftovers();
}

//===----------------------------------------------------------------------===//
// ptxas
//===----------------------------------------------------------------------===//

TEST_F(GenToolTest, PtxasStatisticsAreRecorded) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  fs::path ptxas = write("ptxas", kFakePtxas, true);
  ToolRun r = run(fmt::format("{} -o {} --ptxas", q(spec), q(dir / "out")),
                  "MOELORA_PTXAS=" + q(ptxas));
  ASSERT_EQ(r.status, 0) << r.err;
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  json meta = json::parse(readFile(
      dir / "out" / manifest["kernels"][0]["json"].get<std::string>()));
  EXPECT_EQ(meta["ptxas"]["registers"], 40);
  EXPECT_EQ(meta["ptxas"]["spill_stores"], 8);
  EXPECT_EQ(meta["ptxas"]["spill_loads"], 4);
  EXPECT_EQ(meta["ptxas"]["stack_bytes"], 16);
  // The table shows registers and spilled bytes (stores + loads).
  EXPECT_THAT(r.out, ContainsRegex(" 40 +12 "));
}

TEST_F(GenToolTest, MissingPtxasIsANoteNotAnError) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  ToolRun r = run(fmt::format("{} -o {} --ptxas", q(spec), q(dir / "out")),
                  "MOELORA_PTXAS=" + q(dir / "no-ptxas"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("ptxas not found"));
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  json meta = json::parse(readFile(
      dir / "out" / manifest["kernels"][0]["json"].get<std::string>()));
  EXPECT_FALSE(meta.contains("ptxas"));
}

TEST_F(GenToolTest, RealPtxasAssemblesWithoutSpills) {
  const std::string ptxas = "/usr/local/cuda/bin/ptxas";
  if (access(ptxas.c_str(), X_OK) != 0)
    GTEST_SKIP() << ptxas << " not found";
  fs::path spec = write("good.yaml", kTwoKernelSpec);
  ToolRun r = run(fmt::format("{} -o {} --ptxas -q", q(spec), q(dir / "out")),
                  "MOELORA_PTXAS=" + ptxas);
  ASSERT_EQ(r.status, 0) << r.err;
  json manifest = json::parse(readFile(dir / "out" / "manifest.json"));
  for (const json &k : manifest["kernels"]) {
    json meta =
        json::parse(readFile(dir / "out" / k["json"].get<std::string>()));
    EXPECT_GT(meta["ptxas"]["registers"], 0) << k["entry"];
    EXPECT_EQ(meta["ptxas"]["spill_stores"], 0) << k["entry"];
    EXPECT_EQ(meta["ptxas"]["spill_loads"], 0) << k["entry"];
  }
}

//===----------------------------------------------------------------------===//
// Failed runs leave no bundle
//===----------------------------------------------------------------------===//

TEST_F(GenToolTest, FailedRunCreatesNoOutputDirectory) {
  fs::path spec = write("good.yaml", kTwoKernelSpec);
  fs::path ptxas = write("ptxas", kFailingPtxas, true);
  ToolRun r = run(fmt::format("{} -o {} --ptxas -j 2", q(spec), q(dir / "out")),
                  "MOELORA_PTXAS=" + q(ptxas));
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("moelora-gen: error:"));
  EXPECT_THAT(r.err, HasSubstr("fake assembler refuses"));
  EXPECT_THAT(r.err, HasSubstr("one_shot;bf16;sm_90;R=16"));
  EXPECT_FALSE(fs::exists(dir / "out"));
  expectNoLeftovers();
}

TEST_F(GenToolTest, FailedRunKeepsThePreviousBundle) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  fs::path out = dir / "out";
  ASSERT_EQ(run(fmt::format("{} -o {} -q", q(spec), q(out))).status, 0);
  std::string manifest = readFile(out / "manifest.json");
  fs::path ptxas = write("ptxas", kFailingPtxas, true);
  ToolRun r = run(fmt::format("{} -o {} --ptxas", q(spec), q(out)),
                  "MOELORA_PTXAS=" + q(ptxas));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(readFile(out / "manifest.json"), manifest);
  expectNoLeftovers();
}

TEST_F(GenToolTest, SuccessfulRunReplacesThePreviousBundle) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  fs::path out = dir / "out";
  ASSERT_EQ(run(fmt::format("{} -o {} -q", q(spec), q(out))).status, 0);
  write("out/stale.ptx", "old");
  ToolRun r = run(fmt::format("{} -o {} -q", q(spec), q(out)));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(out / "stale.ptx"));
  EXPECT_TRUE(fs::exists(out / "manifest.json"));
  expectNoLeftovers();
}

TEST_F(GenToolTest, KilledRunLeavesNothingBehind) {
  // The fake ptxas says when the tool is busy (its temporary bundle exists),
  // then keeps it waiting until the tool is terminated.
  fs::path spec = write("one.yaml", kOneShotSpec);
  fs::path started = dir / "started";
  fs::path ptxas = write(
      "ptxas", fmt::format("#!/bin/sh\ntouch {}\nexec sleep 5\n", q(started)),
      true);
  // SIGTERM, not SIGINT: a shell's background job ignores SIGINT.
  std::string script = fmt::format(
      "MOELORA_PTXAS={} {} {} -o {} --ptxas -q 2>/dev/null & pid=$!; "
      "i=0; while [ ! -e {} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); "
      "done; kill -TERM $pid; wait $pid; echo $? > {}",
      q(ptxas), q(kTool), q(spec), q(dir / "out"), q(started),
      q(dir / "status"));
  fs::path driver = write("kill.sh", script);
  ASSERT_EQ(std::system(fmt::format("sh {}", q(driver)).c_str()), 0);
  ASSERT_TRUE(fs::exists(started));
  EXPECT_EQ(readFile(dir / "status"), "143\n"); // 128 + SIGTERM
  EXPECT_FALSE(fs::exists(dir / "out"));
  expectNoLeftovers();
}

TEST_F(GenToolTest, RefusesToReplaceADirectoryThatIsNotABundle) {
  fs::path spec = write("one.yaml", kOneShotSpec);
  write("notes.txt", "precious");
  // `dir` itself holds the spec and notes.txt but no manifest.json.
  ToolRun r = run(fmt::format("{} -o {}", q(spec), q(dir)));
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("not a moelora bundle"));
  EXPECT_EQ(readFile(dir / "notes.txt"), "precious");
}

} // namespace
