// Launch of one cuda-hopper kernel instance (included by instances/*.cu, which list the
// instances explicitly): the persistent cluster grid with the dynamic shared memory raised
// to the kernel's ring, and its occupancy query for the schedule (gemm.cu).
#pragma once

#include <cuda_runtime.h>

#include "cuda/common/cuda_check.h"
#include "cuda/hopper/gemm_kernel.cuh"

namespace mxq::cuda::hopper {

template <typename T, bool kFp4, int NT, bool kMoE = false>
Status set_smem_attribute() {
  using S = KernelShape<T, kFp4, NT>;
  MXQ_CUDA_TRY(cudaFuncSetAttribute(hopper_gemm_kernel<T, kFp4, NT, kMoE>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmem));
  MXQ_CUDA_TRY(cudaFuncSetAttribute(hopper_gemm_kernel<T, kFp4, NT, kMoE>,
                                    cudaFuncAttributeNonPortableClusterSizeAllowed, 0));
  return Status::Ok();
}

template <typename T, bool kFp4, int NT>
cudaLaunchConfig_t launch_config(int ctas, int splits, cudaStream_t stream, cudaLaunchAttribute* attr) {
  cudaLaunchConfig_t c = {};
  c.gridDim = dim3(unsigned(ctas), 1, 1);
  c.blockDim = dim3(unsigned(threads(NT)), 1, 1);
  c.dynamicSmemBytes = size_t(KernelShape<T, kFp4, NT>::kSmem);
  c.stream = stream;
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = unsigned(splits);
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  c.attrs = attr;
  c.numAttrs = 1;
  return c;
}

// How many clusters of `splits` CTAs can be resident at once on the current device (the
// grouped instances have the same shared memory and registers: the dense one answers).
template <typename T, bool kFp4, int NT>
StatusOr<int> max_active_clusters(int splits) {
  MXQ_RETURN_IF_ERROR((set_smem_attribute<T, kFp4, NT>()));
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t c = launch_config<T, kFp4, NT>(splits, splits, nullptr, attr);
  int n = 0;
  MXQ_CUDA_TRY(cudaOccupancyMaxActiveClusters(&n, hopper_gemm_kernel<T, kFp4, NT, false>, &c));
  return n;
}

template <typename T, bool kFp4, int NT, bool kMoE>
Status launch(const CUtensorMap& x_map, const KernelParams& p, const HopperGemmConfig& cfg,
              cudaStream_t stream) {
  MXQ_RETURN_IF_ERROR((set_smem_attribute<T, kFp4, NT, kMoE>()));
  cudaLaunchAttribute attr[1];
  cudaLaunchConfig_t c = launch_config<T, kFp4, NT>(cfg.ctas(), cfg.splits, stream, attr);
  MXQ_CUDA_TRY(cudaLaunchKernelEx(&c, hopper_gemm_kernel<T, kFp4, NT, kMoE>, x_map, p));
  return Status::Ok();
}

// The instances of one activation x weight type (instances/*.cu): NT = 16 .. 256, dense and
// grouped (MoE).
#define MXQ_HOPPER_INSTANCE(T, FP4, NT)                                                      \
  template Status launch<T, FP4, NT, false>(const CUtensorMap&, const KernelParams&,         \
                                            const HopperGemmConfig&, cudaStream_t);          \
  template Status launch<T, FP4, NT, true>(const CUtensorMap&, const KernelParams&,          \
                                           const HopperGemmConfig&, cudaStream_t);           \
  template StatusOr<int> max_active_clusters<T, FP4, NT>(int);
#define MXQ_HOPPER_INSTANCES(T, FP4)  \
  MXQ_HOPPER_INSTANCE(T, FP4, 16)     \
  MXQ_HOPPER_INSTANCE(T, FP4, 32)     \
  MXQ_HOPPER_INSTANCE(T, FP4, 64)     \
  MXQ_HOPPER_INSTANCE(T, FP4, 128)    \
  MXQ_HOPPER_INSTANCE(T, FP4, 256)

}  // namespace mxq::cuda::hopper
