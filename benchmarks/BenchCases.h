//===- BenchCases.h - The benchmark's cases (presets x shapes x M x R) -*- C++
//-*-===//
#ifndef MOELORA_BENCHMARKS_BENCHCASES_H
#define MOELORA_BENCHMARKS_BENCHCASES_H

#include "moelora/moelora.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace moelora::bench {

/// The contract's presets: hidden size, intermediate size, experts, top_k.
struct Preset {
  const char *name;
  int hidden, inter, experts, topK;
};
inline const Preset kPresets[] = {{"qwen3moe", 2048, 1408, 64, 8},
                                  {"mixtral", 4096, 7168, 8, 2},
                                  {"glm5_1", 6144, 2048, 256, 8}};

enum class Shape { W13, W2 };

struct BenchCase {
  const Preset *preset;
  Shape shape;
  int M; ///< tokens
  int rank;
  bool sorted;    ///< prefill (sorted metadata, BLOCK_SIZE_M 64)
  bool twoKernel; ///< fully_sharded: the two-kernel path
  bool sparse;    ///< routing over a quarter of the experts
  moelora_dtype dtype = MOELORA_DTYPE_BF16;
  int maxLoras = 4;

  int K() const { return shape == Shape::W13 ? preset->hidden : preset->inter; }
  int N() const { return shape == Shape::W13 ? preset->inter : preset->hidden; }
  int slices() const { return shape == Shape::W13 ? 2 : 1; }
  bool mrw() const { return shape == Shape::W2; }
  int xRows() const { return shape == Shape::W13 ? M : M * preset->topK; }
  std::string name() const {
    return fmt::format("{}_{}_{}_M{}_R{}{}{}", preset->name,
                       shape == Shape::W13 ? "w13" : "w2",
                       twoKernel ? "two_kernel"
                       : sorted  ? "prefill"
                                 : "decode",
                       M, rank, sparse ? "_sparse" : "",
                       dtype == MOELORA_DTYPE_FP16 ? "_fp16" : "");
  }
};

inline std::vector<BenchCase> benchCases(bool withFp16) {
  std::vector<BenchCase> cases;
  for (const Preset &p : kPresets)
    for (Shape shape : {Shape::W13, Shape::W2})
      for (int rank : {16, 64}) {
        for (int M : {1, 4, 16})
          cases.push_back({&p, shape, M, rank, false, false, false});
        for (int M : {64, 512, 4096})
          cases.push_back({&p, shape, M, rank, true, false, false});
        for (int M : {64, 512, 4096})
          cases.push_back({&p, shape, M, rank, true, true, false});
        cases.push_back({&p, shape, 512, rank, true, false, true});
        // Sparse routing on the two-kernel path too: a tuned path choice
        // (--path-choice) weighs both routings of the bucket.
        cases.push_back({&p, shape, 512, rank, true, true, true});
      }
  if (withFp16) {
    std::vector<BenchCase> extra;
    for (BenchCase c : cases)
      if (c.shape == Shape::W13 && c.rank == 16 && !c.sparse) {
        c.dtype = MOELORA_DTYPE_FP16;
        extra.push_back(c);
      }
    cases.insert(cases.end(), extra.begin(), extra.end());
  }
  return cases;
}

/// The bench passes lora_a's host base pointers (BenchHarness.h), which
/// decide whether tensor-map kernels are planned; planning and warm-up
/// without a GPU pass these aligned placeholders instead (only their
/// alignment matters to a plan). One per slice (num_slices <= 8).
inline const void *const *benchHostBasePlaceholders() {
  static const void *const bases[8] = {
      reinterpret_cast<const void *>(uintptr_t(1) << 20),
      reinterpret_cast<const void *>(uintptr_t(2) << 20),
      reinterpret_cast<const void *>(uintptr_t(3) << 20),
      reinterpret_cast<const void *>(uintptr_t(4) << 20),
      reinterpret_cast<const void *>(uintptr_t(5) << 20),
      reinterpret_cast<const void *>(uintptr_t(6) << 20),
      reinterpret_cast<const void *>(uintptr_t(7) << 20),
      reinterpret_cast<const void *>(uintptr_t(8) << 20)};
  return bases;
}

/// Shapes and flags of a case's call (no device pointers), for planning
/// and warm-up.
inline moelora_fused_args benchShapeArgs(const BenchCase &c) {
  moelora_fused_args a;
  moelora_fused_args_init(&a);
  a.dtype = c.dtype;
  a.num_tokens = c.M;
  a.top_k = c.preset->topK;
  a.num_experts = c.preset->experts;
  a.K = c.K();
  a.N = c.N();
  a.rank = c.rank;
  a.num_slices = c.slices();
  a.max_loras = c.maxLoras;
  a.num_active_loras = c.maxLoras;
  a.mul_routed_weight = c.mrw();
  a.add_inputs = 1;
  a.fully_sharded = c.twoKernel;
  a.block_size_m = c.sorted ? 64 : 16;
  if (c.sorted)
    a.EM = moelora_align_capacity(c.M, c.preset->topK, c.preset->experts, 64);
  a.lora_a_host_ptrs = benchHostBasePlaceholders();
  a.lora_a_stride[0] = int64_t(c.preset->experts) * c.rank * c.K();
  a.lora_a_stride[1] = int64_t(c.rank) * c.K();
  a.lora_a_stride[2] = c.K();
  a.lora_a_stride[3] = 1;
  return a;
}

/// vLLM's Triton times on an H100 (bf16, graph replay, L2 flushed) from the
/// kernel contract, for the cases it lists; 0 when not listed.
inline double tritonMicros(const BenchCase &c) {
  if (c.shape != Shape::W13 || c.sparse || c.dtype != MOELORA_DTYPE_BF16)
    return 0;
  std::string p = c.preset->name;
  struct Row {
    const char *preset;
    bool sorted, two;
    int M, R;
    double us;
  } rows[] = {
      {"qwen3moe", false, false, 1, 16, 32.5},
      {"qwen3moe", false, false, 1, 64, 62.9},
      {"mixtral", false, false, 1, 16, 54.9},
      {"mixtral", false, false, 1, 64, 108.7},
      {"glm5_1", false, false, 1, 16, 81.8},
      {"glm5_1", false, false, 1, 64, 159.9},
      {"glm5_1", false, false, 16, 16, 74.0},
      {"glm5_1", false, false, 16, 64, 132.2},
      {"qwen3moe", true, false, 64, 16, 83.5},
      {"qwen3moe", true, false, 512, 16, 60.6},
      {"qwen3moe", true, false, 4096, 16, 238.3},
      {"mixtral", true, false, 64, 16, 132.7},
      {"mixtral", true, false, 512, 16, 152.4},
      {"mixtral", true, false, 4096, 16, 250.9},
      {"glm5_1", true, false, 64, 64, 466.9},
      {"glm5_1", true, false, 512, 64, 930.0},
      {"glm5_1", true, false, 4096, 64, 1556.1},
      {"glm5_1", true, true, 512, 16, 1619.9},
      {"qwen3moe", true, true, 4096, 64, 853.4},
  };
  for (const Row &r : rows)
    if (p == r.preset && c.sorted == r.sorted && c.twoKernel == r.two &&
        c.M == r.M && c.rank == r.R)
      return r.us;
  return 0;
}

/// The tuned-table bucket of a case for `path`: an entry without its
/// config (moelora-tune adds the config, moelora-bench --path-choice "use").
inline nlohmann::json tunedBucketEntry(const BenchCase &c, const char *path) {
  return {{"path", path},
          {"dtype", c.dtype == MOELORA_DTYPE_BF16 ? "bf16" : "fp16"},
          {"rank", c.rank},
          {"K", c.K()},
          {"N", c.N()},
          {"num_slices", c.slices()},
          {"sorted", c.sorted},
          {"max_pairs", c.M * c.preset->topK}};
}

} // namespace moelora::bench

#endif // MOELORA_BENCHMARKS_BENCHCASES_H
