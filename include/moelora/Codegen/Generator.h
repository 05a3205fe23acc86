//===- Generator.h - KernelSpec -> PTX, in process --------------*- C++ -*-===//
//
// The code generator's entry point: a spec becomes an MLIR module (built by
// the family's kernel builder on the shared tile layer), is lowered by MLIR
// passes to the LLVM dialect, translated to LLVM IR and emitted as PTX by
// LLVM's NVPTX backend. Thread-safe: each thread uses its own MLIRContext.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_CODEGEN_GENERATOR_H
#define MOELORA_CODEGEN_GENERATOR_H

#include "moelora/Spec/KernelAbi.h"
#include "moelora/Spec/KernelSpec.h"
#include "moelora/Spec/TileBytes.h"
#include "moelora/Support/Error.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moelora {

struct GenerateOptions {
  /// PTX ISA version as major*10+minor (e.g. 80 for 8.0); 0 = LLVM's default
  /// for the target.
  int ptxVersion = 0;
  /// Keep the IR after each stage in GeneratedKernel::dumps.
  bool dumpIR = false;
};

struct GeneratedKernel {
  std::string entryName;
  std::string ptx;
  int threads = 0;     ///< threads per block
  int sharedBytes = 0; ///< dynamic shared memory per block
  int ptxVersion = 0;  ///< as major*10+minor
  double buildMs = 0, lowerMs = 0, emitMs = 0; ///< generation time by stage
  /// (stage name, text) when GenerateOptions::dumpIR.
  std::vector<std::pair<std::string, std::string>> dumps;
  double totalMs() const { return buildMs + lowerMs + emitMs; }
};

/// Dynamic shared memory a variant needs (also in the metadata), in bytes.
int sharedMemoryBytes(const KernelSpec &spec);

/// Whether LLVM's NVPTX backend can emit PTX ISA `ptxVersion`
/// (major*10+minor) for the PTX `target` (KernelSpec::ptxTarget(): sm_80,
/// sm_90a, ...); the error lists the versions it knows.
/// generateKernel checks its option with it: LLVM itself only warns about an
/// unknown version, and aborts on one too old for the target.
Status checkPtxVersion(int ptxVersion, std::string_view target);

/// Generates PTX for one spec. Errors name the spec's cache key.
Expected<GeneratedKernel> generateKernel(const KernelSpec &spec,
                                         const GenerateOptions &options = {});

} // namespace moelora

#endif // MOELORA_CODEGEN_GENERATOR_H
