//===- CudaDriver.h - The CUDA Driver API, opened at run time ---*- C++ -*-===//
//
// libcuda.so.1 is dlopen'ed on first use and every entry point is resolved
// through cuGetProcAddress, so nothing links libcuda: binaries build, start
// and run their CPU paths on machines without a driver, and say so clearly.
// Types come from the toolkit's cuda.h (headers only).
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_CUDADRIVER_H
#define MOELORA_RUNTIME_CUDADRIVER_H

#include "moelora/Support/Error.h"

#include <cuda.h>

#include <string>

namespace moelora {

struct CudaDriver {
#define MOELORA_DRIVER_FN(name) decltype(&::name) name = nullptr;
#include "moelora/Runtime/CudaDriverFunctions.def"
#undef MOELORA_DRIVER_FN

  /// The process-wide driver; an error when libcuda or a device is missing.
  static Expected<const CudaDriver *> get();

  /// "CUDA_ERROR_X (message)" for a result code.
  std::string describe(CUresult r) const;
  /// Ok, or an error "<what>: CUDA_ERROR_X (...)".
  Status check(CUresult r, const std::string &what) const;
};

} // namespace moelora

#endif // MOELORA_RUNTIME_CUDADRIVER_H
