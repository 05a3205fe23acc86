//===- Runtime.h - The runtime engines link ---------------------*- C++ -*-===//
//
// Ties the module cache, the dispatcher and the launcher together; the C ABI
// (moelora.h) is a thin, validating layer over this class.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_RUNTIME_H
#define MOELORA_RUNTIME_RUNTIME_H

#include "moelora/Runtime/Dispatcher.h"
#include "moelora/Runtime/ModuleCache.h"

#include <memory>
#include <optional>

namespace moelora {

struct RuntimeOptions {
  ModuleCacheOptions cache;
  /// Empty: $MOELORA_TUNED_TABLE, else defaultTunedTablePath(device name).
  std::string tunedTablePath;
  /// vLLM's rules alone, whatever table exists (the tuner's baseline).
  bool noTunedTable = false;
  /// Plan for this device when no GPU is present (tests, tools).
  DeviceInfo fallbackDevice;
};

/// Where tuned tables are looked up, in order: $MOELORA_TUNED_DIR, the
/// tables installed beside this library (<libdir>/../share/moelora/tuned: the
/// CMake package and the wheel), the source tree of this build, and
/// ./specs/tuned.
std::vector<std::string> tunedTableDirs();

/// The committed tuned table for a GPU (<name with non alphanumerics as
/// '_'>.json in the first of tunedTableDirs() that has it), or "".
std::string defaultTunedTablePath(const std::string &gpuName);

/// The file the runtime's code was loaded from (libmoelora.so, or the
/// executable it is linked into); "" if unknown.
std::string thisLibraryPath();

class Runtime {
public:
  static Expected<std::unique_ptr<Runtime>> create(const RuntimeOptions &o);

  /// The device of the current context (or the fallback without a GPU).
  const DeviceInfo &device() const { return deviceInfo; }
  const CudaDriver *driver() const { return drv; }
  ModuleCache &cache() { return *moduleCache; }

  Expected<DispatchPlan> plan(const MoeLoraCall &call, bool fullySharded);
  /// Loads every kernel of the plans of these calls.
  Status warmup(const std::vector<std::pair<MoeLoraCall, bool>> &calls);
  Status fusedMoeLora(const MoeLoraCall &call, bool fullySharded,
                      void *workspace, CUstream stream);
  Status shrink(const MoeLoraCall &call, void *workspace, CUstream stream);
  Status expand(const MoeLoraCall &call, void *workspace, int outColOffset,
                CUstream stream);
  Status alignBlockSize(const AlignCall &call, int blockM, CUstream stream);

  uint64_t launches() const { return launchCount; }
  /// The tuned table in use ("" for vLLM's rules alone).
  const std::string &tunedTablePath() const { return tunedPath; }
  /// Why there is no driver or device ("" when there is one).
  const std::string &driverErrorMessage() const { return driverError; }

private:
  Runtime() = default;
  enum class TwoKernelPart { Both, Shrink, Expand };
  /// Plans and launches a call; on the two-kernel path only `part` of it.
  Status launchPlanned(const MoeLoraCall &call, bool fullySharded,
                       void *workspace, int outColOffset, TwoKernelPart part,
                       CUstream stream);
  Status runKernel(const PlannedKernel &k, const MoeLoraCall &call,
                   const IntermediateBuffer *inter, CUstream stream);
  Status requireDriver() const;

  const CudaDriver *drv = nullptr;
  std::string driverError;
  DeviceInfo deviceInfo;
  std::unique_ptr<ModuleCache> moduleCache;
  std::optional<TunedTable> tuned;
  std::string tunedPath;
  std::atomic<uint64_t> launchCount{0};
};

} // namespace moelora

#endif // MOELORA_RUNTIME_RUNTIME_H
