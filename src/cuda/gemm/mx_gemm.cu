// The cuda-mma GEMM entry point: argument checks, the launch description, and the choice among
// the four activation x weight instance sets (instances/, heuristic in mx_gemm_dispatch.cuh).
#include <cstdio>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/instance_set.h"
#include "cuda/gemm/mx_gemm_dispatch.cuh"

namespace mxq::cuda {

std::string GemmConfig::to_string() const {
  if (act_group_scales)
    return "mma.sync: " + std::to_string(tokens_per_block) + " tokens x 16 rows per block, " +
           std::to_string(warps) + " warps over K, " + std::to_string(prefetch) +
           " k64 tiles in flight per warp, FP32 scales per 32-block x activation scale per "
           "(token, 128-group)";
  if (wgmma)
    return "wgmma (sm_90a): 128 tokens x 128 rows per block, 2 warpgroups, " +
           std::to_string(prefetch) + " k64 weight tiles in flight per warp";
  return "mma.sync: " + std::to_string(tokens_per_block) + " tokens x " +
         std::to_string(split_rows ? 32 * warps : 16) + " rows per block, " +
         std::to_string(warps) + (split_rows ? " warps over rows, " : " warps over K, ") +
         std::to_string(prefetch) + " k64 tiles in flight per warp";
}

using namespace gemm;

GemmConfig choose_gemm_config(const GemmArgs& a) {
  GemmConfig c;
  c.tokens_per_block = tokens_per_block(a.m);
  const int nt = c.tokens_per_block / 8;
  c.warps = warps_for(nt);
  c.prefetch = prefetch_for(a.elem == ElemType::kE2M1, nt);
  c.scale_in_weights = a.scale_in_weights;
  if (a.x_group_scales != nullptr) {  // launch_group_scaled: split K, FP32 path, no variants
    c.act_group_scales = true;
    c.scale_in_weights = false;
    return c;
  }
  c.split_rows = split_rows(a.m, a.n);
  if (nt == 1 && wide_layer(a.n)) {
    c.wide = true;
    c.warps = 8;
    c.prefetch = a.elem == ElemType::kE2M1 ? 4 : 2;
  }
  if (use_wgmma(a.m, a.scale_in_weights) && wgmma_aligned(a.x, a.ldx)) {
    c.wgmma = true;
    c.wide = false;
    c.split_rows = false;
    c.tokens_per_block = kWgTokens;
    c.warps = 8;
    c.prefetch = a.elem == ElemType::kE2M1 ? 2 : 1;
    return c;
  }
  if (c.split_rows) {
    c.warps = kRowWarps;
    c.prefetch = a.elem == ElemType::kE2M1 && a.scale_in_weights ? 2 : 1;
  }
  return c;
}

ScaleRange scale_in_weights_range(ElemType elem, DType act) {
  const bool fp4 = elem == ElemType::kE2M1;
  if (act == DType::kBF16) return fp4 ? ScaleRange{0, 128} : ScaleRange{12, 134};
  return fp4 ? ScaleRange{104, 128} : ScaleRange{112, 134};
}

Status mx_gemm(const GemmArgs& a, cudaStream_t stream) {
  if (a.elem != ElemType::kE2M1 && a.elem != ElemType::kE4M3)
    return unimplemented(std::string("cuda-mma GEMM: weights must be E2M1 or E4M3, got ") +
                         elem_type_name(a.elem));
  if (a.act != DType::kBF16 && a.act != DType::kF16)
    return unimplemented(std::string("cuda-mma GEMM: activations must be BF16 or F16, got ") +
                         dtype_name(a.act));
  if (a.out != a.act && a.out != DType::kF32)
    return unimplemented(std::string("cuda-mma GEMM: output must be ") + dtype_name(a.act) +
                         " (the activation dtype) or F32, got " + dtype_name(a.out));
  if (a.m < 1 || a.n < 16 || a.k < 32 || a.n % 16 != 0 || a.k % 32 != 0)
    return invalid_argument("cuda-mma GEMM: need M >= 1, N a multiple of 16, K a multiple of 32; "
                            "got M=" + std::to_string(a.m) + " N=" + std::to_string(a.n) +
                            " K=" + std::to_string(a.k));
  if (a.m > 0x7FFFFFFF || a.n > 0x7FFFFFFF || a.k > 0x7FFFFFFF || a.m > 65535LL * 64)
    return invalid_argument("cuda-mma GEMM: M, N or K too large for one launch");
  if (a.ldx < a.k || a.ldy < a.n)
    return invalid_argument("cuda-mma GEMM: row strides ldx=" + std::to_string(a.ldx) +
                            " / ldy=" + std::to_string(a.ldy) + " smaller than K / N");
  if (reinterpret_cast<uintptr_t>(a.x) % 8 != 0 || a.ldx % 4 != 0)
    return invalid_argument("cuda-mma GEMM: activation rows must be 8-byte aligned (x pointer "
                            "and row stride a multiple of 4 elements)");
  if (a.x_group_scales != nullptr && reinterpret_cast<uintptr_t>(a.x_group_scales) % 4 != 0)
    return invalid_argument("cuda-mma GEMM: x_group_scales must be 4-byte aligned FP32");
  if (a.x_group_scales != nullptr && a.m * ((a.k + kActGroupColumns - 1) / kActGroupColumns) > 0x7FFFFFFF)
    return invalid_argument("cuda-mma GEMM: M x K / 128 activation group scales exceed 2^31");
  if (a.w == nullptr || a.w_scales == nullptr || a.x == nullptr || a.y == nullptr)
    return invalid_argument("cuda-mma GEMM: null weight, activation or output pointer");
  const bool fp4 = a.elem == ElemType::kE2M1, bf16 = a.act == DType::kBF16;
  if (!instance_types_compiled(bf16, fp4))
    return unimplemented(std::string("cuda-mma GEMM: ") + kMinimalInstancesNote);
  // The absent pairs of a minimal build are named only in discarded branches (not linked).
  const GemmConfig c = choose_gemm_config(a);
  if (bf16 && fp4) {
    launch_bf16_e2m1(a, c, stream);
  } else if (bf16) {
    if constexpr (instance_types_compiled(true, false)) launch_bf16_e4m3(a, c, stream);
  } else if (fp4) {
    if constexpr (instance_types_compiled(false, true)) launch_f16_e2m1(a, c, stream);
  } else {
    launch_f16_e4m3(a, c, stream);
  }
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

}  // namespace mxq::cuda
