//===- CApi.cpp - moelora.h over the C++ runtime --------------------------===//
//
// Every entry point validates before touching anything and records the
// reason (naming the argument) in a thread-local message.
//
//===----------------------------------------------------------------------===//

#include "moelora/moelora.h"

#include "moelora/Runtime/Runtime.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>

using namespace moelora;

struct moelora_runtime {
  std::unique_ptr<Runtime> impl;
};

namespace {

thread_local std::string lastError;

moelora_status fail(moelora_status code, std::string message) {
  lastError = std::move(message);
  return code;
}
moelora_status ok() {
  lastError.clear();
  return MOELORA_OK;
}

/// Maps a runtime error to a status code by what it says.
moelora_status fromError(const Error &e) {
  const std::string &m = e.message;
  if (m.rfind("no CUDA driver", 0) == 0 || m.find("no CUDA device") != m.npos ||
      m.find("CUDA_ERROR_NO_DEVICE") != m.npos)
    return fail(MOELORA_ERROR_NO_DEVICE, m);
  if (m.rfind("bundle ", 0) == 0 || m.rfind("tuned table", 0) == 0 ||
      m.find(": bad tuned table") != m.npos)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, m);
  if (m.find("kernel variant not found") != m.npos)
    return fail(MOELORA_ERROR_NOT_FOUND, m);
  if (m.find("CUDA_ERROR") != m.npos)
    return fail(MOELORA_ERROR_CUDA, m);
  if (m.find("must be") != m.npos || m.find("NULL") != m.npos)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, m);
  return fail(MOELORA_ERROR_INTERNAL, m);
}

/// sizeof(moelora_fused_args) before lora_a_host_ptrs was appended.
constexpr size_t kFirstFusedArgsSize =
    offsetof(moelora_fused_args, lora_a_host_ptrs);

bool isPow2AtLeast16(int v) { return v >= 16 && (v & (v - 1)) == 0; }

/// BLOCK_M of the sorted metadata: a power of two in 16..256 (vLLM's
/// configs use 16..128; larger blocks would overflow the planner's
/// shared-memory arithmetic, found by test/fuzz/FuzzCApi.cpp).
constexpr int kMaxBlockM = 256;
bool isBlockM(int v) { return isPow2AtLeast16(v) && v <= kMaxBlockM; }

/// Slices a kernel can take (the spec schema's num_slices: 1..8).
constexpr int kMaxSlices = 8;
/// Above this rank no expand variant fits any GPU's shared memory (a 16-row
/// tile of the intermediate alone passes 227 KB), and the planner's
/// shared-memory arithmetic would overflow long before a caller's rank
/// (found by test/fuzz/FuzzCApi.cpp).
constexpr int kMaxRank = 4096;
/// Pairs (num_tokens * top_k) a call may have: 256K tokens at top_k 8 (4x
/// a large vLLM batch), few enough that the planner's largest grid (the
/// naive two-kernel shrink: one program per pair, slice and 64-column tile
/// of the rank, 2^21 * 8 * 64 = 2^30) stays within CUDA's 2^31 - 1 blocks
/// in x. Past that a grid wraps (to 0, or to a smaller grid that skips
/// work); found by test/fuzz/FuzzCApi.cpp.
constexpr int64_t kMaxPairs = int64_t(1) << 21;
/// The sorted path's grid has one z layer per active adapter (CUDA allows
/// 65535); max_loras + 1 ids bound the active adapters.
constexpr int kMaxGridZ = 65535;
/// Row blocks of the sorted metadata (EM / block_size_m) a call may have:
/// four times what kMaxPairs needs with vLLM's capacity (pairs plus
/// block_size_m - 1 per expert, at block_size_m 16), so that the sorted
/// grids (the shrink's largest: 2^19 x 64 rank tiles x 8 slices = 2^28
/// blocks; it splits K only for few programs) stay within 2^31 - 1 in x.
/// EM is the caller's buffer width, not derived, so it needs its own bound
/// (fuzzing finding F6, test/fuzz/RESULTS.md).
constexpr int64_t kMaxRowBlocks = int64_t(1) << 19;
constexpr int kLargestMaxLoras = kMaxGridZ - 1;

/// The integer a caller stored in an enum-typed field. Callers may store any
/// integer there (Python's ctypes does), and loading a value outside the
/// enumerators' range as the enum type is undefined behaviour: read the
/// bytes as the int32_t they are and validate that.
template <typename Enum> int32_t enumField(const Enum &field) {
  static_assert(std::is_enum_v<Enum> && sizeof(Enum) == sizeof(int32_t),
                "moelora.h enums are passed as 32-bit integers");
  int32_t v;
  std::memcpy(&v, &field, sizeof(v));
  return v;
}

/// Whether a call does nothing (no launch, output unchanged): the
/// dispatcher's rule, which needs no device.
bool isEmptyWork(const MoeLoraCall &c) {
  return c.numPairs() == 0 || c.numSlices == 0 || c.numActiveLoras == 0 ||
         c.N == 0;
}

/// Validates a fused call's shapes and flags (enough for planning and
/// warm-up); the message names the argument.
Expected<MoeLoraCall> toShape(const moelora_fused_args *a) {
  auto bad = [](std::string m) { return makeError(std::move(m)); };
  if (!a)
    return bad("args: NULL");
  // Fields appended since the first release (lora_a_host_ptrs) are
  // optional: a caller built before them passes the smaller size.
  if (a->struct_size < kFirstFusedArgsSize)
    return bad(fmt::format("args.struct_size = {}: must be sizeof("
                           "moelora_fused_args) = {} (call "
                           "moelora_fused_args_init)",
                           a->struct_size, sizeof(moelora_fused_args)));
  const int32_t dtype = enumField(a->dtype);
  if (dtype != MOELORA_DTYPE_FP16 && dtype != MOELORA_DTYPE_BF16)
    return bad(fmt::format("dtype = {}: must be MOELORA_DTYPE_FP16 (0) or "
                           "MOELORA_DTYPE_BF16 (1)",
                           dtype));
  struct {
    const char *name;
    int value, min;
  } shapes[] = {{"num_tokens", a->num_tokens, 0},
                {"top_k", a->top_k, 1},
                {"num_experts", a->num_experts, 1},
                {"K", a->K, 1},
                {"N", a->N, 0},
                {"rank", a->rank, 1},
                {"num_slices", a->num_slices, 0},
                {"max_loras", a->max_loras, 1},
                {"num_active_loras", a->num_active_loras, 0}};
  for (const auto &s : shapes)
    if (s.value < s.min)
      return bad(fmt::format("{} = {}: must be >= {}", s.name, s.value, s.min));
  if (a->rank > kMaxRank)
    return bad(fmt::format("rank = {}: must be <= {}", a->rank, kMaxRank));
  if (a->max_loras > kLargestMaxLoras)
    return bad(fmt::format("max_loras = {}: must be <= {}", a->max_loras,
                           kLargestMaxLoras));
  if (a->num_slices > kMaxSlices)
    return bad(fmt::format("num_slices = {}: must be <= {}", a->num_slices,
                           kMaxSlices));
  if (a->num_active_loras > a->max_loras + 1)
    return bad(fmt::format("num_active_loras = {}: must be <= max_loras + 1 "
                           "= {}",
                           a->num_active_loras, a->max_loras + 1));
  if (a->num_experts > kMaxAlignExperts)
    return bad(fmt::format("num_experts = {}: must be <= {}", a->num_experts,
                           kMaxAlignExperts));
  MoeLoraCall c;
  c.dtype = dtype == MOELORA_DTYPE_BF16 ? DType::BF16 : DType::F16;
  c.numTokens = a->num_tokens;
  c.topK = a->top_k;
  c.numExperts = a->num_experts;
  c.K = a->K;
  c.N = a->N;
  c.rank = a->rank;
  c.numSlices = a->num_slices;
  c.maxLoras = a->max_loras;
  c.numActiveLoras = a->num_active_loras;
  c.sorted = a->sorted_token_ids != nullptr || a->EM > 0;
  c.EM = a->EM;
  c.blockSizeM = a->block_size_m;
  c.mulRoutedWeight = a->mul_routed_weight != 0;
  c.addInputs = a->add_inputs != 0;
  // With the slices' host base pointers, lora_a's strides decide whether
  // the plan may use tensor maps (weightTensorMapsApply), warm-up included.
  if (a->struct_size >= sizeof(moelora_fused_args))
    c.loraAHostPtrs = a->lora_a_host_ptrs;
  c.aStrideL = a->lora_a_stride[0];
  c.aStrideE = a->lora_a_stride[1];
  c.aStrideR = a->lora_a_stride[2];
  if (int64_t(a->num_tokens) * a->top_k > kMaxPairs)
    return bad(fmt::format("num_tokens * top_k = {}: must be <= {}",
                           int64_t(a->num_tokens) * a->top_k, kMaxPairs));
  if (c.sorted && !isBlockM(a->block_size_m))
    return bad(fmt::format("shrink_block_size_m (block_size_m) = {}: must "
                           "be a power of two in 16..{}",
                           a->block_size_m, kMaxBlockM));
  if (c.sorted && (a->EM <= 0 || a->EM % a->block_size_m != 0))
    return bad(fmt::format("EM = {}: must be a positive multiple of "
                           "block_size_m = {}",
                           a->EM, a->block_size_m));
  if (c.sorted && a->EM / a->block_size_m > kMaxRowBlocks)
    return bad(fmt::format("EM = {}: must be <= {} (block_size_m = {} times "
                           "{} row blocks)",
                           a->EM, kMaxRowBlocks * a->block_size_m,
                           a->block_size_m, kMaxRowBlocks));
  // The kernels index the sorted metadata (max_loras rows of EM ids) in
  // int32: a larger buffer would wrap to another adapter's rows.
  if (c.sorted && int64_t(a->max_loras) * a->EM > INT32_MAX)
    return bad(fmt::format("max_loras * EM = {} * {} = {}: the sorted "
                           "metadata must have at most {} entries (int32 "
                           "indices)",
                           a->max_loras, a->EM, int64_t(a->max_loras) * a->EM,
                           INT32_MAX));
  return c;
}

/// Validates a whole call (shapes, pointers, strides) and converts it.
Expected<MoeLoraCall> toCall(const moelora_fused_args *a) {
  auto bad = [](std::string m) { return makeError(std::move(m)); };
  auto shape = toShape(a);
  if (!shape)
    return shape;
  MoeLoraCall c = shape.take();
  // Empty work: nothing is read, so nothing else needs to be valid (an
  // empty torch tensor's data_ptr() is NULL).
  if (isEmptyWork(c))
    return c;
  struct {
    const char *name;
    const void *ptr;
    bool needed;
  } ptrs[] = {
      {"x", a->x, true},
      {"lora_a_ptrs", a->lora_a_ptrs, true},
      {"lora_b_ptrs", a->lora_b_ptrs, true},
      {"output", a->output, true},
      {"token_lora_mapping", a->token_lora_mapping, true},
      {"lora_ids", a->lora_ids, true},
      {"adapter_enabled", a->adapter_enabled, true},
      {"topk_weights", a->topk_weights, c.mulRoutedWeight},
      {"topk_ids", a->topk_ids, !c.sorted},
      {"sorted_token_ids", a->sorted_token_ids, c.sorted},
      {"expert_ids", a->expert_ids, c.sorted},
      {"num_tokens_post_padded", a->num_tokens_post_padded, c.sorted},
  };
  for (const auto &p : ptrs)
    if (p.needed && !p.ptr)
      return bad(fmt::format("{}: NULL pointer", p.name));
  // Element strides as torch reports them: never negative.
  const struct {
    const char *name;
    const int64_t *strides;
    int count;
  } strideArrays[] = {{"x_stride", a->x_stride, 2},
                      {"lora_a_stride", a->lora_a_stride, 4},
                      {"lora_b_stride", a->lora_b_stride, 4},
                      {"output_stride", a->output_stride, 3}};
  for (const auto &sa : strideArrays)
    for (int i = 0; i < sa.count; ++i)
      if (sa.strides[i] < 0)
        return bad(fmt::format("{}[{}] = {}: must be >= 0", sa.name, i,
                               sa.strides[i]));
  // Innermost strides 1; the contract's output view.
  if (a->x_stride[1] != 1)
    return bad("x_stride[1]: must be 1 (rows contiguous)");
  if (a->lora_a_stride[3] != 1)
    return bad("lora_a_stride[3]: must be 1 (K contiguous)");
  if (a->lora_b_stride[3] != 1)
    return bad("lora_b_stride[3]: must be 1 (R contiguous)");
  if (a->output_stride[2] != 1)
    return bad("output_stride[2]: must be 1");
  if (int64_t pairRow; __builtin_mul_overflow(int64_t(a->top_k),
                                              a->output_stride[1], &pairRow) ||
                       a->output_stride[0] != pairRow)
    return bad(fmt::format("output_stride: stride(0) = {} must equal top_k * "
                           "stride(1) = {} * {}",
                           a->output_stride[0], a->top_k, a->output_stride[1]));
  // Vector accesses along K (x, A) and R (B): strides must keep rows aligned.
  int kVec = copyVectorElems(a->K), rVec = copyVectorElems(a->rank);
  if (a->K % 2 != 0)
    return bad(fmt::format("K = {}: must be even", a->K));
  if (a->rank % 2 != 0)
    return bad(fmt::format("rank = {}: must be even", a->rank));
  if (a->x_stride[0] % kVec != 0)
    return bad(fmt::format("x_stride[0] = {}: must be a multiple of {}",
                           a->x_stride[0], kVec));
  for (int i = 0; i < 3; ++i) {
    if (a->lora_a_stride[i] % kVec != 0)
      return bad(fmt::format("lora_a_stride[{}] = {}: must be a multiple of "
                             "{}",
                             i, a->lora_a_stride[i], kVec));
    if (a->lora_b_stride[i] % rVec != 0)
      return bad(fmt::format("lora_b_stride[{}] = {}: must be a multiple of "
                             "{}",
                             i, a->lora_b_stride[i], rVec));
  }
  if (reinterpret_cast<uintptr_t>(a->x) % (kVec * 2) != 0)
    return bad(fmt::format("x: must be {}-byte aligned", kVec * 2));
  c.x = a->x;
  c.loraAPtrs = a->lora_a_ptrs;
  c.loraBPtrs = a->lora_b_ptrs;
  c.out = a->output;
  c.topkWeights = a->topk_weights;
  c.sortedTokenIds = a->sorted_token_ids;
  c.expertIds = c.sorted ? a->expert_ids : a->topk_ids;
  c.numTokensPostPadded = a->num_tokens_post_padded;
  c.tokenLoraMapping = a->token_lora_mapping;
  c.loraIds = a->lora_ids;
  c.adapterEnabled = a->adapter_enabled;
  c.xStride = a->x_stride[0];
  c.bStrideL = a->lora_b_stride[0];
  c.bStrideE = a->lora_b_stride[1];
  c.bStrideN = a->lora_b_stride[2];
  c.outStride = a->output_stride[1];
  return c;
}

/// round_up(num_tokens*top_k + num_experts*(block_size_m-1), block_size_m) in
/// 64 bits; 0 for a non-positive block size or negative counts.
int64_t alignCapacity64(int32_t numTokens, int32_t topK, int32_t numExperts,
                        int32_t blockM) {
  if (blockM <= 0 || numTokens < 0 || topK < 0 || numExperts < 0)
    return 0;
  const int64_t n =
      int64_t(numTokens) * topK + int64_t(numExperts) * (blockM - 1);
  return (n + blockM - 1) / blockM * blockM;
}

#define MOELORA_REQUIRE_RT(rt)                                                 \
  if (!(rt) || !(rt)->impl)                                                    \
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, "rt: NULL runtime");

} // namespace

extern "C" {

uint32_t moelora_abi_version(void) { return MOELORA_ABI_VERSION; }
const char *moelora_last_error(void) { return lastError.c_str(); }

void moelora_runtime_options_init(moelora_runtime_options *o) {
  if (!o)
    return;
  std::memset(o, 0, sizeof(*o));
  o->struct_size = sizeof(*o);
  o->enable_jit = 1;
  o->enable_disk_cache = 1;
}

void moelora_fused_args_init(moelora_fused_args *a) {
  if (!a)
    return;
  std::memset(a, 0, sizeof(*a));
  a->struct_size = sizeof(*a);
  a->dtype = MOELORA_DTYPE_BF16;
  a->top_k = 1;
  a->num_slices = 1;
  a->max_loras = 1;
  a->num_active_loras = 1;
  a->num_experts = 1;
  a->add_inputs = 1;
}

void moelora_align_args_init(moelora_align_args *a) {
  if (!a)
    return;
  std::memset(a, 0, sizeof(*a));
  a->struct_size = sizeof(*a);
  a->top_k = 1;
  a->num_experts = 1;
  a->max_loras = 1;
  a->block_size_m = 16;
}

moelora_status moelora_runtime_create(const moelora_runtime_options *options,
                                      moelora_runtime **out) {
  if (!out)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, "out: NULL");
  *out = nullptr;
  moelora_runtime_options defaults;
  moelora_runtime_options_init(&defaults);
  if (!options)
    options = &defaults;
  if (options->struct_size < sizeof(moelora_runtime_options))
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                "options.struct_size: must be sizeof(moelora_runtime_options) "
                "(call moelora_runtime_options_init)");
  if (options->num_bundle_paths < 0 ||
      (options->num_bundle_paths > 0 && !options->bundle_paths))
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                "bundle_paths: NULL with num_bundle_paths > 0");
  RuntimeOptions o;
  if (options->cache_dir)
    o.cache.diskDir = options->cache_dir;
  o.cache.useJit = options->enable_jit != 0;
  o.cache.useDisk = options->enable_disk_cache != 0;
  for (int i = 0; i < options->num_bundle_paths; ++i) {
    if (!options->bundle_paths[i])
      return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                  fmt::format("bundle_paths[{}]: NULL", i));
    o.cache.bundles.push_back(options->bundle_paths[i]);
  }
  if (options->tuned_table_path) {
    o.tunedTablePath = options->tuned_table_path;
    o.noTunedTable = o.tunedTablePath.empty();
  }
  auto rt = Runtime::create(o);
  if (!rt)
    return fromError(rt.error());
  *out = new moelora_runtime{rt.take()};
  return ok();
}

void moelora_runtime_destroy(moelora_runtime *rt) { delete rt; }

size_t moelora_workspace_bytes(const moelora_fused_args *args) {
  // A size cannot carry a status: invalid arguments give 0 and say why in
  // moelora_last_error(), as the status-returning entry points do.
  auto c = toCall(args);
  if (!c) {
    fail(MOELORA_ERROR_INVALID_ARGUMENT, c.error().message);
    return 0;
  }
  ok();
  // Empty work plans no launch, so it needs no workspace.
  return isEmptyWork(*c) ? 0 : intermediateBytes(*c);
}

moelora_status moelora_plan_fused(moelora_runtime *rt,
                                  const moelora_fused_args *args,
                                  moelora_plan *plan) {
  MOELORA_REQUIRE_RT(rt);
  if (!plan)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, "plan: NULL");
  auto c = toCall(args);
  if (!c)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, c.error().message);
  auto p = rt->impl->plan(*c, args->fully_sharded != 0);
  if (!p)
    return fromError(p.error());
  std::memset(plan, 0, sizeof(*plan));
  plan->path = moelora_path(int(p->path));
  plan->num_launches = int32_t(p->kernels.size());
  plan->workspace_bytes = p->workspaceBytes;
  plan->from_tuned_table = p->fromTunedTable;
  for (size_t i = 0; i < p->kernels.size() && i < 2; ++i) {
    const PlannedKernel &k = p->kernels[i];
    moelora_kernel_launch &l = plan->launches[i];
    std::snprintf(l.cache_key, sizeof(l.cache_key), "%s",
                  k.spec.cacheKey().c_str());
    std::snprintf(l.entry, sizeof(l.entry), "%s", k.spec.entryName().c_str());
    LaunchGeometry g = launchGeometry(k.spec, *c, k.knobs);
    std::memcpy(l.grid, g.grid, sizeof(l.grid));
    l.block = g.block;
    if (auto image = rt->impl->cache().image(k.spec))
      l.shared_bytes = uint32_t((*image)->sharedBytes);
    if (k.spec.family == KernelFamily::OneShot ||
        k.spec.family == KernelFamily::Expand)
      plan->npid = k.knobs.npid;
    if (k.spec.family == KernelFamily::SmallBatch)
      plan->tiles_per_item = k.knobs.tilesPerItem;
  }
  return ok();
}

moelora_status moelora_warmup(moelora_runtime *rt,
                              const moelora_fused_args *calls, int32_t count) {
  MOELORA_REQUIRE_RT(rt);
  if (count < 0 || (count > 0 && !calls))
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                "calls: NULL with count > 0 (or count < 0)");
  // The array's elements are the caller's struct: a caller built before
  // lora_a_host_ptrs was appended has smaller ones. Each is read into a
  // zeroed struct of ours (toShape refuses a struct_size below the first
  // release's, at calls[0], before a second element is read).
  const size_t stride = count > 0 ? calls[0].struct_size : 0;
  std::vector<std::pair<MoeLoraCall, bool>> list;
  for (int i = 0; i < count; ++i) {
    moelora_fused_args a;
    std::memset(&a, 0, sizeof(a));
    std::memcpy(&a, reinterpret_cast<const char *>(calls) + i * stride,
                std::min(stride, sizeof(a)));
    if (a.struct_size != stride)
      return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                  fmt::format("calls[{}].struct_size = {}: must equal "
                              "calls[0]'s ({})",
                              i, a.struct_size, stride));
    // Warm-up needs the shapes only: pointers may be NULL here.
    auto c = toShape(&a);
    if (!c)
      return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                  fmt::format("calls[{}]: {}", i, c.error().message));
    list.emplace_back(*c, a.fully_sharded != 0);
  }
  if (Status s = rt->impl->warmup(list); !s)
    return fromError(s.error());
  return ok();
}

moelora_status moelora_fused_moe_lora(moelora_runtime *rt,
                                      const moelora_fused_args *args,
                                      void *stream) {
  MOELORA_REQUIRE_RT(rt);
  auto c = toCall(args);
  if (!c)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, c.error().message);
  if (Status s =
          rt->impl->fusedMoeLora(*c, args->fully_sharded != 0, args->workspace,
                                 static_cast<CUstream>(stream));
      !s)
    return fromError(s.error());
  return ok();
}

moelora_status moelora_shrink(moelora_runtime *rt,
                              const moelora_fused_args *args, void *stream) {
  MOELORA_REQUIRE_RT(rt);
  auto c = toCall(args);
  if (!c)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, c.error().message);
  if (Status s =
          rt->impl->shrink(*c, args->workspace, static_cast<CUstream>(stream));
      !s)
    return fromError(s.error());
  return ok();
}

moelora_status moelora_expand(moelora_runtime *rt,
                              const moelora_fused_args *args,
                              int32_t out_col_offset, void *stream) {
  MOELORA_REQUIRE_RT(rt);
  auto c = toCall(args);
  if (!c)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, c.error().message);
  if (out_col_offset < 0)
    return fail(
        MOELORA_ERROR_INVALID_ARGUMENT,
        fmt::format("out_col_offset = {}: must be >= 0", out_col_offset));
  if (Status s = rt->impl->expand(*c, args->workspace, out_col_offset,
                                  static_cast<CUstream>(stream));
      !s)
    return fromError(s.error());
  return ok();
}

int32_t moelora_align_capacity(int32_t num_tokens, int32_t top_k,
                               int32_t num_experts, int32_t block_size_m) {
  const int64_t em =
      alignCapacity64(num_tokens, top_k, num_experts, block_size_m);
  // 0 when the arguments are invalid or it does not fit.
  return em > INT32_MAX ? 0 : int32_t(em);
}

moelora_status moelora_align_block_size(moelora_runtime *rt,
                                        const moelora_align_args *a,
                                        void *stream) {
  MOELORA_REQUIRE_RT(rt);
  if (!a)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, "args: NULL");
  if (a->struct_size < sizeof(moelora_align_args))
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                "args.struct_size: must be sizeof(moelora_align_args) (call "
                "moelora_align_args_init)");
  if (!isBlockM(a->block_size_m))
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                fmt::format("block_size_m = {}: must be a power of two in "
                            "16..{}",
                            a->block_size_m, kMaxBlockM));
  if (a->num_tokens < 0 || a->top_k < 1 || a->num_experts < 1 ||
      a->max_loras < 1)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                "num_tokens >= 0, top_k >= 1, num_experts >= 1 and max_loras "
                ">= 1 are required");
  if (a->num_experts > kMaxAlignExperts)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                fmt::format("num_experts = {}: must be <= {}", a->num_experts,
                            kMaxAlignExperts));
  // Pairs and the capacity (pairs plus padding) are int32 in the kernel.
  const int64_t pairs = int64_t(a->num_tokens) * a->top_k;
  const int64_t capacity =
      alignCapacity64(a->num_tokens, a->top_k, a->num_experts, a->block_size_m);
  if (capacity > INT32_MAX)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                fmt::format("num_tokens * top_k = {}: too large (EM = {} must "
                            "fit in int32)",
                            pairs, capacity));
  if (a->EM != capacity)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                fmt::format("EM = {}: must be moelora_align_capacity(...) = {}",
                            a->EM, capacity));
  // Without pairs nothing is read: an empty torch tensor's data_ptr() is
  // NULL. The outputs are written all the same.
  const struct {
    const char *name;
    const void *ptr;
    bool needed;
  } ptrs[] = {{"topk_ids", a->topk_ids, pairs > 0},
              {"token_lora_mapping", a->token_lora_mapping, pairs > 0},
              {"sorted_token_ids", a->sorted_token_ids, true},
              {"expert_ids", a->expert_ids, true},
              {"num_tokens_post_padded", a->num_tokens_post_padded, true}};
  for (const auto &p : ptrs)
    if (p.needed && !p.ptr)
      return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                  fmt::format("{}: NULL pointer", p.name));
  if (pairs == 0) {
    // What the kernel writes for zero pairs (the reference's result): every
    // adapter's row all padding (the pad value is num_tokens * top_k = 0),
    // every block's expert -1, every padded length 0. No kernel: three
    // memsets on the caller's stream (capturable like a launch).
    const CudaDriver *drv = rt->impl->driver();
    if (!drv)
      return fromError(Error{rt->impl->driverErrorMessage()});
    const size_t rows = size_t(a->max_loras);
    const size_t blocks = size_t(a->EM / a->block_size_m);
    const struct {
      void *ptr;
      unsigned value;
      size_t count;
      const char *name;
    } fills[] = {
        {a->sorted_token_ids, 0u, rows * size_t(a->EM), "sorted_token_ids"},
        {a->expert_ids, 0xffffffffu, rows * blocks, "expert_ids"},
        {a->num_tokens_post_padded, 0u, rows, "num_tokens_post_padded"}};
    for (const auto &f : fills)
      if (Status s = drv->check(
              drv->cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(f.ptr),
                                    f.value, f.count,
                                    static_cast<CUstream>(stream)),
              fmt::format("moe_lora_align_block_size: filling {}", f.name));
          !s)
        return fromError(s.error());
    return ok();
  }
  AlignCall call;
  call.topkIds = a->topk_ids;
  call.tokenLoraMapping = a->token_lora_mapping;
  call.sortedTokenIds = a->sorted_token_ids;
  call.expertIds = a->expert_ids;
  call.numTokensPostPadded = a->num_tokens_post_padded;
  call.numTokens = a->num_tokens;
  call.topK = a->top_k;
  call.numExperts = a->num_experts;
  call.maxLoras = a->max_loras;
  call.EM = a->EM;
  if (Status s = rt->impl->alignBlockSize(call, a->block_size_m,
                                          static_cast<CUstream>(stream));
      !s)
    return fromError(s.error());
  return ok();
}

moelora_status moelora_get_stats(moelora_runtime *rt, moelora_stats *stats) {
  MOELORA_REQUIRE_RT(rt);
  if (!stats)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, "stats: NULL");
  const CacheStats &c = rt->impl->cache().stats();
  stats->memory_hits = c.memoryHits;
  stats->disk_hits = c.diskHits;
  stats->bundle_hits = c.bundleHits;
  stats->jit_generations = c.jitGenerations;
  stats->misses = c.misses;
  stats->jit_ms_total = double(c.jitMicros) / 1000.0;
  stats->launches = rt->impl->launches();
  return ok();
}

void moelora_get_library_info(moelora_library_info *info) {
  if (!info || info->struct_size < sizeof(moelora_library_info))
    return;
  // Computed once: the strings must outlive the call (the library owns them).
  static const std::string path = thisLibraryPath();
  static const std::string tunedDirs = [] {
    std::string joined;
    for (const std::string &d : tunedTableDirs())
      joined += (joined.empty() ? "" : ":") + d;
    return joined;
  }();
  static const std::string stamp(generatorStamp());
  static const std::string cacheDir = defaultCacheDir();
  info->abi_version = MOELORA_ABI_VERSION;
  info->version = MOELORA_VERSION;
  info->generator_stamp = stamp.c_str();
  info->has_jit = hasJitHook() ? 1 : 0;
  info->library_path = path.c_str();
  info->tuned_dirs = tunedDirs.c_str();
  info->default_cache_dir = cacheDir.c_str();
}

moelora_status moelora_get_runtime_info(moelora_runtime *rt,
                                        moelora_runtime_info *info) {
  MOELORA_REQUIRE_RT(rt);
  if (!info)
    return fail(MOELORA_ERROR_INVALID_ARGUMENT, "info: NULL");
  if (info->struct_size < sizeof(moelora_runtime_info))
    return fail(MOELORA_ERROR_INVALID_ARGUMENT,
                fmt::format("info.struct_size = {}: must be sizeof("
                            "moelora_runtime_info) = {}",
                            info->struct_size, sizeof(moelora_runtime_info)));
  const Runtime &r = *rt->impl;
  uint32_t size = info->struct_size;
  std::memset(info, 0, sizeof(*info));
  info->struct_size = size;
  info->has_device = r.driver() ? 1 : 0;
  info->compute_capability = r.device().sm;
  info->num_sms = r.device().smCount;
  info->jit_enabled = rt->impl->cache().generatesMissing() ? 1 : 0;
  info->disk_cache_enabled = rt->impl->cache().usesDisk() ? 1 : 0;
  auto copy = [](char *dst, size_t n, const std::string &src) {
    std::snprintf(dst, n, "%s", src.c_str());
  };
  copy(info->device_name, sizeof(info->device_name), r.device().name);
  copy(info->driver_error, sizeof(info->driver_error), r.driverErrorMessage());
  copy(info->tuned_table, sizeof(info->tuned_table), r.tunedTablePath());
  copy(info->cache_dir, sizeof(info->cache_dir), rt->impl->cache().diskDir());
  return ok();
}

} // extern "C"
