//===- TunedTable.h - Tuned configs per GPU and shape bucket ----*- C++ -*-===//
//
// JSON written by moelora-tune and read by the dispatcher:
//   {"format": "moelora-tuned", "version": 1, "gpu": "<device name>",
//    "entries": [{"path": "one_shot"|"small_batch"|"two_kernel",
//                 "dtype": "bf16", "rank": 16, "K": 2048, "N": 1408,
//                 "sorted": true, "num_slices": 2, "max_pairs": 512,
//                 "config": {"BLOCK_SIZE_N": 64, "BLOCK_SIZE_K": 64,
//                            "num_warps": 4, "num_stages": 3, "NPID": 1}}]}
// An entry applies to calls of its shape with num_pairs <= max_pairs (the
// smallest such bucket wins) on a GPU whose name equals "gpu".
// A one_shot or two_kernel entry's config may hold "fuse_slices":
// true|false (see KernelSpec::fuseSlices; two_kernel: the shrink's, its
// other keys configure the expand). A one_shot or two_kernel entry's config
// may hold "wgmma": true|false (see KernelSpec::wgmma; two_kernel: the
// shrink's; sm_90 only, ignored elsewhere), "few_rows": true|false (see
// KernelSpec::fewRows; two_kernel: the expand's) and "few_rows_tile": 16|32
// (KernelSpec::fewRowsTile). A one_shot entry's config may hold
// "persistent": true|false (KernelSpec::persistent; sorted calls only). A
// one_shot or two_kernel entry's config may hold "wgmma_expand": true|false
// (KernelSpec::wgmmaExpand; two_kernel: the expand's; rank a multiple of 8
// above 32). A one_shot or two_kernel entry's config may hold
// "bulk_output": true|false (KernelSpec::bulkOutput; two_kernel: the
// expand's; sm_90 calls with 16-byte aligned output rows) and "bulk_shrink":
// true|false (KernelSpec::bulkShrink; two_kernel: the shrink's). A one_shot
// entry's config may hold "early_expand": true|false
// (KernelSpec::earlyExpand) and "reduce_scatter": true|false
// (KernelSpec::reduceScatter).
// A "fused" entry has no config but "use": "one_shot"|"two_kernel": the
// path that serves fused_moe_lora calls of its bucket which the rules would
// give the one-shot kernel (the two-kernel path wins some prefill buckets).
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_TUNEDTABLE_H
#define MOELORA_RUNTIME_TUNEDTABLE_H

#include "moelora/Spec/KernelSpec.h"
#include "moelora/Support/Error.h"

#include <optional>
#include <string>
#include <vector>

namespace moelora {

struct TunedConfig {
  int blockN = 0, blockK = 0, numWarps = 0, numStages = 0, npid = 0;
  int tilesPerItem = 0;
  int splitK = 0; ///< small_batch: blocks per cluster
  /// -1: the family's default; 0: no hint (unlike the fields above, 0 is a
  /// value here).
  int minBlocksPerSm = -1;
  /// one_shot, two_kernel (its shrink): whether a program computes all
  /// slices (fuse_slices); -1: the dispatcher's rule, 0 / 1 from the table.
  int fuseSlices = -1;
  /// one_shot, two_kernel (its shrink) on sm_90: whether the shrink runs on
  /// wgmma (KernelSpec::wgmma); -1: absent (mma.sync), 0 / 1 from the table.
  int wgmma = -1;
  /// one_shot, two_kernel (its expand): the few-rows expand
  /// (KernelSpec::fewRows); -1: absent (off), 0 / 1 from the table.
  int fewRows = -1;
  /// The few-rows tile's rows (KernelSpec::fewRowsTile): 16 or 32; 0:
  /// absent (16).
  int fewRowsTile = 0;
  /// one_shot, two_kernel (its shrink), with wgmma: the A tiles by bulk
  /// tensor copies (KernelSpec::tmaWeights) where the call gives the
  /// slices' host base pointers; -1: absent (cp.async), 0 / 1 from the
  /// table.
  int tmaWeights = -1;
  /// one_shot, two_kernel (its shrink), with wgmma: a producer warp issues
  /// the shrink's copies (KernelSpec::producerWarp); -1: absent (off),
  /// 0 / 1 from the table.
  int producerWarp = -1;
  /// one_shot (sorted calls): a persistent grid (KernelSpec::persistent);
  /// -1: absent (off), 0 / 1 from the table.
  int persistent = -1;
  /// one_shot (with wgmma), two_kernel (its expand), rank above 32: the
  /// expand on wgmma (KernelSpec::wgmmaExpand) where the tile allows it;
  /// -1: absent (mma.sync), 0 / 1 from the table.
  int wgmmaExpand = -1;
  /// one_shot, two_kernel (its expand), sm_90: staged output rows by bulk
  /// copies (KernelSpec::bulkOutput); -1: absent (16-byte chunks).
  int bulkOutput = -1;
  /// one_shot, two_kernel (its shrink), sm_90 mma.sync tiles: x and A
  /// tile rows by bulk copies (KernelSpec::bulkShrink); -1: absent.
  int bulkShrink = -1;
  /// one_shot: the expand's first stages issued before r's reduction
  /// (KernelSpec::earlyExpand); -1: absent (after it).
  int earlyExpand = -1;
  /// one_shot: r summed over the cluster as a reduce-scatter and an
  /// all-gather (KernelSpec::reduceScatter); -1: absent (every block sums
  /// all of r).
  int reduceScatter = -1;
};

struct TunedEntry {
  std::string path;
  std::string use; ///< path "fused": "one_shot" or "two_kernel"
  DType dtype = DType::BF16;
  int rank = 0, K = 0, N = 0, numSlices = 1;
  bool sorted = false;
  long maxPairs = 0;
  TunedConfig config;
};

struct TunedTable {
  std::string gpu;
  /// One per entry of the file, in the file's order (so an entry's index is
  /// its position in the JSON "entries" array).
  std::vector<TunedEntry> entries;

  static Expected<TunedTable> load(const std::string &path);
  /// The file's text, or an error naming the path (load = readText + parse).
  static Expected<std::string> readText(const std::string &path);
  static Expected<TunedTable> parse(const std::string &text,
                                    const std::string &origin);
  const TunedEntry *find(const std::string &gpuName, const std::string &path,
                         DType dtype, int rank, int K, int N, int numSlices,
                         bool sorted, long pairs) const;
};

/// The JSON text of `base` with `update`'s entries merged in: an update
/// entry replaces the base entry of the same (path, dtype, rank, K, N,
/// num_slices, sorted, max_pairs); the others are appended after the kept
/// base entries. Both must be valid tables for the same GPU. This is how a
/// partial sweep (moelora-tune run over a few cases) updates a full table.
Expected<std::string> mergeTunedTables(const std::string &baseText,
                                       const std::string &updateText,
                                       const std::string &origin);

} // namespace moelora

#endif // MOELORA_RUNTIME_TUNEDTABLE_H
