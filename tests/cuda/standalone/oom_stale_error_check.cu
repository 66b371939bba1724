// GPU check of issue 19's "no stale state" on DeviceBuffer (standalone: no CMake, builds in
// seconds on the GPU host):
//   nvcc -std=c++20 -arch=sm_90a -Iinclude -Isrc tests/cuda/standalone/oom_stale_error_check.cu \
//        src/cuda/common/device_memory.cc src/core/status.cc -o /tmp/oom_check && /tmp/oom_check
// 1. An allocation larger than the GPU fails as resource exhausted naming what and the bytes,
//    not internal; 2. the launch check of the next kernel (cudaGetLastError) sees success, not
//    the stale cudaErrorMemoryAllocation; 3. device memory is back where it was; 4. the test hook
//    fails the n-th allocation the same way; 5. the next allocation works.
#include <cstdio>
#include <string>

#include "cuda/common/cuda_check.h"
#include "cuda/common/device_memory.h"

__global__ void add_one(int* p) { *p += 1; }

static int failures = 0;
#define CHECK(c, ...)                                   \
  do {                                                  \
    if (!(c)) {                                         \
      std::printf("FAIL line %d: %s: ", __LINE__, #c);  \
      std::printf(__VA_ARGS__);                         \
      std::printf("\n");                                \
      ++failures;                                       \
    }                                                   \
  } while (0)

int main() {
  using namespace mxq;
  using namespace mxq::cuda;
  int devs = 0;
  if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
    std::printf("SKIP: no GPU\n");
    return 0;
  }
  size_t free0 = 0, total = 0;
  cudaMemGetInfo(&free0, &total);
  DeviceBuffer small;
  CHECK(small.allocate(sizeof(int), "a counter").ok(), "small allocation");
  cudaMemset(small.get(), 0, sizeof(int));
  size_t free1 = 0;
  cudaMemGetInfo(&free1, &total);
  {
    DeviceBuffer huge;
    const Status s = huge.allocate(total * 2, "the test's oversized buffer");
    std::printf("oversized allocation: %s\n", s.to_string().c_str());
    CHECK(s.code() == StatusCode::kResourceExhausted, "code %d", int(s.code()));
    CHECK(s.message().find("the test's oversized buffer") != std::string::npos, "names what");
    CHECK(s.message().find(std::to_string(total * 2)) != std::string::npos, "names the bytes");
    CHECK(huge.get() == nullptr, "no pointer after failure");
  }
  add_one<<<1, 1>>>(small.get<int>());
  const Status launch = launch_status("add_one", "stale-error check");
  std::printf("next launch: %s\n", launch.to_string().c_str());
  CHECK(launch.ok(), "the next launch check picked up %s", launch.to_string().c_str());
  int v = 0;
  CHECK(cudaMemcpy(&v, small.get(), sizeof v, cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
  CHECK(v == 1, "kernel result %d", v);
  size_t free2 = 0;
  cudaMemGetInfo(&free2, &total);
  std::printf("free bytes: before %zu, after the failure %zu\n", free1, free2);
  CHECK(free2 == free1, "device memory not back: %zu vs %zu", free2, free1);
  fail_nth_device_allocation_for_testing(2);
  DeviceBuffer a, b;
  CHECK(a.allocate(1024, "first").ok(), "first allocation after arming");
  const Status sb = b.allocate(1024, "second");
  CHECK(sb.code() == StatusCode::kResourceExhausted, "injected: %s", sb.to_string().c_str());
  add_one<<<1, 1>>>(small.get<int>());
  CHECK(launch_status("add_one", "after injection").ok(), "launch after injected failure");
  CHECK(b.allocate(1024, "second, again").ok(), "the next allocation works");
  std::printf("%s (%d failure(s))\n", failures ? "FAILED" : "ok", failures);
  (void)free0;
  return failures ? 1 : 0;
}
