//===- PrepareCApiCache.cpp - Warm a disk cache for the C ABI suite -------===//
//
// Usage: prepare-capi-cache <cache dir>. Runs moelora_warmup (JIT, no GPU
// needed) for every call of CApiCases.h, so the suite on a machine without
// LLVM finds every variant the dispatcher picks in the disk cache.
//
//===----------------------------------------------------------------------===//

#include "CApiCases.h"

#include <cstdio>

using namespace moelora::gputest;

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <cache dir>\n", argv[0]);
    return 2;
  }
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  o.cache_dir = argv[1];
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(&o, &rt) != MOELORA_OK) {
    std::fprintf(stderr, "error: %s\n", moelora_last_error());
    return 1;
  }
  std::vector<moelora_fused_args> calls;
  for (const CApiCase &c : capiCases())
    calls.push_back(shapeArgs(c));
  int rc = 0;
  if (moelora_warmup(rt, calls.data(), int32_t(calls.size())) != MOELORA_OK) {
    std::fprintf(stderr, "error: %s\n", moelora_last_error());
    rc = 1;
  }
  moelora_stats s;
  moelora_get_stats(rt, &s);
  std::printf("warm-up: %llu kernels generated in %.0f ms, %llu from disk\n",
              (unsigned long long)s.jit_generations, s.jit_ms_total,
              (unsigned long long)s.disk_hits);
  moelora_runtime_destroy(rt);
  return rc;
}
