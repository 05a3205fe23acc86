//===- GpuMain.cpp - GPU suites' main: make the primary context current ---===//

#include "GpuTestUtil.h"

using namespace moelora;
using namespace moelora::gputest;

namespace {
class GpuEnvironment : public ::testing::Environment {
public:
  void SetUp() override {
    auto drv = CudaDriver::get();
    if (!drv) {
      gSkipReason = drv.error().message;
      return;
    }
    CUdevice dev;
    CUcontext ctx;
    if ((*drv)->cuDeviceGet(&dev, 0) != CUDA_SUCCESS ||
        (*drv)->cuDevicePrimaryCtxRetain(&ctx, dev) != CUDA_SUCCESS ||
        (*drv)->cuCtxSetCurrent(ctx) != CUDA_SUCCESS) {
      gSkipReason = "cannot make the primary context current";
      return;
    }
    gDriver = *drv;
  }
};
} // namespace

int main(int argc, char **argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new GpuEnvironment);
  return RUN_ALL_TESTS();
}
