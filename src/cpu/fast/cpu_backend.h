// The `cpu` backend: the fast path for machines without a GPU. Same semantics as cpu-reference
// (cpu/reference/reference_backend.h), computed with FP32 accumulation by the fused
// dequantize-and-multiply kernels of mx_gemv.h, threads over weight rows.
//
// Linear  xq = act_quantize(x) (cpu/common/act_quant.h, FP32 [M, K], zero-padded to the
//         weight's K rounded up to 32); y = xq . dequant(W)^T in FP32 (mx_gemv.h's fixed
//         order), + bias in FP32, rounded once to p.out.
// MoE     route (cpu/common/routing.h); the (token, slot) pairs of each local expert in token
//         order; per expert: h = xq[tokens] . W13^T + b13 (FP32), gate/up split by layout,
//         activation in FP32 (silu: g * sigmoid(g) * u; swigluoai as in problem.h), rounded to
//         act_input_dtype(p.act), act-quantized per row (input_scale2 for fp8-static;
//         fp8-dynamic-tensor: one scale over every pair's row of the call); o = aq .
//         W2^T + b2; y[t] = sum over t's pairs in ascending local-expert order of w * o, FP32,
//         rounded once to p.out. Each expert's weights are streamed once per call for all its
//         tokens (every kernel call covers all of an expert's rows of x).
// Determinism: every output element is computed by one thread with an order that depends on
// neither the thread count nor the split; results are bitwise identical for any `threads`
// (tests check it), and a token's result does not depend on the other tokens in the batch
// (except through which experts are active, which changes nothing in its own sums), save under
// fp8-dynamic-tensor, whose one scale is the whole call's amax by definition.
//
// Prepared weights are the caller's canonical views (bytes() == 0), except when K is not a
// multiple of 32 and the padding columns of an FP8 weight hold Inf/NaN codes: that weight is
// copied with the padding codes zeroed (bytes() reports the copy), because the kernels multiply
// the padding by zero activations and Inf * 0 would be NaN where cpu-reference ignores them.
#pragma once

#include <memory>

#include "cpu/fast/mx_gemv.h"
#include "mxq/backend.h"

namespace mxq::cpu::fast {

struct CpuBackendOptions {
  // Threads per call (the caller and pool workers, core/thread_pool.h); 0: one per hardware
  // thread.
  int threads = 0;
  Isa isa = best_isa();  // kScalar forces the portable kernels (tests, benchmarks)
  // Weight rows per work chunk (chunks are handed to threads dynamically); 0: enough for
  // kMinBytesPerThread of weights (a 4096 x 4096 MXFP4 matrix makes 32 chunks; chunks of 64 to
  // 512 rows ran within noise of each other on the 2-core VM). Tests set 1 to split tiny
  // problems.
  int64_t min_rows_per_thread = 0;
  static constexpr int64_t kMinBytesPerThread = 256 * 1024;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(CpuBackendOptions opts = {}) : opts_(opts) {}

  std::string_view name() const override { return "cpu"; }
  int priority() const override { return 10; }
  MemoryKind memory_kind() const override { return MemoryKind::kCPU; }

  Verdict supports(const Device& d) const override;
  Verdict can_implement(const Problem& p) const override;
  bool declares_act_key(ActKey) const override { return true; }  // act_quant.h, every key

  const CpuBackendOptions& options() const { return opts_; }

 protected:
  // Arguments checked by the entry (Backend::prepare_* / run_*).
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_linear(
      const Problem& p, const LinearWeights& w) const override;
  Status do_run_linear(const Problem& p, const PreparedWeights& w, const DenseView& x,
                       const DenseMutView& y, void* stream) const override;
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_moe(const Problem& p,
                                                            const MoEWeights& w) const override;
  Status do_run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                    const MoERouting& r, const DenseMutView& y, void* stream) const override;

 private:
  CpuBackendOptions opts_;
};

std::unique_ptr<Backend> make_cpu_backend(const CpuBackendOptions& opts);

}  // namespace mxq::cpu::fast
