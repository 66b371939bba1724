// Launch heuristic and the explicit set of kernel instances of the cuda-mma GEMM.
//
// Instances: activation {BF16, FP16} x weights {E2M1, E4M3} x tokens per block {8, 16, 32, 64}
// x scale path {in weights, FP32} x output {activation dtype, FP32} = 64 kernels per
// architecture.
#include <cstdio>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/gemm/mx_gemm.cuh"

namespace mxq::cuda {

std::string GemmConfig::to_string() const {
  return "mma.sync: " + std::to_string(tokens_per_block) + " tokens x " +
         std::to_string(split_rows ? 32 * warps : 16) + " rows per block, " +
         std::to_string(warps) + (split_rows ? " warps over rows, " : " warps over K, ") +
         std::to_string(prefetch) + " k64 tiles in flight per warp";
}

namespace {

// Tokens per block: the smallest of 8/16/32/64 that holds M (up to 64; larger M runs several
// token blocks, each re-reading the weights from L2).
int tokens_per_block(int64_t m) {
  if (m <= 8) return 8;
  if (m <= 16) return 16;
  if (m <= 32) return 32;
  return 64;
}

// Warps per block and k64 tiles of weights in flight per warp, per tokens-per-block (NT = 8-token
// groups). Up to 16 tokens the kernel streams weights: 4 warps per block keep an 8192-row layer
// in one wave of blocks (512 blocks, 5-6 resident per SM), and 8 E2M1 tiles (4 KiB) or 4 E4M3
// tiles per warp keep ~80 KiB per SM in flight. With more tokens the accumulators need the
// registers: 8 warps, fewer tiles.
constexpr int warps_for(int nt) { return nt <= 2 ? 4 : 8; }
constexpr int prefetch_for(bool fp4, int nt) {
  return nt == 1 ? (fp4 ? 8 : 4) : nt == 2 ? (fp4 ? 6 : 3) : nt == 4 ? (fp4 ? 4 : 2) : (fp4 ? 3 : 2);
}

// The SM count of the current device (cached per device; no synchronisation).
int sm_count() {
  static int cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
  if (cached[dev] == 0) {
    int v = 0;
    cached[dev] = cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0 ? v : 132;
  }
  return cached[dev];
}

// Up to 8 tokens, a layer with more than 6 row tiles per SM (28672 rows: 1792 tiles) runs
// several waves of blocks anyway; there 8 warps per block with 4 tiles in flight each measured
// faster on the H100 (MXFP4 28672 x 8192: 71 vs 93 us; MXFP8: 101 vs 115 us), while 4 warps x
// 8 tiles wins on 8192 rows (one wave; MXFP8 35 vs 40 us).
bool wide_layer(int64_t n) { return n / 16 > 6 * sm_count(); }

// 64-token blocks split rows instead of K once there are enough of them to fill every SM:
// each warp then owns 2 row tiles (32 rows) x 64 tokens, so a decoded weight fragment feeds 8
// MMAs and an activation fragment 2, and activations are re-read from L2 N/256 times. (4 row
// tiles per warp spill: 128 accumulators + 32 activation + 40-72 weight registers.)
constexpr int kRowWarps = 8, kRowTiles = 2;
bool split_rows(int64_t m, int64_t n) {
  const int64_t rows_per_block = 16 * kRowWarps * kRowTiles;
  return tokens_per_block(m) == 64 &&
         ((n + rows_per_block - 1) / rows_per_block) * ((m + 63) / 64) >= sm_count();
}

template <typename T, bool kFp4, int NT, bool kFast, typename TOut>
void launch(const GemmArgs& a, cudaStream_t stream) {
  constexpr int W = warps_for(NT), P = prefetch_for(kFp4, NT);
  const unsigned token_blocks = unsigned((a.m + 8 * NT - 1) / (8 * NT));
  const int k64 = int((a.k + 63) / 64);
  if constexpr (NT == 8) {
    if (split_rows(a.m, a.n)) {
      constexpr int kRows = 16 * kRowWarps * kRowTiles;
      const dim3 grid(unsigned((a.n + kRows - 1) / kRows), token_blocks);
      gemm::mx_gemm_kernel<T, kFp4, NT, kRowWarps, kFp4 ? 2 : 1, kFast, TOut, true, kRowTiles>
          <<<grid, kRowWarps * 32, 0, stream>>>(a.w, a.w_scales, a.bias,
                                                static_cast<const T*>(a.x), a.y, int(a.m),
                                                int(a.n), int(a.k), k64, a.ldx, a.ldy);
      return;
    }
  }
  const dim3 grid(unsigned(a.n / 16), token_blocks);
  if constexpr (NT == 1) {
    if (wide_layer(a.n)) {  // many row tiles: 8 warps x 4 tiles in flight (see wide_layer)
      gemm::mx_gemm_kernel<T, kFp4, NT, 8, kFp4 ? 4 : 2, kFast, TOut>
          <<<grid, 8 * 32, 0, stream>>>(a.w, a.w_scales, a.bias, static_cast<const T*>(a.x), a.y,
                                        int(a.m), int(a.n), int(a.k), k64, a.ldx, a.ldy);
      return;
    }
  }
  gemm::mx_gemm_kernel<T, kFp4, NT, W, P, kFast, TOut><<<grid, W * 32, 0, stream>>>(
      a.w, a.w_scales, a.bias, static_cast<const T*>(a.x), a.y, int(a.m), int(a.n), int(a.k),
      k64, a.ldx, a.ldy);
}

template <typename T, bool kFp4, int NT>
void dispatch_out(const GemmArgs& a, cudaStream_t stream) {
  if (a.scale_in_weights) {
    if (a.out == DType::kF32)
      launch<T, kFp4, NT, true, float>(a, stream);
    else
      launch<T, kFp4, NT, true, T>(a, stream);
  } else {
    if (a.out == DType::kF32)
      launch<T, kFp4, NT, false, float>(a, stream);
    else
      launch<T, kFp4, NT, false, T>(a, stream);
  }
}

template <typename T, bool kFp4>
void dispatch_tokens(const GemmArgs& a, cudaStream_t stream) {
  switch (tokens_per_block(a.m)) {
    case 8: return dispatch_out<T, kFp4, 1>(a, stream);
    case 16: return dispatch_out<T, kFp4, 2>(a, stream);
    case 32: return dispatch_out<T, kFp4, 4>(a, stream);
    default: return dispatch_out<T, kFp4, 8>(a, stream);
  }
}

}  // namespace

GemmConfig choose_gemm_config(const GemmArgs& a) {
  GemmConfig c;
  c.tokens_per_block = tokens_per_block(a.m);
  const int nt = c.tokens_per_block / 8;
  c.warps = warps_for(nt);
  c.prefetch = prefetch_for(a.elem == ElemType::kE2M1, nt);
  c.scale_in_weights = a.scale_in_weights;
  c.split_rows = split_rows(a.m, a.n);
  if (nt == 1 && wide_layer(a.n)) {
    c.warps = 8;
    c.prefetch = a.elem == ElemType::kE2M1 ? 4 : 2;
  }
  if (c.split_rows) {
    c.warps = kRowWarps;
    c.prefetch = a.elem == ElemType::kE2M1 ? 2 : 1;
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
  if (a.w == nullptr || a.w_scales == nullptr || a.x == nullptr || a.y == nullptr)
    return invalid_argument("cuda-mma GEMM: null weight, activation or output pointer");
  const bool fp4 = a.elem == ElemType::kE2M1;
  if (a.act == DType::kBF16)
    fp4 ? dispatch_tokens<__nv_bfloat16, true>(a, stream)
        : dispatch_tokens<__nv_bfloat16, false>(a, stream);
  else
    fp4 ? dispatch_tokens<__half, true>(a, stream) : dispatch_tokens<__half, false>(a, stream);
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

}  // namespace mxq::cuda
