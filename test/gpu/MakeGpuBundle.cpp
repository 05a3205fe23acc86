//===- MakeGpuBundle.cpp - PTX for the GPU suite, generated here ----------===//
//
// Usage: make-gpu-bundle <outdir>. Writes <entry>.ptx and <entry>.smem (the
// dynamic shared memory bytes) for every kernel the GPU cases use.
//
//===----------------------------------------------------------------------===//

#include "GpuCases.h"
#include "moelora/Codegen/Generator.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <utility>

using namespace moelora;

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <outdir>\n", argv[0]);
    return 2;
  }
  std::filesystem::path out(argv[1]);
  std::filesystem::create_directories(out);
  std::set<std::string> done;
  int count = 0;
  for (const auto &c : gputest::gpuCases()) {
    // Cases with a same-bits choice also run their kernel without it, to
    // compare bits (GpuCorrectnessTest).
    const std::optional<KernelSpec> plain = gputest::sameBitsSibling(c.spec);
    for (const KernelSpec *s : {&c.spec, c.expand ? &*c.expand : nullptr,
                                plain ? &std::as_const(*plain) : nullptr}) {
      if (!s || !done.insert(s->entryName()).second)
        continue;
      auto g = generateKernel(*s);
      if (!g) {
        std::fprintf(stderr, "error: %s\n", g.error().message.c_str());
        return 1;
      }
      std::ofstream(out / (g->entryName + ".ptx")) << g->ptx;
      std::ofstream(out / (g->entryName + ".smem")) << g->sharedBytes;
      ++count;
    }
  }
  for (const KernelSpec &s : gputest::alignSpecs()) {
    auto g = generateKernel(s);
    if (!g) {
      std::fprintf(stderr, "error: %s\n", g.error().message.c_str());
      return 1;
    }
    std::ofstream(out / (g->entryName + ".ptx")) << g->ptx;
    std::ofstream(out / (g->entryName + ".smem")) << g->sharedBytes;
    ++count;
  }
  std::printf("%d kernels in %s\n", count, out.c_str());
  return 0;
}
