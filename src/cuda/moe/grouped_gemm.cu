// MoE grouped GEMM entry points (argument checks, the choice among the instance sets in
// moe/instances/) and the deterministic weighted combine. See grouped_gemm.h.
#include <algorithm>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/instance_set.h"
#include "cuda/common/pdl.h"
#include "cuda/moe/grouped_gemm_io.cuh"

namespace mxq::cuda {
namespace {

Status check_common(const MoEGemmCommon& c, const char* what) {
  const std::string w = std::string("cuda-mma MoE ") + what + ": ";
  if (c.elem != ElemType::kE2M1 && c.elem != ElemType::kE4M3)
    return unimplemented(w + "weights must be E2M1 or E4M3, got " + elem_type_name(c.elem));
  if (c.act != DType::kBF16 && c.act != DType::kF16)
    return unimplemented(w + "activations must be BF16 or F16, got " + dtype_name(c.act));
  if (c.block != 8 && c.block != 16 && c.block != 64 && c.block != 128)
    return invalid_argument(w + "block must be 8, 16, 64 or 128, got " + std::to_string(c.block));
  if (c.block == 128 && !(gemm::kWgmmaVariant && c.scale_in_weights && gemm::is_sm90()))
    return invalid_argument(w + "128-token blocks (wgmma) need a Hopper GPU, a build with the "
                            "sm_90a image and scales that fold into the weights");
  if (c.capacity < c.block || c.capacity % c.block != 0 || c.capacity / c.block > 65535)
    return invalid_argument(w + "capacity " + std::to_string(c.capacity) +
                            " must be a positive multiple of the block " + std::to_string(c.block) +
                            " with at most 65535 blocks");
  if (c.n < 16 || c.n % 16 != 0 || c.k < 32 || c.k % 32 != 0 || c.n > (1 << 30) || c.k > (1 << 30))
    return invalid_argument(w + "need N a multiple of 16 and K a multiple of 32, got N=" +
                            std::to_string(c.n) + " K=" + std::to_string(c.k));
  if (c.topk < 1)
    return invalid_argument(w + "topk must be >= 1, got " + std::to_string(c.topk));
  if (c.w == nullptr || c.w_scales == nullptr || c.sorted_token_pairs == nullptr ||
      c.block_expert == nullptr)
    return invalid_argument(w + "null weight or dispatch pointer");
  return Status::Ok();
}

Status check_rows(const void* p, int64_t ld, int64_t k, const char* what) {
  if (p == nullptr)
    return invalid_argument(std::string("cuda-mma MoE: null ") + what);
  if (ld < k || ld % 4 != 0 || reinterpret_cast<uintptr_t>(p) % 8 != 0)
    return invalid_argument(std::string("cuda-mma MoE: ") + what + " rows must hold K = " +
                            std::to_string(k) + " elements and be 8-byte aligned (row stride " +
                            std::to_string(ld) + ")");
  return Status::Ok();
}

template <typename Out>
__device__ __forceinline__ void store4(void* y, int64_t i, const float (&v)[4]) {
  if constexpr (std::is_same_v<Out, float>) {
    *reinterpret_cast<float4*>(static_cast<float*>(y) + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    Out* p = static_cast<Out*>(y) + i;
    for (int j = 0; j < 4; ++j) p[j] = moe::to_act<Out>(v[j]);
  }
}

// One thread per 4 consecutive outputs of one token; the token's slots summed in order.
template <typename Out>
__global__ void combine_kernel(const float* __restrict__ o, const int32_t* __restrict__ ids,
                               const int32_t* __restrict__ map, int experts, int local,
                               int64_t tokens, int topk, int hidden, void* y) {
  pdl::launch_dependents();
  pdl::wait();  // the down GEMM's per-pair outputs (the last kernel of the MoE chain)
  const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (i >= tokens * hidden) return;
  const int64_t t = i / hidden;
  const int c = int(i % hidden);
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int s = 0; s < topk; ++s) {
    const int g = ids[t * topk + s];
    if (g < 0 || g >= experts) continue;
    const int e = map != nullptr ? map[g] : g;
    if (e < 0 || e >= local) continue;
    const float4 q = *reinterpret_cast<const float4*>(o + (t * topk + s) * hidden + c);
    v[0] += q.x;
    v[1] += q.y;
    v[2] += q.z;
    v[3] += q.w;
  }
  store4<Out>(y, i, v);
}

}  // namespace

int moe_block_size(int64_t tokens, int64_t topk, int64_t experts, bool wgmma_ok) {
  const int64_t avg = (tokens * topk + experts - 1) / std::max<int64_t>(experts, 1);
  if (gemm::kWgmmaVariant && wgmma_ok && gemm::is_sm90()) {
    // Measured on the H100 (gpt-oss-120b / DeepSeek-V3 / Qwen3-30B-A3B, MXFP4, M 16..2048):
    // 8-token blocks up to 4 pairs per expert, 16 up to 12, then the 64-token wgmma variant
    // (Qwen3 M = 512: 406 us against 1277 with 32-token mma.sync blocks).
    if (avg <= 4) return 8;
    if (avg <= 12) return 16;
    return avg >= 768 ? gemm::kWgTokens : 64;
  }
  // No 32-token blocks: on the H100 mma.sync with 32 tokens per block was slower than 16 or 64
  // at every size measured (gpt-oss-120b M = 2048: 8709 us against 4082 with 64), and leaving
  // it out saves 8 kernels per architecture.
  return avg <= 8 ? 8 : avg <= 16 ? 16 : 64;
}

Status moe_gate_up_gemm(const MoEGateUpArgs& a, cudaStream_t stream) {
  MXQ_RETURN_IF_ERROR(check_common(a.c, "gate/up"));
  MXQ_RETURN_IF_ERROR(check_rows(a.x, a.ldx, a.c.k, "x"));
  if (a.c.block == gemm::kWgTokens && !gemm::wgmma_aligned(a.x, a.ldx))
    return invalid_argument("cuda-mma MoE gate/up: 128-token blocks (wgmma) need 16-byte aligned "
                            "x rows");
  MXQ_RETURN_IF_ERROR(check_rows(a.a, a.lda, a.c.n / 2, "intermediate"));
  const bool fp4 = a.c.elem == ElemType::kE2M1, bf16 = a.c.act == DType::kBF16;
  if (!instance_types_compiled(bf16, fp4))
    return unimplemented(std::string("cuda-mma MoE gate/up: ") + kMinimalInstancesNote);
  // The absent pairs of a minimal build are named only in discarded branches (not linked).
  if (bf16 && fp4) {
    moe::gate_up_bf16_e2m1(a, stream);
  } else if (bf16) {
    if constexpr (instance_types_compiled(true, false)) moe::gate_up_bf16_e4m3(a, stream);
  } else if (fp4) {
    if constexpr (instance_types_compiled(false, true)) moe::gate_up_f16_e2m1(a, stream);
  } else {
    moe::gate_up_f16_e4m3(a, stream);
  }
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

Status moe_down_gemm(const MoEDownArgs& a, cudaStream_t stream) {
  MXQ_RETURN_IF_ERROR(check_common(a.c, "down"));
  MXQ_RETURN_IF_ERROR(check_rows(a.a, a.lda, a.c.k, "intermediate"));
  if (a.c.block == gemm::kWgTokens && !gemm::wgmma_aligned(a.a, a.lda))
    return invalid_argument("cuda-mma MoE down: 128-token blocks (wgmma) need 16-byte aligned "
                            "intermediate rows");
  if (a.o == nullptr || a.topk_weights == nullptr)
    return invalid_argument("cuda-mma MoE down: null output or top-k weights");
  const bool fp4 = a.c.elem == ElemType::kE2M1, bf16 = a.c.act == DType::kBF16;
  if (!instance_types_compiled(bf16, fp4))
    return unimplemented(std::string("cuda-mma MoE down: ") + kMinimalInstancesNote);
  if (bf16 && fp4) {
    moe::down_bf16_e2m1(a, stream);
  } else if (bf16) {
    if constexpr (instance_types_compiled(true, false)) moe::down_bf16_e4m3(a, stream);
  } else if (fp4) {
    if constexpr (instance_types_compiled(false, true)) moe::down_f16_e2m1(a, stream);
  } else {
    moe::down_f16_e4m3(a, stream);
  }
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

Status moe_combine(const float* o, const int32_t* topk_ids, const int32_t* expert_map,
                   int64_t experts, int64_t local_experts, int64_t tokens, int64_t topk,
                   int64_t hidden, void* y, DType out, cudaStream_t stream) {
  if (hidden % 4 != 0 || hidden > (1 << 30) || topk < 1 || tokens < 0)
    return invalid_argument("cuda-mma MoE combine: hidden " + std::to_string(hidden) +
                            " must be a multiple of 4, topk >= 1");
  if (tokens == 0) return Status::Ok();
  const int64_t threads = tokens * hidden / 4;
  const unsigned grid = unsigned((threads + 255) / 256);
  const int e = int(experts), l = int(local_experts), k = int(topk), h = int(hidden);
  switch (out) {
    case DType::kF32:
      MXQ_CUDA_TRY(pdl::launch(combine_kernel<float>, dim3(grid), dim3(256), 0, stream, o, topk_ids,
                                expert_map, e, l, tokens, k, h, y));
      break;
    case DType::kBF16:
      MXQ_CUDA_TRY(pdl::launch(combine_kernel<__nv_bfloat16>, dim3(grid), dim3(256), 0, stream, o, topk_ids,
                                expert_map, e, l, tokens, k, h, y));
      break;
    case DType::kF16:
      MXQ_CUDA_TRY(pdl::launch(combine_kernel<__half>, dim3(grid), dim3(256), 0, stream, o, topk_ids,
                                expert_map, e, l, tokens, k, h, y));
      break;
    default:
      return unimplemented(std::string("cuda-mma MoE combine: output ") + dtype_name(out));
  }
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

}  // namespace mxq::cuda
