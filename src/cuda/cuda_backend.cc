// The cuda-mma backend: MX linear layers and fused MoE layers on SM80+ GPUs through the
// mixed-input tensor-core GEMM (gemm/mx_gemm.cuh; MoE: moe/moe_layer.h). Weights are repacked
// on the GPU into the fragment layout at prepare time. Activation keys: bf16 / fp16, and the MX
// keys (mxfp4 / mxfp6 / mxfp8-dynamic) quantized on the GPU into the 16-bit operand exactly as
// cpu-reference quantizes them (quant/act_operand.h); for linear layers also the FP8 keys (E4M3
// values as the operand, the GEMM into FP32, the scale applied per row before the bias).
//
// Memory: prepare accepts canonical weights in host or device memory (copied to the current
// device). run_linear takes device pointers for x and y and is asynchronous on the given stream
// (no cudaMalloc, no synchronisation: graph-capturable; an MX activation key's quantized copy of
// x comes from the stream-ordered allocator, as the MoE workspace does). For tests and the CLI
// it also accepts host pointers: then it stages them through temporary device buffers and
// synchronises, which is slow and documented as a convenience only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "contract/debug_assert.h"
#include "cuda/backends.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/device_memory.h"
#include "cuda/common/staged_run.h"
#include "cuda/gemm/frag_layout.h"
#include "cuda/gemm/mx_gemm.h"
#include "cuda/gemm/repack.h"
#include "cuda/mma_claims.h"
#include "cuda/moe/moe_layer.h"
#include "cuda/quant/act_operand.h"
#include "cuda/quant/fake_quant.h"
#include "mxq/numerics.h"

namespace mxq {
namespace cuda {
namespace {

struct PreparedLinear final : PreparedWeights {
  int device = 0;
  FragLayout layout;
  DeviceBuffer w, scales, bias;  // bias: FP32 [N] or empty
  int scale_min = 0, scale_max = 255;  // the E8M0 codes seen by the repack
  float input_scale = 1.0f;            // fp8-static-tensor
  size_t bytes() const override { return w.bytes() + scales.bytes() + bias.bytes(); }
};

class CudaMmaBackend final : public Backend {
 public:
  std::string_view name() const override { return "cuda-mma"; }
  int priority() const override { return 100; }
  MemoryKind memory_kind() const override { return MemoryKind::kCUDA; }

  Verdict supports(const Device& d) const override {
    std::string why_not;
    const CudaDeviceInfo* g = current_gpu(d, why_not);
    if (g == nullptr) return Verdict::no(why_not);
    const int cc = 10 * g->cc_major + g->cc_minor;
    if (cc < 80)
      return Verdict::no("GPU " + g->name + " is sm_" + std::to_string(cc) +
                         "; cuda-mma needs sm_80 or newer (mma.sync BF16)");
    // Machine code runs only on the major version it was built for (no PTX is embedded).
    const int need = g->cc_major == 8 ? 80 : g->cc_major == 9 ? 90 : -1;
    const auto& built = d.cuda_archs_compiled;
    if (need < 0 || std::find(built.begin(), built.end(), need) == built.end()) {
      std::string archs;
      for (int a : built) archs += (archs.empty() ? "" : ", ") + std::to_string(a);
      return Verdict::no("no cuda-mma machine code for sm_" + std::to_string(cc) +
                         " in this build (built: " + archs + ")");
    }
    return Verdict::yes();
  }

  // bf16 / fp16 as they are, the MX keys quantized on the GPU into the 16-bit operand
  // (quant/act_operand.h, exact); the FP8 keys (fp8-dynamic-tensor included: its amax over the
  // whole x reduced on the device) as E4M3 values with the scale applied after an FP32 GEMM,
  // fp8-dynamic-group128's per-(token, 128-group) scales inside the GEMM's FP32-scale path
  // (linear layers; the MoE layer refuses them in can_implement).
  static_assert(kActGroupColumns == kFp8ActGroup, "mx_gemm.h and problem.h agree on the group");
  bool declares_act_key(ActKey a) const override {
    return gemm16_runs_act_key(a) || act_key_is_fp8_mma(a);
  }

  Verdict can_implement(const Problem& p) const override {
    if (p.op == Op::kMoE) return moe_layer_can_implement(p);
    if (p.op != Op::kLinear)
      return Verdict::no(std::string("cuda-mma runs linear and MoE layers, not ") + op_name(p.op));
    // FP8 keys: BF16 operand, scale in the epilogue (run_fp8_linear); M: 65535 grid rows of 64.
    return linear_layer_verdict(p, "cuda-mma", 65535LL * 64, /*mma_fp8_keys=*/true);
  }

 protected:
  // Arguments checked by the entry (Backend::prepare_* / run_*: can_implement, the weight and
  // call views); what is left here is the device's business (memory, NaN codes, which GPU).
  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_linear(
      const Problem& p, const LinearWeights& lw) const override {
    MXQ_DEBUG_ASSERT(check_frag_layout(lw.w).ok(), "can_implement and check_linear_weights passed");
    auto out = std::make_unique<PreparedLinear>();
    MXQ_CUDA_TRY(cudaGetDevice(&out->device));
    out->layout = FragLayout{lw.w.elem, 1, lw.w.n, lw.w.k};
    const FragLayout& l = out->layout;

    // Canonical weights on the device (a temporary copy when they live on the host).
    const size_t pbytes = size_t(l.n) * size_t(packed_bytes(l.elem, l.k));
    const size_t sbytes = size_t(l.n) * size_t(l.k / 32);
    DeviceBuffer tmp_p, tmp_s, flag;
    MXWeightView dv = lw.w;
    MXQ_RETURN_IF_ERROR(to_device(lw.w.packed, pbytes, tmp_p, reinterpret_cast<const void**>(&dv.packed)));
    MXQ_RETURN_IF_ERROR(to_device(lw.w.scales, sbytes, tmp_s, reinterpret_cast<const void**>(&dv.scales)));

    MXQ_RETURN_IF_ERROR(out->w.allocate(l.packed_bytes(), "the cuda-mma weight tiles"));
    MXQ_RETURN_IF_ERROR(out->scales.allocate(l.scale_bytes(), "the cuda-mma scale words"));
    RepackStats stats;
    MXQ_RETURN_IF_ERROR(flag.allocate(sizeof(RepackStats), "the repack statistics"));
    MXQ_CUDA_TRY(cudaMemcpy(flag.get(), &stats, sizeof stats, cudaMemcpyHostToDevice));
    MXQ_RETURN_IF_ERROR(
        repack_frag(dv, out->w.get(), out->scales.get(), flag.get<RepackStats>(), nullptr));
    MXQ_CUDA_TRY(cudaMemcpy(&stats, flag.get(), sizeof stats, cudaMemcpyDeviceToHost));
    out->scale_min = stats.scale_min;
    out->scale_max = stats.scale_max;
    if (stats.nan != 0)
      return invalid_argument("cuda-mma: the E4M3 weights contain NaN codes (0x7F / 0xFF); "
                              "cuda-mma's decode has no NaN, refusing (the cpu backends "
                              "propagate NaN)");

    if (p.act == ActKey::kFP8StaticTensor) {
      MXQ_DEBUG_ASSERT(lw.input_scale > 0.0f && std::isfinite(lw.input_scale),
                       "check_linear_weights checked the fp8-static-tensor input_scale");
      out->input_scale = lw.input_scale;
    }
    if (lw.bias.data != nullptr)
      MXQ_RETURN_IF_ERROR(upload_as_f32(lw.bias.data, lw.bias.dtype, l.n, out->bias, "the bias"));
    MXQ_CUDA_TRY(cudaDeviceSynchronize());
    return std::unique_ptr<PreparedWeights>(std::move(out));
  }

  Status do_run_linear(const Problem& p, const PreparedWeights& pw, const DenseView& x,
                       const DenseMutView& y, void* stream) const override {
    MXQ_DEBUG_ASSERT(dynamic_cast<const PreparedLinear*>(&pw) != nullptr,
                     "the entry checked that pw comes from this backend's prepare_linear");
    const auto* w = static_cast<const PreparedLinear*>(&pw);
    MXQ_DEBUG_ASSERT(w->layout.n == p.n && w->layout.k == p.k && w->layout.elem == p.weight,
                     "the entry checked that pw was prepared for this layer");
    const DType act = act_input_dtype(p.act);
    MXQ_DEBUG_ASSERT(x.data != nullptr && x.dtype == act && x.rows == p.m && x.cols == p.k &&
                         y.data != nullptr && y.dtype == p.out && y.rows == p.m && y.cols == p.n,
                     "the entry checked x and y");
    MXQ_RETURN_IF_ERROR(check_prepared_device(name(), w->device));

    GemmArgs a;
    a.elem = p.weight;
    a.act = act;
    a.out = p.out;
    a.w = w->w.get();
    a.w_scales = w->scales.get();
    a.bias = w->bias.bytes() ? w->bias.get<float>() : nullptr;
    a.m = p.m;
    a.n = p.n;
    a.k = p.k;
    a.ldx = p.k;
    a.ldy = p.n;
    const ScaleRange r = scale_in_weights_range(p.weight, act);
    a.scale_in_weights = w->scale_min >= r.lo && w->scale_max <= r.hi;
    auto* s = static_cast<cudaStream_t>(stream);

    // The activation key's operand (x itself for bf16 / fp16; MX keys quantized on the GPU;
    // FP8 keys as E4M3 values, the GEMM into FP32 and the scale and bias in scale_rows).
    StreamBuffer xq(s), xs(s), acc(s);
    auto gemm = [&]() -> Status {
      if (!act_key_is_fp8_mma(p.act)) {
        MXQ_RETURN_IF_ERROR(act_operand(p.act, p.act_rule, a.x, act, p.m, p.k, xq, &a.x, s));
        return mx_gemm(a, s);
      }
      if (p.act == ActKey::kFP8DynamicGroup128) {  // scales per 32-block inside the GEMM
        MXQ_RETURN_IF_ERROR(fp8_group_operand(a.x, act, p.m, p.k, xq, xs, &a.x, &a.x_group_scales, s));
        return mx_gemm(a, s);
      }
      const float* row_scale = nullptr;
      MXQ_RETURN_IF_ERROR(fp8_operand(p.act, a.x, act, p.m, p.k, w->input_scale, xq, xs, &a.x,
                                      &row_scale, s));
      GemmArgs f = a;
      f.out = DType::kF32;
      f.bias = nullptr;
      f.ldy = p.n;
      MXQ_RETURN_IF_ERROR(acc.allocate(size_t(p.m * p.n) * sizeof(float), "the FP32 accumulator of the FP8 path"));
      f.y = acc.get();
      MXQ_RETURN_IF_ERROR(mx_gemm(f, s));
      return scale_rows(static_cast<const float*>(acc.get()), p.m, p.n, row_scale, w->input_scale,
                        a.bias, p.out, a.y, a.ldy, s);
    };
    // Device pointers as they are; host memory staged (synchronous).
    return run_device_or_staged(x.data, size_t(p.m * p.k) * size_t(dtype_bytes(act)), y.data,
                                size_t(p.m * p.n) * size_t(dtype_bytes(p.out)), &a.x, &a.y, s,
                                gemm);
  }

  StatusOr<std::unique_ptr<PreparedWeights>> do_prepare_moe(const Problem& p,
                                                            const MoEWeights& w) const override {
    return prepare_moe_layer(p, w);
  }

  Status do_run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                    const MoERouting& r, const DenseMutView& y, void* stream) const override {
    return run_moe_layer(p, w, x, r, y, static_cast<cudaStream_t>(stream));
  }
};

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> make_cuda_mma_backend() { return std::make_unique<cuda::CudaMmaBackend>(); }

std::vector<std::unique_ptr<Backend>> make_cuda_backends() {
  std::vector<std::unique_ptr<Backend>> v;
  v.push_back(make_cuda_mma_backend());
#if defined(MXQ_WITH_HOPPER)
  v.push_back(make_cuda_hopper_backend());
#endif
  return v;
}

}  // namespace mxq
