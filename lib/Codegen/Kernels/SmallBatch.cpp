#include "moelora/Codegen/KernelBuilder.h"
namespace moelora {
int smallBatchSharedBytes(const KernelSpec &) { return 0; }
void buildSmallBatchKernel(TileBuilder &, const KernelArgs &) {}
}
