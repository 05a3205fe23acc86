//===- FuzzSpecParser.cpp - libFuzzer target: YAML tiling specs -----------===//
//
// parseSpecText over arbitrary text: single specs, `kernels:` lists,
// `defaults:` and sweeps. Any input must come back as specs or a located
// error; a crash, a sanitizer report, a hang or an exception escaping the
// parser is a finding. Every accepted spec must pass validateSpec and have
// a cache key; every rejected one must say why.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "moelora/Spec/SpecParser.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

using namespace moelora;

namespace {

/// Sweep points an input asks for (the product of its list lengths per
/// entry, `defaults:` included), saturating at `cap`. Finding F1 of
/// test/fuzz/RESULTS.md: parseSpecText expands any product, so a 365-byte
/// spec asks for 35 million specs (minutes, tens of GB). Until the parser
/// bounds sweeps, inputs above the cap are skipped here, so that the fuzzer
/// looks for other findings instead of rediscovering this one.
long sweepPoints(const std::string &text, long cap) {
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap())
      return 1;
    auto lists = [&](const YAML::Node &map, long points) {
      if (map.IsMap())
        for (const auto &kv : map)
          if (kv.second.IsSequence() && kv.second.size() > 0)
            points = std::min(cap, points * long(kv.second.size()));
      return points;
    };
    const YAML::Node kernels = root["kernels"];
    if (!kernels || !kernels.IsSequence())
      return lists(root, 1);
    const long fromDefaults = lists(root["defaults"], 1);
    long total = 0;
    for (const YAML::Node &entry : kernels)
      total = std::min(cap, total + lists(entry, fromDefaults));
    return total;
  } catch (const std::exception &) {
    return 1; // the parser reports it
  }
}

constexpr long kMaxSweepPoints = 256;

/// Finding F2 of test/fuzz/RESULTS.md: yaml-cpp 0.7's YAML::LoadAll, which
/// parseSpecText calls, never returns on some malformed inputs (223 bytes
/// take all memory): its parser keeps reporting empty documents (yaml-cpp
/// PR #1319, after 0.8). Counting documents with a parser that stops early
/// finds them; they are skipped until the parser stops using LoadAll.
class IgnoreEvents : public YAML::EventHandler {
public:
  void OnDocumentStart(const YAML::Mark &) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark &, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark &, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark &, const std::string &, YAML::anchor_t,
                const std::string &) override {}
  void OnSequenceStart(const YAML::Mark &, const std::string &, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark &, const std::string &, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

bool loadAllNeverReturns(const std::string &text) {
  constexpr int kManyDocuments = 64; // far more than any input this size
  try {
    std::istringstream in(text);
    YAML::Parser parser(in);
    IgnoreEvents events;
    int docs = 0;
    while (docs < kManyDocuments && parser.HandleNextDocument(events))
      ++docs;
    return docs == kManyDocuments;
  } catch (const std::exception &) {
    return false; // LoadAll throws too: the parser reports it
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  // Known findings (above): skipped, and not kept in the corpus.
  if (loadAllNeverReturns(text) ||
      sweepPoints(text, kMaxSweepPoints + 1) > kMaxSweepPoints)
    return -1;
  Expected<SpecSet> set = parseSpecText(text, "fuzz.yaml");
  if (!set) {
    const std::string &m = set.error().message;
    FUZZ_CHECK(!m.empty(), "an error without a message");
    return 0;
  }
  for (const KernelSpec &s : set->specs) {
    FUZZ_CHECK(validateSpec(s).empty(), "an accepted spec fails validation");
    FUZZ_CHECK(!s.cacheKey().empty(), "an accepted spec without a cache key");
    FUZZ_CHECK(!s.entryName().empty(), "an accepted spec without an entry");
  }
  for (const RejectedSpec &r : set->rejected)
    FUZZ_CHECK(!r.reason.empty(), "a rejected spec without a reason");
  return 0;
}
