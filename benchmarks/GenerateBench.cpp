//===- GenerateBench.cpp - Spec -> PTX generation time --------------------===//
//
// Time to generate one kernel in memory (build MLIR, lower, LLVM O3, NVPTX),
// warm (the per-thread MLIR context already exists), for default specs.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/Generator.h"

#include <benchmark/benchmark.h>

using namespace moelora;

static KernelSpec defaultSpec(KernelFamily family, int rank, bool sorted) {
  KernelSpec s;
  s.family = family;
  s.dtype = DType::BF16;
  s.sm = 90;
  s.rank = rank;
  s.k = 2048;
  s.sorted = sorted;
  s.numSlices = 2;
  s.blockM = sorted ? 64 : 16;
  s.blockN = 64;
  s.blockK = sorted ? 64 : 128;
  s.numWarps = 4;
  s.numStages = 3;
  if (family == KernelFamily::SmallBatch) {
    s.blockK = 256;
    s.numStages = 1;
  }
  return s;
}

static void generate(benchmark::State &state, KernelFamily family,
                     bool sorted) {
  KernelSpec spec = defaultSpec(family, int(state.range(0)), sorted);
  double build = 0, lower = 0, emit = 0;
  for (auto _ : state) {
    auto g = generateKernel(spec);
    if (!g) {
      state.SkipWithError(g.error().message.c_str());
      return;
    }
    build += g->buildMs;
    lower += g->lowerMs;
    emit += g->emitMs;
    benchmark::DoNotOptimize(g->ptx.data());
  }
  double n = double(state.iterations());
  state.counters["build_ms"] = build / n;
  state.counters["mlir_lower_ms"] = lower / n;
  state.counters["llvm_ptx_ms"] = emit / n;
}

BENCHMARK_CAPTURE(generate, one_shot_naive, KernelFamily::OneShot, false)
    ->Arg(16)
    ->Arg(64)
    ->Arg(128)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate, one_shot_sorted, KernelFamily::OneShot, true)
    ->Arg(16)
    ->Arg(64)
    ->Arg(128)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(generate, small_batch, KernelFamily::SmallBatch, false)
    ->Arg(16)
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
