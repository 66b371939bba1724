// Launch of one cuda-hopper kernel instance (included by instances/*.cu, which list the
// instances explicitly): the persistent cluster grid with the dynamic shared memory raised
// to the kernel's ring, and its occupancy query for the schedule (gemm.cu).
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/cuda_check.h"
#include "cuda/common/pdl.h"
#include "cuda/hopper/gemm_kernel.cuh"

namespace mxq::cuda::hopper {

template <typename T, bool kFp4, int NT, int C, bool kMoE, int KH = 1, bool kFp8 = false,
          int TW = 0, bool kTiles = false>
Status set_smem_attribute() {
  using S = KernelShape<T, kFp4, NT, C, KH, kFp8, TW, kTiles>;
  const auto kernel = hopper_gemm_kernel<T, kFp4, NT, C, kMoE, KH, kFp8, TW, kTiles>;
  MXQ_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmem));
  MXQ_CUDA_TRY(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 0));
  return Status::Ok();
}

template <typename T, bool kFp4, int NT, int C, int KH = 1, bool kFp8 = false, int TW = 0,
          bool kTiles = false>
// attr: room for 2 attributes (the cluster shape and programmatic serialization).
cudaLaunchConfig_t launch_config(int ctas, int splits, cudaStream_t stream, cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t c = {};
  c.gridDim = dim3(unsigned(ctas), 1, 1);
  c.blockDim = dim3(unsigned(threads(C, TW)), 1, 1);
  c.dynamicSmemBytes = size_t(KernelShape<T, kFp4, NT, C, KH, kFp8, TW, kTiles>::kSmem);
  c.stream = stream;
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(splits);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  c.attrs = attr;
  c.numAttrs = 1;
  // Programmatic dependent launch (common/pdl.h) behind whatever kernel comes before: the FP8
  // activation quantize, the MoE chain's gather or gate/up GEMM, the caller's last kernel; the
  // kernel's producer prefetches its first weights and waits (gemm_kernel.cuh). MXQ_PDL=0
  // launches without it (the waits are then immediate).
  pdl::add_attribute(c, attr);
  return c;
}

// How many clusters of `splits` CTAs can be resident at once on the current device (the
// grouped instances have the same shared memory and threads: the dense one answers, or the
// grouped one for the tail tiles, which are grouped only).
template <typename T, bool kFp4, int NT, int C, int KH = 1, bool kFp8 = false, int TW = 0,
          bool kTiles = false>
StatusOr<int> max_active_clusters(int splits) {
  constexpr bool kMoE = is_tail_tile(NT);
  MXQ_RETURN_IF_ERROR((set_smem_attribute<T, kFp4, NT, C, kMoE, KH, kFp8, TW, kTiles>()));
  cudaLaunchAttribute attr[2];
  cudaLaunchConfig_t c =
      launch_config<T, kFp4, NT, C, KH, kFp8, TW, kTiles>(splits, splits, nullptr, attr);
  int n = 0;
  MXQ_CUDA_TRY(cudaOccupancyMaxActiveClusters(
      &n, hopper_gemm_kernel<T, kFp4, NT, C, kMoE, KH, kFp8, TW, kTiles>, &c));
  return n;
}

template <typename T, bool kFp4, int NT, int C, bool kMoE, int KH = 1, bool kFp8 = false,
          int TW = 0, bool kTiles = false>
Status launch(const CUtensorMap& x_map, const CUtensorMap& y_map, const KernelParams& p,
              const HopperGemmConfig& cfg, cudaStream_t stream) {
  MXQ_RETURN_IF_ERROR((set_smem_attribute<T, kFp4, NT, C, kMoE, KH, kFp8, TW, kTiles>()));
  cudaLaunchAttribute attr[2];
  cudaLaunchConfig_t c =
      launch_config<T, kFp4, NT, C, KH, kFp8, TW, kTiles>(cfg.ctas(), cfg.splits, stream, attr);
  MXQ_CUDA_TRY(cudaLaunchKernelEx(
      &c, hopper_gemm_kernel<T, kFp4, NT, C, kMoE, KH, kFp8, TW, kTiles>, x_map, y_map, p));
  return Status::Ok();
}

// The instances of one activation x weight type (instances/*.cu): NT = 16 .. 256 with 2
// consumer warpgroups, 16 .. 64 with 3, each dense and grouped (MoE); 16 with 4, dense only
// (the MoE block model ranks 2-consumer tiles), in 256-row items and in 128-row items with
// K halves; and the grouped tail tiles 80, 144, 288 (2 consumers): 21 kernels.
#define MXQ_HOPPER_INSTANCE(T, FP4, NT, C)                                                    \
  template Status launch<T, FP4, NT, C, false>(const CUtensorMap&, const CUtensorMap&,         \
                                               const KernelParams&, const HopperGemmConfig&,   \
                                               cudaStream_t);        \
  template Status launch<T, FP4, NT, C, true>(const CUtensorMap&, const CUtensorMap&,          \
                                              const KernelParams&, const HopperGemmConfig&,    \
                                              cudaStream_t);         \
  template StatusOr<int> max_active_clusters<T, FP4, NT, C>(int);
#define MXQ_HOPPER_DENSE_INSTANCE(T, FP4, NT, C)                                              \
  template Status launch<T, FP4, NT, C, false>(const CUtensorMap&, const CUtensorMap&,         \
                                               const KernelParams&, const HopperGemmConfig&,   \
                                               cudaStream_t);        \
  template StatusOr<int> max_active_clusters<T, FP4, NT, C>(int);
#define MXQ_HOPPER_K_HALVES_INSTANCE(T, FP4, NT, C)                                           \
  template Status launch<T, FP4, NT, C, false, 2>(const CUtensorMap&, const CUtensorMap&,      \
                                                  const KernelParams&, const HopperGemmConfig&, \
                                                  cudaStream_t);     \
  template StatusOr<int> max_active_clusters<T, FP4, NT, C, 2>(int);
#define MXQ_HOPPER_MOE_INSTANCE(T, FP4, NT, C)                                                \
  template Status launch<T, FP4, NT, C, true>(const CUtensorMap&, const CUtensorMap&,          \
                                              const KernelParams&, const HopperGemmConfig&,    \
                                              cudaStream_t);         \
  template StatusOr<int> max_active_clusters<T, FP4, NT, C>(int);
#define MXQ_HOPPER_INSTANCES(T, FP4)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 16, 2)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 32, 2)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 64, 2)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 128, 2) \
  MXQ_HOPPER_INSTANCE(T, FP4, 256, 2) \
  MXQ_HOPPER_INSTANCE(T, FP4, 16, 3)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 32, 3)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 64, 3)  \
  MXQ_HOPPER_DENSE_INSTANCE(T, FP4, 16, 4) \
  MXQ_HOPPER_K_HALVES_INSTANCE(T, FP4, 16, 4) \
  MXQ_HOPPER_MOE_INSTANCE(T, FP4, 80, 2) \
  MXQ_HOPPER_MOE_INSTANCE(T, FP4, 144, 2) \
  MXQ_HOPPER_MOE_INSTANCE(T, FP4, 288, 2)

// The FP8 instances of one 16-bit output type (instances/fp8_*.cu; MXFP4 weights): the dense
// tiles of has_fp8_tile, 16 .. 128 tokens with 2 consumers, 16 .. 64 with 3, 16 with 4, and
// the 128-token tile with 1 and 2 transform warpgroups (has_fp8_transform), and the 128-token
// tile on pre-decoded weight tiles (has_fp8_tiles): 11 kernels.
#define MXQ_HOPPER_FP8_INSTANCE(T, NT, C)                                                     \
  template Status launch<T, true, NT, C, false, 1, true>(                                      \
      const CUtensorMap&, const CUtensorMap&, const KernelParams&, const HopperGemmConfig&,    \
      cudaStream_t);                                                                           \
  template StatusOr<int> max_active_clusters<T, true, NT, C, 1, true>(int);
#define MXQ_HOPPER_FP8_TRANSFORM_INSTANCE(T, TW)                                              \
  template Status launch<T, true, 128, 2, false, 1, true, TW>(                                 \
      const CUtensorMap&, const CUtensorMap&, const KernelParams&, const HopperGemmConfig&,    \
      cudaStream_t);                                                                           \
  template StatusOr<int> max_active_clusters<T, true, 128, 2, 1, true, TW>(int);
#define MXQ_HOPPER_FP8_TILES_INSTANCE(T)                                                      \
  template Status launch<T, true, 128, 2, false, 1, true, 0, true>(                            \
      const CUtensorMap&, const CUtensorMap&, const KernelParams&, const HopperGemmConfig&,    \
      cudaStream_t);                                                                           \
  template StatusOr<int> max_active_clusters<T, true, 128, 2, 1, true, 0, true>(int);
#define MXQ_HOPPER_FP8_INSTANCES(T)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 16, 2)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 32, 2)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 64, 2)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 128, 2) \
  MXQ_HOPPER_FP8_INSTANCE(T, 16, 3)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 32, 3)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 64, 3)  \
  MXQ_HOPPER_FP8_INSTANCE(T, 16, 4)  \
  MXQ_HOPPER_FP8_TRANSFORM_INSTANCE(T, 1) \
  MXQ_HOPPER_FP8_TRANSFORM_INSTANCE(T, 2) \
  MXQ_HOPPER_FP8_TILES_INSTANCE(T)

}  // namespace mxq::cuda::hopper
