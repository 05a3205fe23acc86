//===- FuzzCApi.cpp - libFuzzer target: the C ABI's argument validation ---===//
//
// moelora_fused_args and moelora_align_args built field by field from the
// input (raw integers, interesting values, or a consistent contiguous
// layout with one field disturbed), then every entry point that takes them:
// moelora_plan_fused, moelora_workspace_bytes, moelora_warmup, and without a
// GPU moelora_fused_moe_lora, moelora_shrink, moelora_expand and
// moelora_align_block_size (which stop at MOELORA_ERROR_NO_DEVICE once the
// arguments are valid). The runtimes have no driver, JIT off and no disk
// cache, and plan for MOELORA_TARGET_GPU (an H200: its tuned table, or none).
// Pointers are fake and never dereferenced.
//
// Besides crashes and sanitizer reports, broken promises of moelora.h are
// findings: a status outside the documented set, a message that disagrees
// with the status, a plan changed on failure, a planned grid the driver
// would refuse, or entry points that disagree on whether arguments are
// valid.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "moelora/moelora.h"

#include <fuzzer/FuzzedDataProvider.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

moelora_runtime *runtimes[2]; // H200 tuned table, none
bool noDevice = true;
unsigned callsSinceCreate = 0;

moelora_runtime *create(const char *tunedTable) {
  moelora_runtime_options o;
  moelora_runtime_options_init(&o);
  o.enable_jit = 0;
  o.enable_disk_cache = 0;
  o.tuned_table_path = tunedTable;
  moelora_runtime *rt = nullptr;
  if (moelora_runtime_create(&o, &rt) != MOELORA_OK) {
    std::fprintf(stderr, "moelora_runtime_create: %s\n", moelora_last_error());
    std::abort();
  }
  return rt;
}

void createRuntimes() {
  for (moelora_runtime *&rt : runtimes)
    moelora_runtime_destroy(rt);
  runtimes[0] = create(nullptr); // the committed table for MOELORA_TARGET_GPU
  runtimes[1] = create("");      // vLLM's rules alone
  moelora_runtime_info info;
  std::memset(&info, 0, sizeof(info));
  info.struct_size = sizeof(info);
  if (moelora_get_runtime_info(runtimes[0], &info) != MOELORA_OK)
    std::abort();
  // Fake pointers must never reach a real GPU.
  noDevice = info.has_device == 0;
  callsSinceCreate = 0;
}

const int32_t kInterestingInts[] = {
    0,      1,       2,         3,         7,
    8,      15,      16,        17,        24,
    32,     64,      128,       129,       256,
    1024,   4096,    65535,     -1,        -2,
    -16,    1 << 20, INT32_MAX, INT32_MIN, INT32_MAX - 1,
    1 << 30};

/// An interesting value, any int32, a value in [lo, hi] (realistic), or one
/// in [lo, wide] (large but possibly valid: where grids and sizes grow).
int32_t anInt(FuzzedDataProvider &fdp, int32_t lo, int32_t hi,
              int32_t wide = 0) {
  switch (fdp.ConsumeIntegralInRange<int>(0, 4)) {
  case 0:
    return fdp.PickValueInArray(kInterestingInts);
  case 1:
    return fdp.ConsumeIntegral<int32_t>();
  case 2:
    if (wide > hi)
      return fdp.ConsumeIntegralInRange<int32_t>(lo, wide);
    [[fallthrough]];
  default:
    return fdp.ConsumeIntegralInRange<int32_t>(lo, hi);
  }
}

template <typename T = void> T *aPointer(FuzzedDataProvider &fdp) {
  static const uintptr_t kPointers[] = {
      0, 0x100000, 0x100002, 0x100004, 0x100008, 0x7fff0000, 1, 0x10};
  uintptr_t v = fdp.ConsumeBool() ? fdp.PickValueInArray(kPointers)
                                  : fdp.ConsumeIntegral<uintptr_t>();
  return reinterpret_cast<T *>(v);
}

/// Usually a valid, contiguous call (so the planner is reached), with some
/// fields replaced by anything.
moelora_fused_args fusedArgs(FuzzedDataProvider &fdp) {
  moelora_fused_args a;
  moelora_fused_args_init(&a);
  int32_t dtype =
      fdp.ConsumeBool() ? fdp.ConsumeIntegralInRange(0, 1) : anInt(fdp, -2, 3);
  std::memcpy(&a.dtype, &dtype, sizeof(dtype)); // as a C caller stores it
  a.num_tokens = anInt(fdp, 0, 9000, 1 << 22);
  a.top_k = anInt(fdp, 1, 10, 1024);
  a.num_experts = anInt(fdp, 1, 300, 1100);
  a.K = anInt(fdp, 1, 9000, 1 << 20);
  a.N = anInt(fdp, 0, 9000, 1 << 20);
  a.rank = anInt(fdp, 1, 300, 5000);
  a.num_slices = anInt(fdp, 0, 4, 9);
  a.max_loras = anInt(fdp, 1, 9, 70000);
  a.num_active_loras = anInt(fdp, 0, 10, 70000);
  a.mul_routed_weight = fdp.ConsumeIntegralInRange(0, 2);
  a.add_inputs = fdp.ConsumeIntegralInRange(0, 2);
  a.fully_sharded = fdp.ConsumeIntegralInRange(0, 2);
  if (fdp.ConsumeBool()) { // sorted metadata
    a.block_size_m = fdp.ConsumeBool() ? 16 << fdp.ConsumeIntegralInRange(0, 3)
                                       : anInt(fdp, 0, 256);
    a.EM = fdp.ConsumeBool()
               ? moelora_align_capacity(a.num_tokens, a.top_k, a.num_experts,
                                        a.block_size_m)
               : anInt(fdp, 0, 1 << 20);
    a.sorted_token_ids = aPointer<const int32_t>(fdp);
    a.expert_ids = aPointer<const int32_t>(fdp);
    a.num_tokens_post_padded = aPointer<const int32_t>(fdp);
  } else {
    a.topk_ids = aPointer<const int32_t>(fdp);
  }
  // Contiguous strides (wrapping like a C caller's arithmetic would).
  auto mul = [](int64_t x, int64_t y) {
    return int64_t(uint64_t(x) * uint64_t(y));
  };
  const int64_t E = a.num_experts, K = a.K, N = a.N, R = a.rank;
  a.x_stride[0] = K;
  a.x_stride[1] = 1;
  a.lora_a_stride[0] = mul(mul(E, R), K);
  a.lora_a_stride[1] = mul(R, K);
  a.lora_a_stride[2] = K;
  a.lora_a_stride[3] = 1;
  a.lora_b_stride[0] = mul(mul(E, N), R);
  a.lora_b_stride[1] = mul(N, R);
  a.lora_b_stride[2] = R;
  a.lora_b_stride[3] = 1;
  a.output_stride[1] = mul(a.num_slices, N);
  a.output_stride[0] = mul(a.top_k, a.output_stride[1]);
  a.output_stride[2] = 1;
  a.x = aPointer(fdp);
  a.lora_a_ptrs = aPointer(fdp);
  a.lora_b_ptrs = aPointer(fdp);
  a.output = aPointer(fdp);
  a.topk_weights = aPointer<const float>(fdp);
  a.token_lora_mapping = aPointer<const int32_t>(fdp);
  a.lora_ids = aPointer<const int32_t>(fdp);
  a.adapter_enabled = aPointer<const int32_t>(fdp);
  a.workspace = aPointer(fdp);
  // A few arbitrary strides, and now and then an arbitrary struct size.
  for (int n = fdp.ConsumeIntegralInRange(0, 3); n > 0; --n) {
    int64_t *strides[] = {
        a.x_stride,          a.x_stride + 1,      a.lora_a_stride,
        a.lora_a_stride + 1, a.lora_a_stride + 2, a.lora_a_stride + 3,
        a.lora_b_stride,     a.lora_b_stride + 1, a.lora_b_stride + 2,
        a.lora_b_stride + 3, a.output_stride,     a.output_stride + 1,
        a.output_stride + 2};
    *fdp.PickValueInArray(strides) = fdp.ConsumeIntegral<int64_t>();
  }
  if (fdp.ConsumeIntegralInRange(0, 15) == 0)
    a.struct_size = fdp.ConsumeIntegral<uint32_t>();
  return a;
}

bool isStatus(moelora_status s) {
  return s >= MOELORA_OK && s <= MOELORA_ERROR_INTERNAL;
}

/// The message says success iff the status does.
void checkMessage(moelora_status s, const char *entry) {
  bool empty = moelora_last_error()[0] == 0;
  if ((s == MOELORA_OK) != empty) {
    std::fprintf(stderr, "%s: status %d with message '%s'\n", entry, int(s),
                 moelora_last_error());
    std::abort();
  }
}

void checkPlan(const moelora_plan &p, const moelora_fused_args &a) {
  FUZZ_CHECK(p.path >= MOELORA_PATH_NONE && p.path <= MOELORA_PATH_TWO_KERNEL,
             "a plan with an unknown path");
  const int want[] = {0, 1, 1, 2};
  FUZZ_CHECK(p.num_launches == want[p.path],
             "a plan whose launches do not match its path");
  for (int i = 0; i < p.num_launches; ++i) {
    const moelora_kernel_launch &l = p.launches[i];
    // What cuLaunchKernel accepts.
    FUZZ_CHECK(l.grid[0] >= 1 && l.grid[0] <= uint32_t(INT32_MAX),
               "a planned grid.x the driver refuses");
    FUZZ_CHECK(l.grid[1] >= 1 && l.grid[1] <= 65535,
               "a planned grid.y the driver refuses");
    FUZZ_CHECK(l.grid[2] >= 1 && l.grid[2] <= 65535,
               "a planned grid.z the driver refuses");
    FUZZ_CHECK(l.block >= 32 && l.block <= 1024 && l.block % 32 == 0,
               "a planned block size the driver refuses");
    FUZZ_CHECK(std::memchr(l.cache_key, 0, sizeof(l.cache_key)) &&
                   l.cache_key[0] != 0,
               "a launch without a cache key");
    FUZZ_CHECK(std::memchr(l.entry, 0, sizeof(l.entry)) && l.entry[0] != 0,
               "a launch without an entry name");
  }
  if (p.path == MOELORA_PATH_TWO_KERNEL) {
    FUZZ_CHECK(p.workspace_bytes > 0, "a two-kernel plan without workspace");
    FUZZ_CHECK(moelora_workspace_bytes(&a) == p.workspace_bytes,
               "moelora_workspace_bytes disagrees with the plan");
  } else {
    FUZZ_CHECK(p.workspace_bytes == 0, "workspace for a one-kernel plan");
  }
}

/// MOELORA_FUZZ_VERBOSE=1 prints each call's fields (triage of a finding:
/// run the target on the input file).
bool verbose() {
  static const bool v = std::getenv("MOELORA_FUZZ_VERBOSE") != nullptr;
  return v;
}

void print(const moelora_fused_args &a) {
  int32_t dtype;
  std::memcpy(&dtype, &a.dtype, sizeof(dtype));
  std::fprintf(stderr,
               "fused: struct_size %u dtype %d num_tokens %d top_k %d "
               "num_experts %d K %d N %d rank %d num_slices %d max_loras %d "
               "num_active_loras %d EM %d block_size_m %d mrw %d add %d "
               "sharded %d sorted_ids %p\n"
               "  x %p [%lld %lld] A %p [%lld %lld %lld %lld] B %p [%lld %lld "
               "%lld %lld] out %p [%lld %lld %lld]\n",
               a.struct_size, dtype, a.num_tokens, a.top_k, a.num_experts, a.K,
               a.N, a.rank, a.num_slices, a.max_loras, a.num_active_loras, a.EM,
               a.block_size_m, a.mul_routed_weight, a.add_inputs,
               a.fully_sharded, static_cast<const void *>(a.sorted_token_ids),
               a.x, (long long)a.x_stride[0], (long long)a.x_stride[1],
               a.lora_a_ptrs, (long long)a.lora_a_stride[0],
               (long long)a.lora_a_stride[1], (long long)a.lora_a_stride[2],
               (long long)a.lora_a_stride[3], a.lora_b_ptrs,
               (long long)a.lora_b_stride[0], (long long)a.lora_b_stride[1],
               (long long)a.lora_b_stride[2], (long long)a.lora_b_stride[3],
               a.output, (long long)a.output_stride[0],
               (long long)a.output_stride[1], (long long)a.output_stride[2]);
}

void print(const moelora_plan &p) {
  std::fprintf(stderr, "plan: path %d launches %d npid %d workspace %zu\n",
               int(p.path), p.num_launches, p.npid, p.workspace_bytes);
  for (int i = 0; i < p.num_launches && i < 2; ++i)
    std::fprintf(stderr, "  %s grid %u %u %u block %u\n",
                 p.launches[i].cache_key, p.launches[i].grid[0],
                 p.launches[i].grid[1], p.launches[i].grid[2],
                 p.launches[i].block);
}

void fuzzFused(FuzzedDataProvider &fdp, moelora_runtime *rt) {
  moelora_fused_args a = fusedArgs(fdp);
  if (verbose())
    print(a);

  size_t ws = moelora_workspace_bytes(&a);
  bool wsValid = moelora_last_error()[0] == 0;
  FUZZ_CHECK(wsValid || ws == 0, "workspace bytes with an error");

  moelora_plan plan, before;
  std::memset(&plan, 0x5a, sizeof(plan));
  before = plan;
  moelora_status s = moelora_plan_fused(rt, &a, &plan);
  checkMessage(s, "moelora_plan_fused");
  if (verbose())
    s == MOELORA_OK
        ? print(plan)
        : void(std::fprintf(stderr, "plan: %s\n", moelora_last_error()));
  // Planning needs no device: the arguments are valid or not.
  FUZZ_CHECK(s == MOELORA_OK || s == MOELORA_ERROR_INVALID_ARGUMENT,
             "moelora_plan_fused: a status other than OK / INVALID_ARGUMENT");
  if (s == MOELORA_OK)
    checkPlan(plan, a);
  else
    FUZZ_CHECK(std::memcmp(&plan, &before, sizeof(plan)) == 0,
               "moelora_plan_fused changed the plan on failure");
  // workspace_bytes validates what plan_fused validates before planning.
  FUZZ_CHECK(s != MOELORA_OK || wsValid,
             "a plan for arguments moelora_workspace_bytes refuses");

  moelora_status w = moelora_warmup(rt, &a, 1);
  checkMessage(w, "moelora_warmup");
  // Shapes only; JIT off and nothing cached, so a kernel is NOT_FOUND.
  FUZZ_CHECK(w == MOELORA_OK || w == MOELORA_ERROR_INVALID_ARGUMENT ||
                 w == MOELORA_ERROR_NOT_FOUND,
             "moelora_warmup: an unexpected status");
  if (s == MOELORA_OK)
    FUZZ_CHECK((w == MOELORA_OK) == (plan.path == MOELORA_PATH_NONE),
               "warm-up disagrees with the plan");

  if (!noDevice)
    return;
  // Without a device: the same validation, then NO_DEVICE for real work.
  moelora_status f = moelora_fused_moe_lora(rt, &a, nullptr);
  checkMessage(f, "moelora_fused_moe_lora");
  FUZZ_CHECK(isStatus(f), "moelora_fused_moe_lora: unknown status");
  if (s == MOELORA_OK)
    FUZZ_CHECK(f == (plan.path == MOELORA_PATH_NONE ? MOELORA_OK
                                                    : MOELORA_ERROR_NO_DEVICE),
               "fused_moe_lora disagrees with the plan");
  else
    FUZZ_CHECK(f == MOELORA_ERROR_INVALID_ARGUMENT,
               "fused_moe_lora accepts what plan_fused refuses");
  for (int half = 0; half < 2; ++half) {
    int32_t offset = half ? anInt(fdp, 0, 4096) : 0;
    moelora_status h = half ? moelora_expand(rt, &a, offset, nullptr)
                            : moelora_shrink(rt, &a, nullptr);
    checkMessage(h, half ? "moelora_expand" : "moelora_shrink");
    FUZZ_CHECK(h == MOELORA_OK || h == MOELORA_ERROR_INVALID_ARGUMENT ||
                   h == MOELORA_ERROR_NO_DEVICE,
               "a half: an unexpected status");
    if (s != MOELORA_OK)
      FUZZ_CHECK(h == MOELORA_ERROR_INVALID_ARGUMENT,
                 "a half accepts what plan_fused refuses");
  }
}

void fuzzAlign(FuzzedDataProvider &fdp, moelora_runtime *rt) {
  moelora_align_args g;
  moelora_align_args_init(&g);
  g.num_tokens = anInt(fdp, 0, 9000);
  g.top_k = anInt(fdp, 1, 10);
  g.num_experts = anInt(fdp, 1, 300);
  g.max_loras = anInt(fdp, 1, 9);
  g.block_size_m = fdp.ConsumeBool() ? 16 << fdp.ConsumeIntegralInRange(0, 3)
                                     : anInt(fdp, 0, 256);
  int32_t cap = moelora_align_capacity(g.num_tokens, g.top_k, g.num_experts,
                                       g.block_size_m);
  FUZZ_CHECK(cap >= 0, "a negative capacity");
  if (cap > 0)
    FUZZ_CHECK(g.block_size_m > 0 && cap % g.block_size_m == 0,
               "a capacity that is not a multiple of the block");
  g.EM = fdp.ConsumeBool() ? cap : anInt(fdp, 0, 1 << 20);
  g.topk_ids = aPointer<const int32_t>(fdp);
  g.token_lora_mapping = aPointer<const int32_t>(fdp);
  g.sorted_token_ids = aPointer<int32_t>(fdp);
  g.expert_ids = aPointer<int32_t>(fdp);
  g.num_tokens_post_padded = aPointer<int32_t>(fdp);
  if (fdp.ConsumeIntegralInRange(0, 15) == 0)
    g.struct_size = fdp.ConsumeIntegral<uint32_t>();
  if (!noDevice)
    return;
  moelora_status s = moelora_align_block_size(rt, &g, nullptr);
  checkMessage(s, "moelora_align_block_size");
  // Even zero pairs write the outputs: never OK without a device.
  FUZZ_CHECK(s == MOELORA_ERROR_INVALID_ARGUMENT ||
                 s == MOELORA_ERROR_NO_DEVICE,
             "moelora_align_block_size: an unexpected status");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
  // Plan for an H200 (its committed tuned table) on this GPU-less machine.
  setenv("MOELORA_TARGET_GPU", "NVIDIA H200", 1);
  createRuntimes();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  // The module cache remembers every variant a plan asked about (their
  // images are looked up for shared_bytes): start afresh now and then so a
  // long run's memory stays flat.
  if (++callsSinceCreate >= 20000)
    createRuntimes();
  FuzzedDataProvider fdp(data, size);
  moelora_runtime *rt = runtimes[fdp.ConsumeBool() ? 1 : 0];
  if (fdp.ConsumeIntegralInRange(0, 3) == 0)
    fuzzAlign(fdp, rt);
  else
    fuzzFused(fdp, rt);
  return 0;
}
