// Shared by the GPU test files: whether a usable GPU is present (tests skip with the printed
// reason when not) and CUDA-call assertions. C++17-clean: included by .cu and .cc tests.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "mxq/status.h"

namespace mxq::testing {

inline bool have_gpu(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    *why = std::string("no usable CUDA device: ") + cudaGetErrorString(e);
    return false;
  }
  if (n == 0) {
    *why = "no CUDA device present";
    return false;
  }
  return true;
}

// Runs `work(stream)` on a new non-blocking stream and waits for it; with `graph`, captures it
// instead and replays the graph once. CUDA errors are EXPECT failures (no ASSERT: callers are
// lambdas that return values).
inline void run_on_stream(bool graph, const std::function<void(cudaStream_t)>& work) {
  auto cu = [](cudaError_t e) { EXPECT_EQ(e, cudaSuccess) << cudaGetErrorString(e); };
  cudaStream_t s;
  cu(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  if (graph) cu(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  work(s);
  if (graph) {
    cudaGraph_t g = nullptr;
    cu(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t exec;
    cu(cudaGraphInstantiate(&exec, g, 0));
    cu(cudaGraphLaunch(exec, s));
    cu(cudaStreamSynchronize(s));
    cu(cudaGraphExecDestroy(exec));
    cu(cudaGraphDestroy(g));
  }
  cu(cudaStreamSynchronize(s));
  cu(cudaStreamDestroy(s));
}

// A device array of `count` T, optionally filled from a host vector; freed on scope exit.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { cudaMalloc(&p, (count > 0 ? count : 1) * sizeof(T)); }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) {
    cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
};

}  // namespace mxq::testing

#define SKIP_WITHOUT_GPU()                                      \
  do {                                                          \
    std::string why_;                                           \
    if (!::mxq::testing::have_gpu(&why_)) {                     \
      std::printf("[ SKIPPED  ] GPU test: %s\n", why_.c_str()); \
      GTEST_SKIP() << why_;                                     \
    }                                                           \
  } while (0)

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// A call returning mxq::Status must succeed; the failure message carries the Status text.
#define MXQ_OK(expr)                                         \
  do {                                                       \
    const ::mxq::Status s_ = (expr);                         \
    ASSERT_TRUE(s_.ok()) << #expr << ": " << s_.to_string(); \
  } while (0)
