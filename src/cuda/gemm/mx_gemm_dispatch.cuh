// Internal to src/cuda/gemm: the launch heuristic (mx_gemm.cu's choose_gemm_config reports it)
// and the launch templates, instantiated once per activation x weight type by the files in
// instances/ so the kernel instances compile in parallel.
//
// Instances per architecture: tokens per block {8, 16, 32, 64} x scale path {in weights, FP32,
// FP32 with activation group scales} (+ the wide-layer variant at 8 tokens and the split-rows
// variant at 64, both without group scales) = 16 kernels per activation x weight type, 64 in
// all; the output dtype is a run-time argument.
#pragma once

#include <cuda_runtime.h>

#include "cuda/gemm/mx_gemm.cuh"
#include "cuda/gemm/mx_gemm_wgmma_launch.h"  // the Hopper variant: declared here, built for sm_90a only

namespace mxq::cuda::gemm {

// Tokens per block: the smallest of 8/16/32/64 that holds M (up to 64; larger M runs several
// token blocks, each re-reading the weights from L2).
inline int tokens_per_block(int64_t m) {
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
// Activation tiles loaded ahead (mx_gemm_kernel's XD; its ring of XD + 1 tiles must divide P):
// 3 for one token group when P allows, else 1 or 2; 64-token blocks load at use.
constexpr int x_ahead_for(int nt, int p) {
  return nt == 8 ? 0 : nt == 1 && p % 4 == 0 ? 3 : p % 2 == 0 ? 1 : 2;
}
constexpr int prefetch_for(bool fp4, int nt) {
  return nt == 1 ? (fp4 ? 8 : 4) : nt == 2 ? (fp4 ? 6 : 3) : nt == 4 ? (fp4 ? 4 : 2) : (fp4 ? 3 : 2);
}

// The SM count of the current device (cached per device; no synchronisation).
inline int sm_count() {
  static int cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return 132;
  if (cached[dev] == 0) {
    int v = 0;
    cached[dev] = cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0 ? v : 132;
  }
  return cached[dev];
}

// Whether the current device is a Hopper (sm_90: the wgmma variant's machine code exists).
inline bool is_sm90() {
  static int cached[64] = {};
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) return false;
  if (cached[dev] == 0) {
    int major = 0;
    cached[dev] = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major == 9 ? 1 : -1;
  }
  return cached[dev] == 1;
}

// Many tokens on a Hopper with the scale folded into the weights: the wgmma variant
// (mx_gemm_wgmma.cuh), whose activations are staged once per block in shared memory.
// Its activation rows must be 16-byte aligned (pointer and row stride).
constexpr int64_t kWgmmaMinTokens = 128;
inline bool use_wgmma(int64_t m, bool scale_in_weights) {
  return kWgmmaVariant && scale_in_weights && m >= kWgmmaMinTokens && is_sm90();
}
inline bool wgmma_aligned(const void* x, int64_t ldx) {
  return reinterpret_cast<uintptr_t>(x) % 16 == 0 && ldx % 8 == 0;
}

// Up to 8 tokens, a layer with more than 6 row tiles per SM (28672 rows: 1792 tiles) runs
// several waves of blocks anyway; there 8 warps per block with 4 tiles in flight each measured
// faster on the H100 (MXFP4 28672 x 8192: 71 vs 93 us; MXFP8: 101 vs 115 us), while 4 warps x
// 8 tiles wins on 8192 rows (one wave; MXFP8 35 vs 40 us).
inline bool wide_layer(int64_t n) { return n / 16 > 6 * sm_count(); }

// 64-token blocks split rows instead of K once there are enough of them to fill every SM:
// each warp then owns 2 row tiles (32 rows) x 64 tokens, so a decoded weight fragment feeds 8
// MMAs and an activation fragment 2, and activations are re-read from L2 N/256 times. (4 row
// tiles per warp spill: 128 accumulators + 32 activation + 40-72 weight registers.)
constexpr int kRowWarps = 8, kRowTiles = 2;
inline bool split_rows(int64_t m, int64_t n) {
  const int64_t rows_per_block = 16 * kRowWarps * kRowTiles;
  return tokens_per_block(m) == 64 &&
         ((n + rows_per_block - 1) / rows_per_block) * ((m + 63) / 64) >= sm_count();
}

// One launch of the kernel family: the weights, the grid's token blocks and the variant.
struct KernelLaunch {
  const uint8_t* w;
  const uint8_t* w_scales;
  int64_t n, k;
  unsigned token_blocks;
  bool split_rows;  // 64-token blocks only (NT = 8)
  bool wide;        // 8-token blocks only (NT = 1): wide_layer(n)
};

// Launches the variant `l` names with the IO policy `io` (DenseIO, or the MoE grouped GEMMs').
template <typename T, bool kFp4, int NT, bool kFast, class IO>
void launch_kernel(const KernelLaunch& l, const IO& io, cudaStream_t stream) {
  constexpr int W = warps_for(NT), P = prefetch_for(kFp4, NT);
  const int k64 = int((l.k + 63) / 64);
  if constexpr (NT == 8 && !IO::kGroupScales) {  // (group scales: split K only)
    if (l.split_rows) {
      constexpr int kRows = 16 * kRowWarps * kRowTiles;
      const dim3 grid(unsigned((l.n + kRows - 1) / kRows), l.token_blocks);
      // E2M1 keeps 2 tiles in flight, except on the FP32-scale path, whose per-block scaling
      // needs the registers (the MoE gate/up epilogue spills there otherwise).
      constexpr int kP = kFp4 && kFast ? 2 : 1;
      pdl::launch(gemm::mx_gemm_kernel<T, kFp4, NT, kRowWarps, kP, kFast, true, kRowTiles, 0, IO>,
                  grid, dim3(kRowWarps * 32), 0, stream, l.w, l.w_scales, int(l.n), int(l.k), k64,
                  io);
      return;
    }
  }
  const dim3 grid(unsigned(l.n / 16), l.token_blocks);
  if constexpr (NT == 1 && IO::kWideVariant) {
    if (l.wide) {  // many row tiles: 8 warps x 4 tiles in flight (see wide_layer)
      constexpr int kP = kFp4 ? 4 : 2;
      pdl::launch(gemm::mx_gemm_kernel<T, kFp4, NT, 8, kP, kFast, false, 1, x_ahead_for(NT, kP), IO>,
                  grid, dim3(8 * 32), 0, stream, l.w, l.w_scales, int(l.n), int(l.k), k64, io);
      return;
    }
  }
  pdl::launch(gemm::mx_gemm_kernel<T, kFp4, NT, W, P, kFast, false, 1, x_ahead_for(NT, P), IO>,
              grid, dim3(W * 32), 0, stream, l.w, l.w_scales, int(l.n), int(l.k), k64, io);
}

// The dense launches below consume the GemmConfig that mx_gemm.cu's choose_gemm_config made
// (its one place for the decisions: token tile, scale path, wgmma / split-rows / wide variant,
// group scales), so what `explain` and the bench print is what runs. The warps and tiles in
// flight of a variant are compile-time functions of it (warps_for, prefetch_for) that both
// sides call.
template <typename T, bool kFp4, int NT, bool kFast>
void launch(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream) {
  const DenseIO<T> dio{static_cast<const T*>(a.x), a.y, a.bias, int(a.m), a.ldx, a.ldy,
                       a.out == DType::kF32};
  if constexpr (NT == 8 && kFast && kWgmmaVariant) {
    if (c.wgmma) {
      launch_wgmma<T, kFp4>(a.w, a.w_scales, a.n, a.k, unsigned((a.m + kWgTokens - 1) / kWgTokens),
                            dio, stream);
      return;
    }
  }
  const KernelLaunch l{a.w, a.w_scales, a.n, a.k, unsigned((a.m + 8 * NT - 1) / (8 * NT)),
                       c.split_rows, c.wide};
  launch_kernel<T, kFp4, NT, kFast>(l, dio, stream);
}

// fp8-dynamic-group128 (GemmConfig::act_group_scales): the split-K launch of the FP32-scale
// path with the activation group scales (GroupScaledIO); no wgmma, wide or split-rows variant.
template <typename T, bool kFp4, int NT>
void launch_group_scaled(const GemmArgs& a, cudaStream_t stream) {
  GroupScaledIO<T> io;
  static_cast<DenseIO<T>&>(io) = DenseIO<T>{static_cast<const T*>(a.x), a.y, a.bias, int(a.m),
                                            a.ldx, a.ldy, a.out == DType::kF32};
  io.xs = a.x_group_scales;
  io.groups = int((a.k + kActGroupColumns - 1) / kActGroupColumns);
  const KernelLaunch l{a.w, a.w_scales, a.n, a.k, unsigned((a.m + 8 * NT - 1) / (8 * NT)),
                       /*split_rows=*/false, /*wide=*/false};
  launch_kernel<T, kFp4, NT, false>(l, io, stream);
}

template <typename T, bool kFp4, int NT>
void dispatch_scale_path(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream) {
  if (c.act_group_scales)
    launch_group_scaled<T, kFp4, NT>(a, stream);
  else if (c.scale_in_weights)
    launch<T, kFp4, NT, true>(a, c, stream);
  else
    launch<T, kFp4, NT, false>(a, c, stream);
}

// c.tokens_per_block is 8 * NT of the mma.sync kernel (wgmma configs: 64, its NT = 8 entry).
template <typename T, bool kFp4>
void dispatch_tokens(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream) {
  switch (c.wgmma ? 64 : c.tokens_per_block) {
    case 8: return dispatch_scale_path<T, kFp4, 1>(a, c, stream);
    case 16: return dispatch_scale_path<T, kFp4, 2>(a, c, stream);
    case 32: return dispatch_scale_path<T, kFp4, 4>(a, c, stream);
    default: return dispatch_scale_path<T, kFp4, 8>(a, c, stream);
  }
}

// One per activation x weight type, defined in instances/.
void launch_bf16_e2m1(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream);
void launch_bf16_e4m3(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream);
void launch_f16_e2m1(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream);
void launch_f16_e4m3(const GemmArgs& a, const GemmConfig& c, cudaStream_t stream);

}  // namespace mxq::cuda::gemm
