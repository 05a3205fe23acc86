/*===- moelora.h - moelora's C ABI for serving engines --------------------===
 *
 * Plain C, versioned. All tensors are raw device pointers with element
 * strides, exactly as vLLM's fused_moe_lora passes them (see
 * shared/notes/kernel-contract.md). Every entry point validates its
 * arguments and returns a status; on failure nothing was launched or
 * changed and moelora_last_error() names the offending argument.
 * Launches go to the caller's stream; the launch path allocates nothing,
 * synchronises nothing and reads no device data (CUDA-graph capturable).
 *
 *===----------------------------------------------------------------------===*/
#ifndef MOELORA_MOELORA_H
#define MOELORA_MOELORA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOELORA_ABI_VERSION 1

/* The library exports these entry points and nothing else (it is built with
 * hidden visibility and a version script). */
#if defined(__GNUC__)
#define MOELORA_API __attribute__((visibility("default")))
#else
#define MOELORA_API
#endif

typedef enum moelora_status {
  MOELORA_OK = 0,
  MOELORA_ERROR_INVALID_ARGUMENT = 1, /* a bad argument; nothing changed */
  MOELORA_ERROR_UNSUPPORTED = 2,      /* valid but not supported here */
  MOELORA_ERROR_NO_DEVICE = 3,        /* no CUDA driver or device */
  MOELORA_ERROR_CUDA = 4,             /* a driver call failed */
  MOELORA_ERROR_NOT_FOUND = 5,        /* variant missing and JIT off */
  MOELORA_ERROR_INTERNAL = 6
} moelora_status;

typedef enum moelora_dtype {
  MOELORA_DTYPE_FP16 = 0,
  MOELORA_DTYPE_BF16 = 1
} moelora_dtype;

typedef enum moelora_path {
  MOELORA_PATH_NONE = 0, /* nothing to do: no launch */
  MOELORA_PATH_SMALL_BATCH = 1,
  MOELORA_PATH_ONE_SHOT = 2,
  MOELORA_PATH_TWO_KERNEL = 3
} moelora_path;

typedef struct moelora_runtime moelora_runtime;

typedef struct moelora_runtime_options {
  uint32_t struct_size;  /* sizeof(moelora_runtime_options) */
  const char *cache_dir; /* NULL: $MOELORA_CACHE_DIR, $XDG_CACHE_HOME/moelora or
                            ~/.cache/moelora */
  int32_t enable_jit; /* generate missing variants in-process (if built with the
                         generator) */
  int32_t enable_disk_cache;       /* read/write the on-disk cache */
  const char *const *bundle_paths; /* moelora-gen output directories */
  int32_t num_bundle_paths;
  /* JSON tuned table; NULL: $MOELORA_TUNED_TABLE, else the committed table
   * for this GPU (specs/tuned/<GPU name>.json); "": none (vLLM's rules). */
  const char *tuned_table_path;
} moelora_runtime_options;

/* Fills defaults: JIT on, disk cache on, no bundles, no tuned table. */
MOELORA_API void moelora_runtime_options_init(moelora_runtime_options *options);

/* One fused_moe_lora call. Element strides; innermost strides must be 1. */
typedef struct moelora_fused_args {
  uint32_t struct_size; /* sizeof(moelora_fused_args) */
  moelora_dtype dtype;
  /* qcurr_hidden_states: (x_rows, K); x_rows = num_tokens, or
   * num_tokens*top_k with mul_routed_weight. */
  const void *x;
  int64_t x_stride[2];
  /* Device arrays of num_slices pointers to (max_loras, E, R, K) / (max_loras,
   * E, N, R). */
  const void *lora_a_ptrs;
  int64_t lora_a_stride[4];
  const void *lora_b_ptrs;
  int64_t lora_b_stride[4];
  /* output: (num_tokens, top_k, num_slices*N), stride[0] == top_k*stride[1]. */
  void *output;
  int64_t output_stride[3];
  const float *topk_weights; /* (num_tokens, top_k), contiguous */
  const int32_t *topk_ids;   /* (num_tokens, top_k): naive expert ids */
  /* Sorted metadata (moe_lora_align_block_size); the sorted path is taken
   * when sorted_token_ids != NULL or EM > 0, else the naive one. */
  const int32_t *sorted_token_ids; /* (max_loras, EM) or NULL (naive) */
  const int32_t *expert_ids;       /* (max_loras, EM/block_size_m), sorted */
  const int32_t *num_tokens_post_padded; /* (max_loras), sorted */
  const int32_t *token_lora_mapping;     /* (num_tokens) */
  const int32_t *lora_ids;               /* (max_loras+1) */
  const int32_t *adapter_enabled;        /* (max_loras+1) */
  int32_t num_tokens, top_k, num_experts;
  int32_t K, N, rank, num_slices;
  int32_t max_loras, num_active_loras;
  int32_t EM;           /* sorted capacity per adapter */
  int32_t block_size_m; /* shrink_block_size_m the sorted metadata used */
  int32_t mul_routed_weight, add_inputs, fully_sharded;
  /* Two-kernel path workspace: moelora_workspace_bytes() bytes, or NULL
   * when the plan does not need it. */
  void *workspace;
  /* Optional (NULL: not given; added after ABI 1's first release, callers
   * built before it pass a smaller struct_size and read as NULL): a host
   * array of the num_slices device pointers that lora_a_ptrs holds. With
   * it, sm_90 kernels may read lora_a through tensor maps (bulk tensor
   * copies), which are encoded on the host from each slice's base address;
   * it must stay valid only during the call. */
  const void *const *lora_a_host_ptrs;
} moelora_fused_args;

MOELORA_API void moelora_fused_args_init(moelora_fused_args *args);

typedef struct moelora_kernel_launch {
  char cache_key[256];
  char entry[160];
  uint32_t grid[3];
  uint32_t block;
  uint32_t shared_bytes;
} moelora_kernel_launch;

typedef struct moelora_plan {
  moelora_path path;
  int32_t num_launches; /* 0..2 */
  moelora_kernel_launch launches[2];
  /* npid: programs per row block of the one-shot or of the two-kernel
   * expand; tiles_per_item: small-batch N tiles per work item. */
  int32_t npid, tiles_per_item;
  size_t workspace_bytes; /* two-kernel intermediate */
  int32_t from_tuned_table;
} moelora_plan;

typedef struct moelora_stats {
  uint64_t memory_hits, disk_hits, bundle_hits, jit_generations, misses;
  double jit_ms_total;
  uint64_t launches;
} moelora_stats;

MOELORA_API uint32_t moelora_abi_version(void);
/* The calling thread's last error message ("" after success). */
MOELORA_API const char *moelora_last_error(void);

MOELORA_API moelora_status moelora_runtime_create(
    const moelora_runtime_options *options, moelora_runtime **out);
MOELORA_API void moelora_runtime_destroy(moelora_runtime *rt);

/* The plan fused_moe_lora would execute: path, kernels, grids (no launch).
 * With a current CUDA context, a tuned 16-block cluster kernel is loaded
 * here to ask whether its cluster fits this GPU (else 8-block clusters are
 * planned, as the launch does); without one, the plan keeps 16. */
MOELORA_API moelora_status moelora_plan_fused(moelora_runtime *rt,
                                              const moelora_fused_args *args,
                                              moelora_plan *plan);
/* Bytes of two-kernel workspace these arguments need. Invalid arguments:
 * 0, and moelora_last_error() says which argument (it is "" after valid
 * ones). */
MOELORA_API size_t moelora_workspace_bytes(const moelora_fused_args *args);
/* Loads (or generates) every variant the plan for these calls needs. The
 * one-shot and expand variants depend on whether the output rows are
 * 16-byte aligned (out pointer, output row stride, N): calls given by shape
 * only (out NULL) are planned as aligned, so warm an engine whose outputs
 * are not aligned with its real arguments. moelora_expand with an
 * out_col_offset that is not a multiple of 8 elements takes the unaligned
 * expand, which warm-up cannot know about: keep JIT on for it. Calls that
 * will pass lora_a_host_ptrs warm up with them (and lora_a_stride): the
 * tensor-map variants are planned only then. */
MOELORA_API moelora_status moelora_warmup(moelora_runtime *rt,
                                          const moelora_fused_args *calls,
                                          int32_t count);

MOELORA_API moelora_status moelora_fused_moe_lora(
    moelora_runtime *rt, const moelora_fused_args *args, void *stream);
/* The two-kernel path's halves, for engines that run a collective between
 * them. shrink writes the workspace (zeroed first), expand reads it. */
MOELORA_API moelora_status moelora_shrink(moelora_runtime *rt,
                                          const moelora_fused_args *args,
                                          void *stream);
MOELORA_API moelora_status moelora_expand(moelora_runtime *rt,
                                          const moelora_fused_args *args,
                                          int32_t out_col_offset, void *stream);

typedef struct moelora_align_args {
  uint32_t struct_size;
  const int32_t *topk_ids;           /* (num_tokens, top_k) */
  const int32_t *token_lora_mapping; /* (num_tokens) */
  int32_t *sorted_token_ids;         /* (max_loras, EM) */
  int32_t *expert_ids;               /* (max_loras, EM / block_size_m) */
  int32_t *num_tokens_post_padded;   /* (max_loras) */
  int32_t num_tokens, top_k, num_experts, max_loras, block_size_m, EM;
} moelora_align_args;

MOELORA_API void moelora_align_args_init(moelora_align_args *args);
/* EM = round_up(num_tokens*top_k + num_experts*(block_size_m-1), block_size_m).
 */
MOELORA_API int32_t moelora_align_capacity(int32_t num_tokens, int32_t top_k,
                                           int32_t num_experts,
                                           int32_t block_size_m);
MOELORA_API moelora_status moelora_align_block_size(
    moelora_runtime *rt, const moelora_align_args *args, void *stream);

MOELORA_API moelora_status moelora_get_stats(moelora_runtime *rt,
                                             moelora_stats *stats);

/* What this library is: needs no runtime, no driver and no GPU. The strings
 * are owned by the library and live as long as it is loaded. */
typedef struct moelora_library_info {
  uint32_t struct_size; /* sizeof(moelora_library_info) */
  uint32_t abi_version;
  const char *version;         /* moelora's release, "major.minor.patch" */
  const char *generator_stamp; /* hash of the generator's sources */
  int32_t has_jit;             /* built with the in-process generator */
  const char *library_path;    /* the file this library was loaded from */
  /* Where tuned tables (<GPU name>.json) are looked up, in order,
   * os.pathsep (':') separated: $MOELORA_TUNED_DIR, the tables installed
   * beside the library (<libdir>/../share/moelora/tuned), the source tree. */
  const char *tuned_dirs;
  const char *default_cache_dir; /* the cache used when none is given */
} moelora_library_info;
MOELORA_API void moelora_get_library_info(moelora_library_info *info);

/* What a runtime was created with and found. Works without a GPU. */
typedef struct moelora_runtime_info {
  uint32_t struct_size;       /* sizeof(moelora_runtime_info) */
  int32_t has_device;         /* a CUDA driver and device were found */
  int32_t compute_capability; /* e.g. 90; the planned-for GPU's without one */
  int32_t num_sms;
  int32_t jit_enabled; /* missing variants are generated in-process */
  int32_t disk_cache_enabled;
  char device_name[256];  /* the GPU, or the planned-for one ("" if none) */
  char driver_error[256]; /* why there is no device ("" when there is one) */
  char tuned_table[1024]; /* path of the tuned table in use, "" for none */
  char cache_dir[1024];   /* on-disk cache directory */
} moelora_runtime_info;
MOELORA_API moelora_status moelora_get_runtime_info(moelora_runtime *rt,
                                                    moelora_runtime_info *info);

#ifdef __cplusplus
}
#endif

#endif /* MOELORA_MOELORA_H */
