//===- FuzzUtil.h - Shared helpers of the fuzz targets ----------*- C++ -*-===//
//
// FUZZ_CHECK turns a broken invariant into a crash the fuzzer records;
// splitParts cuts one input into the files a target writes.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_TEST_FUZZ_FUZZUTIL_H
#define MOELORA_TEST_FUZZ_FUZZUTIL_H

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#define FUZZ_CHECK(cond, what)                                                 \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "FUZZ_CHECK failed at %s:%d: %s (%s)\n", __FILE__,  \
                   __LINE__, what, #cond);                                     \
      std::abort();                                                            \
    }                                                                          \
  } while (0)

namespace moelora::fuzz {

/// The separator between the parts of a multi-file input (a line of its
/// own), so that seeds stay readable text files.
inline constexpr std::string_view kPartSeparator = "\n--8<--\n";

/// `text` cut at each separator, padded with empty parts to `n` (extra
/// separators stay in the last part).
inline std::vector<std::string> splitParts(std::string_view text, size_t n) {
  std::vector<std::string> parts;
  while (parts.size() + 1 < n) {
    size_t at = text.find(kPartSeparator);
    if (at == text.npos)
      break;
    parts.emplace_back(text.substr(0, at));
    text.remove_prefix(at + kPartSeparator.size());
  }
  parts.emplace_back(text);
  parts.resize(n);
  return parts;
}

/// Replaces every `from` in `s` with `to`.
inline void replaceAll(std::string &s, std::string_view from,
                       std::string_view to) {
  for (size_t at = s.find(from); at != s.npos;
       at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

} // namespace moelora::fuzz

#endif // MOELORA_TEST_FUZZ_FUZZUTIL_H
