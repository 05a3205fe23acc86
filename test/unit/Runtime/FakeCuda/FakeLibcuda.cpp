//===- FakeLibcuda.cpp - A driver library without a usable device ---------===//
//
// Built as libmoelora_fake_cuda.so with the soname libcuda.so.1 and never
// linked: a death test's child dlopen()s it by path, after which the
// runtime's dlopen("libcuda.so.1") finds it. MOELORA_FAKE_CUDA_MODE picks the
// machine it plays:
//   init-no-device  cuInit fails with CUDA_ERROR_NO_DEVICE (a driver, no
//                   visible GPU: CUDA_VISIBLE_DEVICES="", containers)
//   zero-devices    cuInit succeeds, cuDeviceGetCount reports 0
//   host-memory     one device (sm_90, 132 SMs, "Fake GPU") whose "device
//                   memory" is host memory: cuMemsetD8/D32Async write
//                   through the pointer at once; every other call (module
//                   loads, launches) fails with CUDA_ERROR_NOT_SUPPORTED,
//                   so a test sees what the runtime writes without kernels
// With host-memory, MOELORA_FAKE_ACTIVE_CLUSTERS=n also loads modules (any
// text), finds their functions, takes attributes, and answers
// cuOccupancyMaxActiveClusters with n for a grid of one cluster (else
// CUDA_ERROR_INVALID_VALUE): a GPU whose GPCs do or do not fit 16 blocks;
// and cuOccupancyMaxActiveBlocksPerMultiprocessor with
// MOELORA_FAKE_BLOCKS_PER_SM (unset: not supported).
// host-memory's cuTensorMapEncodeTiled writes its arguments into the map's
// 128 bytes (16 uint64: type, rank, address, dims[4], strides[3], box[4],
// swizzle, oob fill), so a test can read back what the runtime asked for.
//
//===----------------------------------------------------------------------===//

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

constexpr int kSuccess = 0;
constexpr int kInvalidValue = 1;   // CUDA_ERROR_INVALID_VALUE
constexpr int kNoDevice = 100;     // CUDA_ERROR_NO_DEVICE
constexpr int kNotSupported = 801; // CUDA_ERROR_NOT_SUPPORTED

bool mode(const char *m) {
  const char *v = std::getenv("MOELORA_FAKE_CUDA_MODE");
  return v && std::strcmp(v, m) == 0;
}

int fakeInit(unsigned) { return mode("init-no-device") ? kNoDevice : kSuccess; }

int fakeDeviceGetCount(int *count) {
  *count = mode("host-memory") ? 1 : 0;
  return kSuccess;
}

// host-memory: one device and one context, both fake handles.
int fakeDeviceGet(int *dev, int) {
  *dev = 0;
  return kSuccess;
}

void *currentContext = nullptr;
char primaryContext; // its address is the handle

int fakePrimaryCtxRetain(void **ctx, int) {
  *ctx = &primaryContext;
  return kSuccess;
}

int fakeCtxGetCurrent(void **ctx) {
  *ctx = currentContext;
  return kSuccess;
}

int fakeCtxSetCurrent(void *ctx) {
  currentContext = ctx;
  return kSuccess;
}

int fakeCtxGetDevice(int *dev) {
  *dev = 0;
  return kSuccess;
}

int fakeDeviceGetAttribute(int *value, int attribute, int) {
  switch (attribute) {
  case 75: // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
    *value = 9;
    break;
  case 76: // ..._MINOR
    *value = 0;
    break;
  case 16: // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
    *value = 132;
    break;
  default:
    *value = 0;
  }
  return kSuccess;
}

int fakeDeviceGetName(char *name, int len, int) {
  std::strncpy(name, "Fake GPU", size_t(len));
  if (len > 0)
    name[len - 1] = 0;
  return kSuccess;
}

int fakeMemsetD8Async(uintptr_t dst, unsigned char value, size_t n, void *) {
  std::memset(reinterpret_cast<void *>(dst), value, n);
  return kSuccess;
}

int fakeMemsetD32Async(uintptr_t dst, unsigned value, size_t n, void *) {
  auto *p = reinterpret_cast<uint32_t *>(dst);
  for (size_t i = 0; i < n; ++i)
    p[i] = value;
  return kSuccess;
}

int fakeGetErrorName(int r, const char **s) {
  *s = r == kNoDevice       ? "CUDA_ERROR_NO_DEVICE"
       : r == kInvalidValue ? "CUDA_ERROR_INVALID_VALUE"
                            : "CUDA_ERROR_NOT_SUPPORTED";
  return kSuccess;
}

int fakeGetErrorString(int r, const char **s) {
  *s = r == kNoDevice       ? "no CUDA-capable device is detected"
       : r == kInvalidValue ? "invalid argument"
                            : "operation not supported";
  return kSuccess;
}

int fakeUnsupported() { return kNotSupported; }

const char *activeClusters() {
  return std::getenv("MOELORA_FAKE_ACTIVE_CLUSTERS");
}

char fakeModule, fakeFunction; // their addresses are the handles

int fakeModuleLoadDataEx(void **module, const void *, unsigned, void *,
                         void **) {
  *module = &fakeModule;
  return kSuccess;
}

int fakeModuleGetFunction(void **fn, void *, const char *) {
  *fn = &fakeFunction;
  return kSuccess;
}

int fakeSucceed() { return kSuccess; }

int fakeTensorMapEncodeTiled(uint64_t *map, int type, unsigned rank,
                             void *address, const uint64_t *dims,
                             const uint64_t *strides, const unsigned *box,
                             const unsigned *, int, int swizzle, int,
                             int oobFill) {
  if (rank != 4)
    return kInvalidValue;
  uint64_t v[16] = {uint64_t(type), rank, reinterpret_cast<uint64_t>(address)};
  for (int i = 0; i < 4; ++i) {
    v[3 + i] = dims[i];
    v[10 + i] = box[i];
  }
  for (int i = 0; i < 3; ++i)
    v[7 + i] = strides[i];
  v[14] = uint64_t(swizzle);
  v[15] = uint64_t(oobFill);
  std::memcpy(map, v, sizeof(v));
  return kSuccess;
}

// The leading fields of CUlaunchConfig (cuda.h): grid, then block dims.
struct FakeLaunchConfig {
  unsigned gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ;
};

int fakeOccupancyMaxActiveClusters(int *n, void *, const FakeLaunchConfig *c) {
  // A grid of one cluster: 2, 4, 8 or 16 blocks.
  const unsigned x = c->gridDimX;
  if (x < 2 || x > 16 || (x & (x - 1)) != 0 || c->gridDimY != 1 ||
      c->blockDimX == 0)
    return kInvalidValue;
  *n = std::atoi(activeClusters());
  return kSuccess;
}

int fakeOccupancyMaxActiveBlocksPerMultiprocessor(int *n, void *, int blockSize,
                                                  size_t) {
  const char *v = std::getenv("MOELORA_FAKE_BLOCKS_PER_SM");
  if (!v)
    return kNotSupported;
  if (blockSize <= 0)
    return kInvalidValue;
  *n = std::atoi(v);
  return kSuccess;
}

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
  else if (!mode("host-memory"))
    *fn = reinterpret_cast<void *>(&fakeUnsupported);
  else if (std::strcmp(symbol, "cuDeviceGet") == 0)
    *fn = reinterpret_cast<void *>(&fakeDeviceGet);
  else if (std::strcmp(symbol, "cuDevicePrimaryCtxRetain") == 0)
    *fn = reinterpret_cast<void *>(&fakePrimaryCtxRetain);
  else if (std::strcmp(symbol, "cuCtxGetCurrent") == 0)
    *fn = reinterpret_cast<void *>(&fakeCtxGetCurrent);
  else if (std::strcmp(symbol, "cuCtxSetCurrent") == 0)
    *fn = reinterpret_cast<void *>(&fakeCtxSetCurrent);
  else if (std::strcmp(symbol, "cuCtxGetDevice") == 0)
    *fn = reinterpret_cast<void *>(&fakeCtxGetDevice);
  else if (std::strcmp(symbol, "cuDeviceGetAttribute") == 0)
    *fn = reinterpret_cast<void *>(&fakeDeviceGetAttribute);
  else if (std::strcmp(symbol, "cuDeviceGetName") == 0)
    *fn = reinterpret_cast<void *>(&fakeDeviceGetName);
  else if (std::strcmp(symbol, "cuMemsetD8Async") == 0)
    *fn = reinterpret_cast<void *>(&fakeMemsetD8Async);
  else if (std::strcmp(symbol, "cuMemsetD32Async") == 0)
    *fn = reinterpret_cast<void *>(&fakeMemsetD32Async);
  else if (std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0)
    *fn = reinterpret_cast<void *>(&fakeTensorMapEncodeTiled);
  else if (!activeClusters())
    *fn = reinterpret_cast<void *>(&fakeUnsupported);
  else if (std::strcmp(symbol, "cuModuleLoadDataEx") == 0)
    *fn = reinterpret_cast<void *>(&fakeModuleLoadDataEx);
  else if (std::strcmp(symbol, "cuModuleGetFunction") == 0)
    *fn = reinterpret_cast<void *>(&fakeModuleGetFunction);
  else if (std::strcmp(symbol, "cuFuncSetAttribute") == 0 ||
           std::strcmp(symbol, "cuModuleUnload") == 0)
    *fn = reinterpret_cast<void *>(&fakeSucceed);
  else if (std::strcmp(symbol, "cuOccupancyMaxActiveClusters") == 0)
    *fn = reinterpret_cast<void *>(&fakeOccupancyMaxActiveClusters);
  else if (std::strcmp(symbol, "cuOccupancyMaxActiveBlocksPerMultiprocessor") ==
           0)
    *fn = reinterpret_cast<void *>(
        &fakeOccupancyMaxActiveBlocksPerMultiprocessor);
  else
    *fn = reinterpret_cast<void *>(&fakeUnsupported);
  return kSuccess;
}
