//===- GpuCases.h - The GPU correctness matrix --------------------*- C++
//-*-===//
//
// One list of cases, used twice: MakeGpuBundle (here, with the generator)
// writes the PTX of every kernel the cases need, and the GPU suite (on the
// device machine, no LLVM) runs them against the float64 reference.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_TEST_GPU_GPUCASES_H
#define MOELORA_TEST_GPU_GPUCASES_H

#include "moelora/Reference/ProblemGenerator.h"
#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/KernelSpec.h"
#include "moelora/Spec/SpecValidation.h"
#include "moelora/Spec/TileBytes.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace moelora::gputest {

enum class Path { OneShot, SmallBatch, TwoKernel };

struct GpuCase {
  std::string name;
  Path path = Path::OneShot;
  KernelSpec spec;                  ///< one_shot / small_batch / shrink
  std::optional<KernelSpec> expand; ///< two-kernel: the expand kernel
  ProblemOptions problem;
  int npid = 1;
  int tilesPerItem = 1;
  /// persistent one_shot: LaunchKnobs::persistentPrograms (0: the
  /// driver's resident count).
  long persistentPrograms = 0;
};

inline KernelSpec baseSpec(KernelFamily f, DType t, int rank, int k,
                           bool sorted) {
  KernelSpec s;
  s.family = f;
  s.dtype = t;
  s.sm = 90;
  s.rank = rank;
  s.k = k;
  s.sorted = sorted;
  s.numSlices = 2;
  switch (f) {
  case KernelFamily::OneShot:
    s.blockM = sorted ? 64 : 16;
    s.blockN = 64;
    s.blockK = sorted ? 64 : 128;
    s.numStages = 3;
    break;
  case KernelFamily::SmallBatch:
    s.blockM = 16;
    s.blockN = 64;
    s.blockK = 256;
    s.numStages = 1;
    break;
  case KernelFamily::Shrink:
    s.blockM = 64;
    s.blockN = 16;
    s.blockK = 64;
    s.numStages = 3;
    break;
  case KernelFamily::Expand:
    s.blockM = 64;
    s.blockN = 64;
    s.blockK = 16;
    s.numStages = 2;
    s.k.reset();
    break;
  case KernelFamily::AlignBlockSize:
    break;
  }
  s.numWarps = 4;
  // The few-rows expand wherever it applies (as the tuned tables choose it
  // per bucket); the kernels without a few-rows shape run without it.
  s.fewRows =
      sorted && (f == KernelFamily::OneShot || f == KernelFamily::Expand);
  return s;
}

/// small_batch with SPLIT_K blocks per cluster, as the dispatcher plans it.
inline KernelSpec clusterSpec(DType t, int rank, int k, int splitK) {
  KernelSpec s = baseSpec(KernelFamily::SmallBatch, t, rank, k, false);
  s.splitK = splitK;
  s.numWarps = 8;
  s.minBlocksPerSm = defaultMinBlocksPerSm(KernelFamily::SmallBatch);
  return s;
}

inline ProblemOptions baseProblem(DType t, int numTokens, int topK, int K,
                                  int N, int rank, uint64_t seed) {
  ProblemOptions p;
  p.dtype = t;
  p.numTokens = numTokens;
  p.topK = topK;
  p.K = K;
  p.N = N;
  p.rank = rank;
  p.numSlices = 2;
  p.maxLoras = 4;
  p.numExperts = 16;
  p.seed = seed;
  // Early exits in every case: tokens without adapter, a disabled adapter,
  // pairs without expert.
  p.fracNoAdapter = 0.15;
  p.fracDisabledAdapter = 0.15;
  p.fracNoExpert = 0.1;
  return p;
}

/// Applies the W2 (down projection) shape: x rows per pair, 1 slice,
/// mul_routed_weight, and add_inputs as given.
inline void makeDownProjection(GpuCase &c, bool addInputs) {
  for (KernelSpec *s : {&c.spec, c.expand ? &*c.expand : nullptr}) {
    if (!s)
      continue;
    s->numSlices = 1;
    s->mulRoutedWeight = true;
    s->addInputs = addInputs;
  }
  c.problem.numSlices = 1;
  c.problem.mulRoutedWeight = true;
  c.problem.addInputs = addInputs;
  c.name += fmt::format("_w2_add{}", int(addInputs));
}

/// The kernel without the choices that move work between blocks or in time
/// but not what is computed (persistent, early_expand, reduce_scatter): it
/// must give the same bits (GpuCorrectnessTest; the bundle holds it).
/// nullopt where the spec has none of them.
inline std::optional<KernelSpec> sameBitsSibling(const KernelSpec &spec) {
  if (!spec.persistent && !spec.expandsEarly() && !spec.scattersClusterSum())
    return std::nullopt;
  KernelSpec plain = spec;
  plain.persistent = false;
  plain.earlyExpand = false;
  plain.reduceScatter = false;
  return plain;
}

inline std::vector<GpuCase> gpuCases() {
  std::vector<GpuCase> cases;
  uint64_t seed = 1000;
  for (DType t : {DType::BF16, DType::F16}) {
    std::string dt(toString(t));
    // One-shot, naive (decode) and sorted (prefill), every rank.
    for (bool sorted : {false, true}) {
      for (int R : {4, 8, 16, 32, 64, 128}) {
        for (int K : {2048, 1000}) {
          if (K == 1000 && R != 16 && R != 64)
            continue;
          int N = K == 1000 ? 1000 : 1408;
          GpuCase c;
          c.path = Path::OneShot;
          c.name = fmt::format("one_shot_{}_{}_r{}_k{}_n{}", dt,
                               sorted ? "sorted" : "naive", R, K, N);
          c.spec = baseSpec(KernelFamily::OneShot, t, R, K, sorted);
          c.problem = baseProblem(t, sorted ? 48 : 6, 4, K, N, R, ++seed);
          cases.push_back(c);
        }
      }
      // Both slices in one program (fuse_slices): ranks below, at and above
      // one n8 tile per warp, K and N that are not multiples of the tiles.
      for (auto [R, K, N] : {std::array<int, 3>{16, 2048, 1408},
                             std::array<int, 3>{64, 2048, 1408},
                             std::array<int, 3>{24, 1000, 1000}}) {
        GpuCase f;
        f.path = Path::OneShot;
        f.spec = baseSpec(KernelFamily::OneShot, t, R, K, sorted);
        f.spec.fuseSlices = true;
        f.problem = baseProblem(t, sorted ? 48 : 6, 4, K, N, R, ++seed);
        f.name = fmt::format("one_shot_{}_{}_r{}_k{}_n{}_fused", dt,
                             sorted ? "sorted" : "naive", R, K, N);
        cases.push_back(f);
      }
      // NPID > 1, without and with fuse_slices.
      for (bool fuse : {false, true}) {
        GpuCase c;
        c.path = Path::OneShot;
        c.spec = baseSpec(KernelFamily::OneShot, t, 32, 2048, sorted);
        c.spec.fuseSlices = fuse;
        c.problem = baseProblem(t, sorted ? 40 : 5, 4, 2048, 1408, 32, ++seed);
        c.npid = 3;
        c.name = fmt::format("one_shot_{}_{}_r32_npid3{}", dt,
                             sorted ? "sorted" : "naive", fuse ? "_fused" : "");
        cases.push_back(c);
      }
      // Down projection, add_inputs both ways.
      for (bool add : {true, false}) {
        GpuCase d;
        d.path = Path::OneShot;
        d.spec = baseSpec(KernelFamily::OneShot, t, 16, 1408, sorted);
        d.problem = baseProblem(t, sorted ? 40 : 5, 4, 1408, 2048, 16, ++seed);
        d.name =
            fmt::format("one_shot_{}_{}_r16", dt, sorted ? "sorted" : "naive");
        makeDownProjection(d, add);
        cases.push_back(d);
      }
    }
    // One n8 tile per warp (BLOCK_N 32 over 4 warps): the staged output's
    // combine step takes its x2 ldmatrix/stmatrix forms on sm_90; N 1000
    // leaves the last tile partial; the down projection adds routed weights.
    for (bool down : {false, true}) {
      GpuCase c;
      c.path = Path::OneShot;
      c.spec = baseSpec(KernelFamily::OneShot, t, 16, 2048, false);
      c.spec.blockN = 32;
      c.problem = baseProblem(t, 6, 4, 2048, 1000, 16, ++seed);
      c.name = fmt::format("one_shot_{}_naive_r16_k2048_n1000_bn32", dt);
      if (down)
        makeDownProjection(c, true);
      cases.push_back(c);
    }
    // Small-batch (decode, naive, R <= 64, fp32 intermediate).
    for (int R : {4, 8, 16, 32, 64}) {
      for (int K : {2048, 1000}) {
        int N = K == 1000 ? 1000 : 1408;
        GpuCase c;
        c.path = Path::SmallBatch;
        c.spec = baseSpec(KernelFamily::SmallBatch, t, R, K, false);
        c.problem = baseProblem(t, 3, 4, K, N, R, ++seed);
        c.tilesPerItem = 4;
        c.name = fmt::format("small_batch_{}_r{}_k{}_n{}", dt, R, K, N);
        cases.push_back(c);
      }
    }
    // A short K (K 128: 16 threads per rank row, shuffles over 16-lane
    // groups) and one n-chunk per (pair, slice), so that each thread expands
    // many columns in batches, the last one partial (N 1400).
    for (int R : {8, 64}) {
      GpuCase c;
      c.path = Path::SmallBatch;
      c.spec = baseSpec(KernelFamily::SmallBatch, t, R, 128, false);
      c.spec.numWarps = 8;
      c.problem = baseProblem(t, 16, 4, 128, 1400, R, ++seed);
      c.tilesPerItem = 64;
      c.name = fmt::format("small_batch_{}_r{}_k128_n1400_one_chunk", dt, R);
      cases.push_back(c);
    }
    // Many expand columns per thread (N 4100 / 128 threads: 33, the last
    // partial), in batches after the first; 30% of the tokens on a disabled
    // adapter (its outputs untouched).
    {
      GpuCase c;
      c.path = Path::SmallBatch;
      c.spec = baseSpec(KernelFamily::SmallBatch, t, 16, 2048, false);
      c.problem = baseProblem(t, 8, 4, 2048, 4100, 16, ++seed);
      c.problem.fracDisabledAdapter = 0.3;
      c.tilesPerItem = 128;
      c.name =
          fmt::format("small_batch_{}_r16_k2048_n4100_staged_and_batched", dt);
      cases.push_back(c);
    }
    {
      GpuCase c;
      c.path = Path::SmallBatch;
      c.spec = baseSpec(KernelFamily::SmallBatch, t, 16, 1408, false);
      c.problem = baseProblem(t, 3, 4, 1408, 2048, 16, ++seed);
      c.tilesPerItem = 2;
      c.name = fmt::format("small_batch_{}_r16", dt);
      makeDownProjection(c, false);
      cases.push_back(c);
    }
    // Small-batch with SPLIT_K blocks per cluster (sm_90): K split over the
    // cluster, partial r exchanged through distributed shared memory. K
    // 1000 leaves the last block a short range; K unset takes the runtime-K
    // loop; tiles_per_item 1 gives every cluster several items (the double
    // buffer of partial sums alternates).
    for (int R : {16, 64}) {
      for (int K : {7168, 1000, 0}) {
        for (int splitK : {2, 8}) {
          if (K == 0 && splitK == 2)
            continue;
          int realK = K ? K : 2048;
          int N = K == 1000 ? 1000 : 1408;
          GpuCase c;
          c.path = Path::SmallBatch;
          c.spec = clusterSpec(t, R, realK, splitK);
          if (K == 0)
            c.spec.k.reset();
          c.problem = baseProblem(t, 3, 4, realK, N, R, ++seed);
          c.tilesPerItem = splitK == 8 ? 1 : 4;
          c.name = fmt::format("small_batch_{}_r{}_k{}_n{}_cluster{}", dt, R,
                               K ? std::to_string(K) : std::string("any"), N,
                               splitK);
          cases.push_back(c);
        }
      }
    }
    // 16 warps (512 threads, one block per SM): rows over the whole block
    // at K 1408 / 8 = 176, and 64-lane groups never formed.
    for (int R : {16, 64}) {
      GpuCase c;
      c.path = Path::SmallBatch;
      c.spec = clusterSpec(t, R, 1408, 8);
      c.spec.numWarps = 16;
      c.spec.minBlocksPerSm = 1;
      c.problem = baseProblem(t, 2, 8, 1408, 2048, R, ++seed);
      c.tilesPerItem = 64;
      c.name = fmt::format("small_batch_{}_r{}_k1408_w16_cluster8", dt, R);
      cases.push_back(c);
    }
    // 16-block clusters (non-portable: the launcher opts the kernel in):
    // K 7168 in 16 parts of 448.
    for (int R : {16, 64}) {
      GpuCase c;
      c.path = Path::SmallBatch;
      c.spec = clusterSpec(t, R, 7168, 16);
      c.problem = baseProblem(t, 2, 2, 7168, 4096, R, ++seed);
      c.tilesPerItem = 8;
      c.name = fmt::format("small_batch_{}_r{}_k7168_cluster16", dt, R);
      makeDownProjection(c, false);
      cases.push_back(c);
    }
    // Clusters walking runs of inactive items (no adapter, no expert)
    // between active ones: the partial-r double buffer must flip only on
    // active items (a race otherwise, see SmallBatch.cpp).
    {
      GpuCase c;
      c.path = Path::SmallBatch;
      c.spec = clusterSpec(t, 16, 7168, 4);
      c.problem = baseProblem(t, 16, 4, 7168, 1408, 16, ++seed);
      c.problem.fracNoAdapter = 0.4;
      c.problem.fracNoExpert = 0.3;
      c.tilesPerItem = 1;
      c.name =
          fmt::format("small_batch_{}_r16_k7168_cluster4_sparse_items", dt);
      cases.push_back(c);
    }
    // Two-kernel: ranks up to above the one-shot limit, split-K, and the
    // shrink with both slices in one program (fuse_slices).
    for (bool sorted : {true, false}) {
      for (int R : {16, 64, 256}) {
        for (int splitK : {1, 4}) {
          for (bool fuse : {false, true}) {
            if (!sorted && (R != 16 || splitK != 1))
              continue;
            if (fuse && R == 256 && splitK == 1)
              continue;
            GpuCase c;
            c.path = Path::TwoKernel;
            c.spec = baseSpec(KernelFamily::Shrink, t, R, 2048, sorted);
            c.spec.blockN = std::min(R, 64);
            c.spec.splitK = splitK;
            c.spec.fuseSlices = fuse;
            c.expand = baseSpec(KernelFamily::Expand, t, R, 0, sorted);
            c.problem =
                baseProblem(t, sorted ? 40 : 5, 4, 2048, 1000, R, ++seed);
            c.name = fmt::format("two_kernel_{}_{}_r{}_splitk{}{}", dt,
                                 sorted ? "sorted" : "naive", R, splitK,
                                 fuse ? "_fused" : "");
            cases.push_back(c);
          }
        }
      }
    }
    // The wgmma two-kernel shrink (sorted, BLOCK_M 64): ranks with masked
    // columns (24) and above the one-shot limit (256: BLOCK_N 64 tiles over
    // R), two warpgroups sharing BLOCK_N, fused slices, split-K clusters,
    // K 1000 (not a multiple of BLOCK_K) and the down projection.
    struct WgmmaShrinkCase {
      int R, K, N, blockN, warps, splitK;
      bool fuse, w2;
      int blockM = 64;
    };
    for (WgmmaShrinkCase w :
         {WgmmaShrinkCase{16, 2048, 1408, 16, 4, 1, false, false},
          WgmmaShrinkCase{24, 1000, 1000, 32, 4, 1, true, false},
          WgmmaShrinkCase{64, 2048, 1408, 64, 8, 1, false, false},
          WgmmaShrinkCase{256, 2048, 1000, 64, 4, 4, false, false},
          WgmmaShrinkCase{16, 2048, 1408, 16, 8, 2, true, false},
          WgmmaShrinkCase{32, 1408, 2048, 32, 4, 1, false, true},
          // BLOCK_M 128: two warpgroups along M.
          WgmmaShrinkCase{64, 2048, 1408, 64, 8, 1, false, false, 128}}) {
      GpuCase c;
      c.path = Path::TwoKernel;
      c.spec = baseSpec(KernelFamily::Shrink, t, w.R, w.K, true);
      c.spec.wgmma = true;
      c.spec.blockM = w.blockM;
      c.spec.blockN = w.blockN;
      c.spec.numWarps = w.warps;
      c.spec.splitK = w.splitK;
      c.spec.fuseSlices = w.fuse;
      c.expand = baseSpec(KernelFamily::Expand, t, w.R, 0, true);
      c.expand->blockM = w.blockM; // the same row blocks
      c.problem = baseProblem(t, 40, 4, w.K, w.N, w.R, ++seed);
      c.name =
          fmt::format("two_kernel_{}_sorted_wgmma_m{}_r{}_k{}_bn{}_w{}{}{}", dt,
                      w.blockM, w.R, w.K, w.blockN, w.warps,
                      w.splitK > 1 ? fmt::format("_splitk{}", w.splitK) : "",
                      w.fuse ? "_fused" : "");
      if (w.w2)
        makeDownProjection(c, false);
      cases.push_back(c);
    }
    // The expand's intermediate rows at ranks that are not a multiple of 16
    // (BLOCK_R columns past R read zeros), NPID 3 programs per row block
    // (uneven shares of N's 16 tiles) and 4 stages.
    for (int R : {24, 48}) {
      GpuCase c;
      c.path = Path::TwoKernel;
      c.spec = baseSpec(KernelFamily::Shrink, t, R, 2048, true);
      c.spec.blockN = R <= 32 ? 32 : 64;
      // Rank 24: the fused shrink's slices with masked columns (BN 32).
      c.spec.fuseSlices = R == 24;
      c.expand = baseSpec(KernelFamily::Expand, t, R, 0, true);
      c.expand->numStages = 4;
      c.npid = 3;
      c.problem = baseProblem(t, 40, 4, 2048, 1000, R, ++seed);
      c.name = fmt::format("two_kernel_{}_sorted_r{}_npid3{}", dt, R,
                           c.spec.fuseSlices ? "_fused" : "");
      cases.push_back(c);
    }
    // One-shot clusters (sm_90): the NPID = SPLIT_K programs of a row block
    // split its shrink and sum partial r through distributed shared memory.
    // K 1000 leaves ranks uneven shares (and rank 7 of C 8 none at BK 128).
    // fuse_slices: the cluster sums both slices' r as one wider tile.
    struct ClusterCase {
      bool sorted;
      int R, K, C;
      bool w2;
      bool fuse = false;
    };
    for (ClusterCase cc : {ClusterCase{false, 16, 2048, 4, false},
                           ClusterCase{true, 16, 2048, 2, false},
                           ClusterCase{true, 64, 1000, 8, false},
                           ClusterCase{false, 128, 1000, 8, false},
                           ClusterCase{true, 32, 1408, 4, true},
                           ClusterCase{false, 16, 2048, 4, false, true},
                           ClusterCase{true, 16, 2048, 2, false, true},
                           ClusterCase{true, 64, 1000, 8, false, true},
                           ClusterCase{true, 16, 7168, 16, true},
                           ClusterCase{false, 64, 4096, 16, false}}) {
      GpuCase c;
      c.path = Path::OneShot;
      int N = cc.K == 1000 ? 1000 : 1408;
      c.spec = baseSpec(KernelFamily::OneShot, t, cc.R, cc.K, cc.sorted);
      c.spec.splitK = cc.C;
      c.spec.fuseSlices = cc.fuse;
      c.npid = cc.C;
      c.problem = baseProblem(t, cc.sorted ? 40 : 5, 4, cc.K, cc.w2 ? 2048 : N,
                              cc.R, ++seed);
      c.name = fmt::format("one_shot_{}_{}_r{}_k{}_cluster{}{}", dt,
                           cc.sorted ? "sorted" : "naive", cc.R, cc.K, cc.C,
                           cc.fuse ? "_fused" : "");
      if (cc.w2)
        makeDownProjection(c, true);
      cases.push_back(c);
    }
    // Deep pipelines (6 and 8 stages) for the M 64 grids, whose programs'
    // K steps are a chain of round trips: a cluster splitting a long K, a K
    // that is not a multiple of BLOCK_K (fewer steps than stages in some
    // cluster ranks), and BLOCK_K 128.
    struct DeepCase {
      int R, K, C, stages, blockK;
      bool w2;
    };
    for (DeepCase d : {DeepCase{16, 7168, 8, 6, 64, true},
                       DeepCase{64, 1000, 4, 8, 64, false},
                       DeepCase{16, 2048, 1, 8, 128, false},
                       DeepCase{32, 4096, 2, 6, 128, true}}) {
      GpuCase c;
      c.path = Path::OneShot;
      c.spec = baseSpec(KernelFamily::OneShot, t, d.R, d.K, true);
      c.spec.numStages = d.stages;
      c.spec.blockK = d.blockK;
      c.spec.splitK = d.C;
      c.npid = d.C;
      c.problem = baseProblem(t, 40, 4, d.K, d.w2 ? 2048 : 1408, d.R, ++seed);
      c.name = fmt::format("one_shot_{}_sorted_r{}_k{}_bk{}_stages{}{}", dt,
                           d.R, d.K, d.blockK, d.stages,
                           d.C > 1 ? fmt::format("_cluster{}", d.C) : "");
      if (d.w2)
        makeDownProjection(c, true);
      cases.push_back(c);
    }
    // The 32-row few-rows tile where r's first rows come from warps other
    // than 0..1: 8 warps on BLOCK_M 64 (two along K: warps 0 and 2 hold
    // them) and 4 warps on BLOCK_M 128 (two row tiles per warp: warp 0).
    // 96 tokens of top_k 2 over 2 experts: blocks of every kind.
    for (auto [blockM, warps] : {std::pair{64, 8}, std::pair{128, 4}}) {
      GpuCase c;
      c.path = Path::OneShot;
      c.spec = baseSpec(KernelFamily::OneShot, t, 16, 2048, true);
      c.spec.blockM = blockM;
      c.spec.numWarps = warps;
      c.spec.fewRowsTile = 32;
      c.problem = baseProblem(t, 96, 4, 2048, 1408, 16, ++seed);
      c.problem.numExperts = 2;
      c.problem.topK = 2;
      c.name = fmt::format("one_shot_{}_sorted_r16_m{}_w{}_rows32", dt, blockM,
                           warps);
      if (!c.spec.fewRowsExpand())
        throw std::logic_error("GpuCases.h: " + c.name +
                               " has no 32-row shape");
      cases.push_back(c);
    }
    // The wgmma shrink (sorted, BLOCK_M 64): every rank, K that is not a
    // multiple of BLOCK_K, two warpgroups along K, fused slices, NPID > 1,
    // a cluster and the down projection.
    struct WgmmaCase {
      int R, K, N, warps, blockK, C, npid;
      bool fuse, w2;
      int blockM = 64, stages = 3;
    };
    for (WgmmaCase w :
         {WgmmaCase{4, 2048, 1408, 4, 64, 1, 1, false, false},
          WgmmaCase{16, 2048, 1408, 4, 64, 1, 1, false, false},
          WgmmaCase{32, 1000, 1000, 4, 128, 1, 1, false, false},
          WgmmaCase{64, 2048, 1408, 4, 128, 1, 1, false, false},
          WgmmaCase{128, 2048, 1408, 4, 64, 1, 1, false, false},
          WgmmaCase{64, 1000, 1000, 8, 64, 1, 1, false, false},
          WgmmaCase{16, 2048, 1408, 8, 128, 1, 1, true, false},
          WgmmaCase{32, 2048, 1408, 8, 128, 1, 3, false, false},
          WgmmaCase{64, 2048, 1408, 4, 64, 4, 4, false, false},
          WgmmaCase{16, 1408, 2048, 8, 64, 2, 2, true, true},
          // BLOCK_M 128: two warpgroups along M (8 warps), and four (two
          // along M, two splitting BLOCK_K: 16 warps).
          WgmmaCase{32, 2048, 1408, 8, 64, 1, 1, false, false, 128},
          WgmmaCase{64, 1000, 1000, 16, 128, 1, 1, false, false, 128},
          // Two stages.
          WgmmaCase{16, 2048, 1408, 4, 64, 1, 1, false, false, 64, 2},
          // 4 K steps over an 8-block cluster: ranks with one step (fewer
          // than the stages) and ranks with none.
          WgmmaCase{16, 256, 1408, 4, 64, 8, 8, false, false}}) {
      GpuCase c;
      c.path = Path::OneShot;
      c.spec = baseSpec(KernelFamily::OneShot, t, w.R, w.K, true);
      c.spec.wgmma = true;
      c.spec.blockM = w.blockM;
      c.spec.numStages = w.stages;
      c.spec.numWarps = w.warps;
      c.spec.blockK = w.blockK;
      c.spec.splitK = w.C;
      c.spec.fuseSlices = w.fuse;
      c.npid = w.npid;
      c.problem = baseProblem(t, 48, 4, w.K, w.N, w.R, ++seed);
      c.name = fmt::format(
          "one_shot_{}_sorted_wgmma_m{}_r{}_k{}_w{}_bk{}_s{}{}{}{}", dt,
          w.blockM, w.R, w.K, w.warps, w.blockK, w.stages,
          w.C > 1 ? fmt::format("_cluster{}", w.C) : "",
          w.npid > 1 && w.C == 1 ? fmt::format("_npid{}", w.npid) : "",
          w.fuse ? "_fused" : "");
      if (w.w2)
        makeDownProjection(c, true);
      cases.push_back(c);
    }
    // Output rows not 16-byte aligned (N % 8 != 0): the element-wise
    // epilogue. The aligned cases above all stage their output tiles.
    for (bool sorted : {false, true}) {
      GpuCase c;
      c.path = Path::OneShot;
      c.spec = baseSpec(KernelFamily::OneShot, t, 16, 2048, sorted);
      c.spec.alignedOutput = false;
      c.problem = baseProblem(t, sorted ? 40 : 5, 4, 2048, 1004, 16, ++seed);
      c.name = fmt::format("one_shot_{}_{}_r16_n1004_unaligned", dt,
                           sorted ? "sorted" : "naive");
      cases.push_back(c);
    }
    {
      GpuCase c;
      c.path = Path::TwoKernel;
      c.spec = baseSpec(KernelFamily::Shrink, t, 16, 2048, true);
      c.expand = baseSpec(KernelFamily::Expand, t, 16, 0, true);
      c.expand->alignedOutput = false;
      c.problem = baseProblem(t, 40, 4, 2048, 1004, 16, ++seed);
      c.name = fmt::format("two_kernel_{}_sorted_r16_n1004_unaligned", dt);
      cases.push_back(c);
    }
    {
      GpuCase c;
      c.path = Path::TwoKernel;
      c.spec = baseSpec(KernelFamily::Shrink, t, 16, 1408, true);
      c.expand = baseSpec(KernelFamily::Expand, t, 16, 0, true);
      c.problem = baseProblem(t, 40, 4, 1408, 2048, 16, ++seed);
      c.name = fmt::format("two_kernel_{}_sorted_r16", dt);
      makeDownProjection(c, false);
      cases.push_back(c);
    }
  }
  // The sorted cases above have about 2 pairs per (adapter, expert): every
  // BLOCK_M 64/128 block has its valid rows among its first 16 and takes the
  // few-rows expand. These copies have 2 experts and 192 tokens of top_k 2
  // (about 30 pairs per block), so most blocks take the whole-tile expand
  // and some (an adapter with few tokens) the few-rows one, in one launch.
  const std::vector<std::string> denseRowCases = {
      "one_shot_bf16_sorted_r16_k2048_n1408",
      "one_shot_fp16_sorted_r64_k1000_n1000",
      "one_shot_bf16_sorted_r16_k2048_n1408_fused",
      "one_shot_bf16_sorted_r16_w2_add1",
      "one_shot_bf16_sorted_r16_k2048_cluster2",
      "one_shot_fp16_sorted_r64_k1000_cluster8_fused",
      "one_shot_bf16_sorted_wgmma_m64_r16_k2048_w8_bk128_s3_fused",
      "one_shot_fp16_sorted_wgmma_m128_r64_k1000_w16_bk128_s3",
      "one_shot_bf16_sorted_r32_npid3",
      "one_shot_bf16_sorted_r16_n1004_unaligned",
      "two_kernel_bf16_sorted_r16_splitk1",
      "two_kernel_fp16_sorted_r64_splitk4",
      "two_kernel_bf16_sorted_r24_npid3_fused",
      "two_kernel_bf16_sorted_r16_n1004_unaligned",
      "two_kernel_bf16_sorted_r16_w2_add0"};
  // A copy of case c over 2 experts with `tokens` tokens of top_k 2.
  auto withTwoExperts = [](GpuCase c, int tokens, uint64_t seedStep,
                           const char *suffix) {
    c.problem.numExperts = 2;
    c.problem.numTokens = tokens;
    c.problem.topK = 2;
    c.problem.seed += seedStep;
    c.name += suffix;
    return c;
  };
  const size_t before = cases.size();
  for (size_t i = 0; i < before; ++i) {
    if (std::find(denseRowCases.begin(), denseRowCases.end(), cases[i].name) ==
        denseRowCases.end())
      continue;
    cases.push_back(withTwoExperts(cases[i], 192, 7919, "_dense_rows"));
    // The 32-row few-rows tile (few_rows_tile 32): 96 tokens, about 24
    // pairs per (adapter, expert) group, so blocks with at most 16, with
    // 17-32 and with more valid rows meet in one launch.
    GpuCase t = withTwoExperts(cases[i], 96, 104729, "_rows32");
    KernelSpec &withExpand = t.expand ? *t.expand : t.spec;
    withExpand.fewRowsTile = 32;
    if (withExpand.fewRowsExpand())
      cases.push_back(t);
  }
  if (std::count_if(cases.begin() + before, cases.end(), [](const GpuCase &c) {
        return c.name.find("_dense_rows") != std::string::npos;
      }) != long(denseRowCases.size()))
    throw std::logic_error("GpuCases.h: a denseRowCases name names no case");
  // Every wgmma shrink again with its A tiles by bulk tensor copies
  // (tma_weights): every rank (rows past R and the K tail arrive as
  // zeros), BLOCK_K 64 and 128 (one or two boxes per tile), 1-3 stages
  // (the stage barriers' phases), fused slices (one barrier for two maps),
  // clusters, BLOCK_M 128 and the down projection.
  const size_t withDense = cases.size();
  for (size_t i = 0; i < withDense; ++i) {
    if (!cases[i].spec.wgmma)
      continue;
    GpuCase c = cases[i];
    c.spec.tmaWeights = true;
    c.name += "_tma";
    cases.push_back(c);
  }
  // Every wgmma case that allows it (two or more stages, up to 8 warps),
  // tma ones included, again with a producer warp (producer_warp): the
  // full and empty barriers' phases over 2-3 stages, K ranges shorter than
  // the pipeline (cluster ranks), ragged K, and copies of 1-2 tiles per
  // stage by 32 lanes.
  const size_t withTma = cases.size();
  for (size_t i = 0; i < withTma; ++i) {
    if (!cases[i].spec.wgmma)
      continue;
    GpuCase c = cases[i];
    c.spec.producerWarp = true;
    if (!validateSpec(c.spec).empty())
      continue;
    c.name += "_pw";
    cases.push_back(c);
  }
  // Every wgmma one-shot case and every two-kernel case whose expand allows
  // it (rank above 32, BLOCK_M 64 or 128), tma and producer ones included,
  // again with the expand on wgmma (wgmma_expand): without the few-rows
  // expand, so that every block multiplies r's swizzled tile (these cases'
  // blocks hold few rows), and, where blocks of both kinds meet in one
  // launch (_dense_rows, _rows32), with it.
  const size_t withProducer = cases.size();
  for (size_t i = 0; i < withProducer; ++i) {
    const bool oneShot = cases[i].path == Path::OneShot && cases[i].spec.wgmma;
    const bool twoKernel = cases[i].path == Path::TwoKernel && cases[i].expand;
    if (!oneShot && !twoKernel)
      continue;
    GpuCase c = cases[i];
    KernelSpec &expand = oneShot ? c.spec : *c.expand;
    const bool fewRows = expand.fewRows;
    expand.wgmmaExpand = true;
    if (!validateSpec(expand).empty())
      continue;
    const bool mixed = expand.fewRowsExpand() &&
                       (c.name.find("_dense_rows") != std::string::npos ||
                        c.name.find("_rows32") != std::string::npos);
    expand.fewRows = false;
    c.name += "_xwg";
    cases.push_back(c);
    if (!mixed)
      continue;
    KernelSpec &again = oneShot ? c.spec : *c.expand;
    again.fewRows = fewRows;
    c.name += "_fr";
    cases.push_back(c);
  }
  // wgmma_expand where the copies above do not reach (rank 64-128 at 32-64
  // columns per warpgroup): 128 and 256 columns per warpgroup (the tables'
  // BLOCK_N 128 four-warp one-shots), ranks below BLOCK_R (B's and r's
  // columns past R zero-filled), fused slices (two r tiles) in a cluster,
  // the element-wise epilogue with routed weights, and the two-kernel
  // expand at 128 columns and rank 40, and beside its few-rows branch
  // (fragments read from the swizzled tile by ldmatrix). Two experts, so
  // whole blocks take the wgmma steps.
  struct XwgCase {
    int R, N, warps, blockN, C;
    bool fuse, aligned, w2, twoKernel;
    bool fewRows = false;
  };
  uint64_t xwgSeed = 5000;
  for (XwgCase x :
       {XwgCase{40, 1408, 4, 128, 1, false, true, false, false},
        XwgCase{64, 1408, 8, 64, 2, true, true, false, false},
        XwgCase{96, 1004, 4, 128, 1, false, false, true, false},
        XwgCase{64, 1408, 4, 256, 1, false, true, false, false},
        XwgCase{40, 1408, 4, 128, 1, false, true, false, true},
        XwgCase{64, 1004, 8, 128, 1, false, false, true, true},
        XwgCase{64, 1408, 8, 64, 1, false, true, false, true, true}}) {
    GpuCase c;
    c.path = x.twoKernel ? Path::TwoKernel : Path::OneShot;
    c.spec =
        baseSpec(x.twoKernel ? KernelFamily::Shrink : KernelFamily::OneShot,
                 DType::BF16, x.R, 2048, true);
    KernelSpec *expand = &c.spec;
    if (x.twoKernel) {
      c.expand = baseSpec(KernelFamily::Expand, DType::BF16, x.R, 0, true);
      expand = &*c.expand;
    } else {
      c.spec.wgmma = true;
      c.spec.blockK = 64;
      c.spec.splitK = x.C;
      c.spec.fuseSlices = x.fuse;
      c.npid = x.C;
    }
    expand->blockM = 64;
    expand->numWarps = x.warps;
    expand->blockN = x.blockN;
    expand->alignedOutput = x.aligned;
    expand->fewRows = x.fewRows;
    if (x.fewRows) // two 128-column few-rows stages fit beside three
      expand->numStages = 3;
    expand->wgmmaExpand = true;
    c.problem = baseProblem(DType::BF16, 192, 2, 2048, x.N, x.R, ++xwgSeed);
    c.problem.numExperts = 2;
    c.name = fmt::format("{}_bf16_sorted_r{}_n{}_w{}_bn{}{}{}_xwg",
                         x.twoKernel ? "two_kernel" : "one_shot", x.R, x.N,
                         x.warps, x.blockN, x.C > 1 ? "_cluster2" : "",
                         x.fuse ? "_fused" : "");
    if (x.fewRows && !expand->fewRowsExpand())
      throw std::logic_error("GpuCases.h: " + c.name +
                             " has no few-rows shape");
    c.name += x.fewRows ? "_fr" : "";
    if (x.w2)
      makeDownProjection(c, true);
    c.name += "_dense";
    for (const KernelSpec *s : {&c.spec, expand})
      if (std::string why = validateSpec(*s); !why.empty())
        throw std::logic_error("GpuCases.h: " + c.name + ": " + why);
    cases.push_back(c);
  }
  // Every sorted one-shot case that allows it again with a persistent grid
  // of one program (cluster) per lora slot, which then walks every row
  // block of its slot (the loop, its shared-memory reuse and the next
  // block's prefetch); every fourth also with the grid the driver's
  // occupancy gives. The test also compares its bits with the kernel
  // without it.
  const size_t withPw = cases.size();
  int persistent = 0;
  for (size_t i = 0; i < withPw; ++i) {
    if (cases[i].path != Path::OneShot || !cases[i].spec.sorted)
      continue;
    GpuCase c = cases[i];
    c.spec.persistent = true;
    if (!validateSpec(c.spec).empty())
      continue;
    c.persistentPrograms = 1;
    c.name += "_ps1";
    cases.push_back(c);
    if (persistent++ % 4 != 0)
      continue;
    c.persistentPrograms = 0;
    c.name.back() = 'r';
    cases.push_back(c);
  }
  // Every third case whose one-shot or expand stages its output (16-byte
  // aligned rows, add_inputs or not) again with the staged rows moved by
  // bulk copies (bulk_output), each kind represented (the test asserts it):
  // persistent and fused-slice one-shots (the expand loop, and so its stage
  // barriers, runs several times per block there), 16- and 32-row few-rows
  // shapes, wgmma expands, 1-3 stages, clusters, N tails shorter than a
  // tile, invalid rows.
  const size_t withPersistent = cases.size();
  int bulk = 0;
  // Kinds: persistent, fused slices, few-rows, 32-row few-rows, wgmma
  // expand, cluster, two-kernel, one stage, no add_inputs.
  std::array<bool, 9> seen{};
  for (size_t i = 0; i < withPersistent; ++i) {
    if (cases[i].path == Path::SmallBatch)
      continue;
    GpuCase c = cases[i];
    KernelSpec &staged = c.expand ? *c.expand : c.spec;
    staged.bulkOutput = true;
    if (!staged.bulksOutput() || !validateSpec(staged).empty())
      continue;
    if (bulk++ % 3 != 0)
      continue;
    c.name += "_bo";
    cases.push_back(c);
    // The single-buffer loop (num_stages 1) once as well.
    if (!seen[7] && staged.numStages > 1) {
      GpuCase one = c;
      (one.expand ? *one.expand : one.spec).numStages = 1;
      if (validateSpec(one.expand ? *one.expand : one.spec).empty()) {
        one.name += "_stages1";
        cases.push_back(one);
        seen[7] = true;
      }
    }
    const bool kinds[] = {c.spec.persistent,
                          c.spec.fusesSlices(),
                          staged.fewRowsExpand(),
                          staged.fewRowsExpand() && staged.fewRowsTile == 32,
                          staged.wgmmaExpand,
                          c.spec.splitK > 1,
                          bool(c.expand),
                          staged.numStages == 1,
                          !staged.addInputs};
    for (size_t k = 0; k < seen.size(); ++k)
      seen[k] = seen[k] || kinds[k];
  }
  if (std::find(seen.begin(), seen.end(), false) != seen.end())
    throw std::logic_error("GpuCases.h: a kind of bulk_output case is missing");
  // Every third case whose shrink (the one-shot's or the two-kernel
  // shrink) allows it, bulk_output ones included, again with the x and A
  // tile rows by bulk copies (bulk_shrink), each kind represented:
  // one-shot, two-kernel shrink, persistent (the loop's barriers
  // re-initialised per row block), clusters, fused slices, 1-3 stages,
  // with bulk_output.
  const size_t withBulkOutput = cases.size();
  int bulkIn = 0;
  std::array<bool, 7> seenIn{};
  for (size_t i = 0; i < withBulkOutput; ++i) {
    if (cases[i].path == Path::SmallBatch)
      continue;
    GpuCase c = cases[i];
    c.spec.bulkShrink = true;
    if (!validateSpec(c.spec).empty() || bulkIn++ % 3 != 0)
      continue;
    c.name += "_bs";
    cases.push_back(c);
    // The single-buffer loop (num_stages 1) once as well.
    if (!seenIn[5] && c.spec.numStages > 2) {
      GpuCase one = c;
      one.spec.numStages = 1;
      if (validateSpec(one.spec).empty()) {
        one.name += "_stages1";
        cases.push_back(one);
        seenIn[5] = true;
      }
    }
    const KernelSpec &staged = c.expand ? *c.expand : c.spec;
    const bool kinds[] = {
        !c.expand,           bool(c.expand),       c.spec.persistent,
        c.spec.splitK > 1,   c.spec.fusesSlices(), c.spec.numStages <= 2,
        staged.bulksOutput()};
    for (size_t k = 0; k < seenIn.size(); ++k)
      seenIn[k] = seenIn[k] || kinds[k];
  }
  if (std::find(seenIn.begin(), seenIn.end(), false) != seenIn.end())
    throw std::logic_error("GpuCases.h: a kind of bulk_shrink case is missing");
  // Every other one-shot case that allows it again with the expand's first
  // stages issued before r's reduction (early_expand), each kind
  // represented: clusters, warps along K (the block reduction), both
  // (stages past both reductions' bytes), wgmma expands (r's tile past the
  // stages), fused slices (only the first slice's stages go early), staged
  // and unstaged outputs, naive metadata, two stages, few-rows blocks (16
  // and 32 rows: the block decides before the reductions which shape's
  // stages to issue).
  const size_t withBulkShrink = cases.size();
  int early = 0;
  std::array<bool, 12> seenEarly{};
  for (size_t i = 0; i < withBulkShrink; ++i) {
    if (cases[i].path != Path::OneShot || cases[i].spec.persistent ||
        cases[i].spec.bulksOutput())
      continue;
    GpuCase c = cases[i];
    c.spec.earlyExpand = true;
    if (!c.spec.expandsEarly() || !validateSpec(c.spec).empty() ||
        early++ % 2 != 0)
      continue;
    c.name += "_xe";
    cases.push_back(c);
    // Once: a wgmma expand with the few-rows one (its stages in flight
    // while r's wgmma tile is written).
    if (!seenEarly[11] && c.spec.wgmmaExpand && !c.spec.fewRows) {
      GpuCase f = c;
      f.spec.fewRows = true;
      if (validateSpec(f.spec).empty() && f.spec.fewRowsExpand()) {
        f.name += "_fr";
        cases.push_back(f);
        seenEarly[11] = true;
      }
    }
    const bool warpsAlongK =
        WarpGrid::forTile(c.spec.numWarps, c.spec.blockM).warpsN > 1;
    const bool kinds[] = {c.spec.splitK > 1,
                          warpsAlongK,
                          c.spec.splitK > 1 && warpsAlongK,
                          c.spec.wgmmaExpand,
                          c.spec.fusesSlices(),
                          c.spec.stagesOutput(),
                          !c.spec.stagesOutput(),
                          !c.spec.sorted,
                          c.spec.numStages == 2,
                          c.spec.fewRowsExpand(),
                          c.spec.fewRowsExpand() && c.spec.fewRowsTile == 32,
                          c.spec.wgmmaExpand && c.spec.fewRowsExpand()};
    for (size_t k = 0; k < seenEarly.size(); ++k)
      seenEarly[k] = seenEarly[k] || kinds[k];
  }
  if (std::find(seenEarly.begin(), seenEarly.end(), false) != seenEarly.end())
    throw std::logic_error(
        "GpuCases.h: a kind of early_expand case is missing");
  // Every one-shot cluster case (early_expand's too) again with r's cluster
  // sum as a reduce-scatter (reduce_scatter), each kind represented: warps
  // along M only and along K too, shares that are a whole number of passes
  // over the threads and shares smaller than them, 2- and 8/16-block
  // clusters, fused slices, wgmma expands, naive metadata, early stages
  // (past the one buffer), few-rows blocks, a persistent grid.
  const size_t withEarly = cases.size();
  std::array<bool, 11> seenScatter{};
  for (size_t i = 0; i < withEarly; ++i) {
    if (cases[i].path != Path::OneShot)
      continue;
    GpuCase c = cases[i];
    c.spec.reduceScatter = true;
    if (!c.spec.scattersClusterSum() || !validateSpec(c.spec).empty())
      continue;
    c.name += "_rs";
    cases.push_back(c);
    const KernelSpec &s = c.spec;
    const int share = s.blockM * (s.fusesSlices() ? s.numSlices : 1) *
                      s.blockR() / 4 / s.splitK;
    const bool warpsAlongK = WarpGrid::forTile(s.numWarps, s.blockM).warpsN > 1;
    const bool kinds[] = {!warpsAlongK,
                          warpsAlongK,
                          share % s.threads() == 0,
                          share < s.threads(),
                          s.splitK == 2,
                          s.splitK >= 8,
                          s.fusesSlices(),
                          s.wgmmaExpand,
                          !s.sorted,
                          s.expandsEarly(),
                          s.fewRowsExpand() || s.persistent};
    for (size_t k = 0; k < seenScatter.size(); ++k)
      seenScatter[k] = seenScatter[k] || kinds[k];
  }
  if (std::find(seenScatter.begin(), seenScatter.end(), false) !=
      seenScatter.end())
    throw std::logic_error(
        "GpuCases.h: a kind of reduce_scatter case is missing");
  // A same-bits sibling must take the few-rows expand wherever the case
  // does (the few-rows and the dense expand need not round alike).
  for (const GpuCase &c : cases)
    if (auto plain = sameBitsSibling(c.spec);
        plain && plain->fewRowsExpand() != c.spec.fewRowsExpand())
      throw std::logic_error("GpuCases.h: " + c.name +
                             ": its same-bits sibling's few-rows expand "
                             "differs");
  return cases;
}

/// align_block_size kernels of the suite (BLOCK_SIZE_M 16 and 64).
inline std::vector<KernelSpec> alignSpecs() {
  return {alignBlockSizeSpec(90, 16), alignBlockSizeSpec(90, 64)};
}

} // namespace moelora::gputest

#endif // MOELORA_TEST_GPU_GPUCASES_H
