//===- GenCliTest.cpp - moelora-gen's command line
//--------------------------===//

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace {

const std::string kTool = MOELORA_BINARY_DIR "/tools/moelora-gen/moelora-gen";

struct ToolRun {
  int status;
  std::string output;
};

ToolRun run(const std::string &args) {
  std::string cmd = kTool + " " + args + " 2>&1";
  FILE *f = popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (f && fgets(buf, sizeof buf, f))
    out += buf;
  int status = f ? pclose(f) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

class GenCli : public ::testing::Test {
protected:
  void SetUp() override {
    if (!fs::exists(kTool))
      GTEST_SKIP() << kTool << " is not built";
    dir = fs::temp_directory_path() /
          ("moelora-gencli-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path write(const std::string &name, const std::string &text) {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
  fs::path dir;
};

const char *kGoodSpec = R"(kernels:
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

TEST_F(GenCli, NoArgumentsIsAnError) {
  ToolRun r = run("");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("required"), std::string::npos) << r.output;
}

TEST_F(GenCli, BadSpecNamesFileLineColumnAndField) {
  fs::path spec = write("bad.yaml", "kernels:\n  - kernel: one_shot\n"
                                    "    rank: 16\n    BLOK_SIZE_M: 16\n");
  ToolRun r =
      run(fmt::format("{} -o {}", spec.string(), (dir / "out").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("bad.yaml:4:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("BLOK_SIZE_M"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST_F(GenCli, BadTargetListsTheAllowedOnes) {
  fs::path spec = write("good.yaml", kGoodSpec);
  ToolRun r = run(fmt::format("{} -o {} --target sm_75", spec.string(),
                              (dir / "out").string()));
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("sm_80, sm_86, sm_89, sm_90"), std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST_F(GenCli, MissingInputIsAnError) {
  ToolRun r = run(fmt::format("{} -o {}", (dir / "nope.yaml").string(),
                              (dir / "out").string()));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("nope.yaml"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

TEST_F(GenCli, WritesABundleWithMetadataAndManifest) {
  fs::path spec = write("good.yaml", kGoodSpec);
  fs::path out = dir / "bundle";
  ToolRun r = run(fmt::format("{} -o {} -j 2", spec.string(), out.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("2 kernels"), std::string::npos) << r.output;
  std::ifstream mf(out / "manifest.json");
  ASSERT_TRUE(mf);
  auto manifest = nlohmann::json::parse(mf);
  EXPECT_EQ(manifest["format"], "moelora-bundle");
  ASSERT_EQ(manifest["kernels"].size(), 2u);
  for (const auto &k : manifest["kernels"]) {
    std::ifstream ptxFile(out / k["ptx"].get<std::string>());
    std::stringstream ss;
    ss << ptxFile.rdbuf();
    std::string ptx = ss.str();
    ASSERT_FALSE(ptx.empty());
    std::string hash =
        fmt::format("{:016x}", XXH3_64bits(ptx.data(), ptx.size()));
    EXPECT_EQ(k["content_hash"], hash);
    std::ifstream jf(out / k["json"].get<std::string>());
    auto meta = nlohmann::json::parse(jf);
    EXPECT_EQ(meta["content_hash"], hash);
    EXPECT_EQ(meta["cache_key"], k["cache_key"]);
    EXPECT_EQ(meta["entry"], k["entry"]);
    EXPECT_NE(ptx.find(".entry " + meta["entry"].get<std::string>()),
              std::string::npos);
    EXPECT_EQ(meta["threads"], 128);
    EXPECT_TRUE(meta["params"].is_array());
    EXPECT_TRUE(meta.contains("shared_bytes"));
    EXPECT_TRUE(meta["constexpr"].contains("EVEN_K"));
    EXPECT_EQ(meta["target"], "sm_90");
  }
  // No temporary directory is left behind.
  for (const auto &e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos);
}

TEST_F(GenCli, DumpIrWritesEveryStage) {
  fs::path spec = write("good.yaml", kGoodSpec);
  fs::path out = dir / "bundle";
  ToolRun r =
      run(fmt::format("{} -o {} --dump-ir -q", spec.string(), out.string()));
  ASSERT_EQ(r.status, 0) << r.output;
  int mlir = 0, ll = 0;
  for (const auto &e : fs::directory_iterator(out / "ir")) {
    mlir += e.path().extension() == ".mlir";
    ll += e.path().extension() == ".ll";
  }
  EXPECT_EQ(mlir, 4); // built + lowered, per kernel
  EXPECT_EQ(ll, 4);   // before and after O3, per kernel
}

} // namespace
