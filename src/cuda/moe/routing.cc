// Host entry point of the GPU MoE routing: argument checks (Problem::validate's routing rules,
// contract::moe_routing_error, plus the kernel's limits and pointers), then one launch.
#include "cuda/moe/routing.h"

#include <string>

#include "contract/weight_checks.h"
#include "cuda/moe/kernels.h"

namespace mxq::cuda {

Status moe_route(const MoEParams& p, const void* logits, DType dtype, int64_t tokens,
                 const float* correction_bias, int32_t* topk_ids, float* topk_weights,
                 cudaStream_t stream) {
  using namespace moe_detail;
  const std::string where = std::string("cuda::moe_route ") + routing_name(p.routing) + ": ";
  // The routing rules of Problem::validate (one definition; this launcher is called directly by
  // tests and benchmarks, not only behind the backend entry), then the kernel's own limits.
  if (const std::string why = contract::moe_routing_error(p); !why.empty())
    return invalid_argument(where + why);
  if (p.experts > kMaxRouteExperts || p.topk > kMaxRouteTopK)
    return invalid_argument(where + "the GPU routing supports experts <= " +
                            std::to_string(kMaxRouteExperts) + " and topk <= " +
                            std::to_string(kMaxRouteTopK) + ", got experts " +
                            std::to_string(p.experts) + ", topk " + std::to_string(p.topk));
  const bool grouped = p.routing == Routing::kSigmoidGroupedTopK;
  if (grouped && p.n_group > kMaxRouteGroups)
    return invalid_argument(where + "the GPU routing supports n_group <= " +
                            std::to_string(kMaxRouteGroups) + ", got " +
                            std::to_string(p.n_group));
  if (int(dtype) > int(DType::kF16))
    return invalid_argument(where + "logits dtype " + std::to_string(int(dtype)) +
                            " is not one of f32, bf16, f16");
  if (tokens < 0)
    return invalid_argument(where + "tokens = " + std::to_string(tokens) + " must be >= 0");
  const bool want_bias = grouped && p.correction_bias;
  if ((correction_bias != nullptr) != want_bias)
    return invalid_argument(where + (want_bias ? "the problem says a correction bias is given, "
                                                 "but none was passed"
                                               : "a correction bias was passed, but the problem "
                                                 "does not use one"));
  if (tokens == 0) return Status::Ok();
  if (logits == nullptr || topk_ids == nullptr || topk_weights == nullptr)
    return invalid_argument(where + (logits == nullptr ? "logits" : topk_ids == nullptr
                                                                        ? "topk_ids"
                                                                        : "topk_weights") +
                            " is a null pointer");
  if (reinterpret_cast<uintptr_t>(logits) % uintptr_t(dtype_bytes(dtype)) != 0)
    return invalid_argument(where + "logits are not aligned to their element size");

  RouteArgs a;
  a.logits = logits;
  a.dtype = dtype;
  a.tokens = tokens;
  a.experts = int(p.experts);
  a.topk = int(p.topk);
  a.mode = p.routing == Routing::kSoftmaxTopK   ? RouteMode::kSoftmaxTopK
           : p.routing == Routing::kTopKSoftmax ? RouteMode::kTopKSoftmax
                                                : RouteMode::kSigmoidGroupedTopK;
  a.renormalize = p.renormalize;
  a.n_group = grouped ? int(p.n_group) : 1;
  a.topk_group = grouped ? int(p.topk_group) : 1;
  a.routed_scaling = double(p.routed_scaling);
  a.correction_bias = correction_bias;
  a.topk_ids = topk_ids;
  a.topk_weights = topk_weights;
  const cudaError_t e = launch_route(a, stream);
  if (e != cudaSuccess)
    return Status(StatusCode::kInternal, where + "kernel launch failed: " + cudaGetErrorName(e) +
                                             " (" + cudaGetErrorString(e) + ")");
  return Status::Ok();
}

}  // namespace mxq::cuda
