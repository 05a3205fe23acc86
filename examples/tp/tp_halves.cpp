// Tensor parallelism with moelora's C ABI: vLLM's fully_sharded MoE-LoRA of
// a column-parallel layer (W13: gate and up, two slices) split over two
// ranks, with moelora's two halves and the engine's own collective between
// them, as vLLM's _fused_moe_lora does:
//
//   rank r: moelora_shrink  r_r = x @ A_r^T     its workspace (S, pairs, R/2)
//   engine: all-gather along R                  every rank's (S, pairs, R)
//   rank r: moelora_expand  out_r += r @ B_r^T  its output (T, top_k, S*N/2)
//
// A_r holds rank rows [r*R/2, (r+1)*R/2) of each slice's A; B_r holds output
// rows [r*N/2, (r+1)*N/2) of each slice's B, at the full rank R. The
// intermediate is contiguous (num_slices, num_tokens*top_k, rank) in the
// call's dtype at the start of the workspace (moelora_workspace_bytes).
//
// Here both ranks live on one GPU in one process and the all-gather is
// cudaMemcpy2DAsync; a real engine calls its NCCL all-gather on each rank
// (ncclAllGather concatenates along the first dimension: move the rank
// dimension next to R after it, as vLLM's tensor_model_parallel_all_gather
// does). Without a GPU the example plans and warms the kernels; with one it
// checks both ranks' outputs against the unsharded moelora_fused_moe_lora
// and a float64 reference.
#include <moelora/moelora.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>
#ifdef ENGINE_HAS_CUDART
#include <cuda_runtime.h>
#endif

namespace {

int fail(const char *what) {
  std::fprintf(stderr, "%s: %s\n", what, moelora_last_error());
  return 1;
}

// The problem: 8 tokens, top-2 of 8 experts, two slices, K 256 -> N 128,
// rank 32, two adapters, fp16, naive (unsorted) metadata; two ranks.
constexpr int T = 8, TopK = 2, E = 8, K = 256, N = 128, R = 32, S = 2,
              Loras = 2, World = 2;
constexpr int Nr = N / World, Rr = R / World; // one rank's N and R
constexpr int Pairs = T * TopK;

using Half = _Float16;

// The engine's collective: rank i's intermediate (rows x cols elements of
// elemBytes) in ranks[i], every rank's gathered (rows x world*cols) out in
// gathered[i], on `stream`. Returns 0 on success. This one simulates the
// ranks on one device; an engine passes its NCCL all-gather instead.
using AllGatherFn = int (*)(const void *const *ranks, void *const *gathered,
                            int world, long rows, long cols, size_t elemBytes,
                            void *stream);

#ifdef ENGINE_HAS_CUDART
int allGatherOneDevice(const void *const *ranks, void *const *gathered,
                       int world, long rows, long cols, size_t elemBytes,
                       void *stream) {
  size_t width = size_t(cols) * elemBytes;
  for (int dst = 0; dst < world; ++dst)
    for (int src = 0; src < world; ++src)
      if (cudaMemcpy2DAsync(static_cast<char *>(gathered[dst]) + src * width,
                            world * width, ranks[src], width, width,
                            size_t(rows), cudaMemcpyDeviceToDevice,
                            static_cast<cudaStream_t>(stream)) != cudaSuccess)
        return 1;
  return 0;
}
#endif

float val(long i, int salt) {
  return float((i * 37 + salt * 11) % 17 - 8) / 64.0f;
}

// Every device array lives here; without a GPU the host copies stand in
// (planning and warm-up read no memory).
struct Memory {
  bool gpu = false;
  std::vector<void *> owned;
  std::vector<std::vector<void *>> tables; // host pointer tables
  void *place(const void *src, size_t bytes) {
    if (!gpu)
      return const_cast<void *>(src);
    void *d = nullptr;
#ifdef ENGINE_HAS_CUDART
    if (cudaMalloc(&d, bytes) != cudaSuccess ||
        cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice) != cudaSuccess)
      return nullptr;
    owned.push_back(d);
#else
    (void)bytes;
#endif
    return d;
  }
  void *zeros(std::vector<char> &host) {
    return place(host.data(), host.size());
  }
  ~Memory() {
#ifdef ENGINE_HAS_CUDART
    for (void *d : owned)
      cudaFree(d);
#endif
  }
};

// The call's common part: shapes, metadata, strides of x and the output.
void common(moelora_fused_args &a, int rank, int n, const void *x,
            const float *w, const int32_t *ids, const int32_t *map,
            const int32_t *loraIds, const int32_t *on) {
  moelora_fused_args_init(&a);
  a.dtype = MOELORA_DTYPE_FP16;
  a.num_tokens = T, a.top_k = TopK, a.num_experts = E;
  a.K = K, a.N = n, a.rank = rank, a.num_slices = S;
  a.max_loras = Loras, a.num_active_loras = Loras;
  a.x = x, a.x_stride[0] = K, a.x_stride[1] = 1;
  a.topk_weights = w, a.topk_ids = ids, a.token_lora_mapping = map;
  a.lora_ids = loraIds, a.adapter_enabled = on;
  a.output_stride[0] = int64_t(TopK) * S * n, a.output_stride[1] = S * n;
  a.output_stride[2] = 1;
}

void weights(moelora_fused_args &a, const void *aPtrs, int rank,
             const void *bPtrs, int n, int bRank) {
  const int64_t sa[4] = {int64_t(E) * rank * K, int64_t(rank) * K, K, 1};
  const int64_t sb[4] = {int64_t(E) * n * bRank, int64_t(n) * bRank, bRank, 1};
  std::memcpy(a.lora_a_stride, sa, sizeof(sa));
  std::memcpy(a.lora_b_stride, sb, sizeof(sb));
  a.lora_a_ptrs = aPtrs, a.lora_b_ptrs = bPtrs;
}

} // namespace

int main() {
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(nullptr, &rt) != MOELORA_OK)
    return fail("moelora_runtime_create");
  moelora_runtime_info info{};
  info.struct_size = sizeof(info);
  if (moelora_get_runtime_info(rt, &info) != MOELORA_OK)
    return fail("moelora_get_runtime_info");
  std::printf("GPU: %s\n",
              info.has_device ? info.device_name : info.driver_error);

  // Host tensors: x, every slice's full A and B, and each rank's shards.
  std::vector<Half> x(size_t(T) * K);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = Half(val(long(i), 1));
  std::vector<std::vector<Half>> A(S), B(S);
  std::vector<std::vector<Half>> Ar(World * S), Br(World * S); // [r*S + s]
  for (int s = 0; s < S; ++s) {
    A[s].resize(size_t(Loras) * E * R * K);
    B[s].resize(size_t(Loras) * E * N * R);
    for (size_t i = 0; i < A[s].size(); ++i)
      A[s][i] = Half(val(long(i), 2 + s) / 4);
    for (size_t i = 0; i < B[s].size(); ++i)
      B[s][i] = Half(val(long(i), 5 + s) / 2);
    for (int r = 0; r < World; ++r) {
      std::vector<Half> &a = Ar[r * S + s], &b = Br[r * S + s];
      a.resize(size_t(Loras) * E * Rr * K);
      b.resize(size_t(Loras) * E * Nr * R);
      for (int le = 0; le < Loras * E; ++le) {
        std::memcpy(&a[size_t(le) * Rr * K],
                    &A[s][(size_t(le) * R + r * Rr) * K],
                    sizeof(Half) * Rr * K);
        std::memcpy(&b[size_t(le) * Nr * R],
                    &B[s][(size_t(le) * N + r * Nr) * R],
                    sizeof(Half) * Nr * R);
      }
    }
  }
  std::vector<int32_t> ids(Pairs), map(T), loraIds{0, 1, -1}, on{1, 1, 1};
  for (int t = 0; t < T; ++t) {
    map[t] = t % Loras;
    for (int k = 0; k < TopK; ++k)
      ids[t * TopK + k] = (t * 3 + k * 5) % E;
  }
  std::vector<float> w(Pairs, 1.0f);

  Memory mem;
  int gpus = 0;
#ifdef ENGINE_HAS_CUDART
  if (cudaGetDeviceCount(&gpus) != cudaSuccess)
    gpus = 0;
#endif
  mem.gpu = gpus > 0;
  void *dx = mem.place(x.data(), x.size() * sizeof(Half));
  auto *dw = static_cast<float *>(mem.place(w.data(), w.size() * 4));
  auto *dids = static_cast<int32_t *>(mem.place(ids.data(), ids.size() * 4));
  auto *dmap = static_cast<int32_t *>(mem.place(map.data(), map.size() * 4));
  auto *dloras = static_cast<int32_t *>(mem.place(loraIds.data(), 12));
  auto *don = static_cast<int32_t *>(mem.place(on.data(), 12));
  // Device arrays of the slices' base pointers (one per slice).
  auto ptrTable = [&](std::vector<std::vector<Half>> &t, int first) {
    std::vector<void *> p;
    for (int s = 0; s < S; ++s)
      p.push_back(
          mem.place(t[first + s].data(), t[first + s].size() * sizeof(Half)));
    mem.tables.push_back(std::move(p)); // the host table outlives its uses
    return mem.place(mem.tables.back().data(), S * sizeof(void *));
  };
  const void *aFull = ptrTable(A, 0), *bFull = ptrTable(B, 0);
  const void *aRank[World], *bRank[World];
  for (int r = 0; r < World; ++r)
    aRank[r] = ptrTable(Ar, r * S), bRank[r] = ptrTable(Br, r * S);

  // Each rank's calls: the shrink with its A shard (rank R/2), the expand
  // with its B shard at the full rank R (it reads neither x nor A).
  moelora_fused_args shrink[World], expand[World], unsharded;
  std::vector<char> outHost[World],
      fullHost(size_t(Pairs) * S * N * sizeof(Half));
  void *out[World];
  for (int r = 0; r < World; ++r) {
    outHost[r].assign(size_t(Pairs) * S * Nr * sizeof(Half), 0);
    out[r] = mem.zeros(outHost[r]);
    common(shrink[r], Rr, Nr, dx, dw, dids, dmap, dloras, don);
    weights(shrink[r], aRank[r], Rr, bRank[r], Nr, R);
    shrink[r].output = out[r];
    shrink[r].fully_sharded = 1, shrink[r].add_inputs = 1;
    expand[r] = shrink[r];
    expand[r].rank = R;
  }
  common(unsharded, R, N, dx, dw, dids, dmap, dloras, don);
  weights(unsharded, aFull, R, bFull, N, R);
  unsharded.output = mem.zeros(fullHost);
  unsharded.add_inputs = 1;

  // Start-up: every variant of these calls (shapes only).
  const moelora_fused_args calls[3] = {shrink[0], expand[0], unsharded};
  if (moelora_warmup(rt, calls, 3) != MOELORA_OK)
    return fail("moelora_warmup");
  moelora_plan plan;
  if (moelora_plan_fused(rt, &shrink[0], &plan) != MOELORA_OK)
    return fail("moelora_plan_fused (shrink)");
  std::printf("rank shrink: path %d, %s grid %ux%ux%u\n", int(plan.path),
              plan.launches[0].entry, plan.launches[0].grid[0],
              plan.launches[0].grid[1], plan.launches[0].grid[2]);
  if (moelora_plan_fused(rt, &expand[0], &plan) != MOELORA_OK)
    return fail("moelora_plan_fused (expand)");
  std::printf("rank expand: path %d, %s grid %ux%ux%u\n", int(plan.path),
              plan.launches[1].entry, plan.launches[1].grid[0],
              plan.launches[1].grid[1], plan.launches[1].grid[2]);
  size_t wsBytes = moelora_workspace_bytes(&shrink[0]);
  size_t gatheredBytes = moelora_workspace_bytes(&expand[0]);
  std::printf("workspace per rank %zu bytes, gathered %zu bytes\n", wsBytes,
              gatheredBytes);
  if (wsBytes < size_t(S) * Pairs * Rr * sizeof(Half) ||
      gatheredBytes < size_t(S) * Pairs * R * sizeof(Half))
    return std::fprintf(stderr, "workspace smaller than the intermediate\n"), 1;
  if (!mem.gpu) {
    std::printf("no GPU: planned and warmed only\n");
    moelora_runtime_destroy(rt);
    return 0;
  }

#ifdef ENGINE_HAS_CUDART
  void *stream = nullptr; // the legacy default stream
  void *ws[World], *gathered[World];
  for (int r = 0; r < World; ++r)
    if (cudaMalloc(&ws[r], wsBytes) != cudaSuccess ||
        cudaMalloc(&gathered[r], gatheredBytes) != cudaSuccess)
      return std::fprintf(stderr, "cudaMalloc failed\n"), 1;
  AllGatherFn allGather = allGatherOneDevice;

  // 1. Every rank's shrink into its own workspace.
  for (int r = 0; r < World; ++r) {
    shrink[r].workspace = ws[r];
    if (moelora_shrink(rt, &shrink[r], stream) != MOELORA_OK)
      return fail("moelora_shrink");
  }
  // 2. The engine's all-gather along R: rows are (slice, pair), R/2 columns
  //    per rank.
  if (allGather(ws, gathered, World, long(S) * Pairs, Rr, sizeof(Half), stream))
    return std::fprintf(stderr, "all-gather failed\n"), 1;
  // 3. Every rank's expand at the full rank into its output columns (offset 0:
  //    a column-parallel layer's output is the rank's own tensor).
  for (int r = 0; r < World; ++r) {
    expand[r].workspace = gathered[r];
    if (moelora_expand(rt, &expand[r], /*out_col_offset=*/0, stream) !=
        MOELORA_OK)
      return fail("moelora_expand");
  }
  // The same call unsharded, on one GPU.
  if (moelora_fused_moe_lora(rt, &unsharded, stream) != MOELORA_OK)
    return fail("moelora_fused_moe_lora");
  std::vector<Half> got[World], full(size_t(Pairs) * S * N);
  for (int r = 0; r < World; ++r) {
    got[r].resize(size_t(Pairs) * S * Nr);
    if (cudaMemcpy(got[r].data(), out[r], got[r].size() * sizeof(Half),
                   cudaMemcpyDeviceToHost) != cudaSuccess)
      return std::fprintf(stderr, "cudaMemcpy failed\n"), 1;
  }
  if (cudaMemcpy(full.data(), unsharded.output, full.size() * sizeof(Half),
                 cudaMemcpyDeviceToHost) != cudaSuccess)
    return std::fprintf(stderr, "cudaMemcpy failed\n"), 1;

  // Rank r's column s*N/2 + n is the unsharded column s*N + r*N/2 + n.
  // float64 reference with the intermediate rounded to fp16 (as both paths).
  double errRef = 0, errFull = 0, ref2 = 0;
  for (int p = 0; p < Pairs; ++p) {
    int t = p / TopK, l = map[t], e = ids[p];
    for (int s = 0; s < S; ++s) {
      std::vector<double> rr(R);
      for (int j = 0; j < R; ++j) {
        double acc = 0;
        for (int i = 0; i < K; ++i)
          acc += double(x[size_t(t) * K + i]) *
                 double(A[s][((size_t(l) * E + e) * R + j) * K + i]);
        rr[j] = double(Half(acc));
      }
      for (int r = 0; r < World; ++r)
        for (int n = 0; n < Nr; ++n) {
          int col = r * Nr + n;
          double y = 0;
          for (int j = 0; j < R; ++j)
            y += rr[j] * double(B[s][((size_t(l) * E + e) * N + col) * R + j]);
          double g = double(got[r][(size_t(p) * S + s) * Nr + n]);
          double f = double(full[(size_t(p) * S + s) * N + col]);
          errRef += (g - y) * (g - y), errFull += (g - f) * (g - f);
          ref2 += y * y;
        }
    }
  }
  double relRef = std::sqrt(errRef / ref2), relFull = std::sqrt(errFull / ref2);
  std::printf("two ranks on the GPU: rel L2 error vs float64 %.2e, vs the "
              "unsharded moelora_fused_moe_lora %.2e\n",
              relRef, relFull);
  for (int r = 0; r < World; ++r)
    cudaFree(ws[r]), cudaFree(gathered[r]);
  moelora_runtime_destroy(rt);
  return relRef < 1e-2 && relFull < 1e-2 ? 0 : 2;
#endif
}
