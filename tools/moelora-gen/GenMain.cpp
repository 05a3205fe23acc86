//===- GenMain.cpp - moelora-gen: spec files -> a kernel bundle -----------===//
//
//   moelora-gen [options] <spec files or directories>... -o <bundle dir>
//
// Every spec point becomes <entry>.ptx and <entry>.json (metadata) in the
// bundle, plus manifest.json (what the runtime's module cache reads). The
// bundle is written to a temporary directory and renamed into place only
// when everything succeeded, so a failed run never leaves a bundle that
// looks complete.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/Generator.h"
#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/SpecParser.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace moelora;

namespace {

struct PtxasStats {
  int registers = 0, spillStores = 0, spillLoads = 0, stackBytes = 0;
};

struct Result {
  KernelSpec spec;
  std::optional<GeneratedKernel> kernel;
  std::optional<PtxasStats> ptxas;
  std::string error;
};

std::string ptxasPath() {
  if (const char *p = std::getenv("MOELORA_PTXAS"); p && *p)
    return p;
  return "/usr/local/cuda/bin/ptxas";
}

/// Assembles with ptxas -v and reads its resource report.
Expected<PtxasStats> runPtxas(const fs::path &ptx, int sm) {
  std::string cmd = fmt::format("'{}' -arch=sm_{} -v '{}' -o /dev/null 2>&1",
                                ptxasPath(), sm, ptx.string());
  FILE *f = popen(cmd.c_str(), "r");
  if (!f)
    return makeError("cannot run " + ptxasPath());
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, f))
    out += buf;
  if (pclose(f) != 0)
    return makeError("ptxas rejected " + ptx.filename().string() + ":\n" + out);
  PtxasStats s;
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Used (\d+) registers)")))
    s.registers = std::stoi(m[1]);
  if (std::regex_search(
          out, m,
          std::regex(
              R"((\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads)"))) {
    s.stackBytes = std::stoi(m[1]);
    s.spillStores = std::stoi(m[2]);
    s.spillLoads = std::stoi(m[3]);
  }
  return s;
}

json metadata(const KernelSpec &s, const GeneratedKernel &k,
              const std::optional<PtxasStats> &p, const std::string &hash) {
  json params = json::array();
  for (const KernelParam &q : kernelParams(s.family))
    params.push_back({{"name", q.name}, {"type", toString(q.type)}});
  json j = {
      {"entry", k.entryName},
      {"family", toString(s.family)},
      {"cache_key", s.cacheKey()},
      {"params", params},
      {"threads", k.threads},
      {"shared_bytes", k.sharedBytes},
      {"constexpr",
       {{"BLOCK_SIZE_M", s.blockM},
        {"BLOCK_SIZE_N", s.blockN},
        {"BLOCK_SIZE_K", s.blockK},
        {"GROUP_SIZE_M", s.groupSizeM},
        {"SPLIT_K", s.splitK},
        {"num_warps", s.numWarps},
        {"num_stages", s.numStages},
        {"EVEN_K", s.evenK()},
        {"BLOCK_R", s.family == KernelFamily::AlignBlockSize ? 0 : s.blockR()},
        {"rank", s.rank},
        {"K", s.k ? json(*s.k) : json(nullptr)},
        {"MUL_ROUTED_WEIGHT", s.mulRoutedWeight},
        {"ADD_INPUTS", s.addInputs},
        {"num_slices", s.numSlices},
        {"NPID", s.npid},
        {"metadata", s.sorted ? "sorted" : "naive"}}},
      {"dtype", toString(s.dtype)},
      {"target", fmt::format("sm_{}", s.sm)},
      {"ptx_version",
       fmt::format("{}.{}", k.ptxVersion / 10, k.ptxVersion % 10)},
      {"spec_origin", s.origin},
      {"content_hash", hash},
      {"generation_ms", k.totalMs()}};
  if (p)
    j["ptxas"] = {{"registers", p->registers},
                  {"spill_stores", p->spillStores},
                  {"spill_loads", p->spillLoads},
                  {"stack_bytes", p->stackBytes}};
  return j;
}

[[noreturn]] void fail(int code, const std::string &message) {
  std::fprintf(stderr, "moelora-gen: error: %s\n", message.c_str());
  std::exit(code);
}

} // namespace

int main(int argc, char **argv) {
  CLI::App app{"moelora-gen: tiling specs -> PTX bundle (PTX + JSON metadata "
               "+ manifest)"};
  std::vector<std::string> inputs;
  std::string outDir, target;
  int ptxVersion = 0, jobs = 1;
  bool dumpIr = false, usePtxas = false, quiet = false, strict = false;
  app.add_option("inputs", inputs, "spec files or directories")->required();
  app.add_option("-o,--output", outDir, "bundle directory to write")
      ->required();
  app.add_option("--target", target,
                 "override every spec's target (sm_80, "
                 "sm_86, sm_89, sm_90)");
  app.add_option("--ptx-version", ptxVersion,
                 "PTX ISA version as major*10+minor (e.g. 80)");
  app.add_flag("--dump-ir", dumpIr,
               "write the IR after each stage to <bundle>/ir/");
  app.add_flag("--ptxas", usePtxas,
               "assemble each kernel with ptxas -v; record registers/spills");
  app.add_option("-j,--jobs", jobs, "generator threads")
      ->check(CLI::Range(1, 256));
  app.add_flag("-q,--quiet", quiet, "no progress output");
  app.add_flag("--strict", strict, "fail when a sweep point is rejected");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto parsed = parseSpecPaths(inputs);
  if (!parsed)
    fail(2, parsed.error().message);
  SpecSet set = parsed.take();
  for (const RejectedSpec &r : set.rejected)
    std::fprintf(stderr, "moelora-gen: rejected %s: %s\n",
                 r.spec.origin.c_str(), r.reason.c_str());
  if (strict && !set.rejected.empty())
    fail(2, fmt::format("{} sweep point(s) rejected (--strict)",
                        set.rejected.size()));
  if (!target.empty()) {
    auto sm = parseTarget(target);
    if (!sm || (*sm != 80 && *sm != 86 && *sm != 89 && *sm != 90))
      fail(2, fmt::format("--target {}: allowed: sm_80, sm_86, sm_89, sm_90",
                          target));
    for (KernelSpec &s : set.specs)
      s.sm = *sm;
  }
  if (set.specs.empty())
    fail(2, "no kernel specs in the inputs");
  if (usePtxas && !fs::exists(ptxasPath())) {
    std::fprintf(stderr,
                 "moelora-gen: note: %s not found; PTX is generated "
                 "but not assembled (--ptxas ignored)\n",
                 ptxasPath().c_str());
    usePtxas = false;
  }

  fs::path finalDir(outDir);
  fs::path tmpDir = finalDir;
  tmpDir += fmt::format(".tmp-{}", getpid());
  std::error_code ec;
  fs::remove_all(tmpDir, ec);
  fs::create_directories(tmpDir / (dumpIr ? "ir" : ""), ec);
  if (ec)
    fail(1, fmt::format("cannot create {}: {}", tmpDir.string(), ec.message()));

  std::vector<Result> results(set.specs.size());
  std::atomic<size_t> next{0}, finished{0};
  std::mutex printMutex;
  const bool tty = isatty(2);
  auto t0 = std::chrono::steady_clock::now();
  auto worker = [&] {
    GenerateOptions options;
    options.ptxVersion = ptxVersion;
    options.dumpIR = dumpIr;
    for (size_t i; (i = next++) < results.size();) {
      Result &r = results[i];
      r.spec = set.specs[i];
      auto k = generateKernel(r.spec, options);
      if (!k) {
        r.error = k.error().message;
      } else {
        r.kernel = k.take();
        fs::path ptx = tmpDir / (r.kernel->entryName + ".ptx");
        std::ofstream(ptx) << r.kernel->ptx;
        for (const auto &[stage, text] : r.kernel->dumps)
          std::ofstream(
              tmpDir / "ir" /
              fmt::format("{}.{}.{}", r.kernel->entryName, stage,
                          stage.rfind("llvm", 0) == 0 ? "ll" : "mlir"))
              << text;
        if (usePtxas) {
          auto p = runPtxas(ptx, r.spec.sm);
          if (!p)
            r.error = p.error().message;
          else
            r.ptxas = *p;
        }
      }
      size_t n = ++finished;
      if (!quiet) {
        std::lock_guard<std::mutex> lock(printMutex);
        size_t total = results.size();
        if (tty)
          std::fprintf(stderr, "\r[%zu/%zu] %-70.70s %6.1f ms", n, total,
                       r.spec.entryName().c_str(),
                       r.kernel ? r.kernel->totalMs() : 0.0);
        else if (n * 10 / total != (n - 1) * 10 / total)
          std::fprintf(stderr, "[%zu/%zu] %s\n", n, total,
                       r.spec.entryName().c_str());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int j = 0; j < jobs; ++j)
    pool.emplace_back(worker);
  for (auto &t : pool)
    t.join();
  if (!quiet && tty)
    std::fprintf(stderr, "\n");

  std::string errors;
  for (const Result &r : results)
    if (!r.error.empty())
      errors += "\n  " + r.error;
  if (!errors.empty()) {
    fs::remove_all(tmpDir, ec);
    fail(1, "generation failed (no bundle written):" + errors);
  }

  json manifest = {
      {"format", "moelora-bundle"}, {"version", 1}, {"kernels", json::array()}};
  double totalMs = 0;
  for (const Result &r : results) {
    const GeneratedKernel &k = *r.kernel;
    std::string hash =
        fmt::format("{:016x}", XXH3_64bits(k.ptx.data(), k.ptx.size()));
    std::ofstream(tmpDir / (k.entryName + ".json"))
        << metadata(r.spec, k, r.ptxas, hash).dump(1);
    manifest["kernels"].push_back({{"cache_key", r.spec.cacheKey()},
                                   {"entry", k.entryName},
                                   {"ptx", k.entryName + ".ptx"},
                                   {"json", k.entryName + ".json"},
                                   {"content_hash", hash}});
    totalMs += k.totalMs();
  }
  std::ofstream(tmpDir / "manifest.json") << manifest.dump(1);
  fs::remove_all(finalDir, ec);
  fs::rename(tmpDir, finalDir, ec);
  if (ec) {
    fs::remove_all(tmpDir, ec);
    fail(1, fmt::format("cannot move the bundle into {}", outDir));
  }

  // Summary table.
  std::printf("%-72s %5s %7s %7s %8s\n", "kernel", "regs", "spills", "smem",
              "gen ms");
  for (const Result &r : results) {
    const GeneratedKernel &k = *r.kernel;
    std::string name = k.entryName.size() > 72
                           ? k.entryName.substr(0, 69) + "..."
                           : k.entryName;
    std::printf(
        "%-72s %5s %7s %7d %8.1f\n", name.c_str(),
        r.ptxas ? std::to_string(r.ptxas->registers).c_str() : "-",
        r.ptxas
            ? std::to_string(r.ptxas->spillStores + r.ptxas->spillLoads).c_str()
            : "-",
        k.sharedBytes, k.totalMs());
  }
  double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  std::printf("%zu kernels in %s: generation %.0f ms total, %.1f ms mean; "
              "wall %.1f s with %d thread(s)\n",
              results.size(), outDir.c_str(), totalMs, totalMs / results.size(),
              wall, jobs);
  return 0;
}
