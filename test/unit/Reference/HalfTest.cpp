//===- HalfTest.cpp - fp16 / bf16 host conversions ------------------------===//

#include "moelora/Support/Half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

using namespace moelora;

namespace {

float floatFromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

/// fp16 value computed from the IEEE binary16 definition, independently of
/// fp16ToFloat.
double fp16ByDefinition(uint16_t h) {
  const int sign = (h >> 15) & 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  double v;
  if (exp == 0)
    v = std::ldexp(double(mant), -24);
  else if (exp == 31)
    v = mant ? std::numeric_limits<double>::quiet_NaN()
             : std::numeric_limits<double>::infinity();
  else
    v = std::ldexp(1.0 + mant / 1024.0, exp - 15);
  return sign ? -v : v;
}

} // namespace

TEST(HalfTest, Bf16RoundTripsEveryNonNaNPattern) {
  int nans = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16ToFloat(uint16_t(h));
    if (std::isnan(f)) {
      ++nans;
      EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(f)))) << std::hex << h;
      continue;
    }
    ASSERT_EQ(floatToBf16(f), h) << std::hex << h;
    ASSERT_EQ(roundTo(DType::BF16, double(f)), double(f)) << std::hex << h;
  }
  // 2 signs * (2^7 - 1) non-zero mantissas with exponent 0xff.
  EXPECT_EQ(nans, 2 * 127);
}

TEST(HalfTest, Fp16RoundTripsEveryNonNaNPattern) {
  int nans = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16ToFloat(uint16_t(h));
    if (std::isnan(f)) {
      ++nans;
      EXPECT_TRUE(std::isnan(fp16ToFloat(floatToFp16(f)))) << std::hex << h;
      continue;
    }
    ASSERT_EQ(double(f), fp16ByDefinition(uint16_t(h))) << std::hex << h;
    ASSERT_EQ(floatToFp16(f), h) << std::hex << h;
    ASSERT_EQ(roundTo(DType::F16, double(f)), double(f)) << std::hex << h;
  }
  EXPECT_EQ(nans, 2 * 1023);
}

TEST(HalfTest, Bf16KnownValues) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(floatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(floatToBf16(0.0f), 0x0000);
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(floatToBf16(-std::numeric_limits<float>::infinity()), 0xff80);
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(std::nanf("")))));
  EXPECT_EQ(toFloat(DType::BF16, 0x3fc0), 1.5f);
  EXPECT_EQ(fromFloat(DType::BF16, 1.5f), 0x3fc0);
}

TEST(HalfTest, Bf16RoundsTiesToEven) {
  // Spacing at [1, 2) is 2^-7; 1 + 2^-8 is halfway between 0x3f80 (even)
  // and 0x3f81.
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3*2^-8: halfway between 0x3f81 and 0x3f82 (even).
  EXPECT_EQ(floatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  // Just above / below the tie.
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
  EXPECT_EQ(floatToBf16(1.0f + 0x1p-8f - 0x1p-20f), 0x3f80);
  EXPECT_EQ(floatToBf16(-(1.0f + 0x1p-8f)), 0xbf80);
  EXPECT_EQ(floatToBf16(-(1.0f + 3 * 0x1p-8f)), 0xbf82);
  // Raw bit pattern ties: 0x3f818000 is halfway between 0x3f81 and 0x3f82.
  EXPECT_EQ(floatToBf16(floatFromBits(0x3f818000u)), 0x3f82);
  EXPECT_EQ(floatToBf16(floatFromBits(0x3f828000u)), 0x3f82);
  // Rounding carries into the exponent: 2 - 2^-9 -> 2.
  EXPECT_EQ(floatToBf16(2.0f - 0x1p-9f), 0x4000);
  // FLT_MAX lies above the midpoint between bf16 max and 2^128: infinity.
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  // bf16 max (0x7f7f) stays finite.
  EXPECT_EQ(floatToBf16(floatFromBits(0x7f7f0000u)), 0x7f7f);
}

TEST(HalfTest, Fp16KnownValues) {
  EXPECT_EQ(floatToFp16(1.0f), 0x3c00);
  EXPECT_EQ(floatToFp16(-2.0f), 0xc000);
  EXPECT_EQ(floatToFp16(0.0f), 0x0000);
  EXPECT_EQ(floatToFp16(-0.0f), 0x8000);
  EXPECT_EQ(floatToFp16(65504.0f), 0x7bff);
  EXPECT_EQ(floatToFp16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(floatToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_TRUE(std::isnan(fp16ToFloat(floatToFp16(std::nanf("")))));
  EXPECT_EQ(floatToFp16(0x1p-14f), 0x0400); // smallest normal
  EXPECT_EQ(floatToFp16(0x1p-24f), 0x0001); // smallest subnormal
  EXPECT_EQ(fp16ToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(fp16ToFloat(0x03ff), 1023 * 0x1p-24f);
  EXPECT_EQ(toFloat(DType::F16, 0x3e00), 1.5f);
  EXPECT_EQ(fromFloat(DType::F16, 1.5f), 0x3e00);
}

TEST(HalfTest, Fp16RoundsTiesToEven) {
  // Spacing at [1, 2) is 2^-10.
  EXPECT_EQ(floatToFp16(1.0f + 0x1p-11f), 0x3c00);
  EXPECT_EQ(floatToFp16(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(floatToFp16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
  EXPECT_EQ(floatToFp16(-(1.0f + 0x1p-11f)), 0xbc00);
  // Carry into the exponent: 2 - 2^-11 is halfway between 0x3bff (odd) and
  // 0x4000.
  EXPECT_EQ(floatToFp16(2.0f - 0x1p-11f), 0x4000);
  // Overflow: 65520 is halfway between 65504 (0x7bff, odd) and 2^16.
  EXPECT_EQ(floatToFp16(65519.0f), 0x7bff);
  EXPECT_EQ(floatToFp16(65520.0f), 0x7c00);
  // Subnormal ties (quantum 2^-24).
  EXPECT_EQ(floatToFp16(0x1p-25f), 0x0000);
  EXPECT_EQ(floatToFp16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(floatToFp16(5 * 0x1p-25f), 0x0002);
  EXPECT_EQ(floatToFp16(0x1p-25f + 0x1p-30f), 0x0001);
  EXPECT_EQ(floatToFp16(-3 * 0x1p-25f), 0x8002);
  // Largest subnormal + half a quantum rounds up to the smallest normal.
  EXPECT_EQ(floatToFp16(0x1p-14f - 0x1p-25f), 0x0400);
}

TEST(HalfTest, RoundToGoesThroughFp32) {
  EXPECT_EQ(roundTo(DType::BF16, 1.0 + 0x1p-8), 1.0);
  EXPECT_EQ(roundTo(DType::BF16, 1.0 + 3 * 0x1p-9), 1.0 + 0x1p-7);
  EXPECT_EQ(roundTo(DType::F16, 1.0 + 0x1p-11), 1.0);
  EXPECT_EQ(roundTo(DType::F16, 1.0 + 3 * 0x1p-12), 1.0 + 0x1p-10);
  EXPECT_EQ(roundTo(DType::F16, 1e6), std::numeric_limits<double>::infinity());
}
