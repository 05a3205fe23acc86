//===- KernelLauncher.h - Grids and argument packing per family -*- C++ -*-===//
//
// Turns a MoeLoraCall plus a kernel's spec into the launch: grid, block,
// dynamic shared memory and the argument list of KernelAbi.h. No
// allocation, no synchronisation, no read of device data: safe inside CUDA
// graph capture.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_KERNELLAUNCHER_H
#define MOELORA_RUNTIME_KERNELLAUNCHER_H

#include "moelora/Runtime/CudaDriver.h"
#include "moelora/Runtime/LaunchArgs.h"
#include "moelora/Spec/KernelAbi.h"

#include <array>
#include <cstdint>
#include <string>

namespace moelora {

/// A loaded kernel: its function and the facts needed to launch it.
struct LoadedKernel {
  KernelSpec spec;
  CUmodule module = nullptr;
  CUfunction function = nullptr;
  int sharedBytes = 0;
  /// Clusters of a non-portable size (SPLIT_K > 8) that can be resident at
  /// once (cuOccupancyMaxActiveClusters); 0: the cluster fits nowhere on
  /// this GPU (its GPCs, a MIG slice). -1: a portable size, not asked.
  int activeClusters = -1;
  /// A persistent kernel's programs that can be resident at once on the
  /// device (blocks per SM times SMs, or clusters times their blocks, as
  /// the driver's occupancy calculator answers at load time); 0: unknown
  /// or not persistent.
  long residentPrograms = 0;
};

/// Loads PTX text into the current context (JIT log in the error) and
/// prepares the function (dynamic shared memory above 48 KiB; the opt-in to
/// a non-portable cluster above 8 blocks, and how many such clusters fit).
/// On an error nothing stays loaded.
Expected<LoadedKernel> loadKernelFromPtx(const CudaDriver &drv,
                                         const KernelSpec &spec,
                                         const std::string &ptx,
                                         int sharedBytes);

struct LaunchGeometry {
  unsigned grid[3] = {1, 1, 1};
  unsigned block = 32;
  unsigned sharedBytes = 0;
  uint64_t blocksX = 1; ///< grid[0] before it is narrowed to 32 bits
  bool empty() const { return grid[0] * grid[1] * grid[2] == 0; }
  /// What cuLaunchKernel accepts: x < 2^31, y and z <= 65535.
  bool withinDriverLimits() const {
    return blocksX <= 0x7fffffffu && grid[1] <= 65535 && grid[2] <= 65535;
  }
};

/// Per-launch runtime choices (all runtime kernel arguments).
struct LaunchKnobs {
  int npid = 1;         ///< one_shot, expand: programs per row block (N-chunks)
  int tilesPerItem = 1; ///< small_batch: BLOCK_N tiles per work item
  int smCount = 132;    ///< small_batch: persistent grid = min(work, 2*SMs)
  int outColOffset = 0; ///< expand: first output column
  /// persistent one_shot: the programs its grid starts, over all lora
  /// slots (0: as many as can be resident, LoadedKernel::residentPrograms,
  /// or two per SM where that is unknown). Tests set a few to make every
  /// program walk several row blocks.
  long persistentPrograms = 0;
};

LaunchGeometry launchGeometry(const KernelSpec &spec, const MoeLoraCall &call,
                              const LaunchKnobs &knobs);

/// The lora_a tensor maps of a tmaWeights kernel (its trailing
/// parameters), one per slice.
struct WeightTensorMaps {
  std::array<CUtensorMap, kMaxTensorMapSlices> maps{};
  int count = 0;
};

/// Encodes them (cuTensorMapEncodeTiled): lora_a_s as a 4-d tensor (K, R,
/// experts, adapters), innermost first, read in boxes of 64 columns by the
/// kernel's weight tile rows with the 128-byte swizzle of its shared tiles;
/// elements outside the tensor read as zeros. The call must satisfy
/// weightTensorMapsApply.
Status encodeWeightTensorMaps(const CudaDriver &drv, const KernelSpec &spec,
                              const MoeLoraCall &call, WeightTensorMaps &out);

/// Argument values in KernelAbi order (kernelParams(spec)), with stable
/// storage; `maps` supplies the tensor maps of a tmaWeights kernel.
class GemmArgPack {
public:
  GemmArgPack(const KernelSpec &spec, const MoeLoraCall &call,
              const LaunchKnobs &knobs, const IntermediateBuffer *inter,
              const WeightTensorMaps *maps = nullptr);
  void **data() { return pointers.data(); }

private:
  std::array<uint64_t, kNumGemmParams> slots{};
  std::array<void *, kNumGemmParams + kMaxTensorMapSlices> pointers{};
};

/// Programmatic dependent launch (PDL): sm_90 kernels wait on
/// griddepcontrol before their first global memory access and release their
/// dependents right after, so each may be launched with programmatic stream
/// serialization: its blocks start while the kernel before it on the stream
/// drains, and a CUDA graph captured from such launches keeps programmatic
/// edges. MOELORA_PDL=0 launches them like any kernel (same PTX: the wait is
/// then a no-op), for comparison.
bool dependentLaunchEnabled();

/// MOELORA_PERSISTENT_PROGRAMS=n: a persistent kernel's grid starts n
/// programs (over all lora slots) instead of the resident count, unless
/// the caller's knobs name some (for measurements of the grid size).
long persistentProgramsOverride();

/// MOELORA_CLUSTER_POLICY=spread|balance: the cluster scheduling policy
/// asked for at every launch of a cluster kernel (SPLIT_K > 1):
/// CU_CLUSTER_SCHEDULING_POLICY_SPREAD (each block of a cluster on its own
/// SM) or _LOAD_BALANCING (the hardware may place several of a cluster's
/// blocks on one SM). Unset or "default": no preference (the driver's,
/// which ncu reports as spread). Read once; for measurements.
CUclusterSchedulingPolicy clusterSchedulingPolicy();

/// The cuLaunchKernelEx configuration of one launch, with its attribute
/// storage.
struct LaunchConfig {
  CUlaunchConfig config{};
  CUlaunchAttribute attributes[2]{};
};

/// Fills `out` for `kernel` on `stream`; PDL when the kernel's target has it
/// and `dependentLaunch` allows it; a cluster kernel's scheduling policy
/// when `clusterPolicy` names one.
void makeLaunchConfig(const KernelSpec &spec, const LaunchGeometry &g,
                      unsigned sharedBytes, CUstream stream,
                      bool dependentLaunch, LaunchConfig &out,
                      CUclusterSchedulingPolicy clusterPolicy =
                          CU_CLUSTER_SCHEDULING_POLICY_DEFAULT);

/// Launches a GEMM-family kernel on `stream` (nothing when the grid is
/// empty).
Status launchGemm(const CudaDriver &drv, const LoadedKernel &kernel,
                  const MoeLoraCall &call, const LaunchKnobs &knobs,
                  const IntermediateBuffer *inter, CUstream stream);

/// moe_lora_align_block_size's operands.
struct AlignCall {
  const int32_t *topkIds = nullptr;          ///< (numPairs)
  const int32_t *tokenLoraMapping = nullptr; ///< (numTokens)
  int32_t *sortedTokenIds = nullptr;         ///< (maxLoras, EM) out
  int32_t *expertIds = nullptr;              ///< (maxLoras, EM/BM) out
  int32_t *numTokensPostPadded = nullptr;    ///< (maxLoras) out
  int numTokens = 0, topK = 1, numExperts = 1, maxLoras = 1, EM = 0;
};

Status launchAlign(const CudaDriver &drv, const LoadedKernel &kernel,
                   const AlignCall &call, CUstream stream);

} // namespace moelora

#endif // MOELORA_RUNTIME_KERNELLAUNCHER_H
