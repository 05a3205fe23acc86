//===- JitHook.cpp - In-process generation for the module cache -----------===//
//
// Registers the generator as the module cache's JIT hook at load time. This
// file is the only place where the runtime meets lib/Codegen.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/Generator.h"
#include "moelora/Runtime/Jit.h"
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

/// libmoelora.so links this object whole: loading the library is enough.
struct Registrar {
  Registrar() { installJitHook(); }
} registrar;

} // namespace

void installJitHook() { setJitHook(generateImage); }

} // namespace moelora
