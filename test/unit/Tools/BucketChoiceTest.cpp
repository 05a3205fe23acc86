//===- BucketChoiceTest.cpp - moelora-tune's per-bucket winner ------------===//

#include "BucketChoice.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace moelora::tune;

namespace {

const double kNaN = std::nan("");

TEST(BucketChoiceTest, WinnerByTheBucketsSummedTime) {
  // Config A wins the dense case but loses the sparse one by more: B has the
  // lower total and wins the bucket.
  BucketTimes t = {
      {kDefaultConfig, {100, 50}}, {"A", {60, 80}}, {"B", {70, 40}}};
  BucketChoice c = chooseForBucket(t);
  EXPECT_EQ(c.outcome, BucketOutcome::UseConfig);
  EXPECT_EQ(c.config, "B");
  EXPECT_DOUBLE_EQ(c.chosenUs, 110);
  EXPECT_DOUBLE_EQ(c.defaultUs, 150);
}

TEST(BucketChoiceTest, TheCurrentEntryMustBeBeaten) {
  // A beats the rules but not the current entry: the entry stays.
  BucketTimes t = {
      {kDefaultConfig, {100}}, {kCurrentConfig, {60}}, {"A", {61}}};
  BucketChoice c = chooseForBucket(t);
  EXPECT_EQ(c.outcome, BucketOutcome::KeepCurrent);
  EXPECT_DOUBLE_EQ(c.chosenUs, 60);
  EXPECT_DOUBLE_EQ(c.currentUs, 60);
  // Within the noise margin of the current entry: still kept.
  t["A"] = {59};
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::KeepCurrent);
  t["A"] = {50};
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::UseConfig);
}

TEST(BucketChoiceTest, RulesReplaceASlowerCurrentEntry) {
  BucketTimes t = {{kDefaultConfig, {50, 50}}, {kCurrentConfig, {70, 60}}};
  BucketChoice c = chooseForBucket(t);
  EXPECT_EQ(c.outcome, BucketOutcome::UseRules);
  EXPECT_DOUBLE_EQ(c.chosenUs, 100);
  // Without a current entry the rules are what runs anyway: no entry.
  t.erase(kCurrentConfig);
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::KeepCurrent);
}

TEST(BucketChoiceTest, NoCaseMayGetMoreThanThreePercentSlower) {
  // A has the lowest total but costs the dense case 8% against the current
  // entry (the qwen3moe W13 M512 R16 pattern): B, within 3% on both, wins.
  BucketTimes t = {{kDefaultConfig, {120, 60}},
                   {kCurrentConfig, {100, 50}},
                   {"A", {108, 30}},
                   {"B", {102, 40}}};
  BucketChoice c = chooseForBucket(t);
  EXPECT_EQ(c.outcome, BucketOutcome::UseConfig);
  EXPECT_EQ(c.config, "B");
  EXPECT_DOUBLE_EQ(c.chosenUs, 142);
  // Without B the entry stays.
  t.erase("B");
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::KeepCurrent);
  // Nor do the rules replace an entry by making one case slower.
  t = {{kDefaultConfig, {110, 20}}, {kCurrentConfig, {100, 50}}};
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::KeepCurrent);
  t[kDefaultConfig] = {103, 20};
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::UseRules);
}

TEST(BucketChoiceTest, AConfigThatFailsAnyCaseCannotWin) {
  BucketTimes t = {
      {kDefaultConfig, {100, 100}}, {"A", {10, kNaN}}, {"B", {90, 80}}};
  BucketChoice c = chooseForBucket(t);
  EXPECT_EQ(c.outcome, BucketOutcome::UseConfig);
  EXPECT_EQ(c.config, "B");
  t["B"] = {99, 99};
  EXPECT_EQ(chooseForBucket(t).outcome, BucketOutcome::KeepCurrent);
}

} // namespace
