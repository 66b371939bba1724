// The MoE routing kernel: one warp per token, each lane holding experts lane, lane + 32, ...
// (VPT = values per lane, a template parameter: E <= 32 * VPT). Every ranking is k rounds of a
// warp arg-max that reproduces the CPU's sequential selection scan exactly (see warp_pick).
// Selection scores are float for the two softmax modes (they rank the raw BF16 / FP16 / F32
// logits, exact in float, so comparisons are those of the CPU's float64 copies; a float rank
// costs half the shuffles of a double one) and double for the sigmoid mode (sigmoid + bias in
// float64, as the CPU). Weights are float64 expressions in every mode.
#include <cuda_fp16.h>

#include <climits>
#include <cstdint>
#include <type_traits>

#include "cuda/common/pdl.h"
#include "cuda/moe/kernels.h"

namespace mxq::cuda::moe_detail {
namespace {

constexpr int kWarpsPerBlock = 4;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ double load_logit(const void* p, DType d, int64_t i) {
  if (d == DType::kF32) return double(static_cast<const float*>(p)[i]);
  const unsigned short u = static_cast<const unsigned short*>(p)[i];
  if (d == DType::kBF16) return double(__uint_as_float(unsigned(u) << 16));
  return double(__half2float(__ushort_as_half(u)));
}

// The CPU's sigmoid, same float64 expression.
__device__ __forceinline__ double sigmoid_d(double v) { return 1.0 / (1.0 + exp(-v)); }

// One step of the CPU's top_k scan over the candidates (bit i of `cand` = slot i of this lane,
// expert lane + 32 * i): b = first candidate; b = i whenever score[i] > score[b]. Its result
// is the first candidate when that one is NaN (nothing compares greater than NaN), else the
// largest non-NaN score, ties to the lower index. Both parts are warp reductions with a unique
// answer, so every lane returns the same index; -1 when there is no candidate.
template <int VPT, typename S>
__device__ __forceinline__ int warp_pick(const S (&v)[VPT], uint32_t cand, int lane) {
  int first = INT_MAX;  // 2 * index + (score is NaN)
  S bv = S(0);
  int bi = -1;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    if ((cand >> i) & 1u) {
      const int e = lane + 32 * i;
      const bool nan = isnan(v[i]);
      if (first == INT_MAX) first = 2 * e + (nan ? 1 : 0);
      if (!nan && (bi < 0 || v[i] > bv)) {
        bv = v[i];
        bi = e;
      }
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const int of = __shfl_xor_sync(kFull, first, off);
    const S ov = __shfl_xor_sync(kFull, bv, off);
    const int oi = __shfl_xor_sync(kFull, bi, off);
    first = min(first, of);
    if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
      bv = ov;
      bi = oi;
    }
  }
  if (first == INT_MAX) return -1;
  return (first & 1) ? (first >> 1) : bi;
}

// v[slot] without dynamic register indexing (which would spill the array to local memory).
template <int VPT, typename S>
__device__ __forceinline__ S slot_value(const S (&v)[VPT], int slot) {
  S r = S(0);
#pragma unroll
  for (int i = 0; i < VPT; ++i)
    if (i == slot) r = v[i];
  return r;
}

// S: the selection score type, double for the grouped mode only (kGrouped), else float.
template <int VPT, bool kGrouped>
__global__ void __launch_bounds__(32 * kWarpsPerBlock) route_kernel(const RouteArgs a) {
  using S = std::conditional_t<kGrouped, double, float>;
  // The first kernel of the MoE chain (common/pdl.h): the dispatch may launch now; the router
  // logits come from the kernel before.
  pdl::launch_dependents();
  pdl::wait();
  const int lane = int(threadIdx.x & 31u);
  const int64_t t = int64_t(blockIdx.x) * kWarpsPerBlock + int64_t(threadIdx.x >> 5);
  if (t >= a.tokens) return;  // uniform per warp
  const int E = a.experts, k = a.topk;
  const int64_t row = t * E;

  // Selection scores: the logits, or c = sigmoid(logit) + bias for the grouped mode.
  S v[VPT];
  uint32_t valid = 0;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int e = lane + 32 * i;
    v[i] = 0.0;
    if (e < E) {
      valid |= 1u << i;
      const double l = load_logit(a.logits, a.dtype, row + e);
      if constexpr (kGrouped)
        v[i] = sigmoid_d(l) + (a.correction_bias ? double(a.correction_bias[e]) : 0.0);
      else
        v[i] = S(l);  // exact: the logit is a BF16 / FP16 / F32 value
    }
  }

  // softmax-topk: the max (fmax: NaN-ignoring, as std::fmax) and the denominator over all E.
  double mx = -INFINITY, denom = 0.0;
  if (a.mode == RouteMode::kSoftmaxTopK) {
    S smx = S(-INFINITY);  // the max of the exact scores is exact in S
#pragma unroll
    for (int i = 0; i < VPT; ++i)
      if ((valid >> i) & 1u) smx = fmax(smx, v[i]);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) smx = fmax(smx, __shfl_xor_sync(kFull, smx, off));
    mx = double(smx);
#pragma unroll
    for (int i = 0; i < VPT; ++i)
      if ((valid >> i) & 1u) denom += exp(double(v[i]) - mx);
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) denom += __shfl_xor_sync(kFull, denom, off);
  }

  uint32_t allowed = valid;
  if constexpr (kGrouped) {
    const int per = E / a.n_group;
    double gscore[1] = {0.0};  // lane g: group g's score
    for (int g = 0; g < a.n_group; ++g) {
      uint32_t in_g = 0;
#pragma unroll
      for (int i = 0; i < VPT; ++i)
        if (((valid >> i) & 1u) && (lane + 32 * i) / per == g) in_g |= 1u << i;
      double sum = 0.0;
      for (int r = 0; r < 2; ++r) {
        const int b = warp_pick<VPT, S>(v, in_g, lane);
        if (b < 0) break;
        sum += __shfl_sync(kFull, slot_value<VPT, S>(v, b >> 5), b & 31);
        if (lane == (b & 31)) in_g &= ~(1u << (b >> 5));
      }
      if (lane == g) gscore[0] = sum;
    }
    uint32_t gcand = lane < a.n_group ? 1u : 0u, keep = 0;
    for (int r = 0; r < a.topk_group; ++r) {
      const int gb = warp_pick<1, double>(gscore, gcand, lane);
      if (gb < 0) break;
      keep |= 1u << gb;
      if (lane == gb) gcand = 0;
    }
    allowed = 0;
#pragma unroll
    for (int i = 0; i < VPT; ++i)
      if (((valid >> i) & 1u) && ((keep >> ((lane + 32 * i) / per)) & 1u)) allowed |= 1u << i;
  }

  // The k best, best first: lane j ends up holding the j-th.
  int my_id = 0, chosen = 0;
  for (int j = 0; j < k; ++j) {
    const int b = warp_pick<VPT, S>(v, allowed, lane);
    if (b < 0) break;
    if (lane == j) my_id = b;
    if (lane == (b & 31)) allowed &= ~(1u << (b >> 5));
    ++chosen;
  }

  // Weights, with the CPU's float64 expressions and summation order (best first).
  const double x = load_logit(a.logits, a.dtype, row + my_id);
  double w = 0.0;
  if (a.mode == RouteMode::kSoftmaxTopK) {
    w = exp(x - mx) / denom;
  } else if (a.mode == RouteMode::kTopKSoftmax) {
    w = exp(x - __shfl_sync(kFull, x, 0));  // minus the largest chosen logit
  } else {
    w = sigmoid_d(x);
  }
  double sum = 0.0;
  for (int j = 0; j < chosen; ++j) sum += __shfl_sync(kFull, w, j);
  if (a.mode == RouteMode::kSoftmaxTopK) {
    if (a.renormalize) w /= sum;
  } else if (a.mode == RouteMode::kTopKSoftmax) {
    w /= sum;
  } else {
    w = (a.renormalize ? w / sum : w) * a.routed_scaling;
  }
  if (lane < k) {
    a.topk_ids[t * k + lane] = lane < chosen ? my_id : 0;
    a.topk_weights[t * k + lane] = lane < chosen ? float(w) : 0.0f;
  }
}

template <bool kGrouped>
void launch_vpt(int vpt, dim3 grid, dim3 block, const RouteArgs& a, cudaStream_t stream) {
  if (vpt <= 1)
    pdl::launch(route_kernel<1, kGrouped>, grid, block, 0, stream, a);
  else if (vpt <= 2)
    pdl::launch(route_kernel<2, kGrouped>, grid, block, 0, stream, a);
  else if (vpt <= 4)
    pdl::launch(route_kernel<4, kGrouped>, grid, block, 0, stream, a);
  else if (vpt <= 8)
    pdl::launch(route_kernel<8, kGrouped>, grid, block, 0, stream, a);
  else
    pdl::launch(route_kernel<16, kGrouped>, grid, block, 0, stream, a);
}

}  // namespace

cudaError_t launch_route(const RouteArgs& a, cudaStream_t stream) {
  const unsigned blocks = unsigned((a.tokens + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const dim3 grid(blocks), block(32 * kWarpsPerBlock);
  const int vpt = (a.experts + 31) / 32;
  if (a.mode == RouteMode::kSigmoidGroupedTopK)
    launch_vpt<true>(vpt, grid, block, a, stream);
  else
    launch_vpt<false>(vpt, grid, block, a, stream);
  return cudaGetLastError();
}

}  // namespace mxq::cuda::moe_detail
