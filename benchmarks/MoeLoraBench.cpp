//===- MoeLoraBench.cpp - fused_moe_lora against the memory roofline ------===//
//
// Through the C ABI, on the GPU: the contract's presets in both MoE shapes,
// decode (naive) and prefill (sorted, BLOCK_SIZE_M 64) sizes, R 16 and 64,
// the two-kernel path, and sparse routing. Each case is captured in a CUDA
// graph; every replay is preceded by a 256 MiB memset that flushes the L2,
// and timed alone with events; the median of >= 100 replays is reported
// against the memory floor (bytes that must move / measured D2D copy
// bandwidth). Then host-side costs: cache hit, disk load, per-call time.
//
// Usage: moelora-bench [--quick] [--fp16] [--filter substr] [--out dir]
//                      [--tuned-table T.json [--path-choice P.json]]
// --path-choice times every case with T's path choices ("fused" entries)
// left out, then writes P.json: one "fused" entry per sorted bucket that has
// both paths measured, "two_kernel" where the two-kernel cases of the bucket
// (dense and sparse) take less than 0.97x the one-shot ones, else
// "one_shot"; `moelora-tune merge T.json P.json` puts them in the table.
// Kernels come from the disk cache $MOELORA_CACHE_DIR (moelora-bench-prepare
// fills it on a machine with the generator).
//
//===----------------------------------------------------------------------===//

#include "BenchHarness.h"
#include "moelora/Runtime/Runtime.h"
#include "moelora/Runtime/TunedTable.h"
#include "moelora/Support/Half.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

using namespace moelora;
using namespace moelora::bench;
using json = nlohmann::json;

namespace {

struct Result {
  BenchCase c;
  std::string name, path, config;
  double us = 0, floorUs = 0, tritonUs = 0;
  double bytes = 0;
  int launches = 0;
};

/// The tuned-table update of --path-choice: per sorted bucket (dtype, shape,
/// pairs) the summed time of its one-shot cases against its two-kernel
/// cases (the benchmark's two-kernel cases plan exactly what a routed call
/// runs), with the tuner's 3% noise margin in favour of the path the table
/// already chose (`current`: bucket key -> "use"; the one-shot where it has
/// none), so that a bucket within the margin does not flip from run to run.
void writePathChoice(const std::vector<Result> &results, const std::string &gpu,
                     const std::map<std::string, std::string> &current,
                     const std::string &path) {
  struct Sums {
    json entry;
    double oneShot = 0, twoKernel = 0;
    int nOne = 0, nTwo = 0;
  };
  std::map<std::string, Sums> buckets;
  for (const Result &r : results) {
    const BenchCase &c = r.c;
    if (!c.sorted)
      continue;
    json e = tunedBucketEntry(c, "fused");
    Sums &s = buckets[e.dump()];
    s.entry = e;
    if (c.twoKernel) {
      s.twoKernel += r.us;
      ++s.nTwo;
    } else if (r.path == "one_shot") {
      s.oneShot += r.us;
      ++s.nOne;
    }
  }
  json update = {{"format", "moelora-tuned"},
                 {"version", 1},
                 {"gpu", gpu},
                 {"entries", json::array()}};
  std::printf("\nPath choice (sorted buckets; the other path than the "
              "table's must take below 0.97x)\n");
  for (auto &[key, s] : buckets) {
    if (s.nOne == 0 || s.nOne != s.nTwo)
      continue; // both paths over the same cases, or no choice
    auto was = current.find(key);
    const bool wasTwo = was != current.end() && was->second == "two_kernel";
    const bool two = wasTwo ? !(s.oneShot < 0.97 * s.twoKernel)
                            : s.twoKernel < 0.97 * s.oneShot;
    s.entry["use"] = two ? "two_kernel" : "one_shot";
    std::printf("  %-70s one_shot %8.1f us  two_kernel %8.1f us  (%.3f) -> "
                "%s\n",
                key.c_str(), s.oneShot, s.twoKernel, s.twoKernel / s.oneShot,
                two ? "two_kernel" : "one_shot");
    update["entries"].push_back(s.entry);
  }
  std::ofstream(path) << update.dump(1) << "\n";
  std::printf("path choice: %s (%zu buckets)\n", path.c_str(),
              update["entries"].size());
}

} // namespace

int main(int argc, char **argv) {
  bool quick = false, fp16 = false;
  std::string filter, tunedTable,
      outDir = std::getenv("OUT") ? std::getenv("OUT") : "bench-out";
  CLI::App app{"moelora-bench: fused_moe_lora against the memory roofline "
               "(kernels from $MOELORA_CACHE_DIR)"};
  app.add_flag("--quick", quick, "fewer replays per case");
  app.add_flag("--fp16", fp16, "fp16 cases instead of bf16");
  app.add_option("--filter", filter, "only cases whose name contains this");
  app.add_option("--out", outDir, "directory for bench.csv/json")
      ->capture_default_str();
  app.add_option("--tuned-table", tunedTable,
                 "tuned table JSON, or 'none' for vLLM's rules (default: the "
                 "committed table for this GPU)");
  std::string pathChoice;
  std::map<std::string, std::string> currentPaths; // the table's "fused" uses
  app.add_option("--path-choice", pathChoice,
                 "write the measured one-shot/two-kernel choice per sorted "
                 "bucket here (a tuned-table update; needs --tuned-table)");
  CLI11_PARSE(app, argc, argv);
  std::filesystem::create_directories(outDir);
  if (!pathChoice.empty()) {
    if (tunedTable.empty() || tunedTable == "none") {
      std::fprintf(stderr, "moelora-bench: --path-choice needs --tuned-table "
                           "T.json (the table whose paths it measures)\n");
      return 2;
    }
    // Both paths as the table configures them, without its path choices.
    auto text = TunedTable::readText(tunedTable);
    auto parsed = text ? TunedTable::parse(*text, tunedTable)
                       : Expected<TunedTable>(text.error());
    if (!parsed) {
      std::fprintf(stderr, "moelora-bench: %s\n",
                   parsed.error().message.c_str());
      return 2;
    }
    nlohmann::json t = nlohmann::json::parse(*text);
    nlohmann::json kept = nlohmann::json::array();
    for (const auto &e : t["entries"]) {
      if (e.value("path", "") != "fused") {
        kept.push_back(e);
        continue;
      }
      // The bucket spelled as tunedBucketEntry spells it (optional fields
      // with their defaults), whatever the file wrote.
      nlohmann::json bucket = {{"path", "fused"},
                               {"dtype", e.at("dtype")},
                               {"rank", e.at("rank")},
                               {"K", e.at("K")},
                               {"N", e.at("N")},
                               {"num_slices", e.value("num_slices", 1)},
                               {"sorted", e.value("sorted", false)},
                               {"max_pairs", e.at("max_pairs")}};
      currentPaths[bucket.dump()] = e.value("use", "");
    }
    t["entries"] = kept;
    tunedTable = outDir + "/without-path-choice.json";
    std::ofstream(tunedTable) << t.dump(1);
  }
  auto d = CudaDriver::get();
  if (!d) {
    std::fprintf(stderr, "moelora-bench: %s\n", d.error().message.c_str());
    return 1;
  }
  driver() = *d;
  const CudaDriver *drv = *d;
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  if (!tunedTable.empty())
    o.tuned_table_path = tunedTable == "none" ? "" : tunedTable.c_str();
  moelora_runtime *rt = nullptr;
  checkStatus(moelora_runtime_create(&o, &rt), "runtime_create");
  CUstream stream;
  CK(drv->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  char gpuName[256] = {0};
  CUdevice dev;
  CK(drv->cuCtxGetDevice(&dev));
  CK(drv->cuDeviceGetName(gpuName, sizeof(gpuName), dev));

  const double bw = measureCopyBandwidth(stream);
  std::printf("GPU: %s; D2D copy bandwidth %.0f GB/s (read+write)\n", gpuName,
              bw / 1e9);
  Buffer flush(size_t(256) << 20);

  std::vector<Result> results;
  std::vector<std::string> hostCosts;
  ProblemFactory factory(12345);
  std::printf("%-44s %-11s %9s %9s %6s %9s  %s\n", "case", "path", "us",
              "floor_us", "floor%", "triton_us", "config");
  for (const BenchCase &c : benchCases(fp16)) {
    if (!filter.empty() && c.name().find(filter) == std::string::npos)
      continue;
    if (quick && c.M == 4096)
      continue;
    auto prob = factory.make(c, rt, stream);
    moelora_fused_args &a = prob->args;
    moelora_plan plan;
    checkStatus(moelora_plan_fused(rt, &a, &plan), "plan");
    checkStatus(moelora_warmup(rt, &a, 1), "warmup");
    checkStatus(moelora_fused_moe_lora(rt, &a, stream), "fused");
    CK(drv->cuStreamSynchronize(stream));
    const int iters = c.M >= 4096 ? 100 : 200;
    double medianUs = timeLaunch(
        [&](CUstream s) {
          checkStatus(moelora_fused_moe_lora(rt, &a, s), "fused (capture)");
        },
        stream, flush, iters);
    if (c.name() == "qwen3moe_w13_decode_M1_R16" ||
        c.name() == "qwen3moe_w13_prefill_M512_R16") {
      // Host time per call: plan + cache hit + argument packing + launch
      // enqueue, no synchronisation inside the loop.
      const int n = 2000;
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i)
        checkStatus(moelora_fused_moe_lora(rt, &a, stream), "fused");
      double hostUs = std::chrono::duration<double, std::micro>(
                          std::chrono::steady_clock::now() - t0)
                          .count() /
                      n;
      CK(drv->cuStreamSynchronize(stream));
      t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i)
        checkStatus(moelora_plan_fused(rt, &a, &plan), "plan");
      double planUs = std::chrono::duration<double, std::micro>(
                          std::chrono::steady_clock::now() - t0)
                          .count() /
                      n;
      hostCosts.push_back(
          fmt::format("{}: host time per moelora_fused_moe_lora call {:.2f} us "
                      "(moelora_plan_fused alone {:.2f} us)",
                      c.name(), hostUs, planUs));
    }

    double bytes = prob->floorBytes;
    Result r;
    r.c = c;
    r.name = c.name();
    r.path = plan.path == MOELORA_PATH_SMALL_BATCH ? "small_batch"
             : plan.path == MOELORA_PATH_ONE_SHOT  ? "one_shot"
                                                   : "two_kernel";
    r.config = plan.launches[0].cache_key;
    if (plan.num_launches > 1)
      r.config += " + " + std::string(plan.launches[1].cache_key);
    if (plan.npid > 1)
      r.config += fmt::format(" npid={}", plan.npid);
    r.us = medianUs;
    r.bytes = bytes;
    r.floorUs = bytes / bw * 1e6;
    r.tritonUs = tritonMicros(c);
    r.launches = plan.num_launches;
    results.push_back(r);
    std::printf("%-44s %-11s %9.1f %9.1f %5.0f%% %9s  %s\n", r.name.c_str(),
                r.path.c_str(), r.us, r.floorUs, 100.0 * r.floorUs / r.us,
                r.tritonUs > 0 ? fmt::format("{:.1f}", r.tritonUs).c_str()
                               : "-",
                r.config.c_str());
    std::fflush(stdout);
  }

  // ---- Host-side costs ----
  std::printf("\nHost costs\n");
  for (const std::string &line : hostCosts)
    std::printf("%s\n", line.c_str());
  {
    BenchCase c{&kPresets[0], Shape::W13, 1, 16, false, false, false};
    moelora_fused_args shape = benchShapeArgs(c);
    MoeLoraCall call;
    call.dtype = DType::BF16;
    call.numTokens = 1;
    call.topK = 8;
    call.K = 2048;
    call.N = 1408;
    call.rank = 16;
    call.numSlices = 2;
    call.maxLoras = 4;
    call.numActiveLoras = 4;
    call.numExperts = 64;
    DeviceInfo info{90, 132, gpuName};
    auto plan = planFusedMoeLora(call, false, info, nullptr);
    ModuleCacheOptions co;
    co.useJit = false;
    ModuleCache cache(drv, co);
    (void)cache.init();
    auto t0 = std::chrono::steady_clock::now();
    auto k = cache.kernel(plan->kernels[0].spec);
    double diskMs = std::chrono::duration<double, std::milli>(
                        std::chrono::steady_clock::now() - t0)
                        .count();
    if (!k) {
      std::printf("disk load failed: %s\n", k.error().message.c_str());
    } else {
      const int n = 1000000;
      t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < n; ++i)
        (void)cache.kernel(plan->kernels[0].spec);
      double hitNs = std::chrono::duration<double, std::nano>(
                         std::chrono::steady_clock::now() - t0)
                         .count() /
                     n;
      std::printf("disk-cache load (read, hash check, cuModuleLoadDataEx): "
                  "%.2f ms\nin-memory cache hit: %.0f ns\n",
                  diskMs, hitNs);
    }
    (void)shape;
  }
  // Per-family module load (the device part of a cold JIT; generation
  // itself happens on the host: see benchmarks/results/generation-time.md).
  for (const char *fam :
       {"one_shot", "small_batch", "shrink", "expand", "align_block_size"}) {
    for (const auto &entry : std::filesystem::directory_iterator(
             std::getenv("MOELORA_CACHE_DIR") ? std::getenv("MOELORA_CACHE_DIR")
                                              : ".")) {
      std::string f = entry.path().filename().string();
      if (f.rfind(std::string("moelora_") + fam + "_", 0) != 0 ||
          entry.path().extension() != ".ptx")
        continue;
      std::ifstream in(entry.path());
      std::string ptx((std::istreambuf_iterator<char>(in)), {});
      auto t0 = std::chrono::steady_clock::now();
      CUmodule m;
      CK(drv->cuModuleLoadDataEx(&m, ptx.c_str(), 0, nullptr, nullptr));
      double ms = std::chrono::duration<double, std::milli>(
                      std::chrono::steady_clock::now() - t0)
                      .count();
      drv->cuModuleUnload(m);
      std::printf("module load (PTX -> SASS by the driver) %-16s %.2f ms\n",
                  fam, ms);
      break;
    }
  }
  std::printf("\n");

  // CSV + JSON.
  {
    std::ofstream csv(outDir + "/bench.csv");
    csv << "case,path,us,floor_us,floor_fraction,triton_us,bytes,config\n";
    nlohmann::json j = {{"gpu", gpuName}, {"copy_bandwidth_gbps", bw / 1e9}};
    for (const Result &r : results) {
      csv << fmt::format("{},{},{:.2f},{:.2f},{:.3f},{:.1f},{:.0f},\"{}\"\n",
                         r.name, r.path, r.us, r.floorUs, r.floorUs / r.us,
                         r.tritonUs, r.bytes, r.config);
      j["cases"].push_back({{"case", r.name},
                            {"path", r.path},
                            {"us", r.us},
                            {"floor_us", r.floorUs},
                            {"triton_us", r.tritonUs},
                            {"bytes", r.bytes},
                            {"config", r.config}});
    }
    std::ofstream(outDir + "/bench.json") << j.dump(1);
  }
  if (!pathChoice.empty())
    writePathChoice(results, gpuName, currentPaths, pathChoice);
  moelora_runtime_destroy(rt);
  return 0;
}
