//===- KernelAbi.cpp - Parameter lists of the generated kernels -----------===//

#include "moelora/Spec/KernelAbi.h"

namespace moelora {

std::string_view toString(ParamType t) {
  switch (t) {
  case ParamType::Ptr:
    return "ptr";
  case ParamType::I32:
    return "i32";
  case ParamType::I64:
    return "i64";
  case ParamType::TensorMap:
    return "tensor_map";
  }
  return "?";
}

static const std::vector<KernelParam> kGemmParams = {
    {"x", ParamType::Ptr},
    {"x_stride", ParamType::I64},
    {"lora_a_ptrs", ParamType::Ptr},
    {"a_stride_l", ParamType::I64},
    {"a_stride_e", ParamType::I64},
    {"a_stride_r", ParamType::I64},
    {"lora_b_ptrs", ParamType::Ptr},
    {"b_stride_l", ParamType::I64},
    {"b_stride_e", ParamType::I64},
    {"b_stride_n", ParamType::I64},
    {"out", ParamType::Ptr},
    {"out_stride", ParamType::I64},
    {"topk_weights", ParamType::Ptr},
    {"sorted_token_ids", ParamType::Ptr},
    {"expert_ids", ParamType::Ptr},
    {"num_tokens_post_padded", ParamType::Ptr},
    {"token_lora_mapping", ParamType::Ptr},
    {"lora_ids", ParamType::Ptr},
    {"adapter_enabled", ParamType::Ptr},
    {"inter_slice_stride", ParamType::I64},
    {"num_pairs", ParamType::I32},
    {"top_k", ParamType::I32},
    {"N", ParamType::I32},
    {"K", ParamType::I32},
    {"EM", ParamType::I32},
    {"max_loras", ParamType::I32},
    {"npid", ParamType::I32},
    {"tiles_per_item", ParamType::I32},
    {"out_col_offset", ParamType::I32},
};

static const std::vector<KernelParam> kAlignParams = {
    {"topk_ids", ParamType::Ptr},
    {"token_lora_mapping", ParamType::Ptr},
    {"sorted_token_ids", ParamType::Ptr},
    {"expert_ids", ParamType::Ptr},
    {"num_tokens_post_padded", ParamType::Ptr},
    {"num_pairs", ParamType::I32},
    {"top_k", ParamType::I32},
    {"num_experts", ParamType::I32},
    {"EM", ParamType::I32},
    {"max_loras", ParamType::I32},
};

int copyVectorElems(int elems) {
  if (elems % 8 == 0)
    return 8;
  if (elems % 4 == 0)
    return 4;
  return 2;
}

KernelSpec alignBlockSizeSpec(int sm, int blockM) {
  KernelSpec s;
  s.family = KernelFamily::AlignBlockSize;
  s.dtype = DType::BF16;
  s.sm = sm;
  s.rank = 0;
  s.blockM = blockM;
  s.numWarps = 4;
  return s;
}

const std::vector<KernelParam> &kernelParams(KernelFamily family) {
  return family == KernelFamily::AlignBlockSize ? kAlignParams : kGemmParams;
}

int weightTensorMapParams(const KernelSpec &spec) {
  return spec.tmaWeights ? spec.numSlices : 0;
}

std::vector<KernelParam> kernelParams(const KernelSpec &spec) {
  static const std::string_view kMapNames[kMaxTensorMapSlices] = {
      "a_tensor_map_0", "a_tensor_map_1", "a_tensor_map_2", "a_tensor_map_3",
      "a_tensor_map_4", "a_tensor_map_5", "a_tensor_map_6", "a_tensor_map_7"};
  std::vector<KernelParam> params = kernelParams(spec.family);
  for (int s = 0; s < weightTensorMapParams(spec); ++s)
    params.push_back({kMapNames[s], ParamType::TensorMap});
  return params;
}

} // namespace moelora
