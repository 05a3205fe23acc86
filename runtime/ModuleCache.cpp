//===- ModuleCache.cpp - memory -> disk -> bundle -> JIT ------------------===//

#include "moelora/Runtime/ModuleCache.h"

#include "moelora/GeneratorStamp.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace moelora {

std::string contentHash(const std::string &text) {
  return fmt::format("{:016x}", XXH3_64bits(text.data(), text.size()));
}

namespace {
struct HookSlot {
  std::mutex mutex;
  JitHook hook;
};
/// Constructed on first use: the JIT adapter's static initialiser may set the
/// hook before this file's globals would have been constructed (the order of
/// initialisers across objects is the link order's).
HookSlot &hookSlot() {
  static HookSlot slot;
  return slot;
}
} // namespace

void setJitHook(JitHook hook) {
  std::lock_guard<std::mutex> lock(hookSlot().mutex);
  hookSlot().hook = std::move(hook);
}
bool hasJitHook() {
  std::lock_guard<std::mutex> lock(hookSlot().mutex);
  return bool(hookSlot().hook);
}
static JitHook currentHook() {
  std::lock_guard<std::mutex> lock(hookSlot().mutex);
  return hookSlot().hook;
}

SpecKey::SpecKey(const KernelSpec &s) {
  fields = std::apply(
      [](auto... field) {
        return std::array<int32_t, sizeof...(field)>{int32_t(field)...};
      },
      s.kernelFields());
}

size_t SpecKeyHash::operator()(const SpecKey &k) const {
  return size_t(XXH3_64bits(k.fields.data(), sizeof(k.fields)));
}

std::string_view generatorStamp() { return MOELORA_GENERATOR_STAMP; }

std::string defaultCacheDir() {
  if (const char *d = std::getenv("MOELORA_CACHE_DIR"); d && *d)
    return d;
  if (const char *x = std::getenv("XDG_CACHE_HOME"); x && *x)
    return (fs::path(x) / "moelora").string();
  if (const char *h = std::getenv("HOME"); h && *h)
    return (fs::path(h) / ".cache" / "moelora").string();
  return (fs::temp_directory_path() / "moelora-cache").string();
}

ModuleCache::ModuleCache(const CudaDriver *driver, ModuleCacheOptions opts)
    : driver(driver), options(std::move(opts)) {
  if (options.diskDir.empty())
    options.diskDir = defaultCacheDir();
}

ModuleCache::~ModuleCache() {
  if (!driver)
    return;
  for (auto &[key, entry] : modules)
    if (entry->result)
      driver->cuModuleUnload(entry->result->module);
}

static Expected<std::string> readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return makeError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status ModuleCache::init() {
  for (const std::string &dir : options.bundles) {
    fs::path manifest = fs::path(dir) / "manifest.json";
    auto text = readFile(manifest.string());
    if (!text)
      return makeError(fmt::format("bundle {}: no manifest.json", dir));
    try {
      json m = json::parse(*text);
      if (m.value("format", "") != "moelora-bundle")
        return makeError(fmt::format(
            "bundle {}: manifest format is not moelora-bundle", dir));
      for (const json &k : m.at("kernels")) {
        BundleFile f{(fs::path(dir) / k.at("ptx").get<std::string>()).string(),
                     (fs::path(dir) / k.at("json").get<std::string>()).string(),
                     k.at("content_hash").get<std::string>()};
        bundleIndex.emplace(k.at("cache_key").get<std::string>(), f);
      }
    } catch (const std::exception &e) {
      return makeError(
          fmt::format("bundle {}: bad manifest.json: {}", dir, e.what()));
    }
  }
  return Status::ok();
}

Expected<KernelImage> ModuleCache::readImage(const KernelSpec &spec,
                                             const std::string &ptxPath,
                                             const std::string &jsonPath,
                                             const std::string &expectedHash,
                                             bool checkStamp) {
  auto ptx = readFile(ptxPath);
  if (!ptx)
    return ptx.error();
  auto meta = readFile(jsonPath);
  if (!meta)
    return meta.error();
  KernelImage image;
  image.spec = spec;
  image.ptx = ptx.take();
  image.contentHash = contentHash(image.ptx);
  try {
    json j = json::parse(*meta);
    if (j.at("cache_key").get<std::string>() != spec.cacheKey())
      return makeError(jsonPath + ": cache key does not match");
    std::string recorded = j.at("content_hash").get<std::string>();
    if (recorded != image.contentHash ||
        (!expectedHash.empty() && expectedHash != image.contentHash))
      return makeError(ptxPath + ": content hash mismatch");
    // A disk entry written by another build of the generator may differ in
    // code (or kernel ABI) under the same key: it counts as stale.
    if (checkStamp && j.value("generator", std::string()) != generatorStamp())
      return makeError(jsonPath + ": written by another moelora build");
    image.sharedBytes = j.at("shared_bytes").get<int>();
    image.threads = j.at("threads").get<int>();
  } catch (const std::exception &e) {
    return makeError(jsonPath + ": " + e.what());
  }
  return image;
}

void ModuleCache::writeDisk(const KernelImage &image) {
  // An unwritable cache directory costs only the next process's generation:
  // the image is served from memory, and the user is told once.
  auto warn = [&](const std::string &why) {
    std::call_once(diskWarning, [&] {
      fmt::print(stderr,
                 "moelora: warning: cannot write the kernel cache {} ({}); "
                 "kernels are kept in memory only\n",
                 options.diskDir, why);
    });
  };
  // Atomic: write to unique temporaries, then rename (JSON last, so a
  // reader never pairs a new PTX with an old hash it trusts).
  std::error_code ec;
  fs::create_directories(options.diskDir, ec);
  if (ec)
    return warn(ec.message());
  std::string entry = image.spec.entryName();
  fs::path dir(options.diskDir);
  std::string suffix =
      fmt::format(".tmp{}.{}", getpid(),
                  std::hash<std::thread::id>()(std::this_thread::get_id()));
  json j = {
      {"cache_key", image.spec.cacheKey()}, {"entry", entry},
      {"generator", generatorStamp()},      {"content_hash", image.contentHash},
      {"shared_bytes", image.sharedBytes},  {"threads", image.threads}};
  fs::path ptxTmp = dir / (entry + ".ptx" + suffix);
  fs::path jsonTmp = dir / (entry + ".json" + suffix);
  bool written;
  {
    std::ofstream ptx(ptxTmp, std::ios::binary);
    std::ofstream meta(jsonTmp);
    ptx << image.ptx;
    meta << j.dump(1);
    ptx.close();
    meta.close();
    written = ptx.good() && meta.good();
  }
  if (written) {
    fs::rename(ptxTmp, dir / (entry + ".ptx"), ec);
    if (!ec)
      fs::rename(jsonTmp, dir / (entry + ".json"), ec);
  }
  if (!written || ec) {
    std::error_code ignored;
    fs::remove(ptxTmp, ignored);
    fs::remove(jsonTmp, ignored);
    warn(written ? ec.message() : "cannot create files there");
  }
}

Expected<std::shared_ptr<const KernelImage>>
ModuleCache::resolve(const KernelSpec &spec) {
  const std::string entry = spec.entryName();
  // Why the disk cache's entry was not used, for the error when nothing else
  // can provide the kernel (a cache made by another build looks present).
  std::string unusableDiskEntry;
  if (options.useDisk) {
    fs::path base = fs::path(options.diskDir) / entry;
    if (fs::exists(base.string() + ".json")) {
      auto image =
          readImage(spec, base.string() + ".ptx", base.string() + ".json", "",
                    /*checkStamp=*/true);
      if (image) {
        ++counters.diskHits;
        return std::make_shared<const KernelImage>(image.take());
      }
      // A corrupt or stale entry is rebuilt below, never loaded.
      unusableDiskEntry = image.error().message;
    }
  }
  if (auto it = bundleIndex.find(spec.cacheKey()); it != bundleIndex.end()) {
    auto image = readImage(spec, it->second.ptxPath, it->second.jsonPath,
                           it->second.contentHash, /*checkStamp=*/false);
    if (!image)
      return makeError("bundle entry for " + spec.cacheKey() +
                       " is unusable: " + image.error().message);
    ++counters.bundleHits;
    return std::make_shared<const KernelImage>(image.take());
  }
  JitHook hook = options.useJit ? currentHook() : JitHook();
  if (!hook) {
    ++counters.misses;
    return makeError(fmt::format(
        "kernel variant not found: {} (no bundle has it{}{})", spec.cacheKey(),
        options.useJit ? " and this runtime has no generator"
                       : " and JIT is off",
        unusableDiskEntry.empty()
            ? ""
            : "; the disk cache's entry is unusable: " + unusableDiskEntry));
  }
  auto t0 = std::chrono::steady_clock::now();
  auto image = hook(spec);
  if (!image)
    return image.error();
  counters.jitMicros += uint64_t(std::chrono::duration<double, std::micro>(
                                     std::chrono::steady_clock::now() - t0)
                                     .count());
  ++counters.jitGenerations;
  if (options.useDisk)
    writeDisk(*image);
  return std::make_shared<const KernelImage>(image.take());
}

Expected<std::shared_ptr<const KernelImage>>
ModuleCache::image(const KernelSpec &spec) {
  std::shared_ptr<ImageEntry> entry;
  bool fresh = false;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto [it, inserted] = images.try_emplace(SpecKey(spec));
    if (inserted)
      it->second = std::make_shared<ImageEntry>();
    entry = it->second;
    fresh = inserted;
  }
  std::call_once(entry->once, [&] { entry->result = resolve(spec); });
  if (!fresh)
    ++counters.memoryHits;
  return entry->result;
}

Expected<const LoadedKernel *> ModuleCache::kernel(const KernelSpec &spec) {
  if (!driver)
    return makeError("no CUDA driver: cannot load " + spec.entryName());
  CUcontext ctx = nullptr;
  if (Status s =
          driver->check(driver->cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
      !s)
    return s.error();
  if (!ctx)
    return makeError("no current CUDA context on this thread (make the "
                     "device's primary context current first)");
  std::shared_ptr<ModuleEntry> entry;
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto [it, inserted] = modules.try_emplace(ModuleKey{SpecKey(spec), ctx});
    if (inserted)
      it->second = std::make_shared<ModuleEntry>();
    else
      ++counters.memoryHits;
    entry = it->second;
  }
  std::call_once(entry->once, [&] {
    auto img = image(spec);
    if (!img) {
      entry->result = img.error();
      return;
    }
    entry->result =
        loadKernelFromPtx(*driver, spec, (*img)->ptx, (*img)->sharedBytes);
    if (entry->result)
      ++counters.loads;
  });
  if (!entry->result)
    return entry->result.error();
  return &*entry->result;
}

} // namespace moelora
