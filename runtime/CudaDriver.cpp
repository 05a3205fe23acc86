//===- CudaDriver.cpp - dlopen'ed CUDA Driver API -------------------------===//

#include "moelora/Runtime/CudaDriver.h"

#include <fmt/format.h>

#include <dlfcn.h>
#include <mutex>

namespace moelora {

namespace {
using GetProcAddressFn = CUresult (*)(const char *, void **, int, cuuint64_t,
                                      CUdriverProcAddressQueryResult *);
constexpr int kRequestedAbi = 12000;
} // namespace

static Expected<const CudaDriver *> loadDriver() {
  static CudaDriver driver;
  const char *lib = "libcuda.so.1";
  void *handle = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    return makeError(fmt::format(
        "no CUDA driver: dlopen({}) failed ({}); moelora's GPU paths need an "
        "NVIDIA driver",
        lib, dlerror()));
  auto getProc =
      reinterpret_cast<GetProcAddressFn>(dlsym(handle, "cuGetProcAddress_v2"));
  if (!getProc)
    return makeError("CUDA driver too old: cuGetProcAddress_v2 not found in "
                     "libcuda.so.1 (need a CUDA 12+ driver)");
  std::string missing;
#define MOELORA_DRIVER_FN(name)                                                \
  {                                                                            \
    void *fn = nullptr;                                                        \
    CUdriverProcAddressQueryResult status;                                     \
    if (getProc(#name, &fn, kRequestedAbi, CU_GET_PROC_ADDRESS_DEFAULT,        \
                &status) != CUDA_SUCCESS ||                                    \
        !fn)                                                                   \
      missing += std::string(missing.empty() ? "" : ", ") + #name;             \
    driver.name = reinterpret_cast<decltype(driver.name)>(fn);                 \
  }
#include "moelora/Runtime/CudaDriverFunctions.def"
#undef MOELORA_DRIVER_FN
  if (!missing.empty())
    return makeError("CUDA driver lacks entry points: " + missing);
  if (CUresult r = driver.cuInit(0); r != CUDA_SUCCESS)
    return makeError("cuInit failed: " + driver.describe(r));
  int count = 0;
  if (driver.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0)
    return makeError("CUDA driver present but no CUDA device found");
  return static_cast<const CudaDriver *>(&driver);
}

Expected<const CudaDriver *> CudaDriver::get() {
  static std::once_flag once;
  static Expected<const CudaDriver *> result = makeError("not loaded");
  std::call_once(once, [] { result = loadDriver(); });
  return result;
}

std::string CudaDriver::describe(CUresult r) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName)
    cuGetErrorName(r, &name);
  if (cuGetErrorString)
    cuGetErrorString(r, &text);
  return fmt::format("{} ({})", name ? name : "CUDA_ERROR_UNKNOWN",
                     text ? text : "no description");
}

Status CudaDriver::check(CUresult r, const std::string &what) const {
  if (r == CUDA_SUCCESS)
    return Status::ok();
  return makeError(what + ": " + describe(r));
}

} // namespace moelora
