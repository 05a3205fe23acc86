//===- ModuleCache.h - Kernel images and loaded modules ---------*- C++ -*-===//
//
// Finds the PTX of a kernel variant by its cache key: in memory, then the
// on-disk cache, then ahead-of-time bundles (moelora-gen output), then the
// in-process generator when one is linked (the JIT hook). Loads it into the
// calling thread's current CUDA context; modules are cached per context.
// Concurrent first requests for one key generate and load it once.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_MODULECACHE_H
#define MOELORA_RUNTIME_MODULECACHE_H

#include "moelora/Runtime/KernelLauncher.h"
#include "moelora/Spec/KernelSpec.h"
#include "moelora/Support/Error.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace moelora {

/// A kernel's PTX and what is needed to launch it.
struct KernelImage {
  KernelSpec spec;
  std::string ptx;
  int sharedBytes = 0;
  int threads = 0;
  std::string contentHash; ///< XXH3-64 of the PTX, 16 hex digits
};

/// XXH3-64 of a text as 16 hex digits (the bundles' and disk cache's hash).
std::string contentHash(const std::string &text);

/// In-process generation (set by the moelora_jit adapter library).
using JitHook = std::function<Expected<KernelImage>(const KernelSpec &)>;
void setJitHook(JitHook hook);
bool hasJitHook();

/// A compact, hashable identity of a KernelSpec (KernelSpec::kernelFields()
/// as integers), cheap enough for the launch path.
struct SpecKey {
  std::array<int32_t, std::tuple_size_v<
                          decltype(std::declval<KernelSpec>().kernelFields())>>
      fields{};
  explicit SpecKey(const KernelSpec &s);
  bool operator==(const SpecKey &o) const { return fields == o.fields; }
};
struct SpecKeyHash {
  size_t operator()(const SpecKey &k) const;
};

struct ModuleCacheOptions {
  std::string diskDir; ///< empty: default (see defaultCacheDir)
  bool useDisk = true;
  bool useJit = true;
  std::vector<std::string> bundles;
};

/// $MOELORA_CACHE_DIR, else $XDG_CACHE_HOME/moelora, else ~/.cache/moelora.
std::string defaultCacheDir();

/// A hash of the generator's sources in this build. Disk-cache entries
/// record it; an entry from another build is stale (regenerated, or a miss
/// without a generator), never loaded. Bundles are loaded as given.
std::string_view generatorStamp();

struct CacheStats {
  std::atomic<uint64_t> memoryHits{0}, diskHits{0}, bundleHits{0},
      jitGenerations{0}, misses{0}, loads{0};
  std::atomic<uint64_t> jitMicros{0};
};

class ModuleCache {
public:
  /// `driver` may be null: images are still served (plans, tools, tests).
  ModuleCache(const CudaDriver *driver, ModuleCacheOptions options);
  ~ModuleCache();

  /// Reads the bundles' manifests; an error names the bad bundle.
  Status init();

  /// The image of a variant: memory, disk, bundle, then JIT.
  Expected<std::shared_ptr<const KernelImage>> image(const KernelSpec &spec);
  /// The variant loaded into the current context.
  Expected<const LoadedKernel *> kernel(const KernelSpec &spec);

  const CacheStats &stats() const { return counters; }
  const std::string &diskDir() const { return options.diskDir; }
  bool usesDisk() const { return options.useDisk; }
  /// Missing variants are generated in-process (JIT on and a generator
  /// linked).
  bool generatesMissing() const { return options.useJit && hasJitHook(); }

private:
  struct ImageEntry {
    std::once_flag once;
    Expected<std::shared_ptr<const KernelImage>> result =
        makeError("not resolved");
  };
  struct ModuleEntry {
    std::once_flag once;
    Expected<LoadedKernel> result = makeError("not loaded");
  };
  struct ModuleKey {
    SpecKey spec;
    CUcontext context;
    bool operator==(const ModuleKey &o) const {
      return spec == o.spec && context == o.context;
    }
  };
  struct ModuleKeyHash {
    size_t operator()(const ModuleKey &k) const {
      return SpecKeyHash()(k.spec) ^ (std::hash<void *>()(k.context) << 1);
    }
  };
  struct BundleFile {
    std::string ptxPath, jsonPath, contentHash;
  };

  Expected<std::shared_ptr<const KernelImage>> resolve(const KernelSpec &spec);
  Expected<KernelImage> readImage(const KernelSpec &spec,
                                  const std::string &ptxPath,
                                  const std::string &jsonPath,
                                  const std::string &expectedHash,
                                  bool checkStamp);
  void writeDisk(const KernelImage &image);

  const CudaDriver *driver;
  ModuleCacheOptions options;
  std::mutex mutex;
  std::unordered_map<SpecKey, std::shared_ptr<ImageEntry>, SpecKeyHash> images;
  std::unordered_map<ModuleKey, std::shared_ptr<ModuleEntry>, ModuleKeyHash>
      modules;
  std::map<std::string, BundleFile> bundleIndex; ///< by cache key
  CacheStats counters;
  std::once_flag diskWarning; ///< an unwritable cache is reported once
};

} // namespace moelora

#endif // MOELORA_RUNTIME_MODULECACHE_H
