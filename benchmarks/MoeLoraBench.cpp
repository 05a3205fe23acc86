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
// Kernels come from the disk cache $MOELORA_CACHE_DIR (moelora-bench-prepare
// fills it on a machine with the generator).
//
//===----------------------------------------------------------------------===//

#include "BenchCases.h"
#include "moelora/Runtime/Runtime.h"
#include "moelora/Support/Half.h"

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

namespace {

const CudaDriver *drv = nullptr;

void check(CUresult r, const char *what) {
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what,
                 drv->describe(r).c_str());
    std::exit(1);
  }
}
#define CK(call) check((call), #call)

void checkStatus(moelora_status s, const char *what) {
  if (s != MOELORA_OK) {
    std::fprintf(stderr, "moelora error in %s: %s\n", what,
                 moelora_last_error());
    std::exit(1);
  }
}

struct Buffer {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
  Buffer() = default;
  explicit Buffer(size_t n) : bytes(n) { CK(drv->cuMemAlloc(&ptr, std::max<size_t>(n, 16))); }
  Buffer(Buffer &&o) noexcept : ptr(o.ptr), bytes(o.bytes) { o.ptr = 0; }
  Buffer &operator=(Buffer &&o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~Buffer() {
    if (ptr)
      drv->cuMemFree(ptr);
  }
  void *get() const { return reinterpret_cast<void *>(ptr); }
};

/// Random T values in [-scale, scale], generated on many threads and
/// uploaded in chunks (weights reach ~2 GB for glm5_1).
Buffer randomTensor(DType t, size_t n, float scale, uint64_t seed) {
  Buffer b(n * 2);
  const size_t chunk = size_t(64) << 20;
  std::vector<uint16_t> host(std::min(n, chunk));
  for (size_t off = 0; off < n; off += chunk) {
    size_t len = std::min(chunk, n - off);
    unsigned threads = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> pool;
    for (unsigned w = 0; w < threads; ++w)
      pool.emplace_back([&, w] {
        std::mt19937_64 rng(seed ^ (off * 31 + w * 0x9e3779b97f4a7c15ull));
        std::uniform_real_distribution<float> d(-scale, scale);
        for (size_t i = w; i < len; i += threads)
          host[i] = fromFloat(t, d(rng));
      });
    for (auto &th : pool)
      th.join();
    CK(drv->cuMemcpyHtoD(b.ptr + off * 2, host.data(), len * 2));
  }
  return b;
}

template <typename T> Buffer upload(const std::vector<T> &v) {
  Buffer b(v.size() * sizeof(T));
  if (!v.empty())
    CK(drv->cuMemcpyHtoD(b.ptr, v.data(), v.size() * sizeof(T)));
  return b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// D2D copy bandwidth (read + write bytes per second), the roofline.
double measureCopyBandwidth(CUstream s) {
  const size_t bytes = size_t(1) << 30;
  Buffer a(bytes), b(bytes);
  CUevent e0, e1;
  CK(drv->cuEventCreate(&e0, 0));
  CK(drv->cuEventCreate(&e1, 0));
  std::vector<double> ms;
  for (int i = 0; i < 25; ++i) {
    CK(drv->cuEventRecord(e0, s));
    CK(drv->cuMemcpyDtoDAsync(b.ptr, a.ptr, bytes, s));
    CK(drv->cuEventRecord(e1, s));
    CK(drv->cuEventSynchronize(e1));
    float t;
    CK(drv->cuEventElapsedTime(&t, e0, e1));
    if (i >= 5)
      ms.push_back(t);
  }
  drv->cuEventDestroy(e0);
  drv->cuEventDestroy(e1);
  return 2.0 * bytes / (median(ms) * 1e-3);
}

struct Weights {
  std::vector<Buffer> a, b;
  Buffer aPtrs, bPtrs;
};

struct Result {
  std::string name, path, config;
  double us = 0, floorUs = 0, tritonUs = 0;
  double bytes = 0;
  int launches = 0;
};

} // namespace

int main(int argc, char **argv) {
  bool quick = false, fp16 = false;
  std::string filter, outDir = std::getenv("OUT") ? std::getenv("OUT") : "bench-out";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick")
      quick = true;
    else if (a == "--fp16")
      fp16 = true;
    else if (a == "--filter" && i + 1 < argc)
      filter = argv[++i];
    else if (a == "--out" && i + 1 < argc)
      outDir = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--fp16] [--filter s] [--out dir]\n", argv[0]);
      return 2;
    }
  }
  std::filesystem::create_directories(outDir);
  auto d = CudaDriver::get();
  if (!d) {
    std::fprintf(stderr, "moelora-bench: %s\n", d.error().message.c_str());
    return 1;
  }
  drv = *d;
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
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
  CUevent e0, e1;
  CK(drv->cuEventCreate(&e0, 0));
  CK(drv->cuEventCreate(&e1, 0));

  std::vector<Result> results;
  std::vector<std::string> hostCosts;
  std::map<std::string, Weights> weightCache;
  std::mt19937_64 rng(12345);
  std::printf("%-44s %-11s %9s %9s %6s %9s  %s\n", "case", "path", "us",
              "floor_us", "floor%", "triton_us", "config");
  for (const BenchCase &c : benchCases(fp16)) {
    if (!filter.empty() && c.name().find(filter) == std::string::npos)
      continue;
    if (quick && c.M == 4096)
      continue;
    const DType dt = c.dtype == MOELORA_DTYPE_BF16 ? DType::BF16 : DType::F16;
    const int K = c.K(), N = c.N(), R = c.rank, E = c.preset->experts;
    const int topK = c.preset->topK, L = c.maxLoras, S = c.slices();
    // Weights: one set per (preset, shape, rank, dtype); the rest of the
    // sets are dropped to bound device memory.
    std::string wkey = fmt::format("{}_{}_{}_{}", c.preset->name, int(c.shape),
                                   R, int(c.dtype));
    if (!weightCache.count(wkey)) {
      weightCache.clear();
      Weights w;
      std::vector<uint64_t> ap, bp;
      for (int s = 0; s < S; ++s) {
        w.a.push_back(randomTensor(dt, size_t(L) * E * R * K,
                                   1.0f / std::sqrt(float(K)), rng()));
        w.b.push_back(randomTensor(dt, size_t(L) * E * N * R,
                                   1.0f / std::sqrt(float(R)), rng()));
        ap.push_back(w.a.back().ptr);
        bp.push_back(w.b.back().ptr);
      }
      w.aPtrs = upload(ap);
      w.bPtrs = upload(bp);
      weightCache.emplace(wkey, std::move(w));
    }
    Weights &w = weightCache.at(wkey);

    // Routing: distinct experts per token (a quarter of them when sparse),
    // tokens split into sequences with random adapters.
    const int pairs = c.M * topK;
    const int expertPool = c.sparse ? std::max(topK, E / 4) : E;
    std::vector<int32_t> topkIds(pairs), mapping(c.M);
    std::vector<float> weights(pairs);
    for (int t = 0; t < c.M; ++t) {
      std::vector<int> pool(expertPool);
      for (int e = 0; e < expertPool; ++e)
        pool[e] = e;
      std::shuffle(pool.begin(), pool.end(), rng);
      for (int k = 0; k < topK; ++k) {
        topkIds[t * topK + k] = pool[k];
        weights[t * topK + k] = float(rng() % 1000) / 1000.0f;
      }
    }
    for (int t = 0; t < c.M;) {
      int len = 1 + int(rng() % std::max(1, c.M / 4 + 1));
      int l = int(rng() % L);
      for (int i = 0; i < len && t < c.M; ++i, ++t)
        mapping[t] = l;
    }
    std::vector<int32_t> loraIds, enabled(L + 1, 1);
    for (int l = 0; l < L; ++l)
      loraIds.push_back(l);
    loraIds.push_back(-1);
    Buffer x = randomTensor(dt, size_t(c.xRows()) * K, 1.0f, rng());
    Buffer out = randomTensor(dt, size_t(pairs) * S * N, 1.0f, rng());
    Buffer dIds = upload(topkIds), dMap = upload(mapping),
           dW = upload(weights), dLora = upload(loraIds),
           dEn = upload(enabled);

    moelora_fused_args a = benchShapeArgs(c);
    a.x = x.get();
    a.x_stride[0] = K;
    a.x_stride[1] = 1;
    a.lora_a_ptrs = w.aPtrs.get();
    a.lora_a_stride[0] = int64_t(E) * R * K;
    a.lora_a_stride[1] = int64_t(R) * K;
    a.lora_a_stride[2] = K;
    a.lora_a_stride[3] = 1;
    a.lora_b_ptrs = w.bPtrs.get();
    a.lora_b_stride[0] = int64_t(E) * N * R;
    a.lora_b_stride[1] = int64_t(N) * R;
    a.lora_b_stride[2] = R;
    a.lora_b_stride[3] = 1;
    a.output = out.get();
    a.output_stride[2] = 1;
    a.output_stride[1] = int64_t(S) * N;
    a.output_stride[0] = int64_t(topK) * S * N;
    a.topk_weights = static_cast<const float *>(dW.get());
    a.topk_ids = static_cast<const int32_t *>(dIds.get());
    a.token_lora_mapping = static_cast<const int32_t *>(dMap.get());
    a.lora_ids = static_cast<const int32_t *>(dLora.get());
    a.adapter_enabled = static_cast<const int32_t *>(dEn.get());
    Buffer sorted, experts, padded, workspace;
    if (c.sorted) {
      sorted = Buffer(size_t(L) * a.EM * 4);
      experts = Buffer(size_t(L) * (a.EM / 64) * 4);
      padded = Buffer(size_t(L) * 4);
      moelora_align_args al;
      moelora_align_args_init(&al);
      al.topk_ids = a.topk_ids;
      al.token_lora_mapping = a.token_lora_mapping;
      al.sorted_token_ids = static_cast<int32_t *>(sorted.get());
      al.expert_ids = static_cast<int32_t *>(experts.get());
      al.num_tokens_post_padded = static_cast<int32_t *>(padded.get());
      al.num_tokens = c.M;
      al.top_k = topK;
      al.num_experts = E;
      al.max_loras = L;
      al.block_size_m = 64;
      al.EM = a.EM;
      checkStatus(moelora_align_block_size(rt, &al, stream), "align");
      a.sorted_token_ids = al.sorted_token_ids;
      a.expert_ids = al.expert_ids;
      a.num_tokens_post_padded = al.num_tokens_post_padded;
    }
    size_t ws = moelora_workspace_bytes(&a);
    workspace = Buffer(ws);
    a.workspace = workspace.get();
    moelora_plan plan;
    checkStatus(moelora_plan_fused(rt, &a, &plan), "plan");
    checkStatus(moelora_warmup(rt, &a, 1), "warmup");
    checkStatus(moelora_fused_moe_lora(rt, &a, stream), "fused");
    CK(drv->cuStreamSynchronize(stream));

    CUgraph graph;
    CUgraphExec exec;
    CK(drv->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
    checkStatus(moelora_fused_moe_lora(rt, &a, stream), "fused (capture)");
    CK(drv->cuStreamEndCapture(stream, &graph));
    CK(drv->cuGraphInstantiateWithFlags(&exec, graph, 0));
    const int iters = c.M >= 4096 ? 100 : 200;
    std::vector<double> us;
    for (int i = 0; i < iters + 5; ++i) {
      CK(drv->cuMemsetD8Async(flush.ptr, uint8_t(i), flush.bytes, stream));
      CK(drv->cuEventRecord(e0, stream));
      CK(drv->cuGraphLaunch(exec, stream));
      CK(drv->cuEventRecord(e1, stream));
      CK(drv->cuEventSynchronize(e1));
      float t;
      CK(drv->cuEventElapsedTime(&t, e0, e1));
      if (i >= 5)
        us.push_back(t * 1e3);
    }
    drv->cuGraphExecDestroy(exec);
    drv->cuGraphDestroy(graph);
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
      hostCosts.push_back(fmt::format(
          "{}: host time per moelora_fused_moe_lora call {:.2f} us "
          "(moelora_plan_fused alone {:.2f} us)",
          c.name(), hostUs, planUs));
    }

    // Memory floor: x once, each used (adapter, expert) A/B slice once, the
    // output read and written for every computed pair.
    std::set<std::pair<int, int>> used;
    for (int p = 0; p < pairs; ++p)
      used.insert({mapping[p / topK], topkIds[p]});
    double bytes = double(c.xRows()) * K * 2 +
                   double(used.size()) * S * (double(R) * K + double(N) * R) *
                       2 +
                   double(pairs) * S * N * 2 * 2;
    Result r;
    r.name = c.name();
    r.path = plan.path == MOELORA_PATH_SMALL_BATCH ? "small_batch"
             : plan.path == MOELORA_PATH_ONE_SHOT  ? "one_shot"
                                                   : "two_kernel";
    r.config = plan.launches[0].cache_key;
    if (plan.num_launches > 1)
      r.config += " + " + std::string(plan.launches[1].cache_key);
    if (plan.npid > 1)
      r.config += fmt::format(" npid={}", plan.npid);
    r.us = median(us);
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
  for (const char *fam : {"one_shot", "small_batch", "shrink", "expand",
                          "align_block_size"}) {
    for (const auto &entry :
         std::filesystem::directory_iterator(std::getenv("MOELORA_CACHE_DIR")
                                                 ? std::getenv("MOELORA_CACHE_DIR")
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
  moelora_runtime_destroy(rt);
  return 0;
}
