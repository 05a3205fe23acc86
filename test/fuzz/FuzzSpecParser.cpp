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

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

using namespace moelora;

namespace {

/// The parser's bounds (lib/Spec/SpecParser.cpp): sweep points per entry
/// and per file. Findings F1 and F2 of test/fuzz/RESULTS.md, fixed: a
/// 365-byte sweep of 35 million points and three bytes on which yaml-cpp's
/// LoadAll never returned are now errors.
constexpr uint64_t kMaxEntryPoints = 100000;
constexpr uint64_t kMaxFilePoints = 1000000;
/// Sweeps the parser accepts cost about 200 us a point here (sanitizers,
/// coverage, and this harness's checks of every spec): a fuzzer input
/// expanding to more than this many is skipped as slow (and not kept in
/// the corpus), not as a finding.
constexpr uint64_t kSlowPoints = 256;

uint64_t saturatingMul(uint64_t a, uint64_t b) {
  uint64_t p;
  return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

/// The parser's count of an entry's points: its lists over those of
/// `defaults:` (the entry's own key wins), and a rank inherited by an
/// entry of align_block_size kernels only does not count.
uint64_t entryPoints(const YAML::Node &entry, const YAML::Node &defaults) {
  std::map<std::string, uint64_t> sizes;
  auto collect = [&](const YAML::Node &map) {
    if (!map.IsMap())
      return;
    for (const auto &kv : map)
      if (kv.first.IsScalar())
        sizes[kv.first.Scalar()] =
            kv.second.IsSequence() ? std::max<size_t>(kv.second.size(), 1) : 1;
  };
  collect(defaults);
  bool ownRank = false;
  if (entry.IsMap())
    for (const auto &kv : entry)
      ownRank |= kv.first.IsScalar() && kv.first.Scalar() == "rank";
  collect(entry);
  if (!ownRank) {
    bool alignOnly = false;
    YAML::Node kernel = entry.IsMap() ? entry["kernel"] : YAML::Node();
    if (!kernel && defaults.IsMap())
      kernel = defaults["kernel"];
    if (kernel && kernel.IsScalar())
      alignOnly = kernel.Scalar() == "align_block_size";
    else if (kernel && kernel.IsSequence() && kernel.size() > 0) {
      alignOnly = true;
      for (const YAML::Node &k : kernel)
        alignOnly &= k.IsScalar() && k.Scalar() == "align_block_size";
    }
    if (alignOnly)
      sizes.erase("rank");
  }
  uint64_t points = 1;
  for (const auto &[name, n] : sizes)
    points = saturatingMul(points, n);
  return points;
}

/// Whether the parser would accept the sweep sizes of `text` and expand
/// more than kSlowPoints points (inputs beyond the bounds are not slow:
/// the parser refuses them before expanding anything).
bool slowSweep(const std::string &text) {
  try {
    YAML::Node root = YAML::Load(text);
    if (!root.IsMap())
      return false;
    const YAML::Node kernels = root["kernels"];
    if (!kernels || !kernels.IsSequence()) {
      uint64_t p = entryPoints(root, YAML::Node());
      return p > kSlowPoints && p <= kMaxEntryPoints;
    }
    const YAML::Node defaults = root["defaults"];
    uint64_t total = 0;
    for (const YAML::Node &entry : kernels) {
      uint64_t p = entryPoints(entry, defaults);
      if (p > kMaxEntryPoints)
        return false;
      total += p;
      if (total > kMaxFilePoints)
        return false;
    }
    return total > kSlowPoints;
  } catch (const std::exception &) {
    return false; // the parser reports it
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  // Slow but valid sweeps (above): skipped, and not kept in the corpus.
  if (slowSweep(text))
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
  FUZZ_CHECK(set->specs.size() + set->rejected.size() <= kMaxFilePoints,
             "more sweep points than the parser's bound");
  return 0;
}
