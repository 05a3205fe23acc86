//===- SpecParser.h - YAML tiling specs -> validated KernelSpecs -*- C++
//-*-===//
//
// A spec file holds one document with a `kernels:` list (or a single mapping).
// Every field may be a scalar or a list; lists make the entry a sweep that is
// expanded as a cartesian product. Combinations that break a cross-field rule
// are returned as RejectedSpec (with the reason), never silently dropped.
// An entry may sweep at most 100000 points and a file 1000000 in all; more
// is an error naming the entry, reported before anything is expanded.
// The schema is documented in specs/README.md.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SPEC_SPECPARSER_H
#define MOELORA_SPEC_SPECPARSER_H

#include "moelora/Spec/KernelSpec.h"
#include "moelora/Spec/SpecValidation.h"
#include "moelora/Support/Error.h"

#include <string>
#include <vector>

namespace moelora {

struct RejectedSpec {
  KernelSpec spec;    ///< the combination that was rejected
  std::string reason; ///< names the field(s) and the allowed values
};

struct SpecSet {
  std::vector<KernelSpec> specs;
  std::vector<RejectedSpec> rejected;
};

/// Parses YAML text. `fileName` is used in messages ("file:line:col: ...").
/// A malformed document or a field error fails the whole parse: nothing is
/// returned. Cross-field violations of one sweep point go to `rejected`.
Expected<SpecSet> parseSpecText(const std::string &text,
                                const std::string &fileName);
/// Reads and parses one file.
Expected<SpecSet> parseSpecFile(const std::string &path);
/// Every *.yaml / *.yml under the paths (files or directories, recursively,
/// sorted by path), merged; duplicate cache keys are kept once.
Expected<SpecSet> parseSpecPaths(const std::vector<std::string> &paths);

} // namespace moelora

#endif // MOELORA_SPEC_SPECPARSER_H
