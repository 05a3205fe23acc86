//===- Jit.h - Enable in-process generation in the runtime ------*- C++ -*-===//
//
// Part of the moelora_jit adapter (links lib/Codegen). Calling it makes the
// module cache generate missing variants in-process; libmoelora.so does this
// when it is loaded.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_RUNTIME_JIT_H
#define MOELORA_RUNTIME_JIT_H

namespace moelora {
void installJitHook();
} // namespace moelora

#endif // MOELORA_RUNTIME_JIT_H
