// The backend contract. Every kernel family (cpu-reference, cpu, cuda-mma, ...) is a Backend:
//   supports(device)     -> can it run on this machine at all (capability, build);
//   can_implement(prob)  -> can it compute this problem (format, act key, shape, layout);
//   prepare_*(weights)   -> its own layout of the canonical weights (explicit, tested repack);
//   run_*(prepared, ...) -> the computation.
// Views are raw pointers plus shapes: no torch, no ownership. See docs/adding-a-backend.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "mxq/device.h"
#include "mxq/problem.h"
#include "mxq/status.h"
#include "mxq/views.h"

namespace mxq {

struct LinearWeights {
  MXWeightView w;              // batch 1, [N, K]
  DenseView bias;              // [1, N] or data == nullptr
  float input_scale = 1.0f;    // ActKey::kFP8StaticTensor: x is divided by it before FP8
};

struct MoEWeights {
  // Fused gate/up [E, 2I, H] (layout chunked or interleaved), or separate w1 = gate and
  // w3 = up [E, I, H] (layout separate).
  MXWeightView w13, w1, w3;
  MXWeightView w2;             // down [E, H, I]
  DenseView bias13;            // [E, 2I] (same row order as w13) or nullptr
  DenseView bias1, bias3;      // [E, I] for separate layout, or nullptr
  DenseView bias2;             // [E, H] or nullptr
  // ActKey::kFP8StaticTensor: static per-tensor scales of x before the gate/up GEMM and of the
  // intermediate activation before the down GEMM (engines reduce per-expert scales to one, the
  // max). Ignored by the other activation keys.
  float input_scale13 = 1.0f;
  float input_scale2 = 1.0f;
};

// Per-call MoE inputs beyond x.
struct MoERouting {
  DenseView router_logits;     // [M, E] (F32/BF16/F16)
  DenseView correction_bias;   // [1, E] F32, kSigmoidGroupedTopK only, or nullptr
  const int32_t* expert_map = nullptr;  // [E] global -> local index, -1 if not local
};

// Where a backend's run_* arguments live: host memory, or CUDA device memory. The oracle takes
// the memory of a call's arrays (SelectOptions::memory) and only considers backends taking it;
// kAny (the default) considers every backend.
enum class MemoryKind : uint8_t { kAny, kCPU, kCUDA };
inline const char* memory_kind_name(MemoryKind m) {
  return m == MemoryKind::kCPU ? "cpu" : m == MemoryKind::kCUDA ? "cuda" : "any";
}

class Backend;

class PreparedWeights {
 public:
  virtual ~PreparedWeights() = default;
  virtual size_t bytes() const = 0;  // memory the prepared form holds beyond the canonical one
  // Who prepared it, for which problem: recorded by Backend::prepare_*, checked by
  // Backend::run_* (null / default for weights not made by a prepare_* call).
  const Backend* prepared_by() const { return prepared_by_; }
  const Problem& prepared_for() const { return prepared_for_; }

 private:
  friend class Backend;
  const Backend* prepared_by_ = nullptr;
  Problem prepared_for_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // Ranking among backends that can run a problem: higher wins (see docs/architecture.md).
  virtual int priority() const = 0;
  // The ranking for one problem (default: priority()); a backend whose measured speed
  // depends on the shape ranks itself per problem and cites the measurement.
  virtual int rank(const Problem& p) const {
    (void)p;
    return priority();
  }
  // Reference/emulation backends: choosing one on the automatic path warns (or fails in
  // strict mode) because it is slow.
  virtual bool is_reference() const { return false; }

  // The memory run_* takes x, y and the routing arrays in (kCPU or kCUDA, never kAny): each
  // backend declares it; nothing is inferred from the name.
  virtual MemoryKind memory_kind() const = 0;

  virtual Verdict supports(const Device& d) const = 0;
  virtual Verdict can_implement(const Problem& p) const = 0;

  // The activation keys this backend computes exactly as cpu-reference defines them
  // (src/cpu/common/act_quant.h). A backend declares a quantized key only when its kernels
  // reproduce that quantization; the default is the two 16-bit keys (bf16, fp16), so a
  // backend whose kernels take 16-bit activations is never chosen for a W4A4 / W8A8 layer.
  virtual bool declares_act_key(ActKey a) const {
    return a == ActKey::kBF16 || a == ActKey::kFP16;
  }
  // How this backend would launch the problem on the current device, printable (tile, stages,
  // split, schedule): what `mxq explain` shows for the chosen backend and the benchmarks record.
  // Empty when the backend has no launch to describe (CPU backends) or cannot tell here.
  virtual std::string launch_plan(const Problem& p) const {
    (void)p;
    return {};
  }
  // What the oracle (and every caller that picks a backend) asks of a problem: the activation
  // key is declared (else a reason naming the key and the keys declared), then can_implement.
  Verdict check_problem(const Problem& p) const;

  // The public entry (docs/architecture.md, "Where arguments are checked"). Each call checks
  // its arguments once, here, with the shared contract checks (contract/weight_checks.h), and
  // only then calls the backend's do_* method:
  //   prepare_*: the op, Problem::validate(), this backend's check_problem (a refusal is
  //              kUnimplemented: "<name> cannot run <problem>: <reason>"), then every weight
  //              view (check_linear_weights / check_moe_weights: kInvalidArgument);
  //   run_*:     the prepared weights come from this backend's prepare_* of the same layer
  //              (the problem may differ in M only), check_problem for this M, then x, y and,
  //              for MoE, the routing views (check_linear_call / check_moe_call).
  // Argument errors read "<name>: <tensor>: expected ..., got ...". The backends trust what
  // reaches do_* (debug asserts only) and report only what the entry cannot know: device
  // errors, values (NaN codes, expert-map entries), resources.
  StatusOr<std::unique_ptr<PreparedWeights>> prepare_linear(const Problem& p,
                                                            const LinearWeights& w) const;
  // y [M, N] in p.out; x [M, K] in act_input_dtype(p.act).
  Status run_linear(const Problem& p, const PreparedWeights& w, const DenseView& x,
                    const DenseMutView& y, void* stream = nullptr) const;

  StatusOr<std::unique_ptr<PreparedWeights>> prepare_moe(const Problem& p,
                                                         const MoEWeights& w) const;
  // y [M, H] in p.out; x [M, H] in act_input_dtype(p.act).
  Status run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                 const MoERouting& r, const DenseMutView& y, void* stream = nullptr) const;

 protected:
  // What a backend implements, called by the entry above with validated arguments only (the
  // defaults: "backend <name> does not provide linear / MoE layers").
  virtual StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_linear(
      const Problem& p, const LinearWeights& w) const;
  virtual Status do_run_linear(const Problem& p, const PreparedWeights& w, const DenseView& x,
                               const DenseMutView& y, void* stream) const;
  virtual StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_moe(const Problem& p,
                                                                    const MoEWeights& w) const;
  virtual Status do_run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                            const MoERouting& r, const DenseMutView& y, void* stream) const;

 private:
  Status check_call(const Problem& p, Op op, const char* call) const;
  Status check_prepared(const Problem& p, const PreparedWeights& w, Op op) const;
};

}  // namespace mxq
