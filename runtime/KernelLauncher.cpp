//===- KernelLauncher.cpp - Grids and argument packing per family ---------===//

#include "moelora/Runtime/KernelLauncher.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace moelora {

/// How many of `k`'s SPLIT_K-block clusters can be resident at once, with
/// the launches' block and shared memory (cuOccupancyMaxActiveClusters); 0
/// where they fit nowhere or the driver cannot answer.
static int activeClustersOf(const CudaDriver &drv, const LoadedKernel &k) {
  LaunchGeometry oneCluster;
  oneCluster.grid[0] = unsigned(k.spec.splitK);
  oneCluster.block = unsigned(k.spec.launchThreads());
  LaunchConfig lc;
  makeLaunchConfig(k.spec, oneCluster, unsigned(k.sharedBytes), nullptr,
                   /*dependentLaunch=*/false, lc, clusterSchedulingPolicy());
  int clusters = 0;
  if (drv.cuOccupancyMaxActiveClusters(&clusters, k.function, &lc.config) !=
      CUDA_SUCCESS)
    return 0;
  return clusters;
}

/// How many programs of a persistent kernel can be resident at once (0:
/// the driver cannot say): clusters times their blocks, or blocks per SM
/// times SMs.
static long residentProgramsOf(const CudaDriver &drv, const LoadedKernel &k) {
  const KernelSpec &spec = k.spec;
  if (spec.splitK > 1) {
    // A 16-block kernel was asked already (LoadedKernel::activeClusters).
    const int clusters =
        k.activeClusters >= 0 ? k.activeClusters : activeClustersOf(drv, k);
    return long(clusters) * spec.splitK;
  }
  int perSm = 0;
  CUdevice device = 0;
  int sms = 0;
  if (drv.cuOccupancyMaxActiveBlocksPerMultiprocessor(
          &perSm, k.function, spec.launchThreads(), size_t(k.sharedBytes)) !=
          CUDA_SUCCESS ||
      drv.cuCtxGetDevice(&device) != CUDA_SUCCESS ||
      drv.cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                               device) != CUDA_SUCCESS)
    return 0;
  return long(perSm) * sms;
}

Expected<LoadedKernel> loadKernelFromPtx(const CudaDriver &drv,
                                         const KernelSpec &spec,
                                         const std::string &ptx,
                                         int sharedBytes) {
  LoadedKernel k;
  k.spec = spec;
  k.sharedBytes = sharedBytes;
  char errorLog[8192] = {0};
  CUjit_option opts[] = {CU_JIT_ERROR_LOG_BUFFER,
                         CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[] = {errorLog, reinterpret_cast<void *>(sizeof(errorLog))};
  CUresult r = drv.cuModuleLoadDataEx(&k.module, ptx.c_str(), 2, opts, values);
  if (r != CUDA_SUCCESS)
    return makeError(fmt::format("loading {}: {}; JIT log: {}",
                                 spec.entryName(), drv.describe(r), errorLog));
  const std::string entry = spec.entryName();
  auto prepare = [&]() -> Status {
    if (Status s = drv.check(
            drv.cuModuleGetFunction(&k.function, k.module, entry.c_str()),
            "cuModuleGetFunction(" + entry + ")");
        !s)
      return s;
    if (sharedBytes > 48 * 1024)
      if (Status s = drv.check(
              drv.cuFuncSetAttribute(
                  k.function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                  sharedBytes),
              fmt::format("{}: raising dynamic shared memory to {} bytes",
                          entry, sharedBytes));
          !s)
        return s;
    // A 16-block cluster is non-portable: the function opts in before its
    // first launch (the .reqnctapercluster shape alone does not).
    if (spec.splitK > kMaxPortableClusterBlocks) {
      if (Status s = drv.check(
              drv.cuFuncSetAttribute(
                  k.function,
                  CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED, 1),
              fmt::format("{}: allowing its {}-block (non-portable) cluster",
                          entry, spec.splitK));
          !s)
        return s;
      // Whether 16 such blocks fit in one GPC at all: the planner falls
      // back to 8-block clusters where they do not, instead of a launch
      // error. A driver that cannot answer is taken as "they do not".
      k.activeClusters = activeClustersOf(drv, k);
    }
    if (spec.persistent)
      k.residentPrograms = residentProgramsOf(drv, k);
    return Status::ok();
  };
  if (Status s = prepare(); !s) {
    drv.cuModuleUnload(k.module); // the error is the one to report
    return s.error();
  }
  return k;
}

static unsigned ceilDiv(long a, long b) { return unsigned((a + b - 1) / b); }

/// Programs per row block of the one-shot (its cluster when SPLIT_K > 1) and
/// of the expand: a compile-time NPID when the spec fixes one (the kernel
/// then ignores the argument), else the launch knob.
static int rowBlockPrograms(const KernelSpec &spec, const LaunchKnobs &knobs) {
  if (spec.family == KernelFamily::OneShot && spec.splitK > 1)
    return spec.splitK;
  return spec.npid > 0 ? spec.npid : std::max(1, knobs.npid);
}

LaunchGeometry launchGeometry(const KernelSpec &spec, const MoeLoraCall &call,
                              const LaunchKnobs &knobs) {
  LaunchGeometry g;
  g.block = spec.launchThreads();
  // Blocks in x are counted in 64 bits: a caller's EM (sorted row blocks)
  // or pairs can make the product pass 2^32; the planner refuses what the
  // driver cannot launch (withinDriverLimits) instead of wrapping.
  const uint64_t pairs = uint64_t(std::max(0L, long(call.numPairs())));
  const uint64_t mBlocks =
      spec.sorted ? uint64_t(std::max(0, call.EM / spec.blockM)) : pairs;
  const unsigned loraDim = spec.sorted ? unsigned(call.numActiveLoras) : 1u;
  // Slices that are programs of their own (a shrink with fuse_slices
  // computes them all in one).
  const uint64_t slices = uint64_t(spec.gridSlices());
  uint64_t x = 1;
  switch (spec.family) {
  case KernelFamily::OneShot: {
    // SPLIT_K > 1: a cluster of SPLIT_K programs per row block is its NPID.
    x = mBlocks * uint64_t(rowBlockPrograms(spec, knobs)) * slices;
    g.grid[2] = loraDim;
    if (!spec.persistent || loraDim == 0)
      break;
    // Persistent: each lora slot's share of the resident programs, whole
    // clusters, at least one; its programs walk the slot's row blocks.
    const uint64_t C = uint64_t(std::max(1, spec.splitK));
    const uint64_t resident = knobs.persistentPrograms > 0
                                  ? uint64_t(knobs.persistentPrograms)
                                  : uint64_t(2L * knobs.smCount);
    const uint64_t perSlot = std::max<uint64_t>(1, resident / loraDim / C) * C;
    x = std::min(x, perSlot);
    break;
  }
  case KernelFamily::SmallBatch: {
    long chunks = ceilDiv(ceilDiv(call.N, spec.blockN), knobs.tilesPerItem);
    long work = long(pairs) * spec.numSlices * chunks;
    // Persistent: at most two blocks per SM, in clusters of SPLIT_K blocks
    // (one work item per cluster at a time).
    const long blocksPerCluster = spec.splitK;
    long clusters = std::min<long>(
        work, std::max(1L, 2L * knobs.smCount / blocksPerCluster));
    x = uint64_t(clusters * blocksPerCluster);
    break;
  }
  case KernelFamily::Shrink:
    x = uint64_t(spec.splitK) * mBlocks *
        uint64_t(ceilDiv(call.rank, spec.blockN)) * slices;
    g.grid[2] = loraDim;
    break;
  case KernelFamily::Expand:
    // NPID programs per row block, each over its share of the N tiles.
    x = mBlocks * uint64_t(rowBlockPrograms(spec, knobs)) * slices;
    g.grid[2] = loraDim;
    break;
  case KernelFamily::AlignBlockSize:
    x = uint64_t(std::max(0, call.maxLoras));
    break;
  }
  if (pairs == 0 || call.numSlices == 0)
    x = 0;
  g.blocksX = x;
  g.grid[0] = unsigned(std::min<uint64_t>(x, UINT32_MAX));
  return g;
}

Status encodeWeightTensorMaps(const CudaDriver &drv, const KernelSpec &spec,
                              const MoeLoraCall &call, WeightTensorMaps &out) {
  if (!weightTensorMapsApply(call))
    return makeError(fmt::format(
        "{}: reads lora_a through tensor maps, but the call gives no host "
        "base pointers (lora_a_host_ptrs) or its bases or strides are not "
        "16-byte aligned",
        spec.entryName()));
  const cuuint64_t dims[4] = {cuuint64_t(call.K), cuuint64_t(call.rank),
                              cuuint64_t(call.numExperts),
                              cuuint64_t(call.maxLoras)};
  const cuuint64_t strides[3] = {cuuint64_t(call.aStrideR) * kElementBytes,
                                 cuuint64_t(call.aStrideE) * kElementBytes,
                                 cuuint64_t(call.aStrideL) * kElementBytes};
  const cuuint32_t box[4] = {64, cuuint32_t(weightTileRows(spec)), 1, 1};
  const cuuint32_t elementStrides[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type = call.dtype == DType::BF16
                                       ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                       : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  out.count = weightTensorMapParams(spec);
  for (int s = 0; s < out.count; ++s)
    if (Status st = drv.check(
            drv.cuTensorMapEncodeTiled(
                &out.maps[s], type, 4,
                const_cast<void *>(call.loraAHostPtrs[s]), dims, strides, box,
                elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
            fmt::format("{}: encoding the tensor map of lora_a slice {}",
                        spec.entryName(), s));
        !st)
      return st;
  return Status::ok();
}

GemmArgPack::GemmArgPack(const KernelSpec &spec, const MoeLoraCall &call,
                         const LaunchKnobs &knobs,
                         const IntermediateBuffer *inter,
                         const WeightTensorMaps *maps) {
  auto ptr = [&](int i, const void *p) {
    std::memcpy(&slots[i], &p, sizeof(p));
  };
  auto i64 = [&](int i, int64_t v) { std::memcpy(&slots[i], &v, 8); };
  auto i32 = [&](int i, int32_t v) { std::memcpy(&slots[i], &v, 4); };
  const bool expand = spec.family == KernelFamily::Expand;
  const bool shrink = spec.family == KernelFamily::Shrink;
  // Expand reads the intermediate as its row operand; shrink writes it.
  ptr(kX, expand ? inter->data : call.x);
  i64(kXStride, expand ? inter->pairStride : call.xStride);
  ptr(kAPtrs, call.loraAPtrs);
  i64(kAStrideL, call.aStrideL);
  i64(kAStrideE, call.aStrideE);
  i64(kAStrideR, call.aStrideR);
  ptr(kBPtrs, call.loraBPtrs);
  i64(kBStrideL, call.bStrideL);
  i64(kBStrideE, call.bStrideE);
  i64(kBStrideN, call.bStrideN);
  ptr(kOut, shrink ? inter->data : call.out);
  i64(kOutStride, shrink ? inter->pairStride : call.outStride);
  ptr(kTopkWeights, call.topkWeights);
  ptr(kSortedTokenIds, call.sortedTokenIds);
  ptr(kExpertIds, call.expertIds);
  ptr(kNumTokensPostPadded, call.numTokensPostPadded);
  ptr(kTokenLoraMapping, call.tokenLoraMapping);
  ptr(kLoraIds, call.loraIds);
  ptr(kAdapterEnabled, call.adapterEnabled);
  i64(kInterSliceStride, inter ? inter->sliceStride : 0);
  i32(kNumPairs, call.numPairs());
  i32(kTopK, call.topK);
  i32(kN, call.N);
  i32(kK, call.K);
  i32(kEM, call.EM);
  i32(kMaxLoras, call.maxLoras);
  i32(kNpid, rowBlockPrograms(spec, knobs));
  i32(kTilesPerItem, std::max(1, knobs.tilesPerItem));
  i32(kOutColOffset, knobs.outColOffset);
  for (int i = 0; i < kNumGemmParams; ++i)
    pointers[i] = &slots[i];
  // Tensor maps travel by value: the parameter points at the 128 bytes.
  for (int s = 0; maps && s < weightTensorMapParams(spec); ++s)
    pointers[kNumGemmParams + s] = const_cast<CUtensorMap *>(&maps->maps[s]);
}

long persistentProgramsOverride() {
  static const long programs = [] {
    const char *v = std::getenv("MOELORA_PERSISTENT_PROGRAMS");
    return v ? std::max(0L, std::atol(v)) : 0L;
  }();
  return programs;
}

bool dependentLaunchEnabled() {
  static const bool enabled = [] {
    const char *v = std::getenv("MOELORA_PDL");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return enabled;
}

CUclusterSchedulingPolicy clusterSchedulingPolicy() {
  static const CUclusterSchedulingPolicy policy = [] {
    const char *v = std::getenv("MOELORA_CLUSTER_POLICY");
    if (v && std::strcmp(v, "spread") == 0)
      return CU_CLUSTER_SCHEDULING_POLICY_SPREAD;
    if (v && std::strcmp(v, "balance") == 0)
      return CU_CLUSTER_SCHEDULING_POLICY_LOAD_BALANCING;
    return CU_CLUSTER_SCHEDULING_POLICY_DEFAULT;
  }();
  return policy;
}

void makeLaunchConfig(const KernelSpec &spec, const LaunchGeometry &g,
                      unsigned sharedBytes, CUstream stream,
                      bool dependentLaunch, LaunchConfig &out,
                      CUclusterSchedulingPolicy clusterPolicy) {
  out = LaunchConfig{};
  CUlaunchConfig &c = out.config;
  c.gridDimX = g.grid[0];
  c.gridDimY = g.grid[1];
  c.gridDimZ = g.grid[2];
  c.blockDimX = g.block;
  c.blockDimY = 1;
  c.blockDimZ = 1;
  c.sharedMemBytes = sharedBytes;
  c.hStream = stream;
  c.attrs = out.attributes;
  // Only kernels generated with griddepcontrol (kernelWaitsOnGridDependency)
  // may overlap their predecessor: without the wait they would read its
  // outputs early.
  if (dependentLaunch && kernelWaitsOnGridDependency(spec.sm)) {
    out.attributes[0].id =
        CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    out.attributes[0].value.programmaticStreamSerializationAllowed = 1;
    c.numAttrs = 1;
  }
  if (spec.splitK > 1 &&
      clusterPolicy != CU_CLUSTER_SCHEDULING_POLICY_DEFAULT) {
    CUlaunchAttribute &a = out.attributes[c.numAttrs++];
    a.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE;
    a.value.clusterSchedulingPolicyPreference = clusterPolicy;
  }
}

/// The one launch call of every family.
static Status launchKernel(const CudaDriver &drv, const LoadedKernel &kernel,
                           const LaunchGeometry &g, void **params,
                           CUstream stream) {
  LaunchConfig lc;
  makeLaunchConfig(kernel.spec, g, unsigned(kernel.sharedBytes), stream,
                   dependentLaunchEnabled(), lc, clusterSchedulingPolicy());
  return drv.check(
      drv.cuLaunchKernelEx(&lc.config, kernel.function, params, nullptr),
      "launching " + kernel.spec.entryName());
}

Status launchGemm(const CudaDriver &drv, const LoadedKernel &kernel,
                  const MoeLoraCall &call, const LaunchKnobs &knobs,
                  const IntermediateBuffer *inter, CUstream stream) {
  LaunchKnobs resolved = knobs;
  if (kernel.spec.persistent && resolved.persistentPrograms <= 0) {
    const long fromEnv = persistentProgramsOverride();
    resolved.persistentPrograms =
        fromEnv > 0 ? fromEnv : kernel.residentPrograms;
  }
  LaunchGeometry g = launchGeometry(kernel.spec, call, resolved);
  if (g.empty())
    return Status::ok();
  // A staged epilogue moves 16-byte row chunks: misaligned rows would fault.
  if (kernel.spec.stagesOutput() &&
      !outputRowsAligned(call, knobs.outColOffset))
    return makeError(fmt::format(
        "{}: stages 16-byte output rows, but out = {}, its row stride {}, N = "
        "{} or the column offset {} is not 16-byte aligned (use a variant "
        "with out_aligned false)",
        kernel.spec.entryName(), call.out, call.outStride, call.N,
        knobs.outColOffset));
  if (kernel.activeClusters == 0)
    return makeError(fmt::format(
        "{}: its {}-block cluster ({} threads, {} bytes of shared memory per "
        "block) fits nowhere on this GPU (cuOccupancyMaxActiveClusters = 0); "
        "use SPLIT_K <= {}",
        kernel.spec.entryName(), kernel.spec.splitK,
        kernel.spec.launchThreads(), kernel.sharedBytes,
        kMaxPortableClusterBlocks));
  WeightTensorMaps maps;
  if (kernel.spec.tmaWeights)
    if (Status s = encodeWeightTensorMaps(drv, kernel.spec, call, maps); !s)
      return s;
  GemmArgPack pack(kernel.spec, call, knobs, inter, &maps);
  return launchKernel(drv, kernel, g, pack.data(), stream);
}

Status launchAlign(const CudaDriver &drv, const LoadedKernel &kernel,
                   const AlignCall &call, CUstream stream) {
  if (call.numExperts > kMaxAlignExperts)
    return makeError(
        fmt::format("moe_lora_align_block_size: num_experts = {} exceeds {}",
                    call.numExperts, kMaxAlignExperts));
  if (call.maxLoras == 0)
    return Status::ok();
  int32_t numPairs = call.numTokens * call.topK;
  const void *ptrs[5] = {call.topkIds, call.tokenLoraMapping,
                         call.sortedTokenIds, call.expertIds,
                         call.numTokensPostPadded};
  int32_t ints[5] = {numPairs, call.topK, call.numExperts, call.EM,
                     call.maxLoras};
  void *params[kNumAlignParams];
  for (int i = 0; i < 5; ++i) {
    params[i] = &ptrs[i];
    params[5 + i] = &ints[i];
  }
  LaunchGeometry g;
  g.grid[0] = unsigned(call.maxLoras);
  g.block = unsigned(kernel.spec.launchThreads());
  return launchKernel(drv, kernel, g, params, stream);
}

} // namespace moelora
