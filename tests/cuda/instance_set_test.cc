// The CUDA kernel instance set (MXQ_CUDA_INSTANCES, src/cuda/common/instance_set.h), checked on
// the CPU (no GPU needed: runs in CI, where scripts/test.sh builds the minimal set). What the
// build compiled must agree with what the backends claim: in a minimal build every CUDA
// backend refuses the absent activation x weight pairs with a reason naming the switch, and
// takes the compiled ones; in a full build it takes all four. (The kernel counts per set are
// checked by the ctest cuda_kernel_counts.)
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "cuda/common/instance_set.h"
#include "mxq/select.h"

namespace {

using mxq::ActKey;
using mxq::ElemType;
using mxq::Problem;

struct Pair {
  ActKey act;
  ElemType w;
  bool bf16, fp4;
};
constexpr Pair kPairs[] = {{ActKey::kBF16, ElemType::kE2M1, true, true},
                           {ActKey::kBF16, ElemType::kE4M3, true, false},
                           {ActKey::kFP16, ElemType::kE2M1, false, true},
                           {ActKey::kFP16, ElemType::kE4M3, false, false}};

TEST(CudaInstanceSet, MinimalKeepsOnePairPerActivationTypeAndFormat) {
  int compiled = 0;
  for (const Pair& p : kPairs) compiled += mxq::cuda::instance_types_compiled(p.bf16, p.fp4);
  EXPECT_EQ(compiled, mxq::cuda::kAllInstanceTypes ? 4 : 2);
  // Both activation types and both formats keep an instance, so every template compiles.
  EXPECT_TRUE(mxq::cuda::instance_types_compiled(true, true));
  EXPECT_TRUE(mxq::cuda::instance_types_compiled(false, false));
  std::printf("instance set: %s\n", mxq::cuda::kAllInstanceTypes ? "full" : "minimal");
}

TEST(CudaInstanceSet, BackendsClaimExactlyTheCompiledPairs) {
  int backends = 0;
  for (const char* name : {"cuda-mma", "cuda-hopper"}) {
    const mxq::Backend* b = mxq::find_backend(name);
    if (b == nullptr) continue;  // cuda-hopper exists only in builds with sm_90a
    ++backends;
    for (const Pair& p : kPairs) {
      for (bool moe : {false, true}) {
        Problem pr = moe ? Problem::moe_problem(p.w, p.act, 16, 256, 128, 8, 2)
                         : Problem::linear(p.w, p.act, 16, 256, 256);
        pr.out = p.bf16 ? mxq::DType::kBF16 : mxq::DType::kF16;
        const mxq::Verdict v = b->can_implement(pr);
        const bool want = mxq::cuda::instance_types_compiled(p.bf16, p.fp4);
        EXPECT_EQ(bool(v), want) << name << " " << pr.to_string() << ": " << v.reason;
        if (!want) {
          EXPECT_NE(v.reason.find("MXQ_CUDA_INSTANCES=minimal"), std::string::npos)
              << name << " " << pr.to_string() << ": " << v.reason;
        }
      }
    }
  }
  EXPECT_GE(backends, 1) << "a CUDA build registers cuda-mma";
}

}  // namespace
