//===- DefaultKernelsTest.cpp - The default kernel set, generated ---------===//
//
// Generates every spec of specs/default and checks the PTX: the entry and
// its parameter list match KernelAbi.h, the tensor-core families use
// mma.sync m16n8k16 and cp.async, and (when ptxas is installed) every
// kernel assembles for sm_90 and sm_80 without spilling.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/Generator.h"
#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/SpecParser.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

using namespace moelora;
namespace fs = std::filesystem;

namespace {

const char *kPtxas = "/usr/local/cuda/bin/ptxas";

struct Generated {
  KernelSpec spec;
  std::string ptx;
};

/// The default set, generated once for all tests (2 threads).
const std::vector<Generated> &defaultKernels() {
  static std::vector<Generated> kernels = [] {
    auto set = parseSpecPaths({MOELORA_SOURCE_DIR "/specs/default"});
    EXPECT_TRUE(set) << (set ? "" : set.error().message);
    std::vector<Generated> out(set ? set->specs.size() : 0);
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t i; (i = next++) < out.size();) {
        out[i].spec = set->specs[i];
        auto g = generateKernel(out[i].spec);
        EXPECT_TRUE(g) << (g ? "" : g.error().message);
        if (g)
          out[i].ptx = g->ptx;
      }
    };
    std::thread t1(work), t2(work);
    t1.join();
    t2.join();
    return out;
  }();
  return kernels;
}

/// The `.param` declarations of the entry, in order (".u64", ".u32", ...).
std::vector<std::string> entryParamTypes(const std::string &ptx,
                                         const std::string &entry) {
  std::vector<std::string> types;
  auto start = ptx.find(".entry " + entry + "(");
  if (start == std::string::npos)
    return types;
  auto end = ptx.find(')', start);
  std::string block = ptx.substr(start, end - start);
  std::regex param(R"(\.param\s+(\.\w+)\s+)");
  for (std::sregex_iterator it(block.begin(), block.end(), param), last;
       it != last; ++it)
    types.push_back((*it)[1]);
  return types;
}

struct PtxasResult {
  bool ok = false;
  int spillBytes = -1;
  std::string log;
};

PtxasResult assemble(const std::string &ptx, int sm, const std::string &tag) {
  fs::path file =
      fs::temp_directory_path() /
      ("moelora-test-" + std::to_string(::getpid()) + "-" + tag + ".ptx");
  std::ofstream(file) << ptx;
  std::string cmd = std::string(kPtxas) + " -arch=sm_" + std::to_string(sm) +
                    " -v " + file.string() + " -o /dev/null 2>&1";
  PtxasResult r;
  FILE *f = popen(cmd.c_str(), "r");
  char buf[512];
  while (f && fgets(buf, sizeof buf, f))
    r.log += buf;
  r.ok = f && pclose(f) == 0;
  std::smatch m;
  if (std::regex_search(
          r.log, m,
          std::regex(R"((\d+) bytes spill stores, (\d+) bytes spill loads)")))
    r.spillBytes = std::stoi(m[1]) + std::stoi(m[2]);
  fs::remove(file);
  return r;
}

TEST(DefaultKernels, WholeSetGenerates) {
  const auto &kernels = defaultKernels();
  // 3 presets x (3 one-shot + small-batch + shrink) + shared expand/align.
  EXPECT_EQ(kernels.size(), 156u);
  for (const Generated &g : kernels) {
    EXPECT_FALSE(g.ptx.empty()) << g.spec.cacheKey();
    EXPECT_NE(g.ptx.find(".entry " + g.spec.entryName() + "("),
              std::string::npos)
        << g.spec.cacheKey();
  }
}

TEST(DefaultKernels, TensorCoreFamiliesUseMmaSyncAndCpAsync) {
  for (const Generated &g : defaultKernels()) {
    bool tensorCores = g.spec.family == KernelFamily::OneShot ||
                       g.spec.family == KernelFamily::Shrink ||
                       g.spec.family == KernelFamily::Expand;
    if (!tensorCores)
      continue;
    EXPECT_NE(g.ptx.find("mma.sync.aligned.m16n8k16"), std::string::npos)
        << g.spec.cacheKey();
    EXPECT_NE(g.ptx.find("cp.async"), std::string::npos) << g.spec.cacheKey();
    EXPECT_NE(g.ptx.find("ldmatrix"), std::string::npos) << g.spec.cacheKey();
  }
}

TEST(DefaultKernels, EntrySignatureMatchesTheAbi) {
  for (const Generated &g : defaultKernels()) {
    const auto &params = kernelParams(g.spec.family);
    auto types = entryParamTypes(g.ptx, g.spec.entryName());
    ASSERT_EQ(types.size(), params.size()) << g.spec.cacheKey();
    for (size_t i = 0; i < params.size(); ++i) {
      const char *want = params[i].type == ParamType::I32 ? ".u32" : ".u64";
      EXPECT_EQ(types[i], want)
          << g.spec.cacheKey() << " param " << params[i].name;
    }
  }
}

TEST(DefaultKernels, MetadataSharedMemoryFitsTheTarget) {
  for (const Generated &g : defaultKernels()) {
    int smem = sharedMemoryBytes(g.spec);
    EXPECT_GE(smem, 0);
    // 227 KiB per block on sm_90, 163 KiB on sm_80.
    EXPECT_LE(smem, 163 * 1024) << g.spec.cacheKey();
  }
}

TEST(DefaultKernels, AssembleForSm90AndSm80WithoutSpills) {
  if (!fs::exists(kPtxas))
    GTEST_SKIP() << kPtxas << " not found: PTX is not assembled here";
  const auto &kernels = defaultKernels();
  std::vector<std::future<std::pair<std::string, PtxasResult>>> jobs;
  auto check = [](KernelSpec spec, std::string ptx, int sm, size_t i) {
    if (sm != spec.sm) {
      spec.sm = sm;
      auto g = generateKernel(spec);
      if (!g)
        return std::make_pair(spec.cacheKey(),
                              PtxasResult{false, -1, g.error().message});
      ptx = g->ptx;
    }
    return std::make_pair(
        spec.cacheKey(),
        assemble(ptx, sm, std::to_string(sm) + "-" + std::to_string(i)));
  };
  // Two at a time: the CI machine has two cores.
  for (int sm : {90, 80}) {
    for (size_t i = 0; i < kernels.size(); i += 2) {
      auto a = std::async(std::launch::async, check, kernels[i].spec,
                          kernels[i].ptx, sm, i);
      if (i + 1 < kernels.size()) {
        auto b = std::async(std::launch::async, check, kernels[i + 1].spec,
                            kernels[i + 1].ptx, sm, i + 1);
        auto rb = b.get();
        EXPECT_TRUE(rb.second.ok) << "sm_" << sm << " " << rb.first << "\n"
                                  << rb.second.log;
        EXPECT_EQ(rb.second.spillBytes, 0)
            << "sm_" << sm << " " << rb.first << "\n"
            << rb.second.log;
      }
      auto ra = a.get();
      EXPECT_TRUE(ra.second.ok) << "sm_" << sm << " " << ra.first << "\n"
                                << ra.second.log;
      EXPECT_EQ(ra.second.spillBytes, 0)
          << "sm_" << sm << " " << ra.first << "\n"
          << ra.second.log;
    }
  }
}

TEST(Generator, BadSpecIsAnErrorNotACrash) {
  KernelSpec s;
  s.family = KernelFamily::OneShot;
  s.rank = 16;
  s.k = 2048;
  s.blockM = 16;
  s.blockN = 64;
  s.blockK = 128;
  s.numWarps = 4;
  auto g = generateKernel(s);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_GT(g->sharedBytes, 0);
  EXPECT_EQ(g->threads, 128);
  EXPECT_GE(g->ptxVersion, 78);
}

} // namespace
