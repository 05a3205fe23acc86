//===- SpecSchema.h - The spec fields and their allowed values -*- C++ -*-===//
//
// Private to lib/Spec: the schema shared by the YAML parser (SpecParser.cpp)
// and the cross-field rules (SpecValidation.cpp), so both name fields and
// allowed values in the same words. The rules need no YAML: the runtime and
// the generator link them without yaml-cpp.
//
//===----------------------------------------------------------------------===//
#ifndef MOELORA_LIB_SPEC_SPECSCHEMA_H
#define MOELORA_LIB_SPEC_SPECSCHEMA_H

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace moelora::spec {

/// Schema fields, in the order of the documented schema. This order is also
/// the sweep nesting order (first field outermost), so it must not change.
enum class Field {
  Name,
  Kernel,
  DType,
  Target,
  Rank,
  K,
  BlockM,
  BlockN,
  BlockK,
  GroupSizeM,
  SplitK,
  NumWarps,
  NumStages,
  Metadata,
  MulRoutedWeight,
  AddInputs,
  NumSlices,
  Npid,
  MinBlocksPerSm,
  OutAligned,
  FuseSlices,
  Wgmma,
  FewRows,
  FewRowsTile,
  TmaWeights,
  ProducerWarp,
  Persistent,
  WgmmaExpand,
  BulkOutput,
  BulkShrink,
  EarlyExpand,
  ReduceScatter,
};
inline constexpr size_t kNumFields =
    static_cast<size_t>(Field::ReduceScatter) + 1;

enum class ValueKind { Text, Enum, Int, Bool };

struct FieldInfo {
  std::string_view name;
  ValueKind kind;
  std::string_view allowed;
};

inline constexpr std::array<FieldInfo, kNumFields> kFieldInfo = {{
    {"name", ValueKind::Text, "a string"},
    {"kernel", ValueKind::Enum,
     "one_shot, small_batch, shrink, expand, align_block_size"},
    {"dtype", ValueKind::Enum, "fp16, bf16"},
    {"target", ValueKind::Enum, "sm_80, sm_86, sm_89, sm_90"},
    {"rank", ValueKind::Int, "integer >= 1"},
    {"K", ValueKind::Int, "integer >= 1"},
    {"BLOCK_SIZE_M", ValueKind::Int, "power of two >= 16"},
    {"BLOCK_SIZE_N", ValueKind::Int, "power of two >= 16"},
    {"BLOCK_SIZE_K", ValueKind::Int, "power of two >= 16"},
    {"GROUP_SIZE_M", ValueKind::Int, "integer >= 1"},
    {"SPLIT_K", ValueKind::Int, "integer >= 1"},
    {"num_warps", ValueKind::Int, "1, 2, 4, 8, 16"},
    {"num_stages", ValueKind::Int, "1..8"},
    {"metadata", ValueKind::Enum, "naive, sorted"},
    {"MUL_ROUTED_WEIGHT", ValueKind::Bool, "true, false"},
    {"ADD_INPUTS", ValueKind::Bool, "true, false"},
    {"num_slices", ValueKind::Int, "1..8"},
    {"NPID", ValueKind::Int, "integer >= 0 (0 = runtime argument)"},
    {"min_blocks_per_sm", ValueKind::Int,
     "0..32 (0 = no hint; absent = the kernel family's default)"},
    {"out_aligned", ValueKind::Bool, "true, false"},
    {"fuse_slices", ValueKind::Bool, "true, false (shrink and one_shot only)"},
    {"wgmma", ValueKind::Bool,
     "true, false (true: one_shot or shrink on sm_90 with BLOCK_SIZE_M 64 "
     "or 128)"},
    {"few_rows", ValueKind::Bool,
     "true, false (one_shot and expand: the few-rows expand of sorted "
     "blocks)"},
    {"few_rows_tile", ValueKind::Int,
     "16, 32 (the few-rows tile's rows: blocks whose valid rows all lie in "
     "the first 16 or 32 take it)"},
    {"tma_weights", ValueKind::Bool,
     "true, false (true: a wgmma one_shot or shrink reads its A tiles "
     "with bulk tensor copies)"},
    {"producer_warp", ValueKind::Bool,
     "true, false (true: a wgmma one_shot or shrink has one more warp that "
     "issues every copy of its shrink pipeline)"},
    {"persistent", ValueKind::Bool,
     "true, false (true: a sorted one_shot runs a resident grid whose "
     "blocks loop over the row blocks)"},
    {"wgmma_expand", ValueKind::Bool,
     "true, false (true: a wgmma one_shot or an expand of BLOCK_SIZE_M 64 "
     "or 128 and rank a multiple of 8 above 32 runs its expand on wgmma)"},
    {"bulk_output", ValueKind::Bool,
     "true, false (true: an sm_90 one_shot or expand with 16-byte aligned "
     "output rows moves each staged output row as one bulk copy)"},
    {"bulk_shrink", ValueKind::Bool,
     "true, false (true: an sm_90 mma.sync one_shot or shrink with K a "
     "multiple of BLOCK_SIZE_K moves each row of its x and A tiles as one "
     "bulk copy)"},
    {"early_expand", ValueKind::Bool,
     "true, false (true: a one_shot issues its expand's first stages before "
     "it reduces r)"},
    {"reduce_scatter", ValueKind::Bool,
     "true, false (true: a one_shot with SPLIT_K > 1 sums r over its "
     "cluster as a reduce-scatter and an all-gather)"},
}};

inline constexpr std::array<int, 4> kTargets = {80, 86, 89, 90};
inline constexpr int kMinBlock = 16;

const FieldInfo &info(Field f);
std::optional<Field> lookupField(std::string_view name);
/// Every field name, comma separated (for "unknown field" messages).
std::string allFieldNames();
bool isPowerOfTwo(long long v);
/// Range check of one integer field value on its own. Empty when allowed.
/// Shared by the parser (per value) and validateSpec (per spec) so both
/// report the same wording.
std::string checkIntValue(Field f, long long v);
/// "<field>: <what>; allowed: <the field's allowed values>".
std::string reasonText(Field f, std::string_view what);
std::string reasonText(Field f, std::string_view what,
                       std::string_view allowed);

} // namespace moelora::spec

#endif // MOELORA_LIB_SPEC_SPECSCHEMA_H
