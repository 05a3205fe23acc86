#include "moelora/Codegen/Generator.h"
#include <cstdio>
#include <cstdlib>
using namespace moelora;
int main(int argc, char **argv) {
  KernelSpec s;
  s.family = KernelFamily::OneShot;
  s.rank = argc > 1 ? atoi(argv[1]) : 16;
  s.k = 2048;
  s.blockM = argc > 2 ? atoi(argv[2]) : 16;
  s.blockN = 64; s.blockK = 128; s.numSlices = 2; s.sorted = s.blockM > 16;
  GenerateOptions o; o.dumpIR = getenv("DUMP");
  auto g = generateKernel(s, o);
  if (!g) { fprintf(stderr, "%s\n", g.error().message.c_str()); return 1; }
  for (auto &d : g->dumps) fprintf(stderr, "=== %s\n%s\n", d.first.c_str(), d.second.c_str());
  printf("%s", g->ptx.c_str());
  fprintf(stderr, "smem %d build %.1f lower %.1f emit %.1f\n", g->sharedBytes, g->buildMs, g->lowerMs, g->emitMs);
}
