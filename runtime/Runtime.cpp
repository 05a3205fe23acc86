//===- Runtime.cpp - Cache + dispatcher + launcher ------------------------===//

#include "moelora/Runtime/Runtime.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <dlfcn.h>
#include <filesystem>
#include <thread>
#include <unordered_set>

namespace moelora {

std::string thisLibraryPath() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<const void *>(&thisLibraryPath), &info) ||
      !info.dli_fname)
    return "";
  std::error_code ec;
  auto path = std::filesystem::canonical(info.dli_fname, ec);
  return ec ? std::string(info.dli_fname) : path.string();
}

std::vector<std::string> tunedTableDirs() {
  std::vector<std::string> dirs;
  if (const char *d = std::getenv("MOELORA_TUNED_DIR"); d && *d)
    dirs.push_back(d);
  // An installed library (CMake package, wheel) finds its tables beside it.
  if (std::string lib = thisLibraryPath(); !lib.empty())
    dirs.push_back((std::filesystem::path(lib).parent_path() / ".." / "share" /
                    "moelora" / "tuned")
                       .lexically_normal()
                       .string());
#ifdef MOELORA_DEFAULT_TUNED_DIR
  dirs.push_back(MOELORA_DEFAULT_TUNED_DIR);
#endif
  dirs.push_back("specs/tuned");
  return dirs;
}

std::string defaultTunedTablePath(const std::string &gpuName) {
  std::string file;
  for (char c : gpuName)
    file += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  file += ".json";
  for (const std::string &d : tunedTableDirs()) {
    std::string path = d + "/" + file;
    if (std::filesystem::exists(path))
      return path;
  }
  return "";
}

Expected<std::unique_ptr<Runtime>> Runtime::create(const RuntimeOptions &o) {
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->deviceInfo = o.fallbackDevice;
  auto drv = CudaDriver::get();
  if (drv) {
    rt->drv = *drv;
    CUdevice dev = 0;
    CUcontext ctx = nullptr;
    // The caller's current context decides the device; without one, device
    // 0's primary context (the one PyTorch and the CUDA runtime share).
    if (rt->drv->cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || !ctx) {
      if (Status s =
              rt->drv->check(rt->drv->cuDeviceGet(&dev, 0), "cuDeviceGet");
          !s)
        return s.error();
      if (Status s =
              rt->drv->check(rt->drv->cuDevicePrimaryCtxRetain(&ctx, dev),
                             "cuDevicePrimaryCtxRetain");
          !s)
        return s.error();
      if (Status s =
              rt->drv->check(rt->drv->cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
          !s)
        return s.error();
    } else if (Status s = rt->drv->check(rt->drv->cuCtxGetDevice(&dev),
                                         "cuCtxGetDevice");
               !s) {
      return s.error();
    }
    int major = 0, minor = 0, sms = 0;
    rt->drv->cuDeviceGetAttribute(
        &major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    rt->drv->cuDeviceGetAttribute(
        &minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    rt->drv->cuDeviceGetAttribute(
        &sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
    char name[256] = {0};
    rt->drv->cuDeviceGetName(name, sizeof(name), dev);
    rt->deviceInfo = DeviceInfo{major * 10 + minor, sms, name};
  } else {
    rt->driverError = drv.error().message;
    // Planning ahead for a GPU this machine lacks (warming a cache or a
    // bundle for it): its name selects its tuned table.
    if (const char *g = std::getenv("MOELORA_TARGET_GPU"); g && *g)
      rt->deviceInfo.name = g;
  }
  rt->moduleCache = std::make_unique<ModuleCache>(rt->drv, o.cache);
  // Only a loaded function can say whether its cluster fits (it depends on
  // its threads and shared memory and on the GPU's GPCs); the module cache
  // keeps the load for the launch. Where it cannot load (no current
  // context, another failure) the plan keeps the cluster.
  if (rt->drv) {
    ModuleCache *cache = rt->moduleCache.get();
    rt->deviceInfo.clusterFits = [cache](const KernelSpec &s) {
      auto kernel = cache->kernel(s);
      return !kernel || (*kernel)->activeClusters != 0;
    };
  }
  if (Status s = rt->moduleCache->init(); !s)
    return s.error();
  // The tuned table: the one given, else the committed table for this GPU
  // (specs/tuned/<GPU name>.json under $MOELORA_TUNED_DIR or the source
  // tree), else vLLM's rules alone.
  std::string tunedPath = o.tunedTablePath;
  if (tunedPath.empty() && !o.noTunedTable) {
    if (const char *e = std::getenv("MOELORA_TUNED_TABLE"); e && *e)
      tunedPath = e;
    else
      tunedPath = defaultTunedTablePath(rt->deviceInfo.name);
  }
  if (!tunedPath.empty()) {
    auto t = TunedTable::load(tunedPath);
    if (!t)
      return t.error();
    rt->tuned = t.take();
    rt->tunedPath = tunedPath;
  }
  return rt;
}

Status Runtime::requireDriver() const {
  if (!drv)
    return makeError(driverError);
  return Status::ok();
}

Expected<DispatchPlan> Runtime::plan(const MoeLoraCall &call,
                                     bool fullySharded) {
  return planFusedMoeLora(call, fullySharded, deviceInfo,
                          tuned ? &*tuned : nullptr);
}

Status Runtime::warmup(const std::vector<std::pair<MoeLoraCall, bool>> &calls) {
  std::vector<KernelSpec> specs;
  std::unordered_set<std::string> seen;
  for (const auto &[call, sharded] : calls) {
    auto p = plan(call, sharded);
    if (!p)
      return p.error();
    std::vector<KernelSpec> needed;
    for (const PlannedKernel &k : p->kernels)
      needed.push_back(k.spec);
    // Sorted calls also need the align kernel that builds their metadata.
    if (call.sorted && p->path != DispatchPath::None)
      needed.push_back(alignBlockSizeSpec(deviceInfo.sm, call.blockSizeM));
    for (KernelSpec &spec : needed)
      if (seen.insert(spec.cacheKey()).second)
        specs.push_back(std::move(spec));
  }
  // Every kernel on every core: its image (disk, bundle or generation), then
  // its module (the driver's compile of the PTX costs about as much as a
  // generation). Kernels are independent, and the cache resolves each key
  // once. Workers load into the caller's context.
  CUcontext ctx = nullptr;
  if (drv)
    if (Status s = drv->check(drv->cuCtxGetCurrent(&ctx), "cuCtxGetCurrent");
        !s)
      return s;
  std::vector<Error> errors(specs.size(), Error{""});
  std::vector<char> loaded(specs.size(), 0);
  std::atomic<size_t> next{0};
  auto worker = [&](bool inCallerThread) {
    if (ctx && !inCallerThread &&
        drv->cuCtxSetCurrent(ctx) != CUDA_SUCCESS) // left to the caller below
      return;
    for (size_t i; (i = next++) < specs.size();) {
      if (auto image = moduleCache->image(specs[i]); !image)
        errors[i] = image.error();
      else if (ctx) {
        if (auto kernel = moduleCache->kernel(specs[i]); !kernel)
          errors[i] = kernel.error();
        else
          loaded[i] = 1;
      }
    }
  };
  size_t threads = std::min<size_t>(
      specs.size(), std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t)
    pool.emplace_back(worker, false);
  worker(true);
  for (std::thread &t : pool)
    t.join();
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!errors[i].message.empty())
      return errors[i];
    // A load needs a current context (none without a driver).
    if (drv && !loaded[i])
      if (auto kernel = moduleCache->kernel(specs[i]); !kernel)
        return kernel.error();
  }
  return Status::ok();
}

Status Runtime::runKernel(const PlannedKernel &k, const MoeLoraCall &call,
                          const IntermediateBuffer *inter, CUstream stream) {
  auto kernel = moduleCache->kernel(k.spec);
  if (!kernel)
    return kernel.error();
  ++launchCount;
  return launchGemm(*drv, **kernel, call, k.knobs, inter, stream);
}

Status Runtime::launchPlanned(const MoeLoraCall &call, bool fullySharded,
                              void *workspace, int outColOffset,
                              TwoKernelPart part, CUstream stream) {
  auto p = plan(call, fullySharded);
  if (!p)
    return p.error();
  if (p->path == DispatchPath::None)
    return Status::ok();
  if (Status s = requireDriver(); !s)
    return s;
  if (p->path != DispatchPath::TwoKernel)
    return runKernel(p->kernels[0], call, nullptr, stream);
  if (!workspace)
    return makeError(fmt::format(
        "workspace: NULL; the two-kernel path needs {} bytes of workspace "
        "(moelora_workspace_bytes)",
        p->workspaceBytes));
  IntermediateBuffer inter{workspace, int64_t(call.numPairs()) * call.rank,
                           call.rank};
  if (part != TwoKernelPart::Expand) {
    // A defined intermediate: rows the shrink skips (no adapter or expert)
    // read as zeros.
    if (Status s = drv->check(
            drv->cuMemsetD8Async(reinterpret_cast<CUdeviceptr>(workspace), 0,
                                 p->workspaceBytes, stream),
            "zeroing the workspace");
        !s)
      return s;
    if (Status s = runKernel(p->kernels[0], call, &inter, stream); !s)
      return s;
  }
  if (part == TwoKernelPart::Shrink)
    return Status::ok();
  PlannedKernel expand = p->kernels[1];
  expand.knobs.outColOffset = outColOffset;
  // The plan assumed column 0; a column offset can break the row alignment.
  if (!outputRowsAligned(call, outColOffset))
    expand.spec.alignedOutput = false;
  return runKernel(expand, call, &inter, stream);
}

Status Runtime::fusedMoeLora(const MoeLoraCall &call, bool fullySharded,
                             void *workspace, CUstream stream) {
  return launchPlanned(call, fullySharded, workspace, 0, TwoKernelPart::Both,
                       stream);
}

Status Runtime::shrink(const MoeLoraCall &call, void *workspace,
                       CUstream stream) {
  return launchPlanned(call, /*fullySharded=*/true, workspace, 0,
                       TwoKernelPart::Shrink, stream);
}

Status Runtime::expand(const MoeLoraCall &call, void *workspace,
                       int outColOffset, CUstream stream) {
  return launchPlanned(call, /*fullySharded=*/true, workspace, outColOffset,
                       TwoKernelPart::Expand, stream);
}

Status Runtime::alignBlockSize(const AlignCall &call, int blockM,
                               CUstream stream) {
  if (Status s = requireDriver(); !s)
    return s;
  auto kernel = moduleCache->kernel(alignBlockSizeSpec(deviceInfo.sm, blockM));
  if (!kernel)
    return kernel.error();
  ++launchCount;
  return launchAlign(*drv, **kernel, call, stream);
}

} // namespace moelora
