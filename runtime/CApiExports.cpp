//===- CApiExports.cpp - libmoelora.so
//--------------------------------------===//
//
// The shared library's one translation unit: it only makes sure the C ABI
// (CApi.cpp in moelora_runtime) is exported.
//
//===----------------------------------------------------------------------===//

#include "moelora/moelora.h"

// Taking the address of every entry point pulls CApi.o out of the static
// runtime archive into the shared library; the version script then exports
// the entry points, and this table itself is not needed at run time.
namespace {
[[gnu::used]] const void *const abiTable[] = {
    reinterpret_cast<const void *>(&moelora_abi_version),
    reinterpret_cast<const void *>(&moelora_last_error),
    reinterpret_cast<const void *>(&moelora_runtime_options_init),
    reinterpret_cast<const void *>(&moelora_runtime_create),
    reinterpret_cast<const void *>(&moelora_runtime_destroy),
    reinterpret_cast<const void *>(&moelora_fused_args_init),
    reinterpret_cast<const void *>(&moelora_plan_fused),
    reinterpret_cast<const void *>(&moelora_workspace_bytes),
    reinterpret_cast<const void *>(&moelora_warmup),
    reinterpret_cast<const void *>(&moelora_fused_moe_lora),
    reinterpret_cast<const void *>(&moelora_shrink),
    reinterpret_cast<const void *>(&moelora_expand),
    reinterpret_cast<const void *>(&moelora_align_args_init),
    reinterpret_cast<const void *>(&moelora_align_capacity),
    reinterpret_cast<const void *>(&moelora_align_block_size),
    reinterpret_cast<const void *>(&moelora_get_stats),
    reinterpret_cast<const void *>(&moelora_get_library_info),
    reinterpret_cast<const void *>(&moelora_get_runtime_info),
};
} // namespace
