//===- BenchHarness.h - Inputs and timing shared by bench and tuner -*- C++
//-*-===//
//
// Builds a benchmark case's inputs on the GPU as the contract describes
// (random weights, distinct experts per token, adapters per token
// sequence, sorted metadata from moelora_align_block_size) and times a
// launch the way every number of this project is timed: captured in a CUDA
// graph, each replay after a 256 MiB memset that flushes the L2, timed
// alone with events, median of many.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_BENCHMARKS_BENCHHARNESS_H
#define MOELORA_BENCHMARKS_BENCHHARNESS_H

#include "BenchCases.h"
#include "moelora/Runtime/CudaDriver.h"
#include "moelora/Runtime/LaunchArgs.h"
#include "moelora/Support/Half.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

namespace moelora::bench {

inline const CudaDriver *&driver() {
  static const CudaDriver *d = nullptr;
  return d;
}

inline void checkCu(CUresult r, const char *what) {
  if (r != CUDA_SUCCESS) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what,
                 driver()->describe(r).c_str());
    std::exit(1);
  }
}
#define CK(call) ::moelora::bench::checkCu((call), #call)

inline void checkStatus(moelora_status s, const char *what) {
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
  explicit Buffer(size_t n) : bytes(n) {
    CK(driver()->cuMemAlloc(&ptr, std::max<size_t>(n, 16)));
  }
  Buffer(Buffer &&o) noexcept : ptr(o.ptr), bytes(o.bytes) { o.ptr = 0; }
  Buffer &operator=(Buffer &&o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~Buffer() {
    if (ptr)
      driver()->cuMemFree(ptr);
  }
  void *get() const { return reinterpret_cast<void *>(ptr); }
};

/// Random T values in [-scale, scale], generated on all cores and uploaded
/// in chunks (weights reach ~2 GB for glm5_1).
inline Buffer randomTensor(DType t, size_t n, float scale, uint64_t seed) {
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
    CK(driver()->cuMemcpyHtoD(b.ptr + off * 2, host.data(), len * 2));
  }
  return b;
}

template <typename T> Buffer upload(const std::vector<T> &v) {
  Buffer b(v.size() * sizeof(T));
  if (!v.empty())
    CK(driver()->cuMemcpyHtoD(b.ptr, v.data(), v.size() * sizeof(T)));
  return b;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

/// D2D copy bandwidth (read + write bytes per second): the roofline.
inline double measureCopyBandwidth(CUstream s) {
  const size_t bytes = size_t(1) << 30;
  Buffer a(bytes), b(bytes);
  CUevent e0, e1;
  CK(driver()->cuEventCreate(&e0, 0));
  CK(driver()->cuEventCreate(&e1, 0));
  std::vector<double> ms;
  for (int i = 0; i < 25; ++i) {
    CK(driver()->cuEventRecord(e0, s));
    CK(driver()->cuMemcpyDtoDAsync(b.ptr, a.ptr, bytes, s));
    CK(driver()->cuEventRecord(e1, s));
    CK(driver()->cuEventSynchronize(e1));
    float t;
    CK(driver()->cuEventElapsedTime(&t, e0, e1));
    if (i >= 5)
      ms.push_back(t);
  }
  driver()->cuEventDestroy(e0);
  driver()->cuEventDestroy(e1);
  return 2.0 * bytes / (median(ms) * 1e-3);
}

/// LoRA weights of one (preset, shape, rank, dtype), shared by its cases.
struct Weights {
  std::vector<Buffer> a, b;
  Buffer aPtrs, bPtrs;
  std::vector<const void *> aHost; ///< lora_a_host_ptrs
};

/// A case's inputs on the device and its C ABI arguments.
struct BenchProblem {
  std::shared_ptr<Weights> weights;
  Buffer x, out, outInit, ids, mapping, topkWeights, loraIds, enabled;
  Buffer sorted, experts, padded, workspace;
  std::vector<int32_t> topkIds, tokenMapping;
  moelora_fused_args args;
  double floorBytes = 0;
};

class ProblemFactory {
public:
  explicit ProblemFactory(uint64_t seed) : rng(seed) {}

  /// Builds the case's inputs; sorted metadata through `rt` (the GPU align).
  std::unique_ptr<BenchProblem> make(const BenchCase &c, moelora_runtime *rt,
                                     CUstream stream) {
    auto p = std::make_unique<BenchProblem>();
    const DType dt = c.dtype == MOELORA_DTYPE_BF16 ? DType::BF16 : DType::F16;
    const int K = c.K(), N = c.N(), R = c.rank, E = c.preset->experts;
    const int topK = c.preset->topK, L = c.maxLoras, S = c.slices();
    std::string key = fmt::format("{}_{}_{}_{}", c.preset->name, int(c.shape),
                                  R, int(c.dtype));
    if (key != weightsKey) {
      weights.reset(); // free the previous set first: device memory
      auto w = std::make_shared<Weights>();
      std::vector<uint64_t> ap, bp;
      for (int s = 0; s < S; ++s) {
        w->a.push_back(randomTensor(dt, size_t(L) * E * R * K,
                                    1.0f / std::sqrt(float(K)), rng()));
        w->b.push_back(randomTensor(dt, size_t(L) * E * N * R,
                                    1.0f / std::sqrt(float(R)), rng()));
        ap.push_back(w->a.back().ptr);
        bp.push_back(w->b.back().ptr);
      }
      for (uint64_t ptr : ap)
        w->aHost.push_back(reinterpret_cast<const void *>(ptr));
      w->aPtrs = upload(ap);
      w->bPtrs = upload(bp);
      weights = w;
      weightsKey = key;
    }
    p->weights = weights;
    // Routing, adapters and activations come from the case's own inputs
    // (not the path, not the order of the cases): the one-shot and
    // two-kernel cases of a bucket see the same calls, and adding a case
    // leaves the others' inputs (and so their bytes) as they were.
    std::mt19937_64 caseRng(std::hash<std::string>{}(
        fmt::format("{}_{}_{}_{}_{}_{}_{}", c.preset->name, int(c.shape), c.M,
                    R, int(c.dtype), c.sorted, c.sparse)));
    const int pairs = c.M * topK;
    const int pool = c.sparse ? std::max(topK, E / 4) : E;
    p->topkIds.resize(pairs);
    p->tokenMapping.resize(c.M);
    std::vector<float> w(pairs);
    for (int t = 0; t < c.M; ++t) {
      std::vector<int> experts(pool);
      for (int e = 0; e < pool; ++e)
        experts[e] = e;
      std::shuffle(experts.begin(), experts.end(), caseRng);
      for (int k = 0; k < topK; ++k) {
        p->topkIds[t * topK + k] = experts[k];
        w[t * topK + k] = float(caseRng() % 1000) / 1000.0f;
      }
    }
    for (int t = 0; t < c.M;) {
      int len = 1 + int(caseRng() % std::max(1, c.M / 4 + 1));
      int l = int(caseRng() % L);
      for (int i = 0; i < len && t < c.M; ++i, ++t)
        p->tokenMapping[t] = l;
    }
    std::vector<int32_t> loraIds, enabled(L + 1, 1);
    for (int l = 0; l < L; ++l)
      loraIds.push_back(l);
    loraIds.push_back(-1);
    p->x = randomTensor(dt, size_t(c.xRows()) * K, 1.0f, caseRng());
    p->outInit = randomTensor(dt, size_t(pairs) * S * N, 1.0f, caseRng());
    p->out = Buffer(p->outInit.bytes);
    CK(driver()->cuMemcpyDtoDAsync(p->out.ptr, p->outInit.ptr, p->out.bytes,
                                   stream));
    p->ids = upload(p->topkIds);
    p->mapping = upload(p->tokenMapping);
    p->topkWeights = upload(w);
    p->loraIds = upload(loraIds);
    p->enabled = upload(enabled);

    moelora_fused_args &a = p->args;
    a = benchShapeArgs(c);
    a.x = p->x.get();
    a.x_stride[0] = K;
    a.x_stride[1] = 1;
    a.lora_a_ptrs = weights->aPtrs.get();
    a.lora_a_host_ptrs = weights->aHost.data();
    a.lora_a_stride[0] = int64_t(E) * R * K;
    a.lora_a_stride[1] = int64_t(R) * K;
    a.lora_a_stride[2] = K;
    a.lora_a_stride[3] = 1;
    a.lora_b_ptrs = weights->bPtrs.get();
    a.lora_b_stride[0] = int64_t(E) * N * R;
    a.lora_b_stride[1] = int64_t(N) * R;
    a.lora_b_stride[2] = R;
    a.lora_b_stride[3] = 1;
    a.output = p->out.get();
    a.output_stride[2] = 1;
    a.output_stride[1] = int64_t(S) * N;
    a.output_stride[0] = int64_t(topK) * S * N;
    a.topk_weights = static_cast<const float *>(p->topkWeights.get());
    a.topk_ids = static_cast<const int32_t *>(p->ids.get());
    a.token_lora_mapping = static_cast<const int32_t *>(p->mapping.get());
    a.lora_ids = static_cast<const int32_t *>(p->loraIds.get());
    a.adapter_enabled = static_cast<const int32_t *>(p->enabled.get());
    if (c.sorted) {
      p->sorted = Buffer(size_t(L) * a.EM * 4);
      p->experts = Buffer(size_t(L) * (a.EM / a.block_size_m) * 4);
      p->padded = Buffer(size_t(L) * 4);
      moelora_align_args al;
      moelora_align_args_init(&al);
      al.topk_ids = a.topk_ids;
      al.token_lora_mapping = a.token_lora_mapping;
      al.sorted_token_ids = static_cast<int32_t *>(p->sorted.get());
      al.expert_ids = static_cast<int32_t *>(p->experts.get());
      al.num_tokens_post_padded = static_cast<int32_t *>(p->padded.get());
      al.num_tokens = c.M;
      al.top_k = topK;
      al.num_experts = E;
      al.max_loras = L;
      al.block_size_m = a.block_size_m;
      al.EM = a.EM;
      checkStatus(moelora_align_block_size(rt, &al, stream), "align");
      a.sorted_token_ids = al.sorted_token_ids;
      a.expert_ids = al.expert_ids;
      a.num_tokens_post_padded = al.num_tokens_post_padded;
    }
    p->workspace = Buffer(moelora_workspace_bytes(&a));
    a.workspace = p->workspace.get();
    // Memory floor: x once, each used (adapter, expert) A/B slice once, the
    // output read and written for every computed pair.
    std::set<std::pair<int, int>> used;
    for (int q = 0; q < pairs; ++q)
      used.insert({p->tokenMapping[q / topK], p->topkIds[q]});
    p->floorBytes =
        double(c.xRows()) * K * 2 +
        double(used.size()) * S * (double(R) * K + double(N) * R) * 2 +
        double(pairs) * S * N * 2 * 2;
    CK(driver()->cuStreamSynchronize(stream));
    return p;
  }

  std::mt19937_64 rng;

private:
  std::shared_ptr<Weights> weights;
  std::string weightsKey;
};

/// Median microseconds of `iters` graph replays of what `launch` enqueues,
/// each after an L2 flush, each timed alone.
inline double timeLaunch(const std::function<void(CUstream)> &launch,
                         CUstream stream, const Buffer &flush, int iters) {
  CUgraph graph;
  CUgraphExec exec;
  CK(driver()->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  launch(stream);
  CK(driver()->cuStreamEndCapture(stream, &graph));
  CK(driver()->cuGraphInstantiateWithFlags(&exec, graph, 0));
  CUevent e0, e1;
  CK(driver()->cuEventCreate(&e0, 0));
  CK(driver()->cuEventCreate(&e1, 0));
  std::vector<double> us;
  for (int i = 0; i < iters + 5; ++i) {
    CK(driver()->cuMemsetD8Async(flush.ptr, uint8_t(i), flush.bytes, stream));
    CK(driver()->cuEventRecord(e0, stream));
    CK(driver()->cuGraphLaunch(exec, stream));
    CK(driver()->cuEventRecord(e1, stream));
    CK(driver()->cuEventSynchronize(e1));
    float t;
    CK(driver()->cuEventElapsedTime(&t, e0, e1));
    if (i >= 5)
      us.push_back(t * 1e3);
  }
  driver()->cuEventDestroy(e0);
  driver()->cuEventDestroy(e1);
  driver()->cuGraphExecDestroy(exec);
  driver()->cuGraphDestroy(graph);
  return median(us);
}

} // namespace moelora::bench

#endif // MOELORA_BENCHMARKS_BENCHHARNESS_H
