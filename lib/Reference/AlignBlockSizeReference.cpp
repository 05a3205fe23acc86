//===- AlignBlockSizeReference.cpp - reference moe_lora_align_block_size --===//
//
// Per adapter: the flat pair indices of its tokens grouped by expert
// (ascending expert, ascending pair inside an expert), each group padded to a
// multiple of blockM with numTokens*topK. Pairs with a negative expert and
// tokens without a valid adapter are dropped.
//
//===----------------------------------------------------------------------===//

#include "moelora/Reference/Reference.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace moelora {
namespace {

[[noreturn]] void fail(const std::string &what) {
  throw std::invalid_argument("referenceAlignBlockSize: " + what);
}

} // namespace

AlignBlockSizeResult
referenceAlignBlockSize(const std::vector<int32_t> &topkIds,
                        const std::vector<int32_t> &tokenLoraMapping,
                        int numTokens, int topK, int numExperts, int maxLoras,
                        int blockM) {
  if (blockM <= 0)
    fail("blockM must be > 0, got " + std::to_string(blockM));
  if (numTokens < 0)
    fail("numTokens must be >= 0, got " + std::to_string(numTokens));
  if (topK < 1)
    fail("topK must be >= 1, got " + std::to_string(topK));
  if (numExperts < 1)
    fail("numExperts must be >= 1, got " + std::to_string(numExperts));
  if (maxLoras < 1)
    fail("maxLoras must be >= 1, got " + std::to_string(maxLoras));
  const size_t pairs = size_t(numTokens) * size_t(topK);
  if (topkIds.size() != pairs)
    fail("topkIds has " + std::to_string(topkIds.size()) +
         " elements, expected numTokens*topK = " + std::to_string(pairs));
  if (tokenLoraMapping.size() != size_t(numTokens))
    fail("tokenLoraMapping has " + std::to_string(tokenLoraMapping.size()) +
         " elements, expected numTokens = " + std::to_string(numTokens));
  for (size_t i = 0; i < pairs; ++i)
    if (topkIds[i] >= numExperts)
      fail("topkIds[" + std::to_string(i) +
           "] = " + std::to_string(topkIds[i]) +
           " is not below numExperts = " + std::to_string(numExperts));

  AlignBlockSizeResult res;
  res.EM = alignCapacity(numTokens, topK, numExperts, blockM);
  const size_t EM = size_t(res.EM);
  const size_t blocks = EM / size_t(blockM);
  const int32_t pad = int32_t(pairs);
  res.sortedTokenIds.assign(size_t(maxLoras) * EM, pad);
  res.expertIds.assign(size_t(maxLoras) * blocks, -1);
  res.numTokensPostPadded.assign(size_t(maxLoras), 0);

  // Counting sort per adapter: count pairs per expert, then scatter in
  // ascending pair order, which keeps each expert group stable.
  std::vector<size_t> count(static_cast<size_t>(numExperts));
  std::vector<size_t> start(static_cast<size_t>(numExperts));
  for (int l = 0; l < maxLoras; ++l) {
    std::fill(count.begin(), count.end(), 0);
    for (size_t p = 0; p < pairs; ++p)
      if (tokenLoraMapping[p / size_t(topK)] == l && topkIds[p] >= 0)
        ++count[size_t(topkIds[p])];

    int32_t *sorted = res.sortedTokenIds.data() + size_t(l) * EM;
    int32_t *experts = res.expertIds.data() + size_t(l) * blocks;
    size_t offset = 0;
    for (int e = 0; e < numExperts; ++e) {
      start[size_t(e)] = offset;
      const size_t groupBlocks =
          (count[size_t(e)] + size_t(blockM) - 1) / size_t(blockM);
      for (size_t b = 0; b < groupBlocks; ++b)
        experts[offset / size_t(blockM) + b] = e;
      offset += groupBlocks * size_t(blockM);
    }
    for (size_t p = 0; p < pairs; ++p)
      if (tokenLoraMapping[p / size_t(topK)] == l && topkIds[p] >= 0)
        sorted[start[size_t(topkIds[p])]++] = int32_t(p);
    res.numTokensPostPadded[size_t(l)] = int32_t(offset);
  }
  return res;
}

} // namespace moelora
