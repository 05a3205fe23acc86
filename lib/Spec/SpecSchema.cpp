//===- SpecSchema.cpp - The spec fields and their allowed values ----------===//

#include "SpecSchema.h"

#include "moelora/Spec/KernelSpec.h"

#include <fmt/format.h>

namespace moelora::spec {

const FieldInfo &info(Field f) { return kFieldInfo[static_cast<size_t>(f)]; }

std::optional<Field> lookupField(std::string_view name) {
  for (size_t i = 0; i < kNumFields; ++i)
    if (kFieldInfo[i].name == name)
      return static_cast<Field>(i);
  return std::nullopt;
}

std::string allFieldNames() {
  std::string out;
  for (const FieldInfo &fi : kFieldInfo) {
    if (!out.empty())
      out += ", ";
    out += fi.name;
  }
  return out;
}

bool isPowerOfTwo(long long v) { return v > 0 && (v & (v - 1)) == 0; }

std::string checkIntValue(Field f, long long v) {
  switch (f) {
  case Field::Rank:
  case Field::K:
  case Field::GroupSizeM:
  case Field::SplitK:
    return v >= 1 ? "" : fmt::format("{} is below the minimum 1", v);
  case Field::BlockM:
  case Field::BlockN:
  case Field::BlockK:
    if (v < kMinBlock)
      return fmt::format("{} is below the minimum {}", v, kMinBlock);
    return isPowerOfTwo(v) ? "" : fmt::format("{} is not a power of two", v);
  case Field::NumWarps:
    return (v == 1 || v == 2 || v == 4 || v == 8 || v == 16)
               ? ""
               : fmt::format("{} is not a supported warp count", v);
  case Field::NumStages:
  case Field::NumSlices:
    return (v >= 1 && v <= 8) ? "" : fmt::format("{} is out of range", v);
  case Field::Npid:
    return v >= 0 ? "" : fmt::format("{} is negative", v);
  case Field::MinBlocksPerSm:
    return (v >= 0 && v <= kMaxMinBlocksPerSm)
               ? ""
               : fmt::format("{} is out of range", v);
  case Field::FewRowsTile:
    return (v == 16 || v == 32) ? ""
                                : fmt::format("{} is not a few-rows tile", v);
  default:
    return "";
  }
}

std::string reasonText(Field f, std::string_view what) {
  return fmt::format("{}: {}; allowed: {}", info(f).name, what,
                     info(f).allowed);
}

std::string reasonText(Field f, std::string_view what,
                       std::string_view allowed) {
  return fmt::format("{}: {}; allowed: {}", info(f).name, what, allowed);
}

} // namespace moelora::spec
