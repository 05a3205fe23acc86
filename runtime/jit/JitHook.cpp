//===- JitHook.cpp - In-process generation for the module cache -----------===//
//
// Registers the generator as the module cache's JIT hook at load time. This
// file is the only place where the runtime meets lib/Codegen.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/Generator.h"
#include "moelora/Runtime/ModuleCache.h"

namespace moelora {
namespace {

Expected<KernelImage> generateImage(const KernelSpec &spec) {
  auto g = generateKernel(spec);
  if (!g)
    return g.error();
  KernelImage image;
  image.spec = spec;
  image.ptx = std::move(g->ptx);
  image.sharedBytes = g->sharedBytes;
  image.threads = g->threads;
  image.contentHash = contentHash(image.ptx);
  return image;
}

struct Registrar {
  Registrar() { setJitHook(generateImage); }
} registrar;

} // namespace

} // namespace moelora
