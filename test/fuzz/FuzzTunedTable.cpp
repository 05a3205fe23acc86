//===- FuzzTunedTable.cpp - libFuzzer target: tuned tables ----------------===//
//
// TunedTable::parse over arbitrary text, then what the dispatcher and
// moelora-tune do with a table: find() for every entry's own shape, and
// mergeTunedTables. An input may hold two tables separated by a line
// "--8<--" (base, then update for the merge). Any input must come back as a
// table or an error naming its origin; a crash, a sanitizer report, a hang
// or an escaping exception is a finding.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "moelora/Runtime/TunedTable.h"

#include <cstddef>
#include <cstdint>
#include <string>

using namespace moelora;

namespace {

/// Parses one table and checks what a parsed table promises.
void checkTable(const std::string &text, const char *origin) {
  Expected<TunedTable> t = TunedTable::parse(text, origin);
  if (!t) {
    FUZZ_CHECK(t.error().message.find(origin) != std::string::npos,
               "a tuned-table error that does not name its origin");
    return;
  }
  for (const TunedEntry &e : t->entries) {
    // An entry is found for its own shape at its own bucket: this entry or
    // a smaller bucket of the same shape.
    for (long pairs : {1L, e.maxPairs}) {
      if (pairs < 1 || pairs > e.maxPairs)
        continue;
      const TunedEntry *hit = t->find(t->gpu, e.path, e.dtype, e.rank, e.K, e.N,
                                      e.numSlices, e.sorted, pairs);
      FUZZ_CHECK(hit != nullptr, "an entry is not found for its own shape");
      FUZZ_CHECK(hit->maxPairs >= pairs, "found a bucket below the pairs");
      FUZZ_CHECK(hit->path == e.path && hit->rank == e.rank && hit->K == e.K &&
                     hit->N == e.N,
                 "found an entry of another shape");
    }
    // Another GPU never matches.
    FUZZ_CHECK(t->find(t->gpu + "x", e.path, e.dtype, e.rank, e.K, e.N,
                       e.numSlices, e.sorted, 1) == nullptr,
               "an entry matched another GPU");
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  std::vector<std::string> parts = fuzz::splitParts(text, 2);
  checkTable(parts[0], "base.json");
  if (text.find(fuzz::kPartSeparator) == std::string::npos)
    return 0;
  checkTable(parts[1], "update.json");
  Expected<std::string> merged =
      mergeTunedTables(parts[0], parts[1], "merge.json");
  if (merged) {
    // A merge of two valid tables is a valid table.
    Expected<TunedTable> back = TunedTable::parse(*merged, "merged.json");
    FUZZ_CHECK(bool(back), "a merged table does not parse");
  }
  return 0;
}
