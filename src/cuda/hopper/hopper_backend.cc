// The cuda-hopper backend: MX linear layers on sm_90 through the warp-specialised TMA + wgmma
// GEMM (hopper/gemm_kernel.cuh). Weights are repacked on the GPU into the hopper layout at
// prepare time.
//
// Numerics: the kernel folds each E8M0 scale into the 16-bit weights, exact for the codes of
// scale_in_weights_range (every real checkpoint). Weights with a code outside that range
// (FP16 activations with very small or large scales) are prepared and run by the cuda-mma
// kernels instead, whose FP32 per-block scale path is exact for every code; prepare says so
// on stderr once per process, and the result is the same either way (exact products, FP32
// accumulation).
//
// The FP8 activation keys (fp8-static-tensor, fp8-dynamic-token; issue 17): MXFP4 weights whose
// every row folds into E4M3 operands (contract/fp8_fold.h) run on the FP8 tensor cores
// (hopper_fp8_gemm: E4M3 activation codes from fp8_act_quant_codes, the row and token scales in
// the epilogue), summed in the tensor core per k128 stage and in FP32 across stages (docs/cuda.md:
// the FP8 MMA does not add in FP32; the tolerance is tests/cases' FP8-MMA one). Weights with a
// row that does not fold, and MXFP8 weights, run the exact 16-bit kernel on the E4M3 values
// (fp8_operand: exact in BF16 / F16) into FP32, then the scale and bias (scale_rows), as
// cuda-mma does; prepare says which (stderr, once per layer shape) and `explain` counts the rows.
// fp8-dynamic-group128 (scales per token and 128-column group) takes the same FP8 path with the
// group scale applied at each k128 stage's FP32 promotion (one stage = one group); its other
// weights run on cuda-mma's kernels (FP32 group scales per 32-block), announced at prepare.
//
// Memory: as cuda-mma (cuda_backend.cc): canonical weights in host or device memory at
// prepare; run_linear takes device pointers and is asynchronous on the given stream (no
// allocation, no synchronisation: graph-capturable); host pointers are staged (slow, tests
// and the CLI only).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "contract/debug_assert.h"
#include "cuda/backends.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/device_memory.h"
#include "cuda/common/staged_run.h"
#include "cuda/gemm/mx_gemm.h"
#include "contract/fp8_fold.h"
#include "cuda/hopper/fp8_repack.h"
#include "cuda/hopper/gemm.h"
#include "cuda/quant/fake_quant.h"
#include "cuda/mma_claims.h"
#include "cuda/moe/moe_layer.h"
#include "cuda/quant/act_operand.h"
#include "mxq/numerics.h"

namespace mxq {
namespace cuda {
namespace {

struct PreparedHopperLinear final : PreparedWeights {
  int device = 0;
  hopper::HopperLayout layout;
  DeviceBuffer w, bias;  // bias: FP32 [N] or empty
  std::unique_ptr<PreparedWeights> mma;  // set when the scales need cuda-mma's FP32 path
  // FP8 keys: `fp8` when the layer runs on the FP8 tensor cores (w holds the FP8 layout,
  // row_mul [n_pad] the rows' 2^(base - 127)); else the 16-bit path on E4M3 values.
  bool fp8 = false;
  DeviceBuffer row_mul;
  float input_scale = 1.0f;  // fp8-static-tensor
  size_t bytes() const override {
    return mma ? mma->bytes() : w.bytes() + bias.bytes() + row_mul.bytes();
  }
};

// The rows' fold (contract/fp8_fold.h) of MXFP4 weights in host or device memory: row_bases
// gets each row's base or kRowDoesNotFold.
StatusOr<contract::Fp8FoldStats> fold_rows(const MXWeightView& w, std::vector<int32_t>& row_bases) {
  const size_t pbytes = size_t(w.batch * w.n) * size_t(packed_bytes(w.elem, w.k));
  const size_t sbytes = size_t(w.batch * w.n) * size_t(w.k / 32);
  std::vector<uint8_t> hp, hs;
  MXWeightView hv = w;
  if (is_device_pointer(w.packed)) {
    hp.resize(pbytes);
    MXQ_CUDA_TRY(cudaMemcpy(hp.data(), w.packed, pbytes, cudaMemcpyDeviceToHost));
    hv.packed = hp.data();
  }
  if (is_device_pointer(w.scales)) {
    hs.resize(sbytes);
    MXQ_CUDA_TRY(cudaMemcpy(hs.data(), w.scales, sbytes, cudaMemcpyDeviceToHost));
    hv.scales = hs.data();
  }
  row_bases.assign(size_t(w.batch * w.n), 0);
  return contract::fp8_fold_stats(hv, row_bases.data());
}

class CudaHopperBackend final : public Backend {
 public:
  CudaHopperBackend() : mma_(make_cuda_mma_backend()) {}
  std::string_view name() const override { return "cuda-hopper"; }
  // Above cuda-mma (100): the Hopper kernels are the faster family on sm_90
  // (bench/results/h200/gemm-hopper.md).
  int priority() const override { return 110; }
  MemoryKind memory_kind() const override { return MemoryKind::kCUDA; }
  // Below cuda-mma (100) for decode: measured on the H200 (2026-12-03, 0b8663a,
  // bench/results/h200/gemm-hopper.md) cuda-mma is faster up to M = 8 on every measured shape
  // (MXFP4 8192^2 M = 1 / 8: 18.5 / 20.6 us vs 23.4 / 23.4; 28672 x 8192 M = 4: 53.0 vs 67.8;
  // MXFP8 8192^2 M = 4: 24.7 vs 27.6) and at M = 16 on layers up to 4096^2 (4096^2: 14.5 vs 23.4,
  // 5760 x 2880: 12.8 vs 13.2); cuda-hopper from M = 16 on the large layers (8192^2: 23.6 vs
  // 28.1, 28672 x 8192: 68.0 vs 92.4) and from M = 64 everywhere (1.4-3.9x cuda-mma).
  static constexpr int64_t kMmaDecodeMaxM = 8;
  static constexpr int64_t kMmaSmallLayerMaxM = 16, kSmallLayerMaxElems = int64_t(4096) * 4096;
  // MoE: cuda-hopper at every M. Before programmatic dependent launch cuda-mma was faster at
  // M = 1 (H200, bench/results/h200/moe-hopper.md, 437ecfc: gpt-oss-120b 48.4 vs 49.7 us,
  // Qwen3-30B-A3B 36.3 vs 39.5, DeepSeek-V3 132.0 vs 153.6: the hopper chain has 3 more
  // launches, gather included); with it (e7744ef; H100, CUDA graphs, MXFP4,
  // bench/results/h100/fp8-small-m-moe-kernels-2026-12-07) cuda-hopper is no slower at M = 1
  // (43.6 vs 48.9, 35.0 vs 35.2, 132.9 vs 134.1) and faster at M = 4 and 16 (1.09-1.40x), as it
  // was from M = 16 on the H200 (1.00-1.56x; except Qwen3-30B-A3B M = 2048, 0.92x there: 256-token
  // tiles half empty, the open item). Not re-measured on an H200 since.
  int rank(const Problem& p) const override {
    if (p.op == Op::kMoE) return priority();
    if (p.op != Op::kLinear) return priority();
    const bool small = p.n * p.k <= kSmallLayerMaxElems;
    return p.m <= kMmaDecodeMaxM || (small && p.m <= kMmaSmallLayerMaxM) ? 90 : priority();
  }

  Verdict supports(const Device& d) const override {
    std::string why_not;
    const CudaDeviceInfo* g = current_gpu(d, why_not);
    if (g == nullptr) return Verdict::no(why_not);
    if (g->cc_major != 9 || g->cc_minor != 0)
      return Verdict::no("GPU " + g->name + " is sm_" + std::to_string(10 * g->cc_major + g->cc_minor) +
                         "; cuda-hopper needs sm_90 (wgmma, TMA)");
    const auto& built = d.cuda_archs_compiled;
    if (std::find(built.begin(), built.end(), 90) == built.end())
      return Verdict::no("this build has no sm_90a machine code");
    return Verdict::yes();
  }

  // bf16 / fp16 as they are and the MX keys (mxfp4/6/8-dynamic) quantized on the GPU into the
  // 16-bit operand before the GEMM (quant/act_operand.h: exact, the reference's values).
  // The FP8 keys: see the top of this file (FP8 tensor cores where the rows fold, else the
  // 16-bit kernel into FP32 and scale_rows); their MoE layer refuses them (moe_layer.h).
  // fp8-dynamic-group128: the FP8 tensor cores with a per-stage group scale where the rows fold
  // (MXFP4), else cuda-mma's FP32-scale kernels (announced at prepare).
  bool declares_act_key(ActKey a) const override {
    return gemm16_runs_act_key(a) || act_key_is_fp8(a) || a == ActKey::kFP8DynamicGroup128;
  }

  Verdict can_implement(const Problem& p) const override {
    if (p.op == Op::kMoE) return moe_layer_can_implement(p);
    if (p.op != Op::kLinear)
      return Verdict::no(std::string("cuda-hopper runs linear and MoE layers, not ") + op_name(p.op));
    // FP8 keys: BF16 input quantized by the layer, scales in the epilogue; M: int32 tokens.
    // The group key's fallback is cuda-mma's kernel: its claims (and token limit) apply.
    if (p.act == ActKey::kFP8DynamicGroup128)
      return linear_layer_verdict(p, "cuda-hopper", 65535LL * 64, /*mma_fp8_keys=*/true);
    return linear_layer_verdict(p, "cuda-hopper", 0x7FFFFFFF);
  }

  // The config choose_hopper_config makes for this problem on the current GPU (the launch the
  // run would make; scales outside the fold range go to cuda-mma, which prepare announces).
  std::string launch_plan(const Problem& p) const override {
    if (!can_implement(p)) return {};
    if (p.op == Op::kMoE) return moe_launch_plan(p, MoEKernels::kHopper);
    if (p.op != Op::kLinear) return {};
    const bool group = p.act == ActKey::kFP8DynamicGroup128;
    if (group && p.weight != ElemType::kE2M1)
      return "cuda-mma's kernels (fp8-dynamic-group128 on " + std::string(mx_format_name(p.weight)) +
             " weights: FP32 group scales per 32-block)";
    if ((act_key_is_fp8(p.act) || group) && p.weight == ElemType::kE2M1 &&
        fp8_tensor_cores_requested()) {
      hopper::HopperFp8GemmArgs f;
      static const float kAnyGroupScales = 1.0f;  // (only whether the key has them matters)
      if (group) f.act_group_scale = &kAnyGroupScales;
      f.out = p.out;
      f.m = p.m;
      f.n = p.n;
      f.k = p.k;
      f.ldx = (p.k + 15) / 16 * 16;
      f.ldy = p.n;
      auto c = hopper::choose_hopper_fp8_config(f);
      return c.ok() ? c.value().to_string() +
                          (group ? " (where every row folds into E4M3; else cuda-mma's kernels)"
                                 : " (where every row folds into E4M3; else the 16-bit kernel "
                                   "on E4M3 values into FP32)")
                    : "(no launch: " + c.status().to_string() + ")";
    }
    hopper::HopperGemmArgs a;
    a.elem = p.weight;
    a.act = act_input_dtype(p.act);
    a.out = p.out;
    a.m = p.m;
    a.n = p.n;
    a.k = p.k;
    a.ldx = p.k;
    a.ldy = p.n;
    auto c = hopper::choose_hopper_config(a);
    return c.ok() ? c.value().to_string() : "(no launch: " + c.status().to_string() + ")";
  }

 protected:
  // Arguments checked by the entry (Backend::prepare_* / run_*: can_implement, the weight and
  // call views); what is left here is the device's business (memory, NaN codes, which GPU).
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_linear(
      const Problem& p, const LinearWeights& lw) const override {
    MXQ_DEBUG_ASSERT(check_frag_layout(lw.w).ok(), "can_implement and check_linear_weights passed");
    const bool group = p.act == ActKey::kFP8DynamicGroup128;
    if ((act_key_is_fp8(p.act) || group) && p.weight == ElemType::kE2M1 &&
        fp8_tensor_cores_requested()) {
      std::vector<int32_t> bases;
      auto st = fold_rows(lw.w, bases);
      if (!st.ok()) return st.status();
      if (st.value().folded == st.value().rows) return prepare_fp8(p, lw, bases);
      warn_once("cuda-hopper: " + p.to_string() + ": " + st.value().summary() +
                (group ? ": the layer runs on cuda-mma's kernels (FP32 group scales per 32-block; "
                         "the FP8 tensor cores take it when every row folds)"
                       : ": the layer runs the exact 16-bit kernel on the E4M3 activation values "
                         "(the FP8 tensor cores take it when every row folds)"));
    }
    auto out = std::make_unique<PreparedHopperLinear>();
    MXQ_CUDA_TRY(cudaGetDevice(&out->device));
    if (group) {
      // MXFP8 weights, rows that do not fold, or MXQ_HOPPER_FP8_PATH=16bit: the 16-bit hopper
      // kernel has no per-32-block FP32 scale path, cuda-mma's has (the same numbers).
      if (p.weight != ElemType::kE2M1)
        warn_once("cuda-hopper: " + p.to_string() + ": fp8-dynamic-group128 on " +
                  mx_format_name(p.weight) + " weights runs on cuda-mma's kernels (the FP8 "
                  "tensor-core path takes MXFP4 weights)");
      auto m = mma_->prepare_linear(p, lw);
      if (!m.ok()) return m.status();
      out->mma = std::move(m).value();
      return std::unique_ptr<PreparedWeights>(std::move(out));
    }
    if (p.act == ActKey::kFP8StaticTensor) out->input_scale = lw.input_scale;
    const FragSource src = FragSource::plain(lw.w);
    out->layout = hopper::hopper_layout(src);

    const size_t pbytes = size_t(lw.w.n) * size_t(packed_bytes(lw.w.elem, lw.w.k));
    const size_t sbytes = size_t(lw.w.n) * size_t(lw.w.k / 32);
    DeviceBuffer tmp_p, tmp_s, flag;
    MXWeightView dv = lw.w;
    MXQ_RETURN_IF_ERROR(to_device(lw.w.packed, pbytes, tmp_p, reinterpret_cast<const void**>(&dv.packed)));
    MXQ_RETURN_IF_ERROR(to_device(lw.w.scales, sbytes, tmp_s, reinterpret_cast<const void**>(&dv.scales)));
    MXQ_RETURN_IF_ERROR(out->w.allocate(out->layout.bytes(), "the cuda-hopper weight chunks"));
    RepackStats stats;
    MXQ_RETURN_IF_ERROR(flag.allocate(sizeof(RepackStats), "the repack statistics"));
    MXQ_CUDA_TRY(cudaMemcpy(flag.get(), &stats, sizeof stats, cudaMemcpyHostToDevice));
    MXQ_RETURN_IF_ERROR(hopper::repack_hopper(FragSource::plain(dv), out->w.get(),
                                              flag.get<RepackStats>(), nullptr));
    MXQ_CUDA_TRY(cudaMemcpy(&stats, flag.get(), sizeof stats, cudaMemcpyDeviceToHost));
    if (stats.nan != 0)
      return invalid_argument("cuda-hopper: the E4M3 weights contain NaN codes (0x7F / 0xFF); "
                              "the GEMM's decode has no NaN, refusing (the cpu backends "
                              "propagate NaN)");
    const ScaleRange r = scale_in_weights_range(p.weight, act_input_dtype(p.act));
    if (stats.scale_min < r.lo || stats.scale_max > r.hi) {
      // Exact either way; the FP32 per-block scale path lives in the cuda-mma kernels.
      out->w.reset();
      warn_once("cuda-hopper: " + p.to_string() + ": scale codes [" + std::to_string(stats.scale_min) +
                ", " + std::to_string(stats.scale_max) + "] lie outside [" + std::to_string(r.lo) +
                ", " + std::to_string(r.hi) + "] (exact when folded into " +
                dtype_name(act_input_dtype(p.act)) +
                " weights): running this layer on the cuda-mma kernels' FP32 scale path");
      auto m = mma_->prepare_linear(p, lw);
      if (!m.ok()) return m.status();
      out->mma = std::move(m).value();
      return std::unique_ptr<PreparedWeights>(std::move(out));
    }

    if (lw.bias.data != nullptr)
      MXQ_RETURN_IF_ERROR(upload_as_f32(lw.bias.data, lw.bias.dtype, p.n, out->bias, "the bias"));
    MXQ_CUDA_TRY(cudaDeviceSynchronize());
    return std::unique_ptr<PreparedWeights>(std::move(out));
  }

  Status do_run_linear(const Problem& p, const PreparedWeights& pw, const DenseView& x,
                       const DenseMutView& y, void* stream) const override {
    MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedHopperLinear*>(&pw) != nullptr,
                     "the entry checked that pw comes from this backend's prepare_linear");
    const auto* w = static_cast<const PreparedHopperLinear*>(&pw);
    // cuda-mma's own entry (its prepared weights, the same problem) for the FP32 scale path.
    if (w->mma) return mma_->run_linear(p, *w->mma, x, y, stream);
    if (w->fp8) return run_fp8(p, *w, x, y, static_cast<cudaStream_t>(stream));
    MXQ_DEBUG_ASSERT(w->layout.n == p.n && w->layout.k == p.k && w->layout.elem == p.weight,
                     "the entry checked that pw was prepared for this layer");
    const DType act = act_input_dtype(p.act);
    MXQ_DEBUG_ASSERT(x.data != nullptr && x.dtype == act && x.rows == p.m && x.cols == p.k &&
                         y.data != nullptr && y.dtype == p.out && y.rows == p.m && y.cols == p.n,
                     "the entry checked x and y");
    MXQ_RETURN_IF_ERROR(check_prepared_device(name(), w->device));
    hopper::HopperGemmArgs a;
    a.elem = p.weight;
    a.act = act;
    a.out = p.out;
    a.w = w->w.get();
    a.bias = w->bias.bytes() ? w->bias.get<float>() : nullptr;
    a.m = p.m;
    a.n = p.n;
    a.k = p.k;
    a.ldx = p.k;
    a.ldy = p.n;
    auto* s = static_cast<cudaStream_t>(stream);
    // The activation key's operand: x itself for bf16 / fp16, an MX key's exact fake-quantized
    // copy (stream-ordered, freed on the stream) otherwise; contiguous, so ldx = K holds.
    // FP8 keys on this (16-bit) path: the E4M3 values (exact in 16 bits), the GEMM into FP32,
    // the scale and bias in scale_rows (as cuda-mma).
    StreamBuffer xq(s), xs(s), acc(s);
    auto gemm = [&]() -> Status {
      if (!act_key_is_fp8(p.act)) {
        MXQ_RETURN_IF_ERROR(act_operand(p.act, p.act_rule, a.x, act, p.m, p.k, xq, &a.x, s));
        return hopper::hopper_gemm(a, s);
      }
      const float* row_scale = nullptr;
      MXQ_RETURN_IF_ERROR(fp8_operand(p.act, a.x, act, p.m, p.k, w->input_scale, xq, xs, &a.x,
                                      &row_scale, s));
      hopper::HopperGemmArgs f = a;
      f.out = DType::kF32;
      f.bias = nullptr;
      f.ldy = p.n;
      MXQ_RETURN_IF_ERROR(acc.allocate(size_t(p.m * p.n) * sizeof(float),
                                       "the FP32 accumulator of the FP8 keys' 16-bit path"));
      f.y = acc.get();
      MXQ_RETURN_IF_ERROR(hopper::hopper_gemm(f, s));
      return scale_rows(static_cast<const float*>(acc.get()), p.m, p.n, row_scale,
                        w->input_scale, a.bias, p.out, a.y, a.ldy, s);
    };
    // Device pointers as they are; host memory staged (synchronous).
    return run_device_or_staged(x.data, size_t(p.m * p.k) * size_t(dtype_bytes(act)), y.data,
                                size_t(p.m * p.n) * size_t(dtype_bytes(p.out)), &a.x, &a.y, s,
                                gemm);
  }

  // MoE: the shared layer (moe/moe_layer.h: routing, dispatch, combine) on the hopper grouped
  // GEMMs; weights whose scales do not fold go to the cuda-mma kernels (announced).
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_moe(const Problem& p,
                                                            const MoEWeights& w) const override {
    return prepare_moe_layer(p, w, kMoEStageBytes, MoEKernels::kHopper);
  }

  Status do_run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                    const MoERouting& r, const DenseMutView& y, void* stream) const override {
    return run_moe_layer(p, w, x, r, y, static_cast<cudaStream_t>(stream));
  }

 private:
  // MXQ_HOPPER_FP8_PATH=16bit (read at prepare) keeps the FP8 keys on the 16-bit kernel even
  // where the rows fold: the A/B of the two paths in one process (bench/cuda_gemm_bench.py).
  static bool fp8_tensor_cores_requested() {
    const char* v = std::getenv("MXQ_HOPPER_FP8_PATH");
    return v == nullptr || std::string(v) != "16bit";
  }

  // FP8 keys, every row folding: the FP8 layout (GPU repack, fp8_repack.h) and the rows'
  // 2^(base - 127) (padding rows 1: their results are never stored).
  StatusOr<std::unique_ptr<PreparedWeights>> prepare_fp8(const Problem& p, const LinearWeights& lw,
                                                         const std::vector<int32_t>& bases) const {
    namespace fp8 = hopper::fp8;
    auto out = std::make_unique<PreparedHopperLinear>();
    MXQ_CUDA_TRY(cudaGetDevice(&out->device));
    out->fp8 = true;
    out->layout = hopper::hopper_layout(FragSource::plain(lw.w));
    if (p.act == ActKey::kFP8StaticTensor) out->input_scale = lw.input_scale;
    const fp8::Fp8Layout l{1, lw.w.n, lw.w.k};
    const size_t pbytes = size_t(lw.w.n) * size_t(packed_bytes(lw.w.elem, lw.w.k));
    const size_t sbytes = size_t(lw.w.n) * size_t(lw.w.k / 32);
    DeviceBuffer tmp_p, tmp_s, dbases, dpadded, bad;
    MXWeightView dv = lw.w;
    MXQ_RETURN_IF_ERROR(to_device(lw.w.packed, pbytes, tmp_p, reinterpret_cast<const void**>(&dv.packed)));
    MXQ_RETURN_IF_ERROR(to_device(lw.w.scales, sbytes, tmp_s, reinterpret_cast<const void**>(&dv.scales)));
    MXQ_RETURN_IF_ERROR(out->w.allocate(l.bytes(), "the cuda-hopper FP8 weight chunks"));
    MXQ_RETURN_IF_ERROR(dbases.allocate(bases.size() * sizeof(int32_t), "the FP8 row bases"));
    MXQ_RETURN_IF_ERROR(dpadded.allocate(size_t(l.n_pad()) * sizeof(int32_t), "the FP8 padded row bases"));
    MXQ_RETURN_IF_ERROR(bad.allocate(sizeof(unsigned long long), "the FP8 repack's fold check"));
    const unsigned long long none = fp8::kNoBadBlock;
    MXQ_CUDA_TRY(cudaMemcpy(dbases.get(), bases.data(), bases.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    MXQ_CUDA_TRY(cudaMemcpy(bad.get(), &none, sizeof none, cudaMemcpyHostToDevice));
    MXQ_RETURN_IF_ERROR(fp8::repack_fp8(dv, dbases.get<int32_t>(), out->w.get<uint8_t>(),
                                        dpadded.get<int32_t>(), bad.get<unsigned long long>(), nullptr));
    unsigned long long first_bad = 0;
    MXQ_CUDA_TRY(cudaMemcpy(&first_bad, bad.get(), sizeof first_bad, cudaMemcpyDeviceToHost));
    MXQ_RETURN_IF_ERROR(fp8::fold_error(lw.w, first_bad));  // (fold_rows said every row folds)
    std::vector<float> mul(size_t(l.n_pad()), 1.0f);
    for (size_t r = 0; r < bases.size(); ++r) mul[r] = std::ldexp(1.0f, bases[r] - 127);
    MXQ_RETURN_IF_ERROR(out->row_mul.allocate(mul.size() * sizeof(float), "the FP8 row multipliers"));
    MXQ_CUDA_TRY(cudaMemcpy(out->row_mul.get(), mul.data(), mul.size() * sizeof(float), cudaMemcpyHostToDevice));
    if (lw.bias.data != nullptr)
      MXQ_RETURN_IF_ERROR(upload_as_f32(lw.bias.data, lw.bias.dtype, p.n, out->bias, "the bias"));
    MXQ_CUDA_TRY(cudaDeviceSynchronize());
    return std::unique_ptr<PreparedWeights>(std::move(out));
  }

  // The FP8 tensor-core run: x quantized to E4M3 codes (rows of ldc bytes, 16-aligned for TMA)
  // with its per-token or static scale, then hopper_fp8_gemm.
  Status run_fp8(const Problem& p, const PreparedHopperLinear& w, const DenseView& x,
                 const DenseMutView& y, cudaStream_t s) const {
    const DType act = act_input_dtype(p.act);
    const bool dynamic = p.act == ActKey::kFP8DynamicToken;
    const bool group = p.act == ActKey::kFP8DynamicGroup128;
    const int64_t ldc = (p.k + 15) / 16 * 16;
    hopper::HopperFp8GemmArgs f;
    f.out = p.out;
    f.w = w.w.get<uint8_t>();
    f.row_mul = w.row_mul.get<float>();
    f.bias = w.bias.bytes() ? w.bias.get<float>() : nullptr;
    f.act_scale = w.input_scale;
    f.m = p.m;
    f.n = p.n;
    f.k = p.k;
    f.ldx = ldc;
    f.ldy = p.n;
    StreamBuffer codes(s), scales(s), tiles(s);
    const void* xd = nullptr;
    void* yd = nullptr;
    auto gemm = [&]() -> Status {
      MXQ_RETURN_IF_ERROR(codes.allocate(size_t(p.m * ldc), "the E4M3 activation codes"));
      // Large M: the weights pre-decoded into E4M3 tiles, a chunk of rows at a time (gemm.h).
      auto ws = hopper::hopper_fp8_workspace_bytes(f);
      if (!ws.ok()) return ws.status();
      if (ws.value() > 0) {
        MXQ_RETURN_IF_ERROR(tiles.allocate(ws.value(), "the FP8 path's pre-decoded weight tiles"));
        f.workspace = static_cast<uint8_t*>(tiles.get());
        f.workspace_bytes = ws.value();
      }
      if (group) {  // per (token, 128-column group) scales, applied at each stage's promotion
        MXQ_RETURN_IF_ERROR(scales.allocate(size_t(p.m * fp8_act_groups(p.k)) * sizeof(float),
                                            "the per-token, per-128-column-group scales"));
        auto* gs = static_cast<float*>(scales.get());
        MXQ_RETURN_IF_ERROR(fp8_group_act_quant_codes(xd, act, p.m, p.k,
                                                      static_cast<uint8_t*>(codes.get()), ldc,
                                                      gs, s));
        f.x = static_cast<const uint8_t*>(codes.get());
        f.act_group_scale = gs;
        f.act_scale = 1.0f;
        f.y = yd;
        return hopper::hopper_fp8_gemm(f, s);
      }
      float* rs = nullptr;
      if (dynamic) {
        MXQ_RETURN_IF_ERROR(scales.allocate(size_t(p.m) * sizeof(float), "the per-token scales"));
        rs = static_cast<float*>(scales.get());
      }
      MXQ_RETURN_IF_ERROR(fp8_act_quant_codes(xd, act, p.m, p.k, dynamic, w.input_scale,
                                              static_cast<uint8_t*>(codes.get()), ldc, rs, s));
      f.x = static_cast<const uint8_t*>(codes.get());
      f.act_row_scale = rs;
      f.y = yd;
      return hopper::hopper_fp8_gemm(f, s);
    };
    return run_device_or_staged(x.data, size_t(p.m * p.k) * size_t(dtype_bytes(act)), y.data,
                                size_t(p.m * p.n) * size_t(dtype_bytes(p.out)), &xd, &yd, s,
                                gemm);
  }

  static void warn_once(const std::string& msg) {
    static std::mutex mu;
    static std::vector<std::string> seen;
    std::lock_guard<std::mutex> lock(mu);
    if (std::find(seen.begin(), seen.end(), msg) != seen.end()) return;
    seen.push_back(msg);
    std::fprintf(stderr, "mxq: note: %s\n", msg.c_str());
  }
  std::unique_ptr<Backend> mma_;
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> make_cuda_hopper_backend() {
  return std::make_unique<cuda::CudaHopperBackend>();
}

}  // namespace mxq
