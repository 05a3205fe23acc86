//===- FewRowsExpandTest.cpp - The few-rows expand shape and its branch ---===//
//
// A sorted block whose valid rows all lie in its first 16 runs its expand as
// a 16-row tile several BLOCK_N wide (ExpandTiles.h). The shape must fit the
// kernel's shared memory and the limits it was chosen under; the kernels
// that may take it ask the block once (bar.red.or), the others never do.
//
//===----------------------------------------------------------------------===//

#include "moelora/Codegen/ExpandTiles.h"
#include "moelora/Codegen/Generator.h"
#include "moelora/Codegen/KernelBuilder.h"
#include "moelora/Spec/SpecValidation.h"
#include "moelora/Spec/TileBytes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fmt/format.h>

using namespace moelora;

namespace {

KernelSpec sortedOneShot(int blockM, int blockN, int rank, int warps,
                         int stages) {
  KernelSpec s;
  s.family = KernelFamily::OneShot;
  s.sorted = true;
  s.rank = rank;
  s.k = 2048;
  s.blockM = blockM;
  s.blockN = blockN;
  s.blockK = 64;
  s.numWarps = warps;
  s.numStages = stages;
  s.sm = 90;
  s.fewRows = true;
  return s;
}

int countOf(const std::string &text, const std::string &what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1))
    ++n;
  return n;
}

} // namespace

TEST(FewRowsExpand, ShapeFitsTheKernelAndItsLimits) {
  int withShape = 0, with32 = 0;
  for (int tile : {16, 32})
    for (int blockM : {16, 64, 128})
      for (int blockN : {32, 64, 128, 256})
        for (int rank : {16, 32, 64, 128})
          for (int warps : {4, 8, 16})
            for (int stages : {1, 2, 3, 4})
              for (bool aligned : {true, false}) {
                KernelSpec s =
                    sortedOneShot(blockM, blockN, rank, warps, stages);
                s.alignedOutput = aligned;
                s.fewRowsTile = tile;
                if (!validateSpec(s).empty())
                  continue;
                const int budget = oneShotSharedBytes(s);
                auto shape = fewRowsExpandShape(s);
                SCOPED_TRACE(s.entryName());
                if (blockM == 16) {
                  EXPECT_FALSE(shape);
                  continue;
                }
                if (!shape)
                  continue;
                ++(tile == 16 ? withShape : with32);
                EXPECT_EQ(shape->rows, tile);
                EXPECT_GT(shape->cols, blockN);
                EXPECT_EQ(shape->cols % blockN, 0);
                EXPECT_LE(shape->cols, blockN * blockM / tile);
                EXPECT_LE(shape->cols, 256);
                EXPECT_EQ(shape->cols % (8 * warps), 0);
                EXPECT_LE(shape->cols * s.blockR() / 8, 4 * s.threads());
                if (tile == 32) // accumulators per thread
                  EXPECT_LE(32 * shape->cols / s.threads(), 32);
                EXPECT_GE(shape->stages, std::min(2, stages));
                EXPECT_LE(shape->stages, stages);
                EXPECT_LE(shape->stages * expandStageBytes(s, *shape), budget);
              }
  EXPECT_GT(withShape, 50);
  EXPECT_GT(with32, 20);
}

// A 32-row tile (groups of 16-32 pairs): BLOCK_M 64 leaves room for two
// BLOCK_N; with four warps, 32 x 256 would hold 64 accumulators per thread;
// BLOCK_M 32 has nothing to widen; rank 128 would double r's 32 registers.
TEST(FewRowsExpand, ThirtyTwoRowShape) {
  struct Case {
    int blockM, blockN, rank, warps, cols; // cols 0: no shape
  };
  for (Case c : {Case{64, 64, 16, 8, 128}, Case{64, 128, 16, 8, 256},
                 Case{64, 128, 16, 4, 0}, Case{32, 64, 16, 4, 0},
                 Case{64, 64, 128, 8, 0}}) {
    KernelSpec s = sortedOneShot(c.blockM, c.blockN, c.rank, c.warps, 3);
    s.fewRowsTile = 32;
    SCOPED_TRACE(s.cacheKey());
    auto shape = fewRowsExpandShape(s);
    ASSERT_EQ(shape.has_value(), c.cols != 0);
    if (shape) {
      EXPECT_EQ(shape->rows, 32);
      EXPECT_EQ(shape->cols, c.cols);
    }
  }
}

// BLOCK_M 64, BLOCK_N 64, rank 16, 8 warps: with BLOCK_K 128 the shrink's
// stages leave room for four BLOCK_N side by side, three stages deep; with
// BLOCK_K 64 (smaller shrink stages) for two.
TEST(FewRowsExpand, WidestShapeThatFits) {
  KernelSpec s = sortedOneShot(64, 64, 16, 8, 3);
  s.blockK = 128;
  auto wide = fewRowsExpandShape(s);
  ASSERT_TRUE(wide);
  EXPECT_EQ(wide->cols, 256);
  EXPECT_EQ(wide->stages, 3);
  s.blockK = 64;
  auto narrow = fewRowsExpandShape(s);
  ASSERT_TRUE(narrow);
  EXPECT_EQ(narrow->cols, 128);
  EXPECT_EQ(narrow->stages, 3);
  // The two-kernel expand (its shared memory: the r tile or its stages).
  KernelSpec e = s;
  e.family = KernelFamily::Expand;
  e.k.reset();
  e.blockK = 16;
  auto expand = fewRowsExpandShape(e);
  ASSERT_TRUE(expand);
  EXPECT_LE(expand->stages * expandStageBytes(e, *expand),
            expandKernelSharedBytes(e));
  // Not a family with an expand.
  KernelSpec shrink = s;
  shrink.family = KernelFamily::Shrink;
  shrink.fewRows = false;
  EXPECT_FALSE(fewRowsExpandShape(shrink));
}

// The flag is canonical: it is in the key (and the kernel) only where a
// few-rows shape exists.
TEST(FewRowsExpand, FlagIsInTheKeyOnlyWhereItChangesTheKernel) {
  KernelSpec on = sortedOneShot(64, 64, 16, 8, 3);
  KernelSpec off = on;
  off.fewRows = false;
  EXPECT_TRUE(on.fewRowsExpand());
  EXPECT_THAT(on.cacheKey(), ::testing::HasSubstr(";fr=1"));
  EXPECT_THAT(on.entryName(), ::testing::HasSubstr("_fr_"));
  EXPECT_FALSE(on == off);
  EXPECT_EQ(off.cacheKey().find("fr="), std::string::npos);
  // Rank 64 with four warps: no widening within the register limits.
  KernelSpec noShape = sortedOneShot(64, 64, 64, 4, 3);
  KernelSpec noShapeOff = noShape;
  noShapeOff.fewRows = false;
  EXPECT_FALSE(noShape.fewRowsExpand());
  EXPECT_EQ(noShape.cacheKey(), noShapeOff.cacheKey());
  EXPECT_TRUE(noShape == noShapeOff);
  // The 32-row tile is a kernel of its own; the 16-row one keeps its key.
  KernelSpec tile32 = on;
  tile32.fewRowsTile = 32;
  EXPECT_THAT(tile32.cacheKey(), ::testing::HasSubstr(";fr=1;frt=32"));
  EXPECT_THAT(tile32.entryName(), ::testing::HasSubstr("_fr32_"));
  EXPECT_FALSE(tile32 == on);
  EXPECT_EQ(on.cacheKey().find("frt="), std::string::npos);
  // Without the flag the tile does not matter.
  KernelSpec tile32Off = off;
  tile32Off.fewRowsTile = 32;
  EXPECT_EQ(tile32Off.cacheKey(), off.cacheKey());
  EXPECT_TRUE(tile32Off == off);
}

TEST(FewRowsExpand, OnlyOneShotAndExpandTakeTheFlag) {
  KernelSpec s = sortedOneShot(64, 64, 16, 4, 3);
  s.family = KernelFamily::Shrink;
  std::string why = validateSpec(s);
  EXPECT_THAT(why, ::testing::HasSubstr("few_rows"));
  EXPECT_THAT(why, ::testing::HasSubstr("one_shot and expand"));
}

TEST(FewRowsExpand, OnlyKernelsThatMayTakeItAskTheBlock) {
  KernelSpec sorted = sortedOneShot(64, 64, 16, 8, 3);
  auto g = generateKernel(sorted);
  ASSERT_TRUE(g) << g.error().message;
  EXPECT_EQ(countOf(g->ptx, "bar.red.or.pred"), 1);

  KernelSpec fused = sorted;
  fused.numSlices = 2;
  fused.fuseSlices = true;
  auto gf = generateKernel(fused);
  ASSERT_TRUE(gf) << gf.error().message;
  EXPECT_EQ(countOf(gf->ptx, "bar.red.or.pred"), 1) << "once for all slices";

  KernelSpec expand = sorted;
  expand.family = KernelFamily::Expand;
  expand.k.reset();
  expand.blockK = 16;
  auto ge = generateKernel(expand);
  ASSERT_TRUE(ge) << ge.error().message;
  EXPECT_EQ(countOf(ge->ptx, "bar.red.or.pred"), 1);

  // The 32-row tile (one-shot with mma.sync and wgmma, and the expand):
  // one question each, and every warp stores into the broadcast only
  // where it holds one of the first 32 rows.
  for (bool wgmma : {false, true}) {
    KernelSpec t32 = sorted;
    t32.fewRowsTile = 32;
    t32.wgmma = wgmma;
    t32.numWarps = wgmma ? 4 : 8;
    ASSERT_TRUE(t32.fewRowsExpand()) << t32.cacheKey();
    auto g32 = generateKernel(t32);
    ASSERT_TRUE(g32) << g32.error().message;
    EXPECT_EQ(countOf(g32->ptx, "bar.red.or.pred"), 1) << t32.cacheKey();
  }
  KernelSpec expand32 = expand;
  expand32.fewRowsTile = 32;
  ASSERT_TRUE(expand32.fewRowsExpand());
  auto ge32 = generateKernel(expand32);
  ASSERT_TRUE(ge32) << ge32.error().message;
  EXPECT_EQ(countOf(ge32->ptx, "bar.red.or.pred"), 1);

  // The flag off: the kernel never asks.
  KernelSpec off = sorted;
  off.fewRows = false;
  auto goff = generateKernel(off);
  ASSERT_TRUE(goff) << goff.error().message;
  EXPECT_EQ(goff->ptx.find("bar.red"), std::string::npos);

  // BLOCK_M 16 (the naive path's): nothing to narrow.
  KernelSpec naive = sortedOneShot(16, 64, 16, 4, 2);
  naive.sorted = false;
  auto gn = generateKernel(naive);
  ASSERT_TRUE(gn) << gn.error().message;
  EXPECT_EQ(gn->ptx.find("bar.red"), std::string::npos);
}
