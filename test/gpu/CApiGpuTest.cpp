//===- CApiGpuTest.cpp - Every path through the C ABI on the GPU ----------===//
//
// The runtime (moelora.h) with its disk cache at $MOELORA_CAPI_CACHE
// (prepared by prepare-capi-cache): the dispatcher picks the path, sorted
// metadata comes from moelora_align_block_size on the GPU (checked against
// the reference too), outputs are poisoned, skipped pairs must keep their
// bytes, computed pairs match the float64 reference. Also: the two-kernel
// halves through moelora_shrink / moelora_expand, a CUDA graph capture of
// fused_moe_lora and its replay, and empty work launching nothing.
//
//===----------------------------------------------------------------------===//

#include "CApiCases.h"
#include "GpuTestUtil.h"
#include "moelora/Support/Half.h"

#include <cmath>
#include <cstdlib>

using namespace moelora;
using namespace moelora::gputest;

namespace {

std::string capiCacheDir() {
  const char *d = std::getenv("MOELORA_CAPI_CACHE");
  return d ? d : "capi-cache";
}

struct RuntimeHandle {
  moelora_runtime *rt = nullptr;
  RuntimeHandle() {
    moelora_runtime_options o;
    moelora_runtime_options_init(&o);
    static std::string dir = capiCacheDir();
    o.cache_dir = dir.c_str();
    if (moelora_runtime_create(&o, &rt) != MOELORA_OK)
      rt = nullptr;
  }
  ~RuntimeHandle() { moelora_runtime_destroy(rt); }
};

/// A problem on the device, with the C ABI arguments pointing at it.
struct DeviceProblem {
  MoeLoraProblem p;
  DeviceBuffer x, aPtrBuf, bPtrBuf, weights, topkIds, mapping, loraIds, enabled,
      out, sorted, experts, padded, workspace;
  std::vector<DeviceBuffer> slices;
  std::vector<uint16_t> poison;
  moelora_fused_args args;
  int EM = 0;
};

int activePairs(const MoeLoraProblem &q) {
  int n = 0;
  for (int pair = 0; pair < q.numPairs(); ++pair) {
    int l = q.tokenLoraMapping[pair / q.topK];
    n += l >= 0 && l < q.maxLoras && q.adapterEnabled[l] != 0 &&
         q.topkIds[pair] >= 0;
  }
  return n;
}

void setUp(const CApiCase &c, DeviceProblem &d) {
  ProblemOptions o = c.problem;
  d.p = makeRandomProblem(o);
  for (int tries = 0; activePairs(d.p) == 0 && tries < 50; ++tries) {
    o.seed += 7919;
    d.p = makeRandomProblem(o);
  }
  const MoeLoraProblem &p = d.p;
  d.x = upload(p.x);
  std::vector<uint64_t> aPtrs, bPtrs;
  for (int s = 0; s < p.numSlices; ++s) {
    d.slices.push_back(upload(p.loraA[s]));
    aPtrs.push_back(d.slices.back().ptr);
    d.slices.push_back(upload(p.loraB[s]));
    bPtrs.push_back(d.slices.back().ptr);
  }
  d.aPtrBuf = upload(aPtrs);
  d.bPtrBuf = upload(bPtrs);
  d.weights = upload(p.topkWeights);
  d.topkIds = upload(p.topkIds);
  d.mapping = upload(p.tokenLoraMapping);
  std::vector<int32_t> ids;
  for (int l = 0; l < p.maxLoras; ++l)
    ids.push_back(l);
  ids.push_back(-1);
  d.loraIds = upload(ids);
  d.enabled = upload(p.adapterEnabled);
  d.poison =
      randomBits(p.dtype, size_t(p.numPairs()) * p.outCols(), o.seed * 13 + 1);
  d.out = upload(d.poison);

  d.args = shapeArgs(c);
  moelora_fused_args &a = d.args;
  a.x = d.x.get();
  a.x_stride[0] = p.K;
  a.x_stride[1] = 1;
  a.lora_a_ptrs = d.aPtrBuf.get();
  a.lora_a_stride[0] = int64_t(p.numExperts) * p.rank * p.K;
  a.lora_a_stride[1] = int64_t(p.rank) * p.K;
  a.lora_a_stride[2] = p.K;
  a.lora_a_stride[3] = 1;
  a.lora_b_ptrs = d.bPtrBuf.get();
  a.lora_b_stride[0] = int64_t(p.numExperts) * p.N * p.rank;
  a.lora_b_stride[1] = int64_t(p.N) * p.rank;
  a.lora_b_stride[2] = p.rank;
  a.lora_b_stride[3] = 1;
  a.output = d.out.get();
  a.output_stride[2] = 1;
  a.output_stride[1] = p.outCols();
  a.output_stride[0] = int64_t(p.topK) * p.outCols();
  a.topk_weights = static_cast<const float *>(d.weights.get());
  a.topk_ids = static_cast<const int32_t *>(d.topkIds.get());
  a.token_lora_mapping = static_cast<const int32_t *>(d.mapping.get());
  a.lora_ids = static_cast<const int32_t *>(d.loraIds.get());
  a.adapter_enabled = static_cast<const int32_t *>(d.enabled.get());
  if (c.sorted) {
    d.EM = a.EM;
    d.sorted = DeviceBuffer(size_t(p.maxLoras) * d.EM * 4);
    d.experts = DeviceBuffer(size_t(p.maxLoras) * (d.EM / c.blockSizeM) * 4);
    d.padded = DeviceBuffer(size_t(p.maxLoras) * 4);
    a.sorted_token_ids = static_cast<const int32_t *>(d.sorted.get());
    a.expert_ids = static_cast<const int32_t *>(d.experts.get());
    a.num_tokens_post_padded = static_cast<const int32_t *>(d.padded.get());
  }
  size_t ws = moelora_workspace_bytes(&a);
  d.workspace = DeviceBuffer(std::max<size_t>(ws, 16));
  a.workspace = d.workspace.get();
}

/// Checks the output against the reference; returns the relative L2 error.
double checkOutput(const DeviceProblem &d, IntermediatePrecision precision) {
  const MoeLoraProblem &p = d.p;
  const int cols = p.outCols();
  std::vector<uint16_t> result =
      download<uint16_t>(d.out, size_t(p.numPairs()) * cols);
  std::vector<double> ref = referenceFusedMoeLora(p, d.poison, precision);
  std::vector<double> got, want;
  int changed = 0;
  for (int pair = 0; pair < p.numPairs(); ++pair) {
    int l = p.tokenLoraMapping[pair / p.topK];
    bool active = l >= 0 && l < p.maxLoras && p.adapterEnabled[l] != 0 &&
                  p.topkIds[pair] >= 0;
    for (int col = 0; col < cols; ++col) {
      size_t i = size_t(pair) * cols + col;
      if (!active) {
        changed += result[i] != d.poison[i];
        continue;
      }
      got.push_back(toFloat(p.dtype, result[i]));
      want.push_back(ref[i]);
    }
  }
  EXPECT_EQ(changed, 0) << "skipped pairs' output bytes changed";
  for (double v : got)
    if (std::isnan(v)) {
      ADD_FAILURE() << "NaN in the output";
      break;
    }
  return relativeL2Error(got, want);
}

void runAlign(moelora_runtime *rt, const CApiCase &c, DeviceProblem &d) {
  moelora_align_args a;
  moelora_align_args_init(&a);
  a.topk_ids = static_cast<const int32_t *>(d.topkIds.get());
  a.token_lora_mapping = static_cast<const int32_t *>(d.mapping.get());
  a.sorted_token_ids = static_cast<int32_t *>(d.sorted.get());
  a.expert_ids = static_cast<int32_t *>(d.experts.get());
  a.num_tokens_post_padded = static_cast<int32_t *>(d.padded.get());
  a.num_tokens = d.p.numTokens;
  a.top_k = d.p.topK;
  a.num_experts = d.p.numExperts;
  a.max_loras = d.p.maxLoras;
  a.block_size_m = c.blockSizeM;
  a.EM = d.EM;
  ASSERT_EQ(moelora_align_block_size(rt, &a, nullptr), MOELORA_OK)
      << moelora_last_error();
  CU(gDriver->cuCtxSynchronize());
  AlignBlockSizeResult want = referenceAlignBlockSize(
      d.p.topkIds, d.p.tokenLoraMapping, d.p.numTokens, d.p.topK,
      d.p.numExperts, d.p.maxLoras, c.blockSizeM);
  EXPECT_EQ(download<int32_t>(d.sorted, want.sortedTokenIds.size()),
            want.sortedTokenIds);
  EXPECT_EQ(download<int32_t>(d.experts, want.expertIds.size()),
            want.expertIds);
}

class CApiGpu : public ::testing::TestWithParam<CApiCase> {};

TEST_P(CApiGpu, FusedMoeLoraMatchesReference) {
  if (!gDriver)
    GTEST_SKIP() << "no GPU: " << gSkipReason;
  const CApiCase &c = GetParam();
  RuntimeHandle h;
  ASSERT_NE(h.rt, nullptr) << moelora_last_error();
  DeviceProblem d;
  setUp(c, d);
  moelora_plan plan;
  ASSERT_EQ(moelora_plan_fused(h.rt, &d.args, &plan), MOELORA_OK)
      << moelora_last_error();
  EXPECT_EQ(plan.path, c.expected) << "dispatcher chose another path";
  if (c.sorted)
    runAlign(h.rt, c, d);
  ASSERT_EQ(moelora_fused_moe_lora(h.rt, &d.args, nullptr), MOELORA_OK)
      << moelora_last_error();
  CU(gDriver->cuCtxSynchronize());
  auto precision = plan.path == MOELORA_PATH_SMALL_BATCH
                       ? IntermediatePrecision::Fp32
                       : IntermediatePrecision::RoundToIO;
  double err = checkOutput(d, precision);
  EXPECT_LT(err, 1e-2);
  std::printf("[ capi ] %-36s path %d launches %d npid %d rel_l2 %.3e\n",
              c.name.c_str(), int(plan.path), plan.num_launches, plan.npid,
              err);
}

TEST_P(CApiGpu, CudaGraphReplayMatchesDirectLaunch) {
  if (!gDriver)
    GTEST_SKIP() << "no GPU: " << gSkipReason;
  const CApiCase &c = GetParam();
  RuntimeHandle h;
  ASSERT_NE(h.rt, nullptr) << moelora_last_error();
  DeviceProblem d;
  setUp(c, d);
  if (c.sorted)
    runAlign(h.rt, c, d);
  // Warm-up loads every module before capture: nothing compiles or loads
  // inside the graph.
  ASSERT_EQ(moelora_warmup(h.rt, &d.args, 1), MOELORA_OK)
      << moelora_last_error();
  // Pageable uploads may still be in flight on the legacy stream, which a
  // non-blocking stream does not wait for.
  CU(gDriver->cuCtxSynchronize());
  CUstream stream;
  CU(gDriver->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CU(gDriver->cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  moelora_status st = moelora_fused_moe_lora(h.rt, &d.args, stream);
  CUgraph graph;
  CU(gDriver->cuStreamEndCapture(stream, &graph));
  ASSERT_EQ(st, MOELORA_OK) << moelora_last_error();
  CUgraphExec exec;
  CU(gDriver->cuGraphInstantiateWithFlags(&exec, graph, 0));
  // Replay twice from the poisoned output: with add_inputs the second
  // replay adds the delta again, so restore the poison before each.
  for (int replay = 0; replay < 2; ++replay) {
    CU(gDriver->cuMemcpyHtoD(d.out.ptr, d.poison.data(), d.poison.size() * 2));
    CU(gDriver->cuCtxSynchronize());
    CU(gDriver->cuGraphLaunch(exec, stream));
    CU(gDriver->cuStreamSynchronize(stream));
  }
  moelora_plan plan;
  ASSERT_EQ(moelora_plan_fused(h.rt, &d.args, &plan), MOELORA_OK);
  double err = checkOutput(d, plan.path == MOELORA_PATH_SMALL_BATCH
                                  ? IntermediatePrecision::Fp32
                                  : IntermediatePrecision::RoundToIO);
  EXPECT_LT(err, 1e-2);
  gDriver->cuGraphExecDestroy(exec);
  gDriver->cuGraphDestroy(graph);
  gDriver->cuStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Paths, CApiGpu, ::testing::ValuesIn(capiCases()),
                         [](const ::testing::TestParamInfo<CApiCase> &info) {
                           return info.param.name;
                         });

TEST(CApiGpuSplit, ShrinkThenExpandEqualsFused) {
  if (!gDriver)
    GTEST_SKIP() << "no GPU: " << gSkipReason;
  CApiCase c;
  for (const CApiCase &k : capiCases())
    if (k.name == "sorted_two_kernel_sharded_bf16")
      c = k;
  RuntimeHandle h;
  ASSERT_NE(h.rt, nullptr) << moelora_last_error();
  DeviceProblem d;
  setUp(c, d);
  runAlign(h.rt, c, d);
  // An engine would all-gather the workspace between the two.
  ASSERT_EQ(moelora_shrink(h.rt, &d.args, nullptr), MOELORA_OK)
      << moelora_last_error();
  ASSERT_EQ(moelora_expand(h.rt, &d.args, 0, nullptr), MOELORA_OK)
      << moelora_last_error();
  CU(gDriver->cuCtxSynchronize());
  EXPECT_LT(checkOutput(d, IntermediatePrecision::RoundToIO), 1e-2);
}

TEST(CApiGpuSplit, EmptyWorkLaunchesNothing) {
  if (!gDriver)
    GTEST_SKIP() << "no GPU: " << gSkipReason;
  CApiCase c = capiCases()[0];
  RuntimeHandle h;
  ASSERT_NE(h.rt, nullptr);
  DeviceProblem d;
  setUp(c, d);
  moelora_stats before, after;
  moelora_get_stats(h.rt, &before);
  for (auto mutate : {+[](moelora_fused_args &a) { a.num_tokens = 0; },
                      +[](moelora_fused_args &a) { a.num_active_loras = 0; },
                      +[](moelora_fused_args &a) { a.num_slices = 0; }}) {
    moelora_fused_args a = d.args;
    mutate(a);
    ASSERT_EQ(moelora_fused_moe_lora(h.rt, &a, nullptr), MOELORA_OK)
        << moelora_last_error();
  }
  CU(gDriver->cuCtxSynchronize());
  moelora_get_stats(h.rt, &after);
  EXPECT_EQ(after.launches, before.launches);
  EXPECT_EQ(download<uint16_t>(d.out, d.poison.size()), d.poison);
}

} // namespace
