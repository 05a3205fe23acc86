//===- KernelSpec.h - One fully specified kernel variant --------*- C++ -*-===//
//
// A KernelSpec is one point of a tiling spec: every compile-time decision the
// generator needs. Sweeps expand into many KernelSpecs (see SpecParser.h).
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SPEC_KERNELSPEC_H
#define MOELORA_SPEC_KERNELSPEC_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

namespace moelora {

enum class KernelFamily { OneShot, SmallBatch, Shrink, Expand, AlignBlockSize };
enum class DType { F16, BF16 };

std::string_view toString(KernelFamily f);
std::string_view toString(DType d);
std::optional<KernelFamily> parseKernelFamily(std::string_view s);
std::optional<DType> parseDType(std::string_view s);
/// "sm_80" -> 80; nullopt for anything not of the form sm_<digits>.
std::optional<int> parseTarget(std::string_view s);

/// Version of the launch contract between generated kernels and the
/// launcher (parameter list, grid-to-work mapping). It is part of every
/// cache key, so a bundle or cache made under another contract is never
/// loaded: its variants are simply not found. 2: slices moved from grid y
/// into grid x, and the expand walks N tiles per program (fifth session).
/// 3: sm_90 kernels wait on griddepcontrol at entry and may be launched as
/// programmatic dependents (kernelWaitsOnGridDependency).
inline constexpr int kKernelAbiVersion = 3;

/// Whether kernels for `sm` begin with griddepcontrol.wait (before any global
/// memory access) and griddepcontrol.launch_dependents, which makes them safe
/// to launch with programmatic stream serialization (PDL, sm_90+).
constexpr bool kernelWaitsOnGridDependency(int sm) { return sm >= 90; }
inline constexpr int kMaxOneShotRank = 128;
inline constexpr int kMaxSmallBatchRank = 64;
/// Largest min_blocks_per_sm a spec may ask for (an SM holds at most 32
/// resident blocks).
inline constexpr int kMaxMinBlocksPerSm = 32;
/// Largest portable thread-block cluster (sm_90): the dispatcher's own
/// SPLIT_K choices stay within it.
inline constexpr int kMaxPortableClusterBlocks = 8;
/// Largest cluster sm_90 runs: 16 is non-portable (the kernel opts in when
/// it is loaded, and a launch fails where 16 co-resident blocks do not fit
/// in one GPC). Specs and tuned tables may ask for it where it measured
/// faster.
inline constexpr int kMaxClusterBlocks = 16;

/// The family's min_blocks_per_sm when a spec does not set it. Measured on an
/// H100 (benchmarks/results/PERF-LOG.md, v6): the decode GEMV gains ~19% from
/// a 2-block hint (more registers, more loads in flight), while the shrink and
/// expand lose up to 2x from any hint (ptxas then spends registers on
/// unrolling and drops occupancy), so they get none.
int defaultMinBlocksPerSm(KernelFamily f);

/// Everything compile-time about one kernel variant. Field names follow
/// Triton's (BLOCK_SIZE_M ...) in the YAML; here they are camelCase.
struct KernelSpec {
  KernelFamily family = KernelFamily::OneShot;
  DType dtype = DType::BF16;
  int sm = 90;          ///< target compute capability, e.g. 80, 90
  int rank = 16;        ///< LoRA rank R (0 for align_block_size)
  std::optional<int> k; ///< hidden size K when known; fixes EVEN_K
  int blockM = 16;
  int blockN = 128;
  int blockK = 128;
  int groupSizeM = 1;
  int splitK = 1;
  int numWarps = 4;
  int numStages = 3;
  bool sorted = false;          ///< sorted (align_block_size) vs naive metadata
  bool mulRoutedWeight = false; ///< MUL_ROUTED_WEIGHT
  bool addInputs = true;        ///< ADD_INPUTS
  int numSlices = 1;            ///< slices (LoRA sub-projections)
  int npid = 0;                 ///< NPID: 0 = runtime argument, >0 constant
  /// Resident blocks per SM the register allocator must allow (PTX
  /// .minnctapersm, CUDA's __launch_bounds__ second argument); 0 = no hint,
  /// ptxas picks the register budget.
  int minBlocksPerSm = 0;
  /// The output's rows start 16-byte aligned: N, the output's row stride and
  /// its first column are multiples of 8 elements and the pointer is 16-byte
  /// aligned (Triton likewise specialises on divisibility by 16). Then the
  /// one-shot and expand kernels stage each output tile through shared
  /// memory: the old values arrive by cp.async with the operands and rows
  /// leave in 16-byte chunks. Otherwise they use element-wise stores. The
  /// runtime derives it from each call; other families ignore it.
  bool alignedOutput = true;
  /// Shrink and one_shot: one program computes every slice of its tile, so
  /// the x rows it gathers are read once per pair instead of once per (pair,
  /// slice) (W13: gate and up). Without it the slices are separate programs,
  /// which gives twice the parallelism for small batches; the tuned table
  /// chooses per bucket.
  bool fuseSlices = false;
  /// one_shot and shrink on sm_90: the shrink GEMM runs on Hopper's warpgroup
  /// MMA (wgmma.mma_async, 64-row warpgroup tiles, operands read from shared
  /// memory in the 128-byte swizzled layout) instead of ldmatrix + mma.sync.
  /// wgmma exists only in the sm_90a target, which such kernels are
  /// compiled for (ptxTarget()).
  bool wgmma = false;
  /// A sorted block whose valid rows all lie in its first fewRowsTile (16
  /// or 32) runs its expand as a tile of that many rows several BLOCK_N
  /// wide (one_shot and expand; see fewRowsExpandShape). Chosen per bucket by
  /// the tuned table: the branch's registers cost some variants occupancy.
  bool fewRows = false;
  /// The few-rows tile's rows: 16, or 32 (blocks whose valid rows all lie
  /// in the first 32 take a 32-row tile: most blocks where an (adapter,
  /// expert) group has 16-32 pairs, as at M 512 with 64 experts).
  int fewRowsTile = 16;
  /// wgmma kernels: the shrink's A tiles (the LoRA weights, dense per
  /// adapter and expert) arrive by bulk tensor copies (cp.async.bulk.tensor
  /// through a tensor map per slice, passed as a kernel parameter; one
  /// thread issues them, an mbarrier per stage counts their bytes) instead
  /// of 16-byte cp.async from every thread. x stays on cp.async: its rows
  /// are gathered by token id. The runtime encodes the maps, which needs
  /// the slices' base addresses on the host (moelora_fused_args::
  /// lora_a_host_ptrs); calls without them run the cp.async variant.
  bool tmaWeights = false;
  /// wgmma kernels: warp specialisation of the shrink's pipeline. One more
  /// warp than num_warps (the producer) issues every copy of every stage
  /// (x by cp.async, A by cp.async or, with tmaWeights, bulk tensor
  /// copies) and leaves after the last; the num_warps warps only wait for
  /// a stage's mbarrier ("full"), multiply and release it on a second one
  /// ("empty"). No block barrier per K step, and the copies never wait for
  /// the slowest warp's MMAs. (setmaxnreg is not used: it acts on whole
  /// warpgroups, and a producer warpgroup would cost these small blocks
  /// 128 threads' registers.) Measured 1.11x slower over the prefill cases
  /// (one warp issues the copies slower than all did): no table uses it.
  bool producerWarp = false;
  /// Sorted one_shot: a persistent grid. The launcher starts only as many
  /// programs (clusters) as can be resident at once (the driver's
  /// occupancy, per lora slot of grid z) and each loops over the row
  /// blocks (programs) of its slot in a strided order, so a wave's tail
  /// and the empty row blocks past num_tokens_post_padded cost no block
  /// launches, and each next block's metadata is asked for while the
  /// current one computes. Same results, bit for bit. Measured 1.14x slower
  /// over the prefill cases (a program's static share of row blocks ends
  /// later than the hardware's block scheduling): no table uses it.
  bool persistent = false;
  /// one_shot (with wgmma) and expand on sm_90, BLOCK_M 64 or 128, rank a
  /// multiple of 8 above 32 (BLOCK_R a multiple of 64): the expand runs on
  /// warpgroup MMA. r (rounded to T) goes once into a 128-byte swizzled
  /// shared tile and each warpgroup multiplies it with the stage's B tile
  /// (swizzled, unpadded) through descriptors: the rank dimension is the
  /// expand's K. mma.sync instead reads every B fragment once per 16-row
  /// warp by ldmatrix and holds r's fragments in registers. The few-rows
  /// expand stays on mma.sync. Measured 0.968x over the rank-64 cases on
  /// an H100 (PERF-LOG x1); chosen per bucket by the tuned table.
  bool wgmmaExpand = false;
  /// one_shot and expand on sm_90 with a staged output (stagesOutput()):
  /// each output tile row moves as one bulk copy (cp.async.bulk) instead of
  /// 16-byte chunks spread over the threads: the old values into the stage
  /// (completing on the stage's mbarrier), the results back to global
  /// memory from the stage (a bulk async-group the row's thread waits on
  /// before the stage is refilled). Fewer instructions per output byte, but
  /// measured 1.126x slower over the bench on an H100 (row-sized bulk
  /// copies queue on the copy engine; PERF-LOG b1): no table uses it.
  bool bulkOutput = false;
  /// one_shot and shrink on sm_90 with mma.sync (padded tiles), K a multiple
  /// of BLOCK_K and every A tile row within the rank: each row of the
  /// shrink's x and A tiles moves as one bulk copy (cp.async.bulk) per stage
  /// instead of 16-byte chunks spread over the threads, the stage completing
  /// on its mbarrier. x's rows are gathered by token id, which tensor copies
  /// cannot do; a row copy can. Measured 1.053x slower over the bench on an
  /// H100 (PERF-LOG b2): no table uses it.
  bool bulkShrink = false;
  /// one_shot with num_stages >= 2, without producer_warp, persistent or
  /// bulk_output: the expand's first num_stages - 1 stages
  /// (B rows and old outputs, which do not depend on r) are issued as soon
  /// as the shrink's loop ends, so that their round trip overlaps the
  /// reduction of r (over the warps along K and the cluster's blocks)
  /// instead of following it (a block that may take the few-rows expand
  /// decides first, and issues that shape's). The expand stages then sit
  /// past the reduction's bytes instead of over them. Measured on an H100
  /// (PERF-LOG x2): 0.94-0.96x on decode M 4-16 R 64 naive one-shots and
  /// M 64-512 R 16 cluster one-shots; 1.06-1.24x on sorted R 64 one-shots,
  /// whose shared memory grows by the 32 KB of cluster sums (fewer blocks
  /// per SM). Chosen per bucket by the tuned table.
  bool earlyExpand = false;
  /// one_shot with SPLIT_K > 1: r is summed over the cluster as a
  /// reduce-scatter and an all-gather (each block sums 1/C of r over the C
  /// blocks in place, then reads each tile's sums from the block that owns
  /// it) instead of every block summing all of r: each block reads 2x r's
  /// bytes through distributed shared memory instead of C x, at one cluster
  /// barrier more; without warps along K the cluster sums need one r buffer
  /// instead of two (early_expand's stages sit that much lower). The same
  /// sums in the same order: the same results, bit for bit. Not measured
  /// yet; no table uses it.
  bool reduceScatter = false;
  std::string origin; ///< "file:line" of the spec this came from

  /// BLOCK_R = max(16, next_pow2(R)).
  int blockR() const;
  /// EVEN_K: K % BLOCK_K == 0 when K is known; false (masked loads) else.
  bool evenK() const;
  /// The threads that compute (num_warps warps): work is divided among them.
  int threads() const { return numWarps * 32; }
  /// The threads a block is launched with: threads(), and the producer
  /// warp (producerWarp).
  int launchThreads() const { return threads() + (producerWarp ? 32 : 0); }
  /// Whether this variant stages output tiles (alignedOutput applies).
  bool stagesOutput() const {
    return alignedOutput &&
           (family == KernelFamily::OneShot || family == KernelFamily::Expand);
  }
  /// bulkOutput where it changes the kernel (a staged output on sm_90);
  /// the key and equality use this, so the flag is canonical.
  bool bulksOutput() const { return bulkOutput && stagesOutput() && sm >= 90; }
  /// earlyExpand where it changes the kernel (a one-shot with stages to
  /// issue ahead); the key and equality use this, so the flag is canonical.
  bool expandsEarly() const {
    return earlyExpand && family == KernelFamily::OneShot && numStages >= 2;
  }
  /// reduceScatter where it changes the kernel (a one-shot whose cluster
  /// sums r); the key and equality use this, so the flag is canonical.
  bool scattersClusterSum() const {
    return reduceScatter && family == KernelFamily::OneShot && splitK > 1;
  }
  /// fuseSlices where it changes the kernel (a shrink or one_shot of
  /// several slices); the key and equality use this, so the flag is
  /// canonical.
  bool fusesSlices() const {
    return fuseSlices && numSlices > 1 &&
           (family == KernelFamily::Shrink || family == KernelFamily::OneShot);
  }
  /// fewRows where it changes the kernel (a few-rows shape exists); the
  /// key and equality use this, so the flag is canonical.
  bool fewRowsExpand() const;
  /// Slices that are separate programs of the grid (grid x = programs *
  /// gridSlices()).
  int gridSlices() const { return fusesSlices() ? 1 : numSlices; }
  /// The PTX target the kernel is compiled for: sm_<sm>, or sm_90a for
  /// kernels that use sm_90a-only instructions (wgmma).
  std::string ptxTarget() const;
  /// Kernel entry name, unique per cache key.
  std::string entryName() const;
  /// Canonical cache key text: identical specs give identical keys.
  std::string cacheKey() const;
  /// Every field that shapes the kernel, each flag as it acts (fewRows as
  /// fewRowsExpand(), ...), K absent as -1: the one list that equality and
  /// the runtime's module key (SpecKey) are made of, so a field added here
  /// reaches both. cacheKey() spells the same fields as stable text.
  auto kernelFields() const {
    const bool fewRows = fewRowsExpand();
    return std::make_tuple(
        int32_t(family), int32_t(dtype), sm, rank, k ? *k : -1, blockM, blockN,
        blockK, groupSizeM, splitK, numWarps, numStages, sorted,
        mulRoutedWeight, addInputs, numSlices, npid, minBlocksPerSm,
        alignedOutput, fusesSlices(), wgmma, fewRows, fewRows ? fewRowsTile : 0,
        tmaWeights, producerWarp, persistent, wgmmaExpand, bulksOutput(),
        bulkShrink, expandsEarly(), scattersClusterSum());
  }
};

bool operator==(const KernelSpec &a, const KernelSpec &b);

} // namespace moelora

#endif // MOELORA_SPEC_KERNELSPEC_H
