// The cuda-mma GEMM kernel family (SM80+ mma.sync, dequantization in registers).
//
// Work split, two variants of one kernel:
// - split K (small M): block (tn, tm) owns 16 weight rows (one k64-tile stripe of the fragment
//   layout) and 8*NT tokens; its WARPS warps split K (warp w takes k64 tiles w, w + WARPS, ...),
//   so the block reads one contiguous 512*WARPS-byte run of its stripe at a time, and the
//   warps' partial sums are added in shared memory in a fixed order: deterministic, no
//   workspace, no second launch. Each warp keeps P k64 tiles of weights in flight in a register
//   ring (16-byte loads that skip L1).
// - split rows (large M): each warp owns a 16-row tile over all of K and the block's WARPS
//   warps cover 16*WARPS rows of the same 8*NT tokens, so the block's warps read the same
//   activations at the same time (L1 hits) and activations are re-read from L2 N/(16*WARPS)
//   times instead of N/16.
//
// Numerics, two exact paths chosen per weight tensor at prepare time (mx_gemm.cu):
// - scale in weights (kFast): when every scale code c keeps element * 2^(c-127) exact in the
//   16-bit activation type (true of real checkpoints), the decode multiplier includes the scale
//   and the MMAs accumulate straight into the FP32 accumulators;
// - scale in FP32: otherwise elements are decoded to their exact values, the MMA of one
//   32-element block (two k16 steps) starts from zero, and its FP32 result is multiplied by
//   2^(c-127) in FP32 and added to the accumulator, so no scale has to fit the 16-bit type
//   (FP16 activations are correct for every code, 0 -> 2^-127 and 255 -> NaN included).
// Either way the products are exact and the result differs from the float64 reference only by
// the FP32 accumulation order.
//
// Decode (frag_layout.h gives the bit positions): E2M1 code s.eem at bits 12..15 of a 16-bit
// half becomes (s << 15) | (eem << 6) for BF16 (the value times 2^-126) or (eem << 9) for FP16
// (times 2^-14), and one packed multiply by 2^126 / 2^14 makes it exact (HMUL2 keeps the one
// subnormal intermediate, 0.5 * 2^-126). E4M3 bytes are spread into the high byte of each half
// with a byte permute and shifted the same way (times 2^-120 / 2^-8). E4M3 NaN codes have no
// decode here: the backend refuses such weights at prepare time.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/common/pdl.h"
#include "cuda/common/ptx.cuh"
#include "cuda/gemm/frag_word.h"
#include "cuda/gemm/mx_gemm.h"

namespace mxq::cuda::gemm {

template <typename T>
constexpr bool kIsBF16 = std::is_same_v<T, __nv_bfloat16>;

// E2M1: A register i from (q << 4i) (frag_layout.h).
template <typename T>
__device__ __forceinline__ void decode_e2m1(uint32_t q, uint32_t (&a)[4]) {
  constexpr int kShift = kIsBF16<T> ? 6 : 3;
  constexpr uint32_t kExact = kIsBF16<T> ? 0x7E807E80u : 0x74007400u;  // 2^126 / 2^14 (x2)
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = q << (4 * i);
    a[i] = ptx::mul2<T>((v & 0x80008000u) | ((v & 0x70007000u) >> kShift), kExact);
  }
}

// E4M3: row r0's word w0 and row r1's word w1 of one sub-step (bytes e0..e3).
template <typename T>
__device__ __forceinline__ uint32_t e4m3_pair(uint32_t w, uint32_t sel) {
  constexpr int kShift = kIsBF16<T> ? 4 : 1;
  constexpr uint32_t kExact = kIsBF16<T> ? 0x7B807B80u : 0x5C005C00u;  // 2^120 / 2^8 (x2)
  const uint32_t v = ptx::prmt(w, 0u, sel);  // [0, e_a, 0, e_b]
  return ptx::mul2<T>((v & 0x80008000u) | ((v & 0x7F007F00u) >> kShift), kExact);
}
template <typename T>
__device__ __forceinline__ void decode_e4m3(uint32_t w0, uint32_t w1, uint32_t (&a)[4]) {
  a[0] = e4m3_pair<T>(w0, 0x1404u);  // (r0, e0 e1)
  a[1] = e4m3_pair<T>(w1, 0x1404u);  // (r1, e0 e1)
  a[2] = e4m3_pair<T>(w0, 0x3424u);  // (r0, e2 e3)
  a[3] = e4m3_pair<T>(w1, 0x3424u);  // (r1, e2 e3)
}

// The packed multiplier that turns a raw decode (value * 2^-r, r = 126 / 120 for E2M1 / E4M3
// into BF16, 14 / 8 into FP16) into value * 2^(c-127): 2^(c - 127 + r) in both halves. Valid
// for the codes of scale_in_weights_range (mx_gemm.cu).
template <typename T, bool kFp4>
__device__ __forceinline__ uint32_t scale_multiplier(uint32_t c) {
  uint32_t bits;
  if constexpr (kIsBF16<T>)
    bits = (c + (kFp4 ? 126u : 120u)) << 7;  // BF16 exponent field of 2^(c - 127 + r)
  else
    bits = (c - (kFp4 ? 98u : 104u)) << 10;  // FP16: field = c - 127 + r + 15
  return bits | (bits << 16);
}
// The same multipliers for the four codes of a scale word at once: one byte-wise add of the
// exponent bias to the word per tile (no carry or borrow crosses a byte: every code of the
// scale_in_weights range, padding's 127 included, stays in 0..254 after it), then per
// multiplier one byte permute (code j into the high byte of both halves) and one shift into
// the exponent field (BF16 bits 7..14; FP16 bits 10..14, the biased code being < 64).
template <typename T, bool kFp4>
__device__ __forceinline__ uint32_t bias_scale_codes(uint32_t s) {
  if constexpr (kIsBF16<T>)
    return s + (kFp4 ? 0x7E7E7E7Eu : 0x78787878u);  // c + 126 / c + 120
  else
    return s - (kFp4 ? 0x62626262u : 0x68686868u);  // c - 98 / c - 104
}
template <typename T>
__device__ __forceinline__ uint32_t multiplier_of_code(uint32_t biased, int j) {
  const uint32_t v = ptx::prmt(biased, 0u, 0x0404u | (uint32_t(j) * 0x1010u));  // [0, b_j, 0, b_j]
  return kIsBF16<T> ? v >> 1 : v << 2;
}

template <typename T>
__device__ __forceinline__ void decode_e2m1_scaled(uint32_t q, uint32_t m0, uint32_t m1,
                                                   uint32_t (&a)[4]) {
  constexpr int kShift = kIsBF16<T> ? 6 : 3;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = q << (4 * i);
    a[i] = ptx::mul2<T>((v & 0x80008000u) | ((v & 0x70007000u) >> kShift), (i & 1) ? m1 : m0);
  }
}
template <typename T>
__device__ __forceinline__ uint32_t e4m3_pair_scaled(uint32_t w, uint32_t sel, uint32_t m) {
  constexpr int kShift = kIsBF16<T> ? 4 : 1;
  const uint32_t v = ptx::prmt(w, 0u, sel);
  return ptx::mul2<T>((v & 0x80008000u) | ((v & 0x7F007F00u) >> kShift), m);
}
template <typename T>
__device__ __forceinline__ void decode_e4m3_scaled(uint32_t w0, uint32_t w1, uint32_t m0,
                                                   uint32_t m1, uint32_t (&a)[4]) {
  a[0] = e4m3_pair_scaled<T>(w0, 0x1404u, m0);
  a[1] = e4m3_pair_scaled<T>(w1, 0x1404u, m1);
  a[2] = e4m3_pair_scaled<T>(w0, 0x3424u, m0);
  a[3] = e4m3_pair_scaled<T>(w1, 0x3424u, m1);
}

// E8M0 code -> FP32 2^(c-127); 0 -> 2^-127 (an FP32 subnormal), 255 -> NaN.
__device__ __forceinline__ float e8m0_to_f32(uint32_t c) {
  uint32_t bits = c << 23;
  bits = c == 0 ? 0x00400000u : bits;
  bits = c == 255 ? 0x7FC00000u : bits;
  return __uint_as_float(bits);
}

// y[i] = v in FP32 (out_f32) or in the activation type T. A run-time choice: it costs one
// predicated branch per output and halves the kernel instances.
template <typename T>
__device__ __forceinline__ void store_out(void* y, int64_t i, float v, bool out_f32) {
  if (out_f32)
    static_cast<float*>(y)[i] = v;
  else if constexpr (std::is_same_v<T, __half>)
    static_cast<__half*>(y)[i] = __float2half_rn(v);
  else
    static_cast<__nv_bfloat16*>(y)[i] = __float2bfloat16_rn(v);
}

// 64 zero activations (128 bytes): what a missing token row (past M, or an MoE padding slot)
// reads, with a stride of 0 per tile, so the activation loads need no per-load checks.
static __device__ const uint2 kZeroActivations[16] = {};

// One warp's weights of one k64 tile for MW row tiles: 16 bytes (E2M1) or 32 bytes (E4M3) of
// elements and 4 scale codes (the lane quad's word) per lane per row tile.
template <bool kFp4, int MW>
struct TileRegs {
  static constexpr int kVec = kFp4 ? 1 : 2;  // 16-byte vectors per lane per row tile
  uint4 w[MW][kVec];
  uint32_t s[MW];
};

// The plain GEMM's rows and outputs (the kernel's IO policy; the MoE grouped GEMMs bring their
// own, moe/grouped_gemm_io.cuh). An IO policy says, per block of 8 * NT token rows:
//   batch(tb)              the weight batch entry (expert) of token block tb, or -1: no work;
//   x_row(tok0, j)         the activation row of the block's j-th token, or null (zeros);
//   store(e, tok0, j, row, v0, v1)
//                          the FP32 results of rows `row` and `row + 8` (the two rows a lane's
//                          accumulator fragment holds: a gate/up pair in the MoE order) for
//                          the block's j-th token.
template <typename T>
struct DenseIO {
  static constexpr bool kWideVariant = true;  // instantiate the wide-layer launch (dispatch)
  static constexpr int kMinBlocks = 0;         // __launch_bounds__ minimum blocks (0: none)
  static constexpr bool kSmallEpilogue = true;  // the wgmma variant may run 2 blocks per SM
  static constexpr bool kGroupScales = false;   // group_scale below (GroupScaledIO)
  const T* x;
  void* y;
  const float* bias;  // [N] or null
  int m;
  int64_t ldx, ldy;
  bool out_f32;

  __device__ __forceinline__ int batch(int) const { return 0; }
  __device__ __forceinline__ const T* x_row(int tok0, int j) const {
    const int tok = tok0 + j;
    return tok < m ? x + int64_t(tok) * ldx : nullptr;
  }
  __device__ __forceinline__ void store(int, int tok0, int j, int row, float v0, float v1) const {
    const int tok = tok0 + j;
    if (tok >= m) return;
    if (bias != nullptr) {
      v0 += bias[row];
      v1 += bias[row + 8];
    }
    store_out<T>(y, int64_t(tok) * ldy + row, v0, out_f32);
    store_out<T>(y, int64_t(tok) * ldy + row + 8, v1, out_f32);
  }
};

// DenseIO plus one FP32 activation scale per token and 128-column group (fp8-dynamic-group128:
// x holds the E4M3 values, GemmArgs::x_group_scales the scales). The kernel runs its FP32-scale
// path and multiplies each 32-block's partial by group_scale(tok0, j, kt / 2) (a k64 tile lies
// in one group). Only the split-K launches are instantiated (no wide or split-rows variant):
// this is the exact-numerics path of the key, not its speed path (that is the FP8 wgmma one).
template <typename T>
struct GroupScaledIO : DenseIO<T> {
  static constexpr bool kWideVariant = false;
  static constexpr bool kGroupScales = true;
  const float* xs;  // [m, groups] FP32 (m * groups < 2^31: mx_gemm checks)
  int groups;
  // The offset of the block's j-th token's scales in xs, or -1 past M (such a token's
  // activations are zeros and its outputs are not stored: it reads 0). 32-bit offsets computed
  // once per block keep the per-tile loads to one add each.
  __device__ __forceinline__ int group_scale_row(int tok0, int j) const {
    const int tok = tok0 + j;
    return tok < this->m ? tok * groups : -1;
  }
  __device__ __forceinline__ float group_scale(int row, int group) const {
    return row >= 0 ? ptx::ldg_cached_f32(xs + (row + group)) : 0.0f;
  }
};

// MW: 16-row tiles per warp (split rows only; 1 when splitting K). NT: 8-token groups.
// P: k64 tiles of weights in flight per warp. XD: activation tiles loaded ahead (0: at use;
// else a ring of XD + 1 tiles, so P must be a multiple of XD + 1).
// IO: the rows / outputs policy (DenseIO above). Weights of batch entry e start at tile
// e * (N / 16) * k64 (frag_layout.h).
template <typename T, bool kFp4, int NT, int WARPS, int P, bool kFast,
          bool kSplitRows, int MW, int XD, class IO>
__global__ void __launch_bounds__(WARPS * 32, IO::kMinBlocks)
    mx_gemm_kernel(const uint8_t* __restrict__ wq, const uint8_t* __restrict__ wsc, int n, int k,
                   int k64, const IO io) {
  static_assert(kSplitRows || MW == 1, "splitting K keeps one row tile per block");
  static_assert(!IO::kGroupScales || (!kFast && !kSplitRows),
                "activation group scales ride on the FP32-scale path of the split-K launch");
  using Tile = TileRegs<kFp4, MW>;
  constexpr int kVec = Tile::kVec;
  __shared__ float red[kSplitRows ? 1 : WARPS][kSplitRows ? 1 : NT * 4 * 32];
  // Launched with programmatic stream serialization (common/pdl.h): everything below reads
  // the activations, the MoE block table or writes outputs, so it waits first.
  pdl::launch_dependents();
  pdl::wait();

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2, t = lane & 3;
  const int n16 = n / 16;
  // Split rows: warp w owns row tiles tn0 .. tn0 + MW - 1 over all of K (no reduction). Split
  // K: the block's warps share one row tile and take every WARPS-th k64 tile.
  const int tn0 = kSplitRows ? (blockIdx.x * WARPS + warp) * MW : blockIdx.x;
  const int tok0 = blockIdx.y * 8 * NT;
  if (kSplitRows && tn0 >= n16) return;  // warp-uniform; this variant has no block barrier
  const int expert = io.batch(blockIdx.y);
  if (expert < 0) return;  // block-uniform, before any barrier
  const int kt_first = kSplitRows ? 0 : warp;
  constexpr int kStep = kSplitRows ? 1 : WARPS;

  const int64_t tile0 = int64_t(expert) * n16 * k64;
  const uint4* wbase[MW];
  const uint32_t* sbase[MW];
  bool row_ok[MW];
#pragma unroll
  for (int mw = 0; mw < MW; ++mw) {
    const int tn = tn0 + mw;
    row_ok[mw] = tn < n16;
    wbase[mw] = reinterpret_cast<const uint4*>(wq) + ((tile0 + int64_t(tn) * k64) * 32 + lane) * kVec;
    sbase[mw] = reinterpret_cast<const uint32_t*>(wsc) +
                frag::scale_word_index(tile0 + int64_t(tn) * k64, lane);
  }

  // Activation rows of this lane's B fragments (token g of each 8-token group). With a ring
  // (XD > 0), tile kt's values start at xrow[nt] + kt * xstride[nt] and a missing row reads
  // kZeroActivations with stride 0; loaded at use (XD = 0, 8 token groups, where 8 more
  // registers spill), a missing row is null and checked per load.
  constexpr bool kStrided = XD > 0;
  const T* xrow[NT];
  int xstride[kStrided ? NT : 1];
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    const T* r = io.x_row(tok0, nt * 8 + g);
    if constexpr (kStrided) {
      xrow[nt] = (r != nullptr ? r : reinterpret_cast<const T*>(kZeroActivations)) + 4 * t;
      xstride[nt] = r != nullptr ? 64 : 0;
    } else {
      xrow[nt] = r != nullptr ? r + 4 * t : nullptr;
    }
  }
  // K = 32 mod 64: the last tile's k16 steps 2 and 3 lie past K (their weights are zero
  // padding; the activations must be finite, so they are zeros, not loaded).
  const int kt_tail = (k & 63) != 0 ? k64 - 1 : -1;
  auto x_step = [&](int nt, int kt, int s) {
    if constexpr (kStrided) {
      return s >= 2 && kt == kt_tail ? make_uint2(0u, 0u)
                                     : ptx::ldg_cached_8(xrow[nt] + kt * xstride[nt] + s * 16);
    } else {  // per-lane K check: the 64-token E4M3 kernel has 130 registers with it, 140 with
              // the kt_tail form (128 with the old multipliers below: 2 blocks per SM)
      const int kk = kt * 64 + s * 16;
      return xrow[nt] != nullptr && kk + 4 * t < k ? ptx::ldg_cached_8(xrow[nt] + kk)
                                                    : make_uint2(0u, 0u);
    }
  };

  // GroupScaledIO: the lane's accumulator tokens (2t, 2t + 1 of each 8-token group).
  int xs_row[IO::kGroupScales ? NT : 1][2];
  if constexpr (IO::kGroupScales) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 2; ++i) xs_row[nt][i] = io.group_scale_row(tok0, nt * 8 + 2 * t + i);
  }

  float acc[MW][NT][4];
#pragma unroll
  for (int mw = 0; mw < MW; ++mw)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mw][nt][i] = 0.0f;

  Tile ring[P];
  auto load = [&](Tile& r, int kt) {
#pragma unroll
    for (int mw = 0; mw < MW; ++mw) {
      if (MW == 1 || row_ok[mw]) {
#pragma unroll
        for (int v = 0; v < kVec; ++v)
          r.w[mw][v] = ptx::ldg_stream_16(wbase[mw] + int64_t(kt) * 32 * kVec + v);
        r.s[mw] = ptx::ldg_stream_4(sbase[mw] + int64_t(kt) * frag::kScaleWordsPerTile);
      } else {  // a row tile past N: zero weights, scale code 127
#pragma unroll
        for (int v = 0; v < kVec; ++v) r.w[mw][v] = make_uint4(0u, 0u, 0u, 0u);
        r.s[mw] = 0x7F7F7F7Fu;
      }
    }
  };
#pragma unroll
  for (int p = 0; p < P; ++p)
    if (kt_first + p * kStep < k64) load(ring[p], kt_first + p * kStep);

  // Activations of a tile (4 k16 steps x NT token groups, 4 values per lane each), loaded XD
  // tiles ahead into a ring of XD + 1 tiles (XD = 0: at use): an activation load is an L2 round
  // trip (the blocks of an SM ask for the same lines at the same time, so L1 rarely hits),
  // which otherwise stalls every tile (ncu: long-scoreboard stalls, 40% of the cycles). The
  // warp's j-th tile uses slot j % (XD + 1) = p % (XD + 1); the refill of tile j + XD goes into
  // the slot tile j - 1 left, before tile j's MMAs.
  constexpr int kXSlots = XD + 1;
  static_assert(XD == 0 || P % kXSlots == 0, "the x ring slot of a tile must be p % (XD + 1)");
  auto load_x = [&](uint2 (&xb)[4][NT], int kt) {
#pragma unroll
    for (int s = 0; s < 4; ++s)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) xb[s][nt] = x_step(nt, kt, s);
  };
  uint2 xring[XD > 0 ? kXSlots : 1][4][NT];
#pragma unroll
  for (int d = 0; d < XD; ++d)
    if (kt_first + d * kStep < k64) load_x(xring[d], kt_first + d * kStep);

  const float zero[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int kt0 = kt_first; kt0 < k64; kt0 += P * kStep) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      const int kt = kt0 + p * kStep;
      if (kt >= k64) break;
      // With P >= 3 tiles in flight, tile kt is decoded from its ring slot in place and the
      // slot refilled after the MMAs (still P - 1 tiles ahead): loading into the slot first
      // made the compiler copy the tile's registers (ncu, M = 1: ~30 moves per tile, a fifth
      // of the issued instructions). With 1 or 2 tiles in flight the refill goes first (one
      // tile of lead measured 1.5x slower for MXFP8 at M = 64), and the copy is paid.
      constexpr bool kRefillFirst = P <= 2;
      Tile held;
      if constexpr (kRefillFirst) {
        held = ring[p];
        if (kt + P * kStep < k64) load(ring[p], kt + P * kStep);
      }
      const Tile& cur = kRefillFirst ? held : ring[p];
      if constexpr (XD > 0)
        if (kt + XD * kStep < k64) load_x(xring[(p + XD) % kXSlots], kt + XD * kStep);
      const uint2 (&xcur)[4][NT] = xring[XD > 0 ? p % kXSlots : 0];  // (unused when XD = 0)
      // The activation group scales of the lane's accumulator columns (tokens 2t, 2t + 1 of
      // each 8-token group) for this tile's 128-column group (GroupScaledIO only).
      float xsc[IO::kGroupScales ? NT : 1][2];
      if constexpr (IO::kGroupScales) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int i = 0; i < 2; ++i) xsc[nt][i] = io.group_scale(xs_row[nt][i], kt >> 1);
      }

#pragma unroll
      for (int blk = 0; blk < 2; ++blk) {
        // B fragments of the block's two k16 steps: 4 consecutive activations per lane.
        uint32_t b[2][NT][2];
#pragma unroll
        for (int s = 0; s < 2; ++s)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            uint2 v;
            if constexpr (XD > 0) {
              v = xcur[2 * blk + s][nt];
            } else {  // at use, one k16 step at a time (registers: NT = 8)
              v = x_step(nt, kt, 2 * blk + s);
            }
            b[s][nt][0] = v.x;
            b[s][nt][1] = v.y;
          }
#pragma unroll
        for (int mw = 0; mw < MW; ++mw) {
          uint32_t a[2][4];
          if constexpr (kFast) {
            // Scale folded into the exact 16-bit weights: the MMAs accumulate into acc.
            // Codes blk (row r0) and 2 + blk (row r1) of the lane's scale word.
            uint32_t m0, m1;
            if constexpr (kStrided || kFp4) {
              const uint32_t biased = bias_scale_codes<T, kFp4>(cur.s[mw]);
              m0 = multiplier_of_code<T>(biased, blk);
              m1 = multiplier_of_code<T>(biased, 2 + blk);
            } else {  // E4M3, 64-token blocks: this form keeps sm_90 at 128 registers (2 blocks
                      // of 8 warps per SM; 130 with the other, 1.5x slower)
              m0 = scale_multiplier<T, kFp4>((cur.s[mw] >> (8 * blk)) & 0xFF);
              m1 = scale_multiplier<T, kFp4>((cur.s[mw] >> (16 + 8 * blk)) & 0xFF);
            }
            if constexpr (kFp4) {
              decode_e2m1_scaled<T>(blk == 0 ? cur.w[mw][0].x : cur.w[mw][0].z, m0, m1, a[0]);
              decode_e2m1_scaled<T>(blk == 0 ? cur.w[mw][0].y : cur.w[mw][0].w, m0, m1, a[1]);
            } else {
              const uint4 v = cur.w[mw][blk];
              decode_e4m3_scaled<T>(v.x, v.y, m0, m1, a[0]);
              decode_e4m3_scaled<T>(v.z, v.w, m0, m1, a[1]);
            }
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              ptx::mma_16816<T>(acc[mw][nt], a[0], b[0][nt], acc[mw][nt]);
              ptx::mma_16816<T>(acc[mw][nt], a[1], b[1][nt], acc[mw][nt]);
            }
          } else {
            const uint32_t c0 = (cur.s[mw] >> (8 * blk)) & 0xFF;
            const uint32_t c1 = (cur.s[mw] >> (16 + 8 * blk)) & 0xFF;
            if constexpr (kFp4) {
              decode_e2m1<T>(blk == 0 ? cur.w[mw][0].x : cur.w[mw][0].z, a[0]);
              decode_e2m1<T>(blk == 0 ? cur.w[mw][0].y : cur.w[mw][0].w, a[1]);
            } else {
              const uint4 v = cur.w[mw][blk];
              decode_e4m3<T>(v.x, v.y, a[0]);
              decode_e4m3<T>(v.z, v.w, a[1]);
            }
            const float s0 = e8m0_to_f32(c0), s1 = e8m0_to_f32(c1);
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              float d[4];
              ptx::mma_16816<T>(d, a[0], b[0][nt], zero);
              ptx::mma_16816<T>(d, a[1], b[1][nt], d);
              if constexpr (IO::kGroupScales) {
                // d[i] is row g (i < 2) or g + 8, token 2t + (i & 1): times the token's group
                // scale (one FP32 rounding; the partial stays bounded like the activations'
                // values), then the block's power-of-two weight scale (exact in the fma).
#pragma unroll
                for (int i = 0; i < 4; ++i) d[i] *= xsc[nt][i & 1];
              }
              acc[mw][nt][0] = fmaf(d[0], s0, acc[mw][nt][0]);
              acc[mw][nt][1] = fmaf(d[1], s0, acc[mw][nt][1]);
              acc[mw][nt][2] = fmaf(d[2], s1, acc[mw][nt][2]);
              acc[mw][nt][3] = fmaf(d[3], s1, acc[mw][nt][3]);
            }
          }
        }
      }
      if constexpr (!kRefillFirst)
        if (kt + P * kStep < k64) load(ring[p], kt + P * kStep);
    }
  }

  if constexpr (kSplitRows) {  // the warp owns its outputs
#pragma unroll
    for (int mw = 0; mw < MW; ++mw) {
      if (!row_ok[mw]) continue;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int i = 0; i < 2; ++i)
          io.store(expert, tok0, nt * 8 + 2 * t + i, (tn0 + mw) * 16 + g, acc[mw][nt][i],
                   acc[mw][nt][i + 2]);
    }
  } else {
    // Fixed-order reduction of the warps' partial sums, then the IO's store (bias, conversion).
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[warp][(nt * 4 + i) * 32 + lane] = acc[0][nt][i];
    __syncthreads();
    for (int idx = threadIdx.x; idx < NT * 2 * 32; idx += WARPS * 32) {
      const int nt = idx / 64, i = (idx / 32) % 2, ln = idx % 32;
      const int lo = (nt * 4 + i) * 32 + ln, hi = lo + 2 * 32;  // rows g and g + 8
      float v0 = 0.0f, v1 = 0.0f;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) {
        v0 += red[w][lo];
        v1 += red[w][hi];
      }
      io.store(expert, tok0, nt * 8 + 2 * (ln & 3) + i, tn0 * 16 + (ln >> 2), v0, v1);
    }
  }
}

}  // namespace mxq::cuda::gemm
