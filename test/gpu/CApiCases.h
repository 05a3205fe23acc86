//===- CApiCases.h - Calls of the C ABI GPU suite -----------------*- C++
//-*-===//
//
// fused_moe_lora calls whose shapes steer the dispatcher onto each path.
// PrepareCApiCache (here, with the generator) warms a disk cache for them;
// the suite (on the GPU machine, runtime only) runs them from that cache.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_TEST_GPU_CAPICASES_H
#define MOELORA_TEST_GPU_CAPICASES_H

#include "moelora/Reference/ProblemGenerator.h"
#include "moelora/Reference/Reference.h"
#include "moelora/moelora.h"

#include <fmt/format.h>

#include <string>
#include <vector>

namespace moelora::gputest {

struct CApiCase {
  std::string name;
  ProblemOptions problem;
  bool sorted = false;
  int blockSizeM = 16;
  bool fullySharded = false;
  moelora_path expected = MOELORA_PATH_NONE;
};

inline std::vector<CApiCase> capiCases() {
  std::vector<CApiCase> cases;
  uint64_t seed = 5000;
  auto add = [&](std::string name, DType t, int tokens, int topK, int K, int N,
                 int R, int slices, bool sorted, int bm, bool sharded, bool mrw,
                 bool addInputs, moelora_path expected) {
    CApiCase c;
    c.name = fmt::format("{}_{}", name, toString(t));
    ProblemOptions &p = c.problem;
    p.dtype = t;
    p.numTokens = tokens;
    p.topK = topK;
    p.K = K;
    p.N = N;
    p.rank = R;
    p.numSlices = slices;
    p.maxLoras = 4;
    p.numExperts = 16;
    p.mulRoutedWeight = mrw;
    p.addInputs = addInputs;
    p.seed = ++seed;
    p.fracNoAdapter = 0.15;
    p.fracDisabledAdapter = 0.15;
    p.fracNoExpert = 0.1;
    c.sorted = sorted;
    c.blockSizeM = bm;
    c.fullySharded = sharded;
    c.expected = expected;
    cases.push_back(c);
  };
  for (DType t : {DType::BF16, DType::F16}) {
    add("decode_small_batch", t, 4, 4, 2048, 1408, 16, 2, false, 16, false,
        false, true, MOELORA_PATH_SMALL_BATCH);
    // Two tokens, 2 experts each, R 64, K 7168: clusters of 8 blocks split K.
    add("decode_small_batch_cluster_r64", t, 2, 2, 7168, 4096, 64, 1, false, 16,
        false, false, true, MOELORA_PATH_SMALL_BATCH);
    add("naive_one_shot_r64", t, 16, 8, 2048, 1408, 64, 2, false, 16, false,
        false, true, MOELORA_PATH_ONE_SHOT);
    add("naive_one_shot_r128_npid", t, 2, 2, 2048, 1408, 128, 2, false, 16,
        false, false, true, MOELORA_PATH_ONE_SHOT);
    add("naive_one_shot_k1000", t, 24, 8, 1000, 1000, 32, 2, false, 16, false,
        false, true, MOELORA_PATH_ONE_SHOT);
    add("sorted_one_shot_r16", t, 128, 8, 2048, 1408, 16, 2, true, 64, false,
        false, true, MOELORA_PATH_ONE_SHOT);
    add("sorted_one_shot_r64_bm16", t, 64, 8, 2048, 1408, 64, 2, true, 16,
        false, false, true, MOELORA_PATH_ONE_SHOT);
    add("sorted_one_shot_k1000", t, 64, 8, 1000, 1000, 16, 2, true, 64, false,
        false, true, MOELORA_PATH_ONE_SHOT);
    add("sorted_w2_mrw", t, 64, 8, 1408, 2048, 16, 1, true, 64, false, true,
        false, MOELORA_PATH_ONE_SHOT);
    add("sorted_two_kernel_sharded", t, 64, 8, 2048, 1408, 16, 2, true, 64,
        true, false, true, MOELORA_PATH_TWO_KERNEL);
    add("sorted_two_kernel_r256", t, 32, 8, 2048, 1408, 256, 2, true, 64, false,
        false, true, MOELORA_PATH_TWO_KERNEL);
    add("naive_two_kernel_r192", t, 4, 2, 2048, 1000, 192, 1, false, 16, false,
        true, true, MOELORA_PATH_TWO_KERNEL);
    // N % 8 != 0: output rows are not 16-byte aligned, so the dispatcher
    // must pick the element-wise epilogue (alignedOutput false).
    add("sorted_one_shot_n1004_unaligned", t, 64, 8, 2048, 1004, 16, 2, true,
        64, false, false, true, MOELORA_PATH_ONE_SHOT);
    add("sorted_two_kernel_n1004_unaligned", t, 64, 8, 2048, 1004, 16, 2, true,
        64, true, false, true, MOELORA_PATH_TWO_KERNEL);
  }
  return cases;
}

/// The call's shapes and flags (no pointers): what warm-up needs.
inline moelora_fused_args shapeArgs(const CApiCase &c) {
  moelora_fused_args a;
  moelora_fused_args_init(&a);
  const ProblemOptions &p = c.problem;
  a.dtype = p.dtype == DType::BF16 ? MOELORA_DTYPE_BF16 : MOELORA_DTYPE_FP16;
  a.num_tokens = p.numTokens;
  a.top_k = p.topK;
  a.num_experts = p.numExperts;
  a.K = p.K;
  a.N = p.N;
  a.rank = p.rank;
  a.num_slices = p.numSlices;
  a.max_loras = p.maxLoras;
  a.num_active_loras = p.maxLoras;
  a.mul_routed_weight = p.mulRoutedWeight;
  a.add_inputs = p.addInputs;
  a.fully_sharded = c.fullySharded;
  a.block_size_m = c.blockSizeM;
  if (c.sorted)
    a.EM =
        moelora_align_capacity(p.numTokens, p.topK, p.numExperts, c.blockSizeM);
  return a;
}

} // namespace moelora::gputest

#endif // MOELORA_TEST_GPU_CAPICASES_H
