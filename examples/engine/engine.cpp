// What a serving engine does with moelora's C ABI: create a runtime, warm
// the kernels of its model's shapes at start-up, plan a call and, when there
// is a GPU, run one: out[t, k, :] += (x[t] @ A[l, e]^T) @ B[l, e]^T for each
// token t, each of its top-k experts e and its adapter l.
#include <moelora/moelora.h>

#include <cmath>
#include <cstdio>
#include <vector>
#ifdef ENGINE_HAS_CUDART
#include <cuda_runtime.h>
#endif

static int fail(const char *what) {
  std::fprintf(stderr, "%s: %s\n", what, moelora_last_error());
  return 1;
}

int main() {
  moelora_library_info lib{};
  lib.struct_size = sizeof(lib);
  moelora_get_library_info(&lib);
  std::printf("moelora %s (ABI %u), JIT %s, from %s\n", lib.version,
              lib.abi_version, lib.has_jit ? "yes" : "no", lib.library_path);

  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(nullptr, &rt) != MOELORA_OK) // defaults
    return fail("moelora_runtime_create");
  moelora_runtime_info info{};
  info.struct_size = sizeof(info);
  if (moelora_get_runtime_info(rt, &info) != MOELORA_OK)
    return fail("moelora_get_runtime_info");
  std::printf("GPU: %s; tuned table: %s; cache: %s\n",
              info.has_device ? info.device_name : info.driver_error,
              info.tuned_table[0] ? info.tuned_table : "none", info.cache_dir);

  // One MoE layer's decode call: 4 tokens, top-2 of 8 experts, rank 16,
  // K 256 -> N 128, one slice, 2 adapters, fp16, naive (unsorted) metadata.
  const int T = 4, topK = 2, E = 8, K = 256, N = 128, R = 16, loras = 2;
  moelora_fused_args a;
  moelora_fused_args_init(&a);
  a.dtype = MOELORA_DTYPE_FP16;
  a.num_tokens = T, a.top_k = topK, a.num_experts = E;
  a.K = K, a.N = N, a.rank = R, a.num_slices = 1;
  a.max_loras = loras, a.num_active_loras = loras;
  a.x_stride[0] = K, a.x_stride[1] = 1;
  const int64_t sa[4] = {E * R * K, R * K, K, 1},
                sb[4] = {E * N * R, N * R, R, 1};
  for (int i = 0; i < 4; ++i)
    a.lora_a_stride[i] = sa[i], a.lora_b_stride[i] = sb[i];
  a.output_stride[0] = topK * N, a.output_stride[1] = N, a.output_stride[2] = 1;

  // Start-up: every kernel this shape needs (generated here, or from the
  // disk cache), so the first request pays nothing. Shapes only.
  if (moelora_warmup(rt, &a, 1) != MOELORA_OK)
    return fail("moelora_warmup");

  // A request's tensors: small deterministic values, adapter t % 2.
  auto val = [](int i) { return float((i * 37) % 17 - 8) / 64.0f; };
  std::vector<_Float16> x(T * K), A(loras * E * R * K), B(loras * E * N * R),
      out(T * topK * N, _Float16(0));
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = _Float16(val(int(i)));
  for (size_t i = 0; i < A.size(); ++i)
    A[i] = _Float16(val(int(i) + 3));
  for (size_t i = 0; i < B.size(); ++i)
    B[i] = _Float16(val(int(i) + 5));
  std::vector<int32_t> ids(T * topK), map(T), loraIds{0, 1, -1}, on{1, 1, 1};
  for (int i = 0; i < T * topK; ++i)
    ids[i] = (i * 3) % E;
  for (int t = 0; t < T; ++t)
    map[t] = t % loras;
  std::vector<float> w(T * topK, 1.0f);

  int gpus = 0;
#ifdef ENGINE_HAS_CUDART
  if (cudaGetDeviceCount(&gpus) != cudaSuccess)
    gpus = 0;
#endif
  // Device copies with a GPU; without one the host addresses stand in, since
  // planning reads no memory.
  auto place = [gpus](const void *src, size_t bytes) -> void * {
    if (gpus == 0)
      return const_cast<void *>(src);
    void *d = nullptr;
#ifdef ENGINE_HAS_CUDART
    cudaMalloc(&d, bytes);
    cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice);
#endif
    return d;
  };
  void *dA = place(A.data(), A.size() * 2), *dB = place(B.data(), B.size() * 2);
  a.x = place(x.data(), x.size() * 2);
  a.lora_a_ptrs = place(&dA, sizeof(void *)); // one slice: one pointer
  a.lora_b_ptrs = place(&dB, sizeof(void *));
  a.output = place(out.data(), out.size() * 2);
  a.topk_weights = static_cast<float *>(place(w.data(), w.size() * 4));
  // Naive (unsorted) metadata: the top-k expert ids as the router gave them.
  a.topk_ids = static_cast<int32_t *>(place(ids.data(), ids.size() * 4));
  a.token_lora_mapping = static_cast<int32_t *>(place(map.data(), T * 4));
  a.lora_ids = static_cast<int32_t *>(place(loraIds.data(), 12));
  a.adapter_enabled = static_cast<int32_t *>(place(on.data(), 12));

  moelora_plan plan;
  if (moelora_plan_fused(rt, &a, &plan) != MOELORA_OK)
    return fail("moelora_plan_fused");
  std::printf("plan: path %d, %d launch(es), first %s grid %ux%ux%u\n",
              int(plan.path), plan.num_launches, plan.launches[0].entry,
              plan.launches[0].grid[0], plan.launches[0].grid[1],
              plan.launches[0].grid[2]);
  if (gpus == 0) {
    std::printf("no GPU: planned and warmed only\n");
    moelora_runtime_destroy(rt);
    return 0;
  }

#ifdef ENGINE_HAS_CUDART
  if (moelora_fused_moe_lora(rt, &a, /*stream=*/nullptr) != MOELORA_OK)
    return fail("moelora_fused_moe_lora");
  if (cudaMemcpy(out.data(), a.output, out.size() * 2,
                 cudaMemcpyDeviceToHost) != cudaSuccess)
    return std::fprintf(stderr, "cudaMemcpy failed\n"), 1;

  // Check against a double-precision reference (the rank intermediate is
  // rounded to fp16 before the expand, as Triton's one-shot kernel does).
  double err = 0, ref2 = 0;
  for (int t = 0; t < T; ++t)
    for (int k = 0; k < topK; ++k) {
      int l = map[t], e = ids[t * topK + k];
      std::vector<double> r(R);
      for (int j = 0; j < R; ++j) {
        double s = 0;
        for (int i = 0; i < K; ++i)
          s += double(x[t * K + i]) * double(A[((l * E + e) * R + j) * K + i]);
        r[j] = double(_Float16(s));
      }
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int j = 0; j < R; ++j)
          s += r[j] * double(B[((l * E + e) * N + n) * R + j]);
        double got = double(out[(t * topK + k) * N + n]);
        err += (got - s) * (got - s), ref2 += s * s;
      }
    }
  double rel = std::sqrt(err / ref2);
  std::printf("launched on the GPU: rel L2 error vs float64 %.2e\n", rel);
  moelora_runtime_destroy(rt);
  return rel < 1e-2 ? 0 : 2;
#endif
}
