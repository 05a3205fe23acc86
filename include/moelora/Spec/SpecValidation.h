//===- SpecValidation.h - Cross-field rules of one KernelSpec ---*- C++ -*-===//
//
// The rules every generated variant obeys, whichever way its spec was made
// (a YAML file, the dispatcher, the tuner). No YAML here.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SPEC_SPECVALIDATION_H
#define MOELORA_SPEC_SPECVALIDATION_H

#include "moelora/Spec/KernelSpec.h"

#include <string>

namespace moelora {

/// Cross-field rules of one spec (power-of-two blocks >= 16, rank limits per
/// family, split-K only for shrink, ...). Empty string when valid; else the
/// reason, naming the field and the allowed values.
std::string validateSpec(const KernelSpec &spec);

} // namespace moelora

#endif // MOELORA_SPEC_SPECVALIDATION_H
