//===- FakeLibcuda.cpp - A driver library without a usable device ---------===//
//
// Built as libmoelora_fake_cuda.so with the soname libcuda.so.1 and never
// linked: a death test's child dlopen()s it by path, after which the
// runtime's dlopen("libcuda.so.1") finds it. MOELORA_FAKE_CUDA_MODE picks the
// machine it plays:
//   init-no-device  cuInit fails with CUDA_ERROR_NO_DEVICE (a driver, no
//                   visible GPU: CUDA_VISIBLE_DEVICES="", containers)
//   zero-devices    cuInit succeeds, cuDeviceGetCount reports 0
//
//===----------------------------------------------------------------------===//

#include <cstdlib>
#include <cstring>

namespace {

constexpr int kSuccess = 0;
constexpr int kNoDevice = 100;     // CUDA_ERROR_NO_DEVICE
constexpr int kNotSupported = 801; // CUDA_ERROR_NOT_SUPPORTED

bool mode(const char *m) {
  const char *v = std::getenv("MOELORA_FAKE_CUDA_MODE");
  return v && std::strcmp(v, m) == 0;
}

int fakeInit(unsigned) { return mode("init-no-device") ? kNoDevice : kSuccess; }

int fakeDeviceGetCount(int *count) {
  *count = 0;
  return kSuccess;
}

int fakeGetErrorName(int r, const char **s) {
  *s = r == kNoDevice ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_NOT_SUPPORTED";
  return kSuccess;
}

int fakeGetErrorString(int r, const char **s) {
  *s = r == kNoDevice ? "no CUDA-capable device is detected"
                      : "operation not supported";
  return kSuccess;
}

int fakeUnsupported() { return kNotSupported; }

} // namespace

extern "C" __attribute__((visibility("default"))) int
cuGetProcAddress_v2(const char *symbol, void **fn, int, unsigned long long,
                    int *status) {
  if (status)
    *status = 0; // CU_GET_PROC_ADDRESS_SUCCESS
  if (std::strcmp(symbol, "cuInit") == 0)
    *fn = reinterpret_cast<void *>(&fakeInit);
  else if (std::strcmp(symbol, "cuDeviceGetCount") == 0)
    *fn = reinterpret_cast<void *>(&fakeDeviceGetCount);
  else if (std::strcmp(symbol, "cuGetErrorName") == 0)
    *fn = reinterpret_cast<void *>(&fakeGetErrorName);
  else if (std::strcmp(symbol, "cuGetErrorString") == 0)
    *fn = reinterpret_cast<void *>(&fakeGetErrorString);
  else
    *fn = reinterpret_cast<void *>(&fakeUnsupported);
  return kSuccess;
}
