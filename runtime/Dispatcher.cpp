//===- Dispatcher.cpp - vLLM's dispatch rules, R > 128 to two-kernel ------===//

#include "moelora/Runtime/Dispatcher.h"
#include "moelora/Spec/SpecValidation.h"
#include "moelora/Spec/TileBytes.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace moelora {

std::string_view toString(DispatchPath p) {
  switch (p) {
  case DispatchPath::None:
    return "none";
  case DispatchPath::SmallBatch:
    return "small_batch";
  case DispatchPath::OneShot:
    return "one_shot";
  case DispatchPath::TwoKernel:
    return "two_kernel";
  }
  return "?";
}

size_t intermediateBytes(const MoeLoraCall &call) {
  return size_t(call.numSlices) * size_t(call.numPairs()) * size_t(call.rank) *
         2;
}

/// Whether a naive call (R <= 64) takes the small-batch kernel. vLLM's rule
/// is pairs x R <= 1024. moelora's small-batch kernel also wins up to
/// pairs x R = 4096 at R <= 32 (H200, PERF-LOG h200-v15: decode M 16 at
/// top_k 8, R 16, 1.3-1.5x faster than the one-shot); at R 64 the one-shot
/// stays as fast or faster there, so vLLM's bound stays.
static bool smallBatchFits(long pairs, int rank) {
  return pairs * rank <= (rank <= 32 ? 4096 : 1024);
}

static bool isPow2AtLeast16(int v) { return v >= 16 && (v & (v - 1)) == 0; }

static KernelSpec commonSpec(KernelFamily f, const MoeLoraCall &call,
                             const DeviceInfo &device) {
  KernelSpec s;
  s.family = f;
  s.dtype = call.dtype;
  s.sm = device.sm;
  s.rank = call.rank;
  s.k = call.K;
  s.sorted = call.sorted;
  s.mulRoutedWeight = call.mulRoutedWeight;
  s.addInputs = call.addInputs;
  s.numSlices = call.numSlices;
  s.minBlocksPerSm = defaultMinBlocksPerSm(f);
  // Only the one-shot and expand kernels stage output rows; the others keep
  // the default so that their variants do not split on it.
  if (f == KernelFamily::OneShot || f == KernelFamily::Expand)
    s.alignedOutput = outputRowsAligned(call);
  return s;
}

/// Halves num_warps until every warp along N owns at least one 8-column MMA
/// tile (warps go along M first, one per 16 rows): a small rank's shrink tile
/// (BLOCK_SIZE_N 16) cannot feed four warps side by side.
static void fitWarpsToTile(KernelSpec &s) {
  while (s.numWarps > 1) {
    const WarpGrid g = WarpGrid::forTile(s.numWarps, s.blockM);
    // The one-shot's shrink also splits each BLOCK_K step over them: each
    // needs a k16 MMA step (BLOCK_K 64 at K < 256 over 8 warps had none).
    const bool kFits =
        s.family != KernelFamily::OneShot || s.blockK / g.warpsN >= 16;
    if (s.blockN / g.warpsN >= 8 && kFits)
      return;
    s.numWarps /= 2;
  }
}

static void applyTuned(KernelSpec &s, LaunchKnobs &k, const TunedConfig &c) {
  // SPLIT_K is a thread-block cluster (sm_90): a table made on one, used on
  // an older GPU, runs without clusters.
  const int splitK = s.sm >= 90 ? c.splitK : 0;
  if (c.blockN)
    s.blockN = c.blockN;
  if (c.blockK)
    s.blockK = c.blockK;
  if (c.numWarps)
    s.numWarps = c.numWarps;
  if (c.numStages)
    s.numStages = c.numStages;
  if (c.npid)
    k.npid = c.npid;
  if (c.tilesPerItem)
    k.tilesPerItem = c.tilesPerItem;
  if (splitK)
    s.splitK = splitK;
  if (c.minBlocksPerSm >= 0)
    s.minBlocksPerSm = c.minBlocksPerSm;
  if (c.fuseSlices >= 0 && s.family == KernelFamily::OneShot)
    s.fuseSlices = c.fuseSlices == 1;
  // The one-shot's, or the two-kernel path's expand's.
  if (c.fewRows >= 0)
    s.fewRows = c.fewRows == 1;
  if (c.fewRowsTile)
    s.fewRowsTile = c.fewRowsTile;
}

/// A tuned entry's wgmma (one_shot: the kernel's; two_kernel: its shrink's),
/// applied to the final tile where that tile allows it; elsewhere the tile
/// runs mma.sync. Tiles are fitted to shared memory with mma.sync's padded
/// pitch beforehand, so the (unpadded) wgmma tile fits as well.
/// Its tma_weights and producer_warp likewise (tma_weights where
/// the call also allows tensor maps: weightTensorMapsApply), each where its
/// stage barriers still fit the shared memory the tile was fitted to.
static void useWgmmaWhereTheTileAllows(KernelSpec &s, const TunedConfig &c,
                                       const MoeLoraCall &call) {
  if (c.wgmma != 1 || s.sm != 90)
    return;
  s.wgmma = true;
  if (!validateSpec(s).empty()) {
    s.wgmma = false;
    return;
  }
  auto fits = [&] {
    const int sharedBytes = s.family == KernelFamily::OneShot
                                ? OneShotSharedLayout(s).sharedBytes(s)
                                : shrinkKernelSharedBytes(s);
    return validateSpec(s).empty() &&
           sharedBytes <= maxDynamicSharedBytes(s.sm);
  };
  // fits() judges the spec with the flag on.
  auto turnOnWhereItFits = [&](bool &flag) {
    flag = true;
    flag = fits();
  };
  if (c.tmaWeights == 1 && weightTensorMapsApply(call))
    turnOnWhereItFits(s.tmaWeights);
  if (c.producerWarp == 1)
    turnOnWhereItFits(s.producerWarp);
}

/// Sets a tuned entry's boolean kernel choice `flag` (table value `value`:
/// 1 on) on an sm_90 spec where the final spec allows it and its shared
/// memory (the one-shot's, or the family's own kernel's) still fits.
static void setFlagWhereItFits(KernelSpec &s, bool KernelSpec::*flag,
                               int value) {
  if (value != 1 || s.sm != 90)
    return;
  s.*flag = true;
  const int sharedBytes =
      s.family == KernelFamily::OneShot  ? OneShotSharedLayout(s).sharedBytes(s)
      : s.family == KernelFamily::Shrink ? shrinkKernelSharedBytes(s)
                                         : expandKernelSharedBytes(s);
  if (!validateSpec(s).empty() || sharedBytes > maxDynamicSharedBytes(s.sm))
    s.*flag = false;
}

/// setFlagWhereItFits for a one-shot choice that moves the bytes the
/// few-rows expand's budget is measured in: only where the entry's few-rows
/// shape stays as it was (as tuned and measured).
static void setFlagKeepingFewRows(KernelSpec &s, bool KernelSpec::*flag,
                                  int value) {
  const std::optional<ExpandShape> fewRows = fewRowsShapeIfEnabled(s);
  setFlagWhereItFits(s, flag, value);
  if (s.*flag && fewRowsShapeIfEnabled(s) != fewRows)
    s.*flag = false;
}

/// A tuned entry's expand choices (one_shot: the kernel's, after its wgmma;
/// two_kernel: its expand's): wgmma_expand where the final tile allows it
/// (BLOCK_M 64 or 128, rank above 32) and r's swizzled tile, which the
/// expand stages no longer reuse, still fits; bulk_output where its stage
/// barriers fit (calls whose output rows are not 16-byte aligned stage no
/// output, and the flag changes nothing there: KernelSpec::bulksOutput);
/// early_expand (one_shot) where its stages, moved past the reductions'
/// bytes, fit and leave the entry's few-rows shape as it was.
static void useExpandChoices(KernelSpec &s, const TunedConfig &c) {
  setFlagWhereItFits(s, &KernelSpec::wgmmaExpand, c.wgmmaExpand);
  setFlagWhereItFits(s, &KernelSpec::bulkOutput, c.bulkOutput);
  setFlagKeepingFewRows(s, &KernelSpec::earlyExpand, c.earlyExpand);
}

static long ceilDiv(long a, long b) { return (a + b - 1) / b; }

/// A (tuned) non-portable cluster that fits nowhere on the GPU (smaller
/// GPCs, a MIG slice) becomes an 8-block one instead of a launch the
/// driver would refuse.
static void fitClusterToDevice(KernelSpec &s, const DeviceInfo &device) {
  if (s.splitK > kMaxPortableClusterBlocks && device.clusterFits &&
      !device.clusterFits(s))
    s.splitK = kMaxPortableClusterBlocks;
}

/// Row blocks a two-kernel GEMM will find work in: one per pair on naive
/// metadata; sorted, the full blocks plus one padded block per used
/// (adapter, expert) group, within the grid's capacity.
static long estimatedRowBlocks(const MoeLoraCall &call, int blockM) {
  const long pairs = call.numPairs();
  if (!call.sorted)
    return pairs;
  long groups =
      std::min(pairs, long(call.numActiveLoras) * long(call.numExperts));
  return std::max(1L, std::min(pairs / blockM + groups,
                               long(call.numActiveLoras) * (call.EM / blockM)));
}

/// SPLIT_K of the two-kernel shrink. Its programs each walk all of K in
/// series, so with few of them (mixtral W2 at M 64: about 34 row blocks of
/// 112 BLOCK_K steps) the SMs sit idle behind a long latency chain. On
/// sm_90 K is split over a thread-block cluster (partials summed in rank
/// order: bitwise reproducible) while the estimated programs stay under 4
/// per SM and each split keeps at least 8 BLOCK_K steps; before sm_90 there
/// are no clusters and the shrink does not split.
static int shrinkSplitK(const KernelSpec &shrink, const MoeLoraCall &call,
                        const DeviceInfo &device) {
  if (device.sm < 90)
    return 1;
  const long programs = estimatedRowBlocks(call, shrink.blockM) *
                        shrink.gridSlices() * ceilDiv(call.rank, shrink.blockN);
  const long kSteps = ceilDiv(call.K, shrink.blockK);
  int split = 1;
  while (split < kMaxPortableClusterBlocks &&
         programs * split * 2 <= 4L * device.smCount &&
         kSteps / (split * 2) >= 8)
    split *= 2;
  return split;
}

/// Whether the two-kernel shrink computes all slices of a tile in one
/// program (fuse_slices): each pair's x row is gathered once instead of once
/// per slice, but W13 gets half the programs. Measured on the H200
/// (PERF-LOG h200-v28, every W13 bench bucket both ways): at rank 16 the x
/// tile is four times a slice's A tile and fusing gave 0.956x geomean
/// (0.857-1.10); at rank 64 it gave 0.97-1.19x. Naive metadata (one pair
/// per row block) has a single x row per program to share: nothing to gain
/// for half the programs. Tuned entries override this.
static bool shrinkFusesSlices(const MoeLoraCall &call) {
  return call.sorted && call.numSlices > 1 && call.rank <= 16;
}

/// Keeps the expand within the device's shared memory: fewer stages first
/// (down to 2), then narrower N tiles. Large ranks need it (R 256: a stage
/// holds a BLOCK_N x 264 tile of B), and so do sm_86/89's 99 KB.
static void fitExpandToSharedMemory(KernelSpec &s) {
  const int limit = maxDynamicSharedBytes(s.sm);
  while (expandKernelSharedBytes(s) > limit) {
    if (s.numStages > 2)
      --s.numStages;
    else if (s.blockN > 16)
      s.blockN /= 2;
    else
      return; // the generator reports the variant that does not fit
  }
}

/// Keeps the one-shot within the device's shared memory: sm_86/89 allow
/// 99 KB, and vLLM's tile at rank 64 (three stages of BLOCK_N 128 with the
/// staged output) needs 105 KB. Fewer stages first (down to 2), then the
/// tile of the phase that still overflows: narrower expand tiles (BLOCK_N)
/// or shorter shrink steps (BLOCK_K). The r buffers (reduction, cluster)
/// depend on neither; the generator reports a variant they overflow.
static void fitOneShotToSharedMemory(KernelSpec &s) {
  const int limit = maxDynamicSharedBytes(s.sm);
  while (true) {
    const OneShotSharedLayout lay(s);
    if (lay.sharedBytes(s) <= limit)
      return;
    const bool shrinkOver = lay.shrinkStage * s.numStages > limit;
    const bool expandOver = lay.expandBytes > limit;
    if ((shrinkOver || expandOver) && s.numStages > 2)
      --s.numStages;
    else if (expandOver && s.blockN > 32)
      s.blockN /= 2;
    else if (shrinkOver && s.blockK > 32)
      s.blockK /= 2;
    else
      return;
  }
}

/// NPID of the two-kernel expand: programs per row block, each walking its
/// share of the N tiles. Doubled while the programs are fewer than 4 per SM
/// (so it ends with up to 8 per SM; measured so in h200-v21) and each keeps
/// at least 2 tiles (one to load while the other is used).
static int expandNpid(const KernelSpec &expand, const MoeLoraCall &call,
                      const DeviceInfo &device) {
  const long programs =
      estimatedRowBlocks(call, expand.blockM) * call.numSlices;
  const long nTiles = ceilDiv(call.N, expand.blockN);
  int npid = 1;
  while (programs * npid < 4L * device.smCount && nTiles / (npid * 2) >= 2)
    npid *= 2;
  return npid;
}

static Expected<DispatchPlan> choosePlan(const MoeLoraCall &call,
                                         bool fullySharded,
                                         const DeviceInfo &device,
                                         const TunedTable *tuned);

Expected<DispatchPlan> planFusedMoeLora(const MoeLoraCall &call,
                                        bool fullySharded,
                                        const DeviceInfo &device,
                                        const TunedTable *tuned) {
  auto plan = choosePlan(call, fullySharded, device, tuned);
  if (!plan)
    return plan;
  // Tuned entries are not keyed by BLOCK_M: where the final tile has no
  // 32-row few-rows shape (BLOCK_M 32, BLOCK_R 128), the 16-row one serves.
  for (PlannedKernel &k : plan->kernels)
    if (k.spec.fewRows && k.spec.fewRowsTile != 16 && !k.spec.fewRowsExpand())
      k.spec.fewRowsTile = 16;
  // The sorted grids follow the caller's EM (its metadata's row capacity),
  // which nothing else bounds: refuse a grid the driver cannot launch rather
  // than let it wrap (fuzzing finding F6).
  for (const PlannedKernel &k : plan->kernels) {
    LaunchGeometry g = launchGeometry(k.spec, call, k.knobs);
    if (!g.withinDriverLimits())
      return makeError(fmt::format(
          "EM = {}, num_tokens * top_k = {}: the {} kernel would need a grid "
          "of {} x {} x {} blocks; CUDA launches at most 2147483647 x 65535 x "
          "65535 (EM is the sorted metadata's rows per adapter: "
          "moelora_align_capacity gives what the pairs need)",
          call.EM, call.numPairs(), toString(k.spec.family), g.blocksX,
          g.grid[1], g.grid[2]));
  }
  return plan;
}

static Expected<DispatchPlan> choosePlan(const MoeLoraCall &call,
                                         bool fullySharded,
                                         const DeviceInfo &device,
                                         const TunedTable *tuned) {
  DispatchPlan plan;
  const long pairs = call.numPairs();
  if (pairs == 0 || call.numSlices == 0 || call.numActiveLoras == 0 ||
      call.N == 0)
    return plan; // nothing to do: no launch, output unchanged
  if (call.sorted && !isPow2AtLeast16(call.blockSizeM))
    return makeError(fmt::format(
        "shrink_block_size_m = {}: must be a power of two >= 16 (16, 32, "
        "64, 128, ...)",
        call.blockSizeM));
  auto lookup = [&](std::string_view path) -> const TunedEntry * {
    if (!tuned)
      return nullptr;
    return tuned->find(device.name, std::string(path), call.dtype, call.rank,
                       call.K, call.N, call.numSlices, call.sorted, pairs);
  };

  bool twoKernel = fullySharded || call.rank > kMaxOneShotRank;
  if (!twoKernel && !call.sorted && call.rank <= kMaxSmallBatchRank &&
      smallBatchFits(pairs, call.rank)) {
    plan.path = DispatchPath::SmallBatch;
    KernelSpec s = commonSpec(KernelFamily::SmallBatch, call, device);
    s.blockM = 16;
    s.blockN = 64;
    s.blockK = 256;
    s.numWarps = 8; // measured on an H100: 8 beat 4 for every decode case
    s.numStages = 1;
    // sm_86/89's ptxas spills rank 64 under the 2-block register cap (24
    // bytes at K 4096; sm_80 and sm_90 fit in 128 registers).
    if ((device.sm == 86 || device.sm == 89) && call.rank > 32)
      s.minBlocksPerSm = 1;
    LaunchKnobs k;
    k.smCount = device.smCount;
    long items = pairs * call.numSlices;
    long want = 2L * device.smCount;
    // Clusters of SPLIT_K blocks (sm_90) share each item's shrink, each
    // block reducing K / SPLIT_K, while a cluster per (pair, slice) fits in
    // one block per SM. Since the shrink's threads follow the length of
    // their K part (PERF-LOG h200-v15), a part of 128 elements still keeps
    // them busy: the H200 decode tune chose 8-block clusters down to K 1408
    // for up to 16 items. With more items a cluster's barriers cost more
    // than its shorter shrink saves unless K is long (part >= 512).
    const long kLen = call.K;
    if (device.sm >= 90)
      while (s.splitK < kMaxPortableClusterBlocks &&
             items * s.splitK * 2 <= device.smCount &&
             kLen / (s.splitK * 2) >= (items <= 16 ? 128 : 512))
        s.splitK *= 2;
    // A tuned entry may set SPLIT_K; tiles_per_item then follows the final
    // cluster size unless the entry sets it too (as the tuner measured it).
    const TunedEntry *t = lookup("small_batch");
    if (t) {
      applyTuned(s, k, t->config);
      plan.fromTunedTable = true;
    }
    fitClusterToDevice(s, device);
    const long nTiles = ceilDiv(call.N, s.blockN);
    if (t && t->config.tilesPerItem) {
      // as tuned
    } else if (s.splitK > 1) {
      // Extra clusters per (pair, slice) (n-chunks) each read the whole A
      // again: at most 4, and only while every thread still has a column in
      // each (N / (SPLIT_K x threads)).
      const long colsPerRound = long(s.splitK) * s.threads();
      long chunks = std::clamp<long>(
          std::min(want / (items * s.splitK), long(call.N) / colsPerRound), 1,
          std::min(4L, nTiles));
      k.tilesPerItem = int(ceilDiv(nTiles, chunks));
    } else {
      // Aim for pairs x slices x ceil(nTiles / tilesPerItem) <= 2 programs
      // per SM, so a program handles about one item: each extra item per
      // program costs another shrink's worth of latency. (The rounding of
      // ceil(nTiles / tilesPerItem) can leave a few programs two items.)
      k.tilesPerItem = int(std::clamp<long>(
          ceilDiv(nTiles * items, std::max(1L, want)), 1L, nTiles));
    }
    plan.kernels.push_back({s, k});
    return plan;
  }
  // The tuned table may give a one-shot bucket to the two-kernel path,
  // where it measured faster (its own "fused" entry for the bucket).
  if (!twoKernel)
    if (const TunedEntry *f = lookup("fused"); f && f->use == "two_kernel") {
      twoKernel = true;
      plan.fromTunedTable = true;
    }
  if (!twoKernel) {
    plan.path = DispatchPath::OneShot;
    KernelSpec s = commonSpec(KernelFamily::OneShot, call, device);
    s.blockM = call.sorted ? call.blockSizeM : 16;
    s.blockN = 128;
    s.blockK = call.K >= 256 ? 128 : 64;
    s.numStages = 3;
    s.numWarps = 4;
    LaunchKnobs k;
    long mBlocks = call.sorted ? call.EM / s.blockM : pairs;
    if (mBlocks == 0)
      return DispatchPlan{}; // no capacity: nothing to launch
    const TunedEntry *t = lookup("one_shot");
    // A fused entry's programs each serve every slice.
    const long gridSlices = t && t->config.fuseSlices == 1 ? 1 : call.numSlices;
    long programs =
        mBlocks * gridSlices * (call.sorted ? call.numActiveLoras : 1);
    long nTiles = ceilDiv(call.N, s.blockN);
    long target = device.smCount * 3 / 2;
    if (programs < target) {
      k.npid = int(std::clamp<long>(ceilDiv(target, programs), 1, nTiles));
      if (k.npid > 1)
        s.numWarps = 8;
    }
    if (t) {
      applyTuned(s, k, t->config);
      plan.fromTunedTable = true;
    }
    // Fused, r holds every slice's columns: not above the one-shot's limit.
    if (s.fusesSlices() && s.numSlices * s.blockR() > kMaxOneShotRank)
      s.fuseSlices = false;
    // The NPID programs of a row block each repeat its whole shrink; on
    // sm_90 they form a cluster instead and split it (SPLIT_K = NPID, a
    // power of two up to 8). A tuned entry's NPID or SPLIT_K is kept as
    // measured.
    if (device.sm >= 90 && k.npid > 1 &&
        !(t && (t->config.splitK != 0 || t->config.npid != 0))) {
      s.splitK = 2;
      while (s.splitK < k.npid && s.splitK < kMaxPortableClusterBlocks)
        s.splitK *= 2;
    }
    // Before sm_90, ptxas spills the four-warp tile at BLOCK_R 128 (sm_80:
    // 8 bytes); eight warps halve each thread's share of r.
    if (device.sm < 90 && s.blockR() >= 128 && !(t && t->config.numWarps))
      s.numWarps = 8;
    fitWarpsToTile(s);
    fitOneShotToSharedMemory(s);
    fitWarpsToTile(s);
    if (t) {
      useWgmmaWhereTheTileAllows(s, t->config, call);
      useExpandChoices(s, t->config);
      // After the expand's choices, whose few-rows shapes its smaller sums
      // could otherwise move (r's wgmma tile, early stages sit past them).
      setFlagKeepingFewRows(s, &KernelSpec::reduceScatter,
                            t->config.reduceScatter);
      // bulk_shrink where the final spec allows it (mma.sync tiles, K a
      // multiple of BLOCK_K, A tiles within the rank).
      setFlagWhereItFits(s, &KernelSpec::bulkShrink, t->config.bulkShrink);
    }
    // The one-shot's cluster is its row block's NPID programs.
    fitClusterToDevice(s, device);
    if (s.splitK > 1)
      k.npid = s.splitK;
    // A tuned persistent grid, where the final spec allows it (sorted
    // metadata, no producer warp or tensor-map copies).
    if (t && t->config.persistent == 1) {
      s.persistent = true;
      if (!validateSpec(s).empty())
        s.persistent = false;
    }
    plan.kernels.push_back({s, k});
    return plan;
  }
  plan.path = DispatchPath::TwoKernel;
  KernelSpec shrink = commonSpec(KernelFamily::Shrink, call, device);
  shrink.blockM = call.sorted ? call.blockSizeM : 16;
  shrink.blockN = std::clamp(
      1 << (32 - __builtin_clz(std::max(call.rank, 16) - 1)), 16, 64);
  shrink.blockK = 64;
  shrink.numWarps = 4;
  shrink.numStages = 3;
  const TunedEntry *tunedExpand = lookup("two_kernel");
  shrink.fuseSlices = tunedExpand && tunedExpand->config.fuseSlices >= 0
                          ? tunedExpand->config.fuseSlices == 1
                          : shrinkFusesSlices(call);
  // A fused shrink that would not fit the device's shared memory (a tuned
  // entry's choice at a large rank on sm_86/89) runs unfused.
  if (shrink.fusesSlices() &&
      shrinkKernelSharedBytes(shrink) > maxDynamicSharedBytes(shrink.sm))
    shrink.fuseSlices = false;
  shrink.splitK = shrinkSplitK(shrink, call, device);
  // The shrink keeps mul_routed_weight: it selects x's row per pair
  // (token_mapping_factor); only the expand applies the weights.
  shrink.addInputs = false;
  KernelSpec expand = commonSpec(KernelFamily::Expand, call, device);
  expand.k.reset(); // the expand's reduction is R, not K
  expand.blockM = shrink.blockM;
  expand.blockN = 64;
  expand.blockK = 16;
  expand.numWarps = 4;
  expand.numStages = 3;
  LaunchKnobs expandKnobs;
  if (tunedExpand) {
    applyTuned(expand, expandKnobs, tunedExpand->config);
    plan.fromTunedTable = true;
  }
  fitExpandToSharedMemory(expand);
  fitWarpsToTile(shrink);
  fitWarpsToTile(expand);
  if (tunedExpand) {
    useWgmmaWhereTheTileAllows(shrink, tunedExpand->config, call);
    useExpandChoices(expand, tunedExpand->config);
    setFlagWhereItFits(shrink, &KernelSpec::bulkShrink,
                       tunedExpand->config.bulkShrink);
  }
  if (!tunedExpand || tunedExpand->config.npid == 0)
    expandKnobs.npid = expandNpid(expand, call, device);
  plan.kernels.push_back({shrink, LaunchKnobs{}});
  plan.kernels.push_back({expand, expandKnobs});
  plan.workspaceBytes = intermediateBytes(call);
  return plan;
}

} // namespace moelora
