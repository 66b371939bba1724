// What every cuda-mma kernel claims, shared by the backend's linear and MoE can_implement:
// MXFP4 (E2M1) / MXFP8 (E4M3) weights, BF16 / FP16 activations (W4A16 / W8A16) and, where the
// caller quantizes them on the GPU (act_operand.h), the MX activation keys; output in the
// activation dtype or F32. Host code (C++20).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "cuda/common/instance_set.h"
#include "mxq/device.h"
#include "cuda/quant/act_operand.h"  // act_key_is_fp8
#include "mxq/problem.h"

namespace mxq::cuda {

// The GPU of `d` that a CUDA backend's `supports` judges: the current device's entry (the one
// its kernels would run on), else the first listed. Null, with `why_not` set, when the build has
// no CUDA part or `d` lists no GPU (the runtime's reason when it gave one).
inline const CudaDeviceInfo* current_gpu(const Device& d, std::string& why_not) {
  if (!d.cuda_built) {
    why_not = "mxq was built without its CUDA part";
    return nullptr;
  }
  if (d.gpus.empty()) {
    why_not = d.cuda_status.empty() ? "no CUDA device" : d.cuda_status;
    return nullptr;
  }
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) dev = 0;
  for (const auto& info : d.gpus)
    if (info.index == dev) return &info;
  return &d.gpus.front();
}

// `mx_act`: the caller runs the MX activation keys through act_operand (quant/act_operand.h),
// so they are accepted too (their activations arrive in BF16); without it only the 16-bit keys.
inline Verdict mma_types_verdict(const Problem& p, bool mx_act = false) {
  if (p.weight != ElemType::kE2M1 && p.weight != ElemType::kE4M3)
    return Verdict::no(std::string("weights ") + mx_format_name(p.weight) +
                       ": cuda-mma runs MXFP4 (E2M1) and MXFP8 (E4M3) weights");
  if (p.act != ActKey::kBF16 && p.act != ActKey::kFP16 && !(mx_act && act_key_mx_elem(p.act)))
    return Verdict::no(std::string("activation key ") + act_key_name(p.act) +
                       (mx_act ? ": cuda-mma's 16-bit operand holds BF16 / FP16 activations and "
                                 "the MX keys (mxfp4/mxfp6/mxfp8-dynamic, quantized on the GPU) "
                                 "exactly; FP8 keys need their scale applied after the GEMM"
                               : ": cuda-mma runs BF16 and FP16 activations (W4A16 / W8A16)"));
  const DType a = act_input_dtype(p.act);
  if (p.out != a && p.out != DType::kF32)
    return Verdict::no(std::string("output ") + dtype_name(p.out) + ": cuda-mma writes " +
                       dtype_name(a) + " or F32");
  if (!instance_types_compiled(a == DType::kBF16, p.weight == ElemType::kE2M1))
    return Verdict::no(std::string(dtype_name(a)) + " x " + mx_format_name(p.weight) + ": " +
                       kMinimalInstancesNote);
  return Verdict::yes();
}

// The linear-layer claims both CUDA backends share (cuda-mma and cuda-hopper run the same
// weight formats, keys and outputs): `backend` names the refusing backend in its reasons,
// `max_m` is its launch's token limit. FP8 keys are judged as BF16 (their activations reach the
// kernels as BF16 or E4M3 values, their scales applied in the epilogue or per 32-block);
// fp8-dynamic-tensor and fp8-dynamic-group128 only with `mma_fp8_keys` (cuda-mma, which runs
// them; cuda-hopper passes it for the group key, whose fallback is cuda-mma's kernels).
inline Verdict linear_layer_verdict(const Problem& p, const char* backend, int64_t max_m,
                                    bool mma_fp8_keys = false) {
  Problem types = p;
  if (act_key_is_fp8(p.act) || (mma_fp8_keys && act_key_is_fp8_mma(p.act)))
    types.act = ActKey::kBF16;
  if (Verdict v = mma_types_verdict(types, /*mx_act=*/true); !v) return v;
  if (p.n % 16 != 0 || p.k % 32 != 0)
    return Verdict::no("N = " + std::to_string(p.n) + ", K = " + std::to_string(p.k) + ": " +
                       backend + " needs N a multiple of 16 and K a multiple of 32");
  if (p.m > max_m || p.n > (int64_t(1) << 30) || p.k > (int64_t(1) << 30))
    return Verdict::no("shape too large for one launch");
  return Verdict::yes();
}

}  // namespace mxq::cuda
