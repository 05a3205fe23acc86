//===- TileBytes.h - Shared-memory sizes both sides must agree on -*- C++
//-*-===//
//
// Pure arithmetic on a KernelSpec, without LLVM: the generator lays out its
// shared tiles with these, and the runtime's dispatcher (which has no
// generator) checks a plan against the device's limit with the same numbers.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SPEC_TILEBYTES_H
#define MOELORA_SPEC_TILEBYTES_H

#include "moelora/Spec/KernelSpec.h"

namespace moelora {

/// Bytes of one element of T (bf16 / fp16).
inline constexpr int kElementBytes = 2;

/// Row pitch (elements) of a shared tile of `cols` columns: 8 elements of
/// padding put ldmatrix rows of consecutive tile rows in different banks.
inline int paddedPitch(int cols) { return cols + 8; }

/// Bytes of a staged output tile (rows x cols of T).
inline int stagedOutputBytes(int rows, int cols) {
  return rows * paddedPitch(cols) * kElementBytes;
}

/// The most dynamic shared memory one block may opt into on sm_<sm>.
int maxDynamicSharedBytes(int sm);

/// One stage of the expand loop (one-shot and two-kernel expand): a
/// BLOCK_N x BLOCK_R tile of B, then (aligned output) the staged output.
int expandStageBytes(const KernelSpec &spec);

/// The two-kernel expand's dynamic shared memory: its BLOCK_M x BLOCK_R rows
/// of the intermediate, then (reusing them) num_stages expand stages.
int expandKernelSharedBytes(const KernelSpec &spec);

} // namespace moelora

#endif // MOELORA_SPEC_TILEBYTES_H
