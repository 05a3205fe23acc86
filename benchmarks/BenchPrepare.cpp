//===- BenchPrepare.cpp - Warm the benchmark's disk cache (host) ----------===//
//
// Usage: moelora-bench-prepare <cache dir> [--fp16] [--tuned-table F|none].
// Generates (JIT, no GPU needed) every variant the dispatcher picks for the
// benchmark's cases, plus the align kernel, into a disk cache that
// moelora-bench then reads.
//
//===----------------------------------------------------------------------===//

#include "BenchCases.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>

using namespace moelora::bench;

int main(int argc, char **argv) {
  std::string cacheDir;
  bool fp16 = false;
  std::string tunedTable;
  CLI::App app{"moelora-bench-prepare: generate every variant moelora-bench "
               "dispatches to into a disk cache"};
  app.add_option("cache_dir", cacheDir, "disk cache to fill")->required();
  app.add_flag("--fp16", fp16, "the fp16 cases instead of bf16");
  app.add_option("--tuned-table", tunedTable,
                 "tuned table JSON, or 'none' for vLLM's rules (default: the "
                 "committed table for $MOELORA_TARGET_GPU)");
  CLI11_PARSE(app, argc, argv);
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  if (!tunedTable.empty())
    o.tuned_table_path = tunedTable == "none" ? "" : tunedTable.c_str();
  o.cache_dir = cacheDir.c_str();
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(&o, &rt) != MOELORA_OK) {
    std::fprintf(stderr, "error: %s\n", moelora_last_error());
    return 1;
  }
  std::vector<moelora_fused_args> calls;
  for (const BenchCase &c : benchCases(fp16))
    calls.push_back(benchShapeArgs(c));
  int rc = 0;
  if (moelora_warmup(rt, calls.data(), int32_t(calls.size())) != MOELORA_OK) {
    std::fprintf(stderr, "error: %s\n", moelora_last_error());
    rc = 1;
  }
  moelora_stats s;
  moelora_get_stats(rt, &s);
  std::printf("%zu calls: %llu variants generated in %.0f ms\n", calls.size(),
              (unsigned long long)s.jit_generations, s.jit_ms_total);
  moelora_runtime_destroy(rt);
  return rc;
}
