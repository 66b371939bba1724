// Internal: the MoE kernels' launchers, C++17-clean (device code is compiled as C++17; the
// public routing.h needs mxq/problem.h, which is C++20). Arguments are checked by the callers.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "mxq/formats.h"

namespace mxq::cuda::moe_detail {

enum class RouteMode : int { kSoftmaxTopK = 0, kTopKSoftmax = 1, kSigmoidGroupedTopK = 2 };

struct RouteArgs {
  const void* logits = nullptr;
  DType dtype = DType::kF32;
  int64_t tokens = 0;
  int experts = 0, topk = 0;
  RouteMode mode = RouteMode::kSoftmaxTopK;
  bool renormalize = true;
  int n_group = 1, topk_group = 1;
  double routed_scaling = 1.0;
  const float* correction_bias = nullptr;
  int32_t* topk_ids = nullptr;
  float* topk_weights = nullptr;
};

constexpr int kMaxRouteExperts = 512;
constexpr int kMaxRouteTopK = 32;
constexpr int kMaxRouteGroups = 32;

cudaError_t launch_route(const RouteArgs& a, cudaStream_t stream);

}  // namespace mxq::cuda::moe_detail
