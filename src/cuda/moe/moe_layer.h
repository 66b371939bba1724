// The cuda-mma MoE layer: prepare (batched expert repack into the fragment layout, biases to
// FP32) and run (route -> dispatch -> gate/up GEMM with the activation -> down GEMM with the
// top-k weights -> combine), for the backend (cuda_backend.cc).
//
// Memory: prepare takes canonical weights in host or device memory. Device weights are
// repacked in one launch per tensor; host weights are copied through a staging buffer a
// bounded number of experts at a time (at most kMoEStageBytes, and never more than one
// layer's packed size), so the peak extra device memory of prepare is the staging buffer,
// not a second copy of the layer. run takes device pointers (x, router logits, correction
// bias, expert map, y) and is asynchronous on the stream; its workspace comes from the
// stream-ordered allocator (cudaMallocAsync), so it is graph-capturable. Host pointers are
// staged and synchronised: a convenience for tests and the CLI.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string>

#include "mxq/backend.h"

namespace mxq::cuda {

inline constexpr size_t kMoEStageBytes = size_t(256) << 20;

// The grouped GEMM family a prepared layer runs on: the cuda-mma kernels (fragment layout,
// every sm_80+ GPU) or the cuda-hopper kernels (hopper layout, sm_90a builds on sm_90; the
// cuda-hopper backend). Routing, dispatch, activation keys and the combine are shared.
enum class MoEKernels { kMma, kHopper };
// Whether this build has the cuda-hopper grouped GEMMs.
bool moe_hopper_built();

// The MoE problems the layer runs (the backend adds the device checks).
Verdict moe_layer_can_implement(const Problem& p);

// `stage_bytes`: the staging bound for host weights (tests pass small values to cover the
// chunking).
// kHopper: weights whose scale codes the hopper kernels cannot fold exactly (outside
// scale_in_weights_range, FP16 activations with extreme scales) are prepared for cuda-mma
// instead, announced once on stderr; moe_layer_kernels says which family a layer got.
StatusOr<std::unique_ptr<PreparedWeights>> prepare_moe_layer(const Problem& p, const MoEWeights& w,
                                                             size_t stage_bytes = kMoEStageBytes,
                                                             MoEKernels kernels = MoEKernels::kMma);
MoEKernels moe_layer_kernels(const PreparedWeights& w);

// The launch run_moe_layer makes for `p` with the given family on the current GPU (block,
// token tile, split, grid of both GEMMs), for explain and the benchmarks.
std::string moe_launch_plan(const Problem& p, MoEKernels kernels);

// Device bytes prepare_moe_layer staged at most (0 when the weights were on the device).
size_t moe_layer_staging_bytes(const PreparedWeights& w);

Status run_moe_layer(const Problem& p, const PreparedWeights& w, const DenseView& x,
                     const MoERouting& r, const DenseMutView& y, cudaStream_t stream);

}  // namespace mxq::cuda
