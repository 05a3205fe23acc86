//===- Half.h - fp16 / bf16 bit conversions on the host ---------*- C++ -*-===//
//
// Host-side conversions used by the CPU reference, the tests and the tuner.
// Round-to-nearest-even, like the GPU's cvt.rn.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_SUPPORT_HALF_H
#define MOELORA_SUPPORT_HALF_H

#include "moelora/Spec/KernelSpec.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace moelora {

inline float bf16ToFloat(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f))
    return 0x7fc0;
  uint32_t rounding = 0x7fff + ((bits >> 16) & 1);
  return uint16_t((bits + rounding) >> 16);
}

inline float fp16ToFloat(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    // Zero or subnormal: value = mant * 2^-24.
    float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  uint32_t bits;
  if (exp == 31)
    bits = sign | 0x7f800000 | (mant << 13);
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t floatToFp16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint16_t sign = uint16_t((bits >> 16) & 0x8000);
  if (std::isnan(f))
    return sign | 0x7e00;
  float a = std::fabs(f);
  if (a >= 65520.0f)
    return sign | 0x7c00; // overflow rounds to inf
  if (a < 6.103515625e-05f) {
    // Subnormal range: quantum 2^-24, nearbyint rounds half to even.
    return sign | uint16_t(std::nearbyint(a * 16777216.0f));
  }
  uint32_t abits = bits & 0x7fffffff;
  uint32_t rounding = 0xfff + ((abits >> 13) & 1);
  abits += rounding;
  uint32_t exp = (abits >> 23) - 112;
  uint32_t mant = (abits >> 13) & 0x3ff;
  return sign | uint16_t(exp << 10) | uint16_t(mant);
}

inline float toFloat(DType t, uint16_t h) {
  return t == DType::BF16 ? bf16ToFloat(h) : fp16ToFloat(h);
}
inline uint16_t fromFloat(DType t, float f) {
  return t == DType::BF16 ? floatToBf16(f) : floatToFp16(f);
}
/// Rounds a value to the nearest representable T (via fp32, as the GPU does).
inline double roundTo(DType t, double v) {
  return toFloat(t, fromFloat(t, float(v)));
}

} // namespace moelora

#endif // MOELORA_SUPPORT_HALF_H
