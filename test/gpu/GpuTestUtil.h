//===- GpuTestUtil.h - Device buffers and the driver for GPU suites -*- C++
//-*-===//
#ifndef MOELORA_TEST_GPU_GPUTESTUTIL_H
#define MOELORA_TEST_GPU_GPUTESTUTIL_H

#include "moelora/Runtime/CudaDriver.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace moelora::gputest {

/// Set by GpuEnvironment; null (with gSkipReason) without a usable GPU.
inline const CudaDriver *gDriver = nullptr;
inline std::string gSkipReason;

/// Every driver call of the suites is checked.
#define CU(call)                                                               \
  do {                                                                         \
    CUresult cuResult = (call);                                                \
    ASSERT_EQ(cuResult, CUDA_SUCCESS)                                          \
        << #call << ": " << gDriver->describe(cuResult);                       \
  } while (0)

struct DeviceBuffer {
  CUdeviceptr ptr = 0;
  size_t bytes = 0;
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) : bytes(n) {
    if (n && gDriver->cuMemAlloc(&ptr, n) != CUDA_SUCCESS)
      ptr = 0;
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  DeviceBuffer(DeviceBuffer &&o) noexcept : ptr(o.ptr), bytes(o.bytes) {
    o.ptr = 0;
  }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    std::swap(ptr, o.ptr);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~DeviceBuffer() {
    if (ptr)
      gDriver->cuMemFree(ptr);
  }
  void *get() const { return reinterpret_cast<void *>(ptr); }
};

template <typename T> DeviceBuffer upload(const std::vector<T> &v) {
  DeviceBuffer b(std::max<size_t>(v.size() * sizeof(T), 4));
  if (!v.empty())
    gDriver->cuMemcpyHtoD(b.ptr, v.data(), v.size() * sizeof(T));
  return b;
}

template <typename T> std::vector<T> download(const DeviceBuffer &b, size_t n) {
  std::vector<T> v(n);
  if (n)
    gDriver->cuMemcpyDtoH(v.data(), b.ptr, n * sizeof(T));
  return v;
}

} // namespace moelora::gputest

#endif // MOELORA_TEST_GPU_GPUTESTUTIL_H
