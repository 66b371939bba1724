// cpu-reference: THE definition of correct for every mxq backend. Clear code, float64
// accumulation, no threads, no SIMD; every other backend is tested against it.
//
// Linear  y[m][n] = sum_k xq[m][k] * W[n][k] + bias[n]
//   xq      the activation row after act_quantize_row(p.act, ...) (cpu/common/act_quant.h),
//           input_scale = LinearWeights::input_scale; fp8-dynamic-tensor: x [M, K] quantized
//           as one tensor (act_quantize), one scale for every row;
//   W       the MX weight dequantized exactly in float64: element * 2^(scale - 127), NaN for a
//           0xFF scale (no FP32 overflow to Inf, unlike an FP32 dequantize of huge E5M2 blocks);
//   sum     float64, k ascending; bias (F32/BF16/F16, widened exactly) added last;
//   y       converted to p.out: F32 = the nearest float; BF16/F16 = double -> float (nearest)
//           -> nearest even BF16/F16 (two roundings, as engines that accumulate in FP32 do).
//   K need not be a multiple of 32 for the non-MX keys: the canonical weights then hold K
//   rounded up to 32 columns and the columns past K are ignored.
//
// MoE (reference_moe.cc): x [M, H] -> y [M, H], W13 [E_local, 2I, H], W2 [E_local, H, I].
//   Routing       cpu::route (cpu/common/routing.h) over router_logits [M, E]: global ids and
//                 float32 weights w.
//   Expert map    with MoERouting::expert_map, local = map[e]; map[e] < 0 means the expert is
//                 on another rank and the pair contributes nothing (a token with no local
//                 expert gets y = 0, no bias). Without a map local = e and E_local = E.
//   Gate/up       h = xq . W13[local]^T + bias13 (float64), xq = act_quantize_row(p.act, x,
//                 input_scale13). chunked: g = h[0:I], u = h[I:2I]; interleaved: g = h[0::2],
//                 u = h[1::2]; separate: g from w1/bias1, u from w3/bias3. h stays float64
//                 (engines round it to BF16; that difference is inside every tolerance).
//   Activation    silu: a = g * sigmoid(g) * u. swigluoai: g = min(g, limit); u = clamp(u,
//                 -limit, limit); a = g * sigmoid(alpha * g) * (u + 1). Float64.
//   Intermediate  a is rounded to act_input_dtype(p.act) (BF16, FP16 for kFP16) as engines
//                 store it, then aq = act_quantize_row(p.act, a, input_scale2): fp8 static uses
//                 MoEWeights::input_scale2, dynamic keys quantize each intermediate row;
//                 fp8-dynamic-tensor takes one scale over the whole intermediate of the call
//                 (every local pair's row: act_quantize_rows), as it does over x for gate/up.
//   Down          o = aq . W2[local]^T + bias2[local] (float64).
//   Combine       y[t] = sum over t's pairs of double(w) * o (the bias is weighted too, as in
//                 gpt-oss), summed in ascending local-expert order, converted to p.out as above.
#pragma once

#include <memory>
#include <string_view>

#include "contract/weight_checks.h"
#include "mxq/backend.h"

namespace mxq::cpu {

class ReferenceBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu-reference"; }
  int priority() const override { return 0; }
  MemoryKind memory_kind() const override { return MemoryKind::kCPU; }
  bool is_reference() const override { return true; }

  Verdict supports(const Device& d) const override;
  // Every ElemType, ActKey, layout, activation and routing; no only for what cannot be
  // computed: a Problem that fails validate(), the quantize op, MX act keys on a K (linear)
  // or H / I (MoE) that is not a multiple of 32.
  Verdict can_implement(const Problem& p) const override;
  bool declares_act_key(ActKey) const override { return true; }  // act_quant.h, every key

 protected:
  // Keep the views (no copy; the caller keeps the weights alive); bytes() == 0. The arguments
  // were checked by the entry (Backend::prepare_* / run_*).
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_linear(
      const Problem& p, const LinearWeights& w) const override;
  Status do_run_linear(const Problem& p, const PreparedWeights& w, const DenseView& x,
                       const DenseMutView& y, void* stream) const override;
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_moe(const Problem& p,
                                                            const MoEWeights& w) const override;
  Status do_run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                    const MoERouting& r, const DenseMutView& y, void* stream) const override;
};

// The computations behind the backend, usable directly without a Backend (tests of other
// backends): they check their arguments with the same contract checks as the backend entry
// (check_*_weights, check_*_call in contract/weight_checks.h), so every error names the tensor
// and the expected vs the given shape or dtype.
using contract::check_linear_weights;
using contract::check_moe_weights;
Status reference_linear(const Problem& p, const LinearWeights& w, const DenseView& x,
                        const DenseMutView& y);
Status reference_moe(const Problem& p, const MoEWeights& w, const DenseView& x,
                     const MoERouting& r, const DenseMutView& y);

}  // namespace mxq::cpu
