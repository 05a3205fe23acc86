//===- KernelSpec.cpp - Names, keys and derived values of a KernelSpec ----===//
//
// The cache key and the entry name are the identity of a compiled kernel:
// the JIT cache, the ahead-of-time bundles and the runtime's symbol lookup all
// depend on them, so both are built from every field that changes the
// generated code and nothing else (`origin` is provenance, not identity).
//
//===----------------------------------------------------------------------===//

#include "moelora/Spec/KernelSpec.h"
#include "moelora/Spec/TileBytes.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <tuple>

// Header-only mode: the hash is tiny, and inlining it keeps libxxhash out of
// the link interface that moelora_spec exports to find_package(moelora) users.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace moelora {

int defaultMinBlocksPerSm(KernelFamily f) {
  return f == KernelFamily::SmallBatch ? 2 : 0;
}

std::string_view toString(KernelFamily f) {
  switch (f) {
  case KernelFamily::OneShot:
    return "one_shot";
  case KernelFamily::SmallBatch:
    return "small_batch";
  case KernelFamily::Shrink:
    return "shrink";
  case KernelFamily::Expand:
    return "expand";
  case KernelFamily::AlignBlockSize:
    return "align_block_size";
  }
  return "unknown";
}

std::string_view toString(DType d) {
  switch (d) {
  case DType::F16:
    return "fp16";
  case DType::BF16:
    return "bf16";
  }
  return "unknown";
}

std::optional<KernelFamily> parseKernelFamily(std::string_view s) {
  for (KernelFamily f :
       {KernelFamily::OneShot, KernelFamily::SmallBatch, KernelFamily::Shrink,
        KernelFamily::Expand, KernelFamily::AlignBlockSize})
    if (toString(f) == s)
      return f;
  return std::nullopt;
}

std::optional<DType> parseDType(std::string_view s) {
  for (DType d : {DType::F16, DType::BF16})
    if (toString(d) == s)
      return d;
  return std::nullopt;
}

std::optional<int> parseTarget(std::string_view s) {
  constexpr std::string_view prefix = "sm_";
  if (s.size() <= prefix.size() || s.substr(0, prefix.size()) != prefix)
    return std::nullopt;
  std::string_view digits = s.substr(prefix.size());
  // from_chars alone would accept a leading '-' and stop at trailing junk;
  // the target must be digits only.
  if (!std::all_of(digits.begin(), digits.end(),
                   [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  int value = 0;
  auto [end, ec] =
      std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec != std::errc() || end != digits.data() + digits.size())
    return std::nullopt;
  return value;
}

int KernelSpec::blockR() const {
  // Tensor-core tiles need at least 16 rows; rows >= rank are masked.
  int r = 16;
  while (r < rank)
    r *= 2;
  return r;
}

bool KernelSpec::evenK() const {
  // Unknown K must be handled by masked loads, so it is never "even".
  return k.has_value() && blockK > 0 && *k % blockK == 0;
}

std::string KernelSpec::cacheKey() const {
  // Fixed field order and spelling: this text is hashed into entry names and
  // used as the JIT cache key, so changing it invalidates every cache.
  // even_k is derived from K and BLOCK_SIZE_K but listed anyway so that the
  // key states the compile-time choice explicitly.
  std::string key = fmt::format(
      "{};{};sm_{};R={};K={};BM={};BN={};BK={};GM={};SK={};"
      "W={};S={};sorted={:d};mrw={:d};add={:d};slices={};"
      "npid={};even_k={:d};mbs={};oa={:d};fs={:d};abi={}",
      toString(family), toString(dtype), sm, rank,
      k ? std::to_string(*k) : std::string("*"), blockM, blockN, blockK,
      groupSizeM, splitK, numWarps, numStages, sorted, mulRoutedWeight,
      addInputs, numSlices, npid, evenK(), minBlocksPerSm, alignedOutput,
      fusesSlices(), kKernelAbiVersion);
  // Appended only when set, so the keys (and caches) of every other kernel
  // stay as they were; the PTX target is part of it.
  if (wgmma)
    key += ";mma=wgmma;ptx=" + ptxTarget();
  if (fewRowsExpand()) {
    key += ";fr=1";
    if (fewRowsTile != 16)
      key += fmt::format(";frt={}", fewRowsTile);
  }
  if (tmaWeights)
    key += ";tma=a";
  if (producerWarp)
    key += ";ws=p";
  if (persistent)
    key += ";grid=p";
  if (wgmmaExpand)
    key += ";xmma=wgmma";
  if (bulksOutput())
    key += ";out=bulk";
  if (bulkShrink)
    key += ";in=bulk";
  if (expandsEarly())
    key += ";xe=early";
  if (scattersClusterSum())
    key += ";cs=scatter";
  return key;
}

bool KernelSpec::fewRowsExpand() const {
  return fewRowsShapeIfEnabled(*this).has_value();
}

std::string KernelSpec::ptxTarget() const {
  return wgmma || wgmmaExpand ? fmt::format("sm_{}a", sm)
                              : fmt::format("sm_{}", sm);
}

std::string KernelSpec::entryName() const {
  // The readable part names every field of the cache key (fields at their
  // default value are omitted, which keeps the mapping injective because an
  // omitted token always means the default). So distinct keys give distinct
  // names by construction; the hash suffix is a short fingerprint of the key
  // that tools can match against a cache without parsing the name.
  std::string name = fmt::format("moelora_{}_{}_sm{}_r{}_k{}_m{}n{}k{}",
                                 toString(family), toString(dtype), sm, rank,
                                 k ? std::to_string(*k) : std::string("any"),
                                 blockM, blockN, blockK);
  if (groupSizeM != 1)
    name += fmt::format("_g{}", groupSizeM);
  if (splitK != 1)
    name += fmt::format("_sk{}", splitK);
  name += fmt::format("_w{}s{}_{}", numWarps, numStages,
                      sorted ? "sorted" : "naive");
  if (mulRoutedWeight)
    name += "_mrw";
  if (addInputs)
    name += "_add";
  name += fmt::format("_s{}", numSlices);
  if (npid != 0)
    name += fmt::format("_npid{}", npid);
  if (minBlocksPerSm != 0)
    name += fmt::format("_b{}", minBlocksPerSm);
  if (!alignedOutput)
    name += "_ua";
  if (fusesSlices())
    name += "_fs";
  if (wgmma)
    name += "_wg";
  if (fewRowsExpand())
    name += fewRowsTile == 16 ? "_fr" : fmt::format("_fr{}", fewRowsTile);
  if (tmaWeights)
    name += "_tma";
  if (producerWarp)
    name += "_pw";
  if (persistent)
    name += "_ps";
  if (wgmmaExpand)
    name += "_xwg";
  if (bulksOutput())
    name += "_bo";
  if (bulkShrink)
    name += "_bs";
  if (expandsEarly())
    name += "_xe";
  if (scattersClusterSum())
    name += "_rs";
  std::string key = cacheKey();
  uint64_t hash = XXH3_64bits(key.data(), key.size());
  name += fmt::format("_h{:08x}", static_cast<uint32_t>(hash));
  return name;
}

bool operator==(const KernelSpec &a, const KernelSpec &b) {
  // Two specs are equal exactly when they compile to the same kernel,
  // wherever they were written.
  return a.kernelFields() == b.kernelFields();
}

} // namespace moelora
