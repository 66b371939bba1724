// Named tolerances for comparing a backend's output with cpu-reference's, norm-wise:
//   ||y - y_ref||_2 <= tol * ||y_ref||_2.
// One table, activation key x (op, output dtype); used by tests/cases (every backend on the
// shared cases) and by the CUDA tests' check helpers where they compare with cpu-reference.
//
// Why the weight format is not a column: every MX weight format decodes exactly (element x
// 2^(scale-127) is exact in FP32 and in float64), so weights add no error of their own; what
// differs between backends is accumulation order and where values are rounded.
// The reference accumulates in float64, backends in FP32 (error ~ sqrt(K) * 2^-24 relative,
// negligible), and all round the output to the same dtype. What remains:
//  - 16-bit output: the output rounding (half an ulp is up to 2^-9 relative for BF16): a
//    backend whose FP32 sum differs from the float64 one in the last bits may round a value to
//    the neighbouring BF16 number. 6e-3 covers that with room; FP16 output shares the value
//    (its rounding is 4x finer, so it is looser than needed, not wrong).
//  - F32 output: nothing is rounded to 16 bits, only the FP32 accumulation differs: 1e-5.
//  - Quantized activation keys on linear layers: x is quantized bit-identically by every
//    backend (the keys a backend declares are the ones it reproduces exactly), so the linear
//    columns are those of the 16-bit keys.
//  - MoE under a quantized activation key (MX and FP8): the intermediate activation is rounded
//    to the 16-bit type and then quantized again; a last-bit difference in the FP32
//    intermediate can move a whole 32-block (or a token's FP8 row) to a different quantization
//    step. The error is then a fraction of one quantization step of that block: 2e-2 for the
//    keys with >= 3 mantissa bits (MXFP8, MXFP6 E2M3, FP8 E4M3), 5e-2 for MXFP4 (E2M1) and
//    MXFP6 E3M2 (1 and 2 mantissa bits: coarser steps). The output dtype does not matter there.
#pragma once

#include <algorithm>
#include <string_view>

#include "mxq/problem.h"

namespace mxq::cases {

struct Tolerance {
  double linear_16bit;  // linear layer, BF16 / F16 output
  double linear_f32;    // linear layer, F32 output
  double moe_16bit;     // MoE layer, BF16 / F16 output
  double moe_f32;       // MoE layer, F32 output
};

// Per activation key (the reasons are above).
constexpr Tolerance tolerance_for(ActKey a) {
  constexpr Tolerance k16bit{6e-3, 1e-5, 6e-3, 1e-5};     // bf16, fp16: no quantization of x
  constexpr Tolerance kFine{6e-3, 1e-5, 2e-2, 2e-2};      // >= 3 mantissa bits
  constexpr Tolerance kCoarse{6e-3, 1e-5, 5e-2, 5e-2};    // 1 or 2 mantissa bits
  switch (a) {
    case ActKey::kBF16:
    case ActKey::kFP16: return k16bit;
    case ActKey::kFP8StaticTensor:
    case ActKey::kFP8DynamicToken:
    case ActKey::kFP8DynamicTensor:
    case ActKey::kFP8DynamicGroup128:
    case ActKey::kMXFP8Dynamic:
    case ActKey::kMXFP6E2M3Dynamic: return kFine;
    case ActKey::kMXFP4Dynamic:
    case ActKey::kMXFP6E3M2Dynamic: return kCoarse;
  }
  return {0, 0, 0, 0};  // unreachable for a valid key; 0 makes any comparison fail loudly
}

constexpr double tolerance(Op op, ActKey a, DType out) {
  const Tolerance t = tolerance_for(a);
  const bool f32 = out == DType::kF32;
  if (op == Op::kMoE) return f32 ? t.moe_f32 : t.moe_16bit;
  return f32 ? t.linear_f32 : t.linear_16bit;
}

inline double tolerance(const Problem& p) { return tolerance(p.op, p.act, p.out); }

// The FP8 tensor cores (cuda-hopper's FP8 keys where every weight row folds into E4M3): the
// tensor core sums each k32 step below FP32 precision (docs/cuda.md, measured on the H100: up to
// 2^-11 of the step's sum |products|; the kernel adds its k128 stages in FP32), so the result
// differs from the reference's FP32 sum by more than the 16-bit output rounding of kFine's F32
// figure allows. Relative RMS, measured in tests/cuda/hopper_fp8_gemm_test.cc.
constexpr Tolerance kFp8Mma{6e-3, 2e-3, 2e-2, 2e-2};
constexpr double tolerance_fp8_mma(Op op, DType out) {
  const bool f32 = out == DType::kF32;
  if (op == Op::kMoE) return f32 ? kFp8Mma.moe_f32 : kFp8Mma.moe_16bit;
  return f32 ? kFp8Mma.linear_f32 : kFp8Mma.linear_16bit;
}
// What `backend`'s result is held to: the FP8-MMA tolerance for the FP8 keys on cuda-hopper (its
// FP8 tensor-core path), the key's own elsewhere.
inline double tolerance(const Problem& p, std::string_view backend) {
  const bool fp8_key = p.act == ActKey::kFP8StaticTensor || p.act == ActKey::kFP8DynamicToken;
  if (fp8_key && backend == "cuda-hopper")
    return std::max(tolerance(p), tolerance_fp8_mma(p.op, p.out));
  return tolerance(p);
}

}  // namespace mxq::cases
