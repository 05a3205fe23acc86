//===- SpecValidation.cpp - Cross-field rules of one KernelSpec -----------===//

#include "moelora/Spec/SpecValidation.h"

#include "SpecSchema.h"

#include "moelora/Spec/TileBytes.h"

#include <fmt/format.h>

#include <algorithm>

namespace moelora {

using namespace spec;

namespace {
/// A boolean field set on a family that does not take it.
/// `value` of field f exists only for `families`; `allowed` is what the
/// others take.
std::string onlyFor(Field f, std::string_view families, KernelFamily got,
                    std::string_view value = "true",
                    std::string_view allowed = "false") {
  return reasonText(f,
                    fmt::format("{} is only supported by {} (got {})", value,
                                families, toString(got)),
                    fmt::format("{} for {}", allowed, toString(got)));
}

/// What every warpgroup-MMA flag (`name`, field `flag`) needs: sm_90
/// (wgmma is an sm_90a instruction), BLOCK_M 64 or 128 (warpgroup tiles of
/// 64 rows) and a warp for every 16 rows. Empty when allowed.
std::string warpgroupTileRules(const KernelSpec &spec, Field flag,
                               std::string_view name) {
  if (spec.sm != 90)
    return reasonText(flag,
                      fmt::format("true needs sm_90 (wgmma is an sm_90a "
                                  "instruction; got sm_{})",
                                  spec.sm),
                      fmt::format("false for sm_{}", spec.sm));
  if (spec.blockM != 64 && spec.blockM != 128)
    return reasonText(Field::BlockM,
                      fmt::format("{} with {}: warpgroup tiles are 64 rows",
                                  spec.blockM, name),
                      fmt::format("64 or 128 with {}", name));
  if (spec.numWarps < spec.blockM / 16)
    return reasonText(Field::NumWarps,
                      fmt::format("{} with {} and BLOCK_SIZE_M {}: every 16 "
                                  "rows need a warp",
                                  spec.numWarps, name, spec.blockM),
                      fmt::format(">= {} with {} and BLOCK_SIZE_M {}",
                                  spec.blockM / 16, name, spec.blockM));
  return "";
}

/// Bulk copies (cp.async.bulk, flag `f`) are sm_90's. Empty when allowed.
std::string bulkCopyTargetRule(const KernelSpec &spec, Field f) {
  if (spec.sm >= 90)
    return "";
  return reasonText(
      f, fmt::format("true with target sm_{}: bulk copies need sm_90", spec.sm),
      "true with sm_90, false otherwise");
}

/// A warpgroup multiplies BLOCK_N / (warpgroups along N) columns in one
/// instruction (`name`'s): wgmma's N is at most 256. Empty when allowed.
std::string warpgroupColumnsRule(const KernelSpec &spec,
                                 std::string_view name) {
  const WarpGrid g = WarpGrid::forTile(spec.numWarps, spec.blockM);
  if (spec.blockN / g.warpsN <= 256)
    return "";
  return reasonText(
      Field::BlockN,
      fmt::format("{} over {} warpgroups with {} leaves {} columns per "
                  "warpgroup, more than one wgmma's 256",
                  spec.blockN, g.warpsN, name, spec.blockN / g.warpsN),
      fmt::format("<= {} with {} and num_warps {}", 256 * g.warpsN, name,
                  spec.numWarps));
}
} // namespace

std::string validateSpec(const KernelSpec &spec) {
  if (std::find(kTargets.begin(), kTargets.end(), spec.sm) == kTargets.end())
    return reasonText(Field::Target,
                      fmt::format("sm_{} is not a supported target", spec.sm));

  if (spec.family == KernelFamily::AlignBlockSize) {
    if (spec.rank != 0)
      return reasonText(
          Field::Rank,
          fmt::format("align_block_size takes no rank (got {})", spec.rank),
          "omit rank for align_block_size");
  } else if (spec.rank < 1) {
    return reasonText(Field::Rank,
                      fmt::format("{} needs rank >= 1 (got {})",
                                  toString(spec.family), spec.rank));
  }
  if (spec.k)
    if (std::string w = checkIntValue(Field::K, *spec.k); !w.empty())
      return reasonText(Field::K, w);
  // The kernels move elements at least in pairs (4-byte vectors): an odd
  // rank or K would read one element past a row (the C ABI refuses them too).
  if (spec.family != KernelFamily::AlignBlockSize && spec.rank % 2 != 0)
    return reasonText(Field::Rank,
                      fmt::format("{} is odd: rows are read in pairs of "
                                  "elements",
                                  spec.rank),
                      "an even rank (2, 4, 8, 16, 32, 64, ...)");
  if (spec.k && *spec.k % 2 != 0)
    return reasonText(Field::K,
                      fmt::format("{} is odd: rows are read in pairs of "
                                  "elements",
                                  *spec.k),
                      "an even K, or no K (any K at run time)");

  const std::pair<Field, int> plain[] = {
      {Field::BlockM, spec.blockM},
      {Field::BlockN, spec.blockN},
      {Field::BlockK, spec.blockK},
      {Field::GroupSizeM, spec.groupSizeM},
      {Field::SplitK, spec.splitK},
      {Field::NumWarps, spec.numWarps},
      {Field::NumStages, spec.numStages},
      {Field::NumSlices, spec.numSlices},
      {Field::Npid, spec.npid},
      {Field::MinBlocksPerSm, spec.minBlocksPerSm},
      {Field::FewRowsTile, spec.fewRowsTile}};
  for (auto [f, v] : plain)
    if (std::string w = checkIntValue(f, v); !w.empty())
      return reasonText(f, w);

  // Split-K is a thread-block cluster (sm_90, up to 16 blocks) whose blocks
  // sum their partials in rank order: the same bits on every run, which
  // atomics would not give.
  const bool clusterSplit = spec.family == KernelFamily::SmallBatch ||
                            spec.family == KernelFamily::OneShot ||
                            spec.family == KernelFamily::Shrink;
  if (spec.splitK > 1 && clusterSplit) {
    if (spec.sm < 90 || !isPowerOfTwo(spec.splitK) ||
        spec.splitK > kMaxClusterBlocks)
      return reasonText(
          Field::SplitK,
          fmt::format("{} splits K over a thread-block cluster: {} on sm_{} "
                      "is not one",
                      toString(spec.family), spec.splitK, spec.sm),
          fmt::format("1, or 2, 4, 8, 16 on sm_90 for {}",
                      toString(spec.family)));
    // The one-shot's cluster is the row block's NPID programs.
    if (spec.family == KernelFamily::OneShot && spec.npid != 0 &&
        spec.npid != spec.splitK)
      return reasonText(
          Field::Npid,
          fmt::format("{} with SPLIT_K {}: a one_shot cluster is its row "
                      "block's NPID programs",
                      spec.npid, spec.splitK),
          fmt::format("0 or {} (= SPLIT_K)", spec.splitK));
  } else if (spec.splitK > 1) {
    return reasonText(Field::SplitK,
                      fmt::format("SPLIT_K > 1 is only supported by shrink, "
                                  "small_batch and one_shot (got {} for {})",
                                  spec.splitK, toString(spec.family)),
                      fmt::format("1 for {}", toString(spec.family)));
  }

  if (spec.fuseSlices && spec.family != KernelFamily::Shrink &&
      spec.family != KernelFamily::OneShot)
    return onlyFor(Field::FuseSlices, "shrink and one_shot", spec.family);

  if (spec.family == KernelFamily::OneShot &&
      (spec.rank > kMaxOneShotRank || spec.blockR() > kMaxOneShotRank))
    // The fused kernel holds r (BLOCK_M x BLOCK_R) in registers between its
    // two dots, which bounds BLOCK_R. vLLM asserts R <= 128 at run time;
    // moelora refuses the variant here and routes larger ranks to
    // shrink + expand.
    return reasonText(
        Field::Rank,
        fmt::format("{} is too large: one_shot supports rank <= {}; use "
                    "shrink/expand",
                    spec.rank, kMaxOneShotRank),
        fmt::format("1..{} for one_shot", kMaxOneShotRank));

  if (spec.family == KernelFamily::SmallBatch) {
    // The small-batch kernel walks (pair, slice, n-chunk) work items
    // directly from topk_ids; it has no sorted-metadata variant.
    if (spec.sorted)
      return reasonText(Field::Metadata,
                        "small_batch requires naive metadata (got sorted)",
                        "naive for small_batch");
    if (spec.rank > kMaxSmallBatchRank)
      return reasonText(
          Field::Rank,
          fmt::format("{} is too large: small_batch supports "
                      "rank <= {}",
                      spec.rank, kMaxSmallBatchRank),
          fmt::format("1..{} for small_batch", kMaxSmallBatchRank));
    // One thread per rank row sums the warps' partials and holds r.
    if (spec.threads() < spec.rank)
      return reasonText(
          Field::NumWarps,
          fmt::format("{} warps ({} threads) are fewer than the rank's {} rows "
                      "(small_batch needs a thread per rank row)",
                      spec.numWarps, spec.threads(), spec.rank),
          fmt::format("num_warps >= {} for rank {}", (spec.rank + 31) / 32,
                      spec.rank));
  }

  if (spec.family == KernelFamily::OneShot && spec.fusesSlices() &&
      spec.numSlices * spec.blockR() > kMaxOneShotRank)
    // Fused, r holds every slice's BLOCK_R columns in registers.
    return reasonText(
        Field::FuseSlices,
        fmt::format("true with {} slices of BLOCK_R {}: r would be {} "
                    "columns, more than the one_shot's {}",
                    spec.numSlices, spec.blockR(),
                    spec.numSlices * spec.blockR(), kMaxOneShotRank),
        fmt::format("false, or num_slices x BLOCK_R <= {}", kMaxOneShotRank));

  if (spec.family == KernelFamily::OneShot ||
      spec.family == KernelFamily::Shrink ||
      spec.family == KernelFamily::Expand) {
    // Warps are laid out along M first (one 16-row MMA tile each), the rest
    // along N; each warp along N must own at least one 8-column MMA tile or
    // it has nothing to compute.
    int warpsM = std::max(1, std::min(spec.numWarps, spec.blockM / 16));
    int warpsN = spec.numWarps / warpsM;
    if (spec.blockN / warpsN < 8)
      return reasonText(
          Field::BlockN,
          fmt::format("{} columns over {} warps along N leaves {} per warp, "
                      "less than one 8-column MMA tile (BLOCK_SIZE_M {}, "
                      "num_warps {})",
                      spec.blockN, warpsN, spec.blockN / warpsN, spec.blockM,
                      spec.numWarps),
          fmt::format("power of two >= {} with BLOCK_SIZE_M {} and "
                      "num_warps {}",
                      std::max(kMinBlock, 8 * warpsN), spec.blockM,
                      spec.numWarps));
  }
  if (spec.family == KernelFamily::OneShot) {
    // The one-shot's shrink splits each BLOCK_K step over the warps along N:
    // each needs at least one k16 MMA step, or it computes nothing.
    const WarpGrid g = WarpGrid::forTile(spec.numWarps, spec.blockM);
    if (spec.blockK / g.warpsN < 16)
      return reasonText(
          Field::BlockK,
          fmt::format("{} over {} warps along N leaves {} per warp, less than "
                      "one k16 MMA step (BLOCK_SIZE_M {}, num_warps {})",
                      spec.blockK, g.warpsN, spec.blockK / g.warpsN,
                      spec.blockM, spec.numWarps),
          fmt::format("power of two >= {} with BLOCK_SIZE_M {} and "
                      "num_warps {}",
                      16 * g.warpsN, spec.blockM, spec.numWarps));
  }

  if (spec.fewRows && spec.family != KernelFamily::OneShot &&
      spec.family != KernelFamily::Expand)
    return onlyFor(Field::FewRows, "one_shot and expand", spec.family);
  if (spec.fewRowsTile != 16 && spec.family != KernelFamily::OneShot &&
      spec.family != KernelFamily::Expand)
    return onlyFor(Field::FewRowsTile, "one_shot and expand", spec.family,
                   std::to_string(spec.fewRowsTile), "16");

  if (spec.wgmma) {
    // The wgmma shrink (one_shot, and the two-kernel shrink): warpgroups of
    // four warps own 64 rows each (so every warp one 16-row tile of
    // BLOCK_M), the warpgroups beyond BLOCK_M / 16 warps split each BLOCK_K
    // step (one_shot) or BLOCK_N (shrink), and the tiles are 64-column
    // (128-byte) swizzled atoms filled by 16-byte copies.
    if (spec.family != KernelFamily::OneShot &&
        spec.family != KernelFamily::Shrink)
      return onlyFor(Field::Wgmma, "one_shot and shrink", spec.family);
    if (std::string why = warpgroupTileRules(spec, Field::Wgmma, "wgmma");
        !why.empty())
      return why;
    if (spec.blockK < 64)
      return reasonText(Field::BlockK,
                        fmt::format("{} with wgmma: the shared tiles are "
                                    "64-column swizzled atoms",
                                    spec.blockK),
                        "power of two >= 64 with wgmma");
    if (spec.k && *spec.k % 8 != 0)
      return reasonText(Field::K,
                        fmt::format("{} with wgmma: rows are copied in "
                                    "16-byte chunks",
                                    *spec.k),
                        "a multiple of 8 with wgmma");
    // The shrink's warpgroups each multiply BLOCK_N / (warpgroups along N)
    // columns in one instruction: wgmma's N is at most 256.
    if (spec.family == KernelFamily::Shrink)
      if (std::string why = warpgroupColumnsRule(spec, "wgmma"); !why.empty())
        return why;
  }

  if (spec.tmaWeights) {
    // Bulk tensor copies fill the wgmma kernels' swizzled A tiles (the
    // same 128-byte swizzle): one box of 64 columns by the tile's rows per
    // 64 columns of BLOCK_K, and a box has at most 256 rows.
    if (spec.family != KernelFamily::OneShot &&
        spec.family != KernelFamily::Shrink)
      return onlyFor(Field::TmaWeights, "one_shot and shrink", spec.family);
    if (!spec.wgmma)
      return reasonText(Field::TmaWeights,
                        "true needs wgmma: true (the tensor copies write "
                        "wgmma's swizzled tiles)",
                        "false without wgmma");
    if (spec.family == KernelFamily::Shrink && spec.blockN > 256)
      return reasonText(Field::BlockN,
                        fmt::format("{} with tma_weights: a tensor copy's "
                                    "box has at most 256 rows",
                                    spec.blockN),
                        "<= 256 with tma_weights");
  }

  if (spec.persistent) {
    // The loop walks a lora slot's row blocks: sorted metadata's grid.
    if (spec.family != KernelFamily::OneShot)
      return onlyFor(Field::Persistent, "one_shot", spec.family);
    if (!spec.sorted)
      return reasonText(Field::Persistent,
                        "true needs metadata: sorted (the loop walks the row "
                        "blocks of sorted_token_ids)",
                        "false with metadata: naive");
    // Their stage mbarriers are set up once per kernel, not once per row
    // block.
    if (spec.tmaWeights || spec.producerWarp)
      return reasonText(Field::Persistent,
                        "true with tma_weights or producer_warp (their stage "
                        "barriers serve one row block per kernel)",
                        "false with tma_weights or producer_warp");
  }

  if (spec.wgmmaExpand) {
    // r's shared tile is wgmma's A operand in the shrink's 128-byte swizzle
    // (64-column atoms along the rank), and each warpgroup along N
    // multiplies its BLOCK_N share in one instruction (N 8..256).
    // The one-shot takes its warpgroups from its wgmma shrink; the
    // two-kernel expand lays its warps out as warpgroups itself.
    if (spec.family != KernelFamily::OneShot &&
        spec.family != KernelFamily::Expand)
      return onlyFor(Field::WgmmaExpand, "one_shot and expand", spec.family);
    if (spec.family == KernelFamily::OneShot && !spec.wgmma)
      return reasonText(Field::WgmmaExpand,
                        "true needs wgmma: true (the warpgroup layout and the "
                        "sm_90a target)",
                        "false without wgmma");
    if (std::string why =
            warpgroupTileRules(spec, Field::WgmmaExpand, "wgmma_expand");
        !why.empty())
      return why;
    if (spec.blockR() % 64 != 0)
      return reasonText(
          Field::WgmmaExpand,
          fmt::format("true with rank {} (BLOCK_R {}): r's shared tile is "
                      "made of 64-column swizzled atoms",
                      spec.rank, spec.blockR()),
          "true with rank > 32, false otherwise");
    if (spec.rank % 8 != 0)
      return reasonText(
          Field::WgmmaExpand,
          fmt::format("true with rank {}: B's rows are copied in 16-byte "
                      "chunks",
                      spec.rank),
          "true with rank a multiple of 8");
    // (At least 8 columns per warp, so per warpgroup, is every tile's rule.)
    if (std::string why = warpgroupColumnsRule(spec, "wgmma_expand");
        !why.empty())
      return why;
  }

  if (spec.bulkOutput) {
    // Bulk copies (cp.async.bulk) are sm_90's; they move the staged output
    // tile, which only the one-shot and the expand have (and only with
    // 16-byte aligned output rows, which the runtime derives per call: the
    // flag then changes nothing, as fuse_slices without slices).
    if (spec.family != KernelFamily::OneShot &&
        spec.family != KernelFamily::Expand)
      return onlyFor(Field::BulkOutput, "one_shot and expand", spec.family);
    if (std::string why = bulkCopyTargetRule(spec, Field::BulkOutput);
        !why.empty())
      return why;
  }

  if (spec.bulkShrink) {
    // A bulk copy moves a row's BLOCK_K columns linearly into the padded
    // tile (wgmma's swizzled rows are not linear) and fills no zeros: no K
    // tail, and every A tile row within the rank.
    if (spec.family != KernelFamily::OneShot &&
        spec.family != KernelFamily::Shrink)
      return onlyFor(Field::BulkShrink, "one_shot and shrink", spec.family);
    if (std::string why = bulkCopyTargetRule(spec, Field::BulkShrink);
        !why.empty())
      return why;
    if (spec.wgmma || spec.tmaWeights || spec.producerWarp)
      return reasonText(Field::BulkShrink,
                        "true with wgmma, tma_weights or producer_warp (bulk "
                        "rows fill mma.sync's padded tiles on their own "
                        "stage barriers)",
                        "true with mma.sync tiles, false otherwise");
    if (!spec.evenK())
      return reasonText(Field::BulkShrink,
                        "true without K a multiple of BLOCK_SIZE_K (bulk "
                        "copies fill no zeros past K)",
                        "true with a known K that BLOCK_SIZE_K divides");
    const int weightRows = weightTileRows(spec);
    if (spec.family == KernelFamily::OneShot ? spec.rank != weightRows
                                             : spec.rank % weightRows != 0)
      return reasonText(
          Field::BulkShrink,
          fmt::format("true with rank {}: A tiles of {} rows would hold rows "
                      "past the rank, which must read zeros",
                      spec.rank, weightRows),
          spec.family == KernelFamily::OneShot
              ? "true with rank a power of two >= 16"
              : "true with rank a multiple of BLOCK_SIZE_N");
  }

  if (spec.earlyExpand) {
    // The early stages are plain cp.async ones issued by every thread: a
    // producer warp's barriers, a persistent loop or bulk row copies on
    // stage barriers would each need them otherwise.
    if (spec.family != KernelFamily::OneShot)
      return onlyFor(Field::EarlyExpand, "one_shot", spec.family);
    if (spec.producerWarp || spec.persistent || spec.bulksOutput())
      return reasonText(Field::EarlyExpand,
                        "true with producer_warp, persistent or bulk_output "
                        "(its early stages are plain cp.async copies)",
                        "true without them");
    if (spec.numStages < 2)
      return reasonText(Field::NumStages,
                        fmt::format("{} with early_expand: the stages issued "
                                    "early are num_stages - 1",
                                    spec.numStages),
                        ">= 2 with early_expand");
  }

  if (spec.reduceScatter && spec.family != KernelFamily::OneShot)
    return onlyFor(Field::ReduceScatter, "one_shot", spec.family);

  if (spec.producerWarp) {
    // The producer feeds the wgmma shrink's stages through mbarriers.
    if (spec.family != KernelFamily::OneShot &&
        spec.family != KernelFamily::Shrink)
      return onlyFor(Field::ProducerWarp, "one_shot and shrink", spec.family);
    if (!spec.wgmma)
      return reasonText(Field::ProducerWarp,
                        "true needs wgmma: true (the warp-specialised "
                        "pipeline feeds wgmma's tiles)",
                        "false without wgmma");
    if (spec.numStages < 2)
      return reasonText(Field::NumStages,
                        fmt::format("{} with producer_warp: the producer "
                                    "fills one stage while another is used",
                                    spec.numStages),
                        ">= 2 with producer_warp");
    // 17 warps cap a thread at 96 registers (65536 per block, allocated
    // for 640 threads): the 16-warp one-shots spill there.
    if (spec.numWarps > 8)
      return reasonText(Field::NumWarps,
                        fmt::format("{} with producer_warp: {} threads per "
                                    "block leave each at most 96 registers",
                                    spec.numWarps, spec.launchThreads()),
                        "<= 8 with producer_warp");
  }

  return "";
}

} // namespace moelora
