//===- Dispatcher.h - Which kernels a fused_moe_lora call runs --*- C++ -*-===//
//
// vLLM's dispatch rules as the baseline (kernel-contract.md, "vLLM's
// dispatch"), R > 128 sent to the two-kernel path instead of asserting, and
// a tuned table consulted first. The plan is a value: inspectable without
// launching.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_DISPATCHER_H
#define MOELORA_RUNTIME_DISPATCHER_H

#include "moelora/Runtime/KernelLauncher.h"
#include "moelora/Runtime/LaunchArgs.h"
#include "moelora/Runtime/TunedTable.h"
#include "moelora/Support/Error.h"

#include <functional>
#include <string>
#include <vector>

namespace moelora {

enum class DispatchPath { None, SmallBatch, OneShot, TwoKernel };
std::string_view toString(DispatchPath p);

struct PlannedKernel {
  KernelSpec spec;
  LaunchKnobs knobs;
};

struct DispatchPlan {
  DispatchPath path = DispatchPath::None;
  std::vector<PlannedKernel> kernels; ///< in launch order
  size_t workspaceBytes = 0;          ///< two-kernel intermediate
  bool fromTunedTable = false;
};

struct DeviceInfo {
  int sm = 90;
  int smCount = 132;
  std::string name = "unknown";
  /// Whether a kernel's cluster of more than 8 (non-portable) blocks fits
  /// this GPU at all; the planner takes 8-block clusters where it does not,
  /// before deriving the launch knobs that follow the cluster size. Null:
  /// assumed to fit (planning without a GPU).
  std::function<bool(const KernelSpec &)> clusterFits;
};

/// Plans one call. Errors name the argument (e.g. shrink_block_size_m).
Expected<DispatchPlan> planFusedMoeLora(const MoeLoraCall &call,
                                        bool fullySharded,
                                        const DeviceInfo &device,
                                        const TunedTable *tuned);

/// Bytes of the two-kernel intermediate (num_slices, num_pairs, R) in T.
size_t intermediateBytes(const MoeLoraCall &call);

} // namespace moelora

#endif // MOELORA_RUNTIME_DISPATCHER_H
