// Allocation faults over the CUDA backends on the GPU (issue 19, deliverable 3): for every CUDA
// backend of the registry that runs on this device (cuda-mma; cuda-hopper on sm_90), linear and
// MoE layers in MXFP4 and MXFP8, BF16 / FP16 / MX / FP8 activation keys, device pointers (the
// real path: the MoE workspace and the activation operands come from the stream-ordered
// allocator) and host pointers (the staged path), prepare + run is repeated with the n-th device
// allocation failing (cuda::fail_nth_device_allocation_for_testing: DeviceBuffer, StreamBuffer
// and StreamWorkspace alike) for n = 1, 2, ... until a call completes with no injected failure.
// Every injected failure must come back as a resource-exhausted Status naming the backend and
// what was being allocated with its size (never another code, an exception or a crash); leave
// mxq's device allocations exactly where they were (cuda::live_device_allocations, count and
// bytes) and, per layer, cudaMemGetInfo's free bytes too; leave no error for the next launch
// check (cudaPeekAtLastError is cudaSuccess, the device synchronises cleanly); leave y
// untouched (it holds its fill pattern); and the next clean prepare + run must give the bits of
// the clean reference run. The sweep must reach the allocations it is meant to cover (the MoE
// workspace, the quantized activations) and its length must equal the clean call's allocation
// count.
//
// Host allocations: a replacement of the global operator new (as tests/cpu/alloc_fault_test.cc)
// fails the n-th host allocation of prepare + run for every n; the backend entry turns a
// std::bad_alloc that leaves a CUDA backend into a resource-exhausted Status naming the backend
// and the call (src/contract/backend.cc). The hook is disarmed outside the armed window.
//
// Real out of memory: with the GPU filled up to 128 MiB by the test, a prepare whose weights do
// not fit and an MoE run whose workspace does not fit fail as resource exhausted, a healthy layer
// prepared before runs with its old bits, and after the memory is released the large layer runs
// with the bits it had before.
//
// Skipped with a printed reason when no GPU is present (and cuda-hopper where it cannot run).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <new>
#include <set>
#include <string>
#include <vector>

#include "cuda/common/device_memory.h"
#include "fault_layers.h"
#include "gpu_test_util.h"

// The host allocation hook (g_countdown, g_allocs, g_live; tests/common).
#include "common/host_alloc_hook.h"

namespace mxq {
namespace {

using faulttest::DevBytes;
using faulttest::Layer;
using faulttest::LayerSpec;

constexpr int kCountArm = 1 << 30;  // armed, never reached: the clean calls count with it
constexpr uint8_t kFill = 0xAB;

// Device free bytes with mxq's stream-ordered pool trimmed (its cache is not a leak).
size_t device_free_bytes() {
  cudaDeviceSynchronize();
  int dev = 0;
  cudaGetDevice(&dev);
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  return free_b;
}

enum class Fault { kNone, kDevice, kHost };

struct Outcome {
  bool ok = false;
  bool escaped = false;      // an exception left the backend entry
  bool fired = false;        // the injected failure happened
  bool in_run = false;       // prepare succeeded; the failure (if any) came from run
  long count = 0;            // allocations the call made (device or host, by the fault kind)
  cuda::DeviceAllocations dev_leak;  // mxq's live device allocations after minus before
  long host_leak = 0;        // live host allocations after minus before
  cudaError_t stale = cudaSuccess;   // cudaPeekAtLastError after the call
  cudaError_t sync = cudaSuccess;    // cudaDeviceSynchronize after the call
  bool y_untouched = false;
  Status status;
  std::vector<uint8_t> y;
};

// The output of a layer: device memory (or host memory for a staged layer), filled with kFill
// before every call.
struct Output {
  explicit Output(const Layer& l) : staged(l.spec.staged), dev(staged ? 0 : l.y_bytes()) {
    host.resize(l.y_bytes());
  }
  void* ptr() { return staged ? static_cast<void*>(host.data()) : dev.p; }
  void fill() {
    if (staged) {
      std::fill(host.begin(), host.end(), kFill);
    } else {
      cudaMemset(dev.p, kFill, dev.n);
      cudaDeviceSynchronize();
    }
  }
  std::vector<uint8_t> read() {
    if (!staged) cudaMemcpy(host.data(), dev.p, dev.n, cudaMemcpyDeviceToHost);
    return host;
  }
  bool staged;
  DevBytes dev;
  std::vector<uint8_t> host;
};

// prepare + run once, with the n-th device or host allocation failing (n = 0: none, counting
// the call's allocations). Only the backend's calls are inside the armed window.
Outcome prepare_and_run(const Backend& b, const Layer& l, Output& y, Fault fault, long n) {
  Outcome o;
  y.fill();
  StatusCode code = StatusCode::kOk;
  std::string message;
  message.reserve(4096);  // copying the message into it allocates nothing
  const cuda::DeviceAllocations dev0 = cuda::live_device_allocations();
  const long live0 = g_live.load();
  const long allocs0 = g_allocs.load();
  void* yp = y.ptr();
  {
    Status s;
    if (fault == Fault::kHost) {
      (void)cuda::fail_nth_device_allocation_for_testing(0);
      g_countdown.store(n);
    } else {
      (void)cuda::fail_nth_device_allocation_for_testing(fault == Fault::kDevice && n > 0 ? int(n)
                                                                                         : kCountArm);
    }
    try {
      auto prepared = l.prepare(b);
      if (prepared.ok()) {
        o.in_run = true;
        s = l.run(b, *prepared.value(), yp);
      } else {
        s = prepared.status();
      }
    } catch (...) {
      o.escaped = true;
    }
    const int left = cuda::fail_nth_device_allocation_for_testing(0);
    const long host_left = g_countdown.exchange(0);
    if (fault == Fault::kHost) {
      o.fired = n > 0 && host_left == 0;
      o.count = g_allocs.load() - allocs0;
    } else {
      o.fired = fault == Fault::kDevice && n > 0 && left == 0;
      if (!(fault == Fault::kDevice && n > 0)) o.count = kCountArm - left;
    }
    o.ok = !o.escaped && s.ok();
    code = s.code();
    message.assign(s.message(), 0, message.capacity());
  }
  o.stale = cudaPeekAtLastError();
  o.sync = cudaDeviceSynchronize();
  (void)cudaGetLastError();
  const cuda::DeviceAllocations dev1 = cuda::live_device_allocations();
  o.dev_leak = {dev1.count - dev0.count, dev1.bytes - dev0.bytes};
  o.host_leak = g_live.load() - live0;
  o.status = Status(code, std::move(message));
  o.y = y.read();
  o.y_untouched = std::all_of(o.y.begin(), o.y.end(), [](uint8_t v) { return v == kFill; });
  return o;
}

// The backend under test (the fixture's parameter); skipped with the reason where it cannot run.
class CudaFaults : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_GPU();
    backend_ = find_backend(GetParam());
    if (backend_ == nullptr) {
      std::printf("[ SKIPPED  ] %s is not in this build\n", GetParam());
      GTEST_SKIP() << GetParam() << " is not in this build";
    }
    if (const Verdict v = backend_->supports(this_device()); !v) {
      std::printf("[ SKIPPED  ] %s: %s\n", GetParam(), v.reason.c_str());
      GTEST_SKIP() << v.reason;
    }
  }
  const Backend* backend_ = nullptr;
};

std::vector<LayerSpec> linear_specs() {
  std::vector<LayerSpec> v;
  uint32_t seed = 10;
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3}) {
    for (ActKey a : {ActKey::kBF16, ActKey::kMXFP8Dynamic, ActKey::kFP8DynamicToken}) {
      LayerSpec s;
      s.op = Op::kLinear;
      s.weight = e;
      s.act = a;
      s.m = 5;
      s.n = 256;
      s.k = 512;
      s.seed = ++seed;
      v.push_back(s);
    }
    LayerSpec s;  // staged: host x and y
    s.op = Op::kLinear;
    s.weight = e;
    s.act = ActKey::kFP16;
    s.m = 3;
    s.n = 128;
    s.k = 256;
    s.staged = true;
    s.seed = ++seed;
    v.push_back(s);
  }
  return v;
}

std::vector<LayerSpec> moe_specs() {
  std::vector<LayerSpec> v;
  uint32_t seed = 40;
  for (ElemType e : {ElemType::kE2M1, ElemType::kE4M3}) {
    for (ActKey a : {ActKey::kBF16, ActKey::kMXFP4Dynamic}) {
      LayerSpec s;
      s.op = Op::kMoE;
      s.weight = e;
      s.act = a;
      s.m = 6;
      s.n = 256;
      s.k = 128;
      s.seed = ++seed;
      v.push_back(s);
    }
    LayerSpec s;
    s.op = Op::kMoE;
    s.weight = e;
    s.act = ActKey::kBF16;
    s.m = 4;
    s.n = 128;
    s.k = 64;
    s.staged = true;
    s.seed = ++seed;
    v.push_back(s);
  }
  return v;
}

// The allocation sites the device sweeps must reach (names in the resource-exhausted messages).
struct Coverage {
  std::set<std::string> seen;  // "for <what>:" parts of the messages
  bool has(const std::string& what) const {
    for (const auto& s : seen)
      if (s.find(what) != std::string::npos) return true;
    return false;
  }
};

std::string what_of(const std::string& msg) {
  const size_t at = msg.find(" bytes for ");
  if (at == std::string::npos) return msg;
  const size_t end = msg.find(": cuda", at);
  return msg.substr(at + 11, end == std::string::npos ? std::string::npos : end - at - 11);
}

// The sweep over one layer; returns how many failures came back classified.
int sweep(const Backend& b, const LayerSpec& spec, Fault fault, Coverage* cov) {
  Layer l(spec);
  SCOPED_TRACE(std::string(b.name()) + " " + l.what() +
               (fault == Fault::kDevice ? ", device allocations" : ", host allocations"));
  if (const Verdict v = b.check_problem(l.p); !v) {
    std::printf("  %s %s: not run (%s)\n", std::string(b.name()).c_str(), l.what().c_str(),
                v.reason.c_str());
    return 0;
  }
  Output y(l);
  // Warm-up (lazy module loading, the pool's first use), then the reference and its count.
  const Outcome warm = prepare_and_run(b, l, y, fault, 0);
  EXPECT_TRUE(warm.ok) << warm.status.to_string();
  if (!warm.ok) return 0;
  const size_t free0 = device_free_bytes();
  const Outcome base = prepare_and_run(b, l, y, fault, 0);
  EXPECT_TRUE(base.ok) << base.status.to_string();
  if (!base.ok) return 0;
  EXPECT_FALSE(base.y_untouched) << "the clean run wrote nothing";
  EXPECT_EQ(base.dev_leak.count, 0) << "a clean prepare + run leaked device allocations";
  EXPECT_EQ(base.y, warm.y) << "two clean calls differ";
  EXPECT_EQ(base.count, warm.count) << "clean calls make different numbers of allocations";
  EXPECT_GT(base.count, 0) << "prepare + run made no allocation: nothing to inject";
  int classified = 0;
  long n = 1;
  for (;; ++n) {
    SCOPED_TRACE("failing allocation " + std::to_string(n) + " of " + std::to_string(base.count));
    const Outcome f = prepare_and_run(b, l, y, fault, n);
    if (!f.fired) {
      EXPECT_TRUE(f.ok) << "no failure injected and the call failed: " << f.status.to_string();
      EXPECT_EQ(f.y, base.y) << "the clean call differs from the reference";
      break;
    }
    EXPECT_FALSE(f.escaped) << "an exception left the backend";
    EXPECT_EQ(f.dev_leak.count, 0) << "device allocations leaked";
    EXPECT_EQ(f.dev_leak.bytes, 0) << "device bytes leaked";
    EXPECT_EQ(f.host_leak, 0) << "host allocations leaked";
    EXPECT_EQ(f.stale, cudaSuccess) << "an error was left for the next launch check: "
                                    << cudaGetErrorName(f.stale);
    EXPECT_EQ(f.sync, cudaSuccess) << cudaGetErrorName(f.sync);
    if (f.ok) {
      // A backend may absorb a failed allocation (a fallback): then the result must be right.
      EXPECT_EQ(f.y, base.y) << "an allocation failed and the result is wrong";
    } else if (!f.escaped) {
      ++classified;
      const std::string& msg = f.status.message();
      EXPECT_EQ(f.status.code(), StatusCode::kResourceExhausted) << f.status.to_string();
      EXPECT_TRUE(f.y_untouched) << "a failed " << (f.in_run ? "run" : "prepare") << " wrote y";
      if (fault == Fault::kDevice) {
        EXPECT_NE(msg.find("out of device memory allocating "), std::string::npos) << msg;
        EXPECT_NE(msg.find(" bytes for "), std::string::npos) << "names what and how much: " << msg;
        if (cov) cov->seen.insert(what_of(msg));
      } else if (msg != "out of memory") {  // the entry checks' short message (backend.cc)
        EXPECT_NE(msg.find("out of host memory"), std::string::npos) << msg;
      }
      if (msg != "out of memory") {
        EXPECT_NE(msg.find(std::string(b.name())), std::string::npos)
            << "the error names the backend: " << msg;
      }
      if (fault == Fault::kDevice)
        std::printf("    n = %ld (%s): %s\n", n, f.in_run ? "run" : "prepare",
                    f.status.to_string().c_str());
    }
    const Outcome again = prepare_and_run(b, l, y, fault, 0);
    EXPECT_TRUE(again.ok) << "the call after the failure: " << again.status.to_string();
    EXPECT_EQ(again.y, base.y) << "the call after the failure differs from the reference";
    EXPECT_EQ(again.count, base.count);
    if (n > base.count + 2) {
      ADD_FAILURE() << "the injected failure still fires beyond the clean call's "
                    << base.count << " allocations";
      break;
    }
    if (::testing::Test::HasFatalFailure()) break;
  }
  EXPECT_EQ(n - 1, base.count) << "the sweep's length differs from the clean allocation count";
  const size_t free1 = device_free_bytes();
  EXPECT_EQ(free1, free0) << "device free bytes not back to the level before the sweep";
  std::printf("  %s %s: %ld %s allocations failed one at a time, %d resource exhausted; "
              "free bytes %zu -> %zu\n",
              std::string(b.name()).c_str(), l.what().c_str(), base.count,
              fault == Fault::kDevice ? "device" : "host", classified, free0, free1);
  return classified;
}

TEST_P(CudaFaults, DeviceAllocationsLinear) {
  Coverage cov;
  int classified = 0;
  for (const LayerSpec& s : linear_specs()) classified += sweep(*backend_, s, Fault::kDevice, &cov);
  EXPECT_GT(classified, 0);
  EXPECT_TRUE(cov.has("the quantized activations")) << "the MX activation operand was not reached";
  EXPECT_TRUE(cov.has("a device copy of a host argument")) << "the host staging was not reached";
}

TEST_P(CudaFaults, DeviceAllocationsMoE) {
  Coverage cov;
  int classified = 0;
  for (const LayerSpec& s : moe_specs()) classified += sweep(*backend_, s, Fault::kDevice, &cov);
  EXPECT_GT(classified, 0);
  EXPECT_TRUE(cov.has("the MoE workspace")) << "the MoE workspace was not reached";
  EXPECT_TRUE(cov.has("the quantized activations")) << "the MX activation operand was not reached";
}

// Host allocations of the same calls: one linear and one MoE layer per format, device pointers
// and host pointers.
TEST_P(CudaFaults, HostAllocations) {
  int classified = 0;
  for (const auto& specs : {linear_specs(), moe_specs()}) {
    for (const LayerSpec& s : specs) {
      if (s.act != ActKey::kBF16 && !s.staged) continue;
      classified += sweep(*backend_, s, Fault::kHost, nullptr);
      if (HasFatalFailure()) return;
    }
  }
  EXPECT_GT(classified, 0);
}

// Real out of memory, no hook: the GPU filled by the test up to 128 MiB.
TEST_P(CudaFaults, RealOutOfMemory) {
  const Backend& b = *backend_;
  const cuda::DeviceAllocations dev0 = cuda::live_device_allocations();
  LayerSpec ss;
  ss.op = Op::kLinear;
  ss.n = 256;
  ss.k = 256;
  ss.seed = 90;
  Layer small(ss);
  LayerSpec ms;  // workspace: per-pair outputs alone M * topk * H * 4 = 512 MiB
  ms.op = Op::kMoE;
  ms.m = 8192;
  ms.n = 2048;
  ms.k = 256;
  ms.experts = 8;
  ms.topk = 8;
  ms.bias = false;
  ms.seed = 91;
  Layer big(ms);
  Output ys(small), yb(big);
  auto sp = small.prepare(b);
  ASSERT_TRUE(sp.ok()) << sp.status().to_string();
  auto bp = big.prepare(b);
  ASSERT_TRUE(bp.ok()) << bp.status().to_string();
  ys.fill();
  MXQ_OK(small.run(b, *sp.value(), ys.ptr()));
  const std::vector<uint8_t> small_ref = ys.read();
  yb.fill();
  MXQ_OK(big.run(b, *bp.value(), yb.ptr()));
  const std::vector<uint8_t> big_ref = yb.read();
  CUDA_OK(cudaDeviceSynchronize());

  // Weights that cannot fit: E4M3 16384 x 16384 (256 MiB packed), host memory.
  const int64_t hn = 16384, hk = 16384;
  std::vector<uint8_t> hpacked(size_t(hn * hk), 0x11), hscales(size_t(hn * hk / 32), 120);
  const Problem hp = Problem::linear(ElemType::kE4M3, ActKey::kBF16, 1, hn, hk);
  LinearWeights hw;
  hw.w = {ElemType::kE4M3, 1, hn, hk, hpacked.data(), hscales.data()};

  // Fill the GPU (freed on every way out of the test).
  const size_t keep = size_t(128) << 20;
  struct Ballast {
    std::vector<void*> p;
    ~Ballast() { release(); }
    void release() {
      for (void* q : p) cudaFree(q);
      p.clear();
    }
  } ballast_guard;
  std::vector<void*>& ballast = ballast_guard.p;
  for (;;) {
    const size_t free_b = device_free_bytes();
    if (free_b <= keep + (size_t(64) << 20)) break;
    const size_t chunk = std::min(free_b - keep, size_t(4) << 30);
    void* p = nullptr;
    if (cudaMalloc(&p, chunk) != cudaSuccess) {
      (void)cudaGetLastError();
      break;
    }
    ballast.push_back(p);
  }
  const size_t free_full = device_free_bytes();
  std::printf("  %s: GPU filled, %zu bytes free\n", std::string(b.name()).c_str(), free_full);
  {
    const cuda::DeviceAllocations d0 = cuda::live_device_allocations();
    auto hprep = b.prepare_linear(hp, hw);
    EXPECT_FALSE(hprep.ok()) << "a 256 MiB layer was prepared in " << free_full << " free bytes";
    if (hprep.ok()) hprep.value().reset();
    const Status s = hprep.status();
    std::printf("  prepare: %s\n", s.to_string().c_str());
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
    EXPECT_NE(s.message().find("out of device memory allocating "), std::string::npos);
    EXPECT_NE(s.message().find(std::string(b.name())), std::string::npos) << s.message();
    EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess) << "stale error after the failed prepare";
    const cuda::DeviceAllocations d1 = cuda::live_device_allocations();
    EXPECT_EQ(d1.count, d0.count);
    EXPECT_EQ(d1.bytes, d0.bytes);
    EXPECT_EQ(device_free_bytes(), free_full) << "the failed prepare did not give its memory back";
  }
  // The healthy layer: its next call works, same bits (its launch check sees no stale error).
  ys.fill();
  MXQ_OK(small.run(b, *sp.value(), ys.ptr()));
  EXPECT_EQ(ys.read(), small_ref);
  {
    yb.fill();
    const Status s = big.run(b, *bp.value(), yb.ptr());
    std::printf("  MoE run: %s\n", s.to_string().c_str());
    EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.to_string();
    EXPECT_NE(s.message().find("the MoE workspace"), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(std::string(b.name())), std::string::npos) << s.message();
    EXPECT_EQ(cudaPeekAtLastError(), cudaSuccess) << "stale error after the failed run";
    const std::vector<uint8_t> got = yb.read();
    EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](uint8_t v) { return v == kFill; }))
        << "the failed MoE run wrote y";
  }
  ys.fill();
  MXQ_OK(small.run(b, *sp.value(), ys.ptr()));
  EXPECT_EQ(ys.read(), small_ref);
  ballast_guard.release();
  yb.fill();
  MXQ_OK(big.run(b, *bp.value(), yb.ptr()));
  EXPECT_EQ(yb.read(), big_ref) << "the MoE layer after the memory came back";
  sp.value().reset();
  bp.value().reset();
  CUDA_OK(cudaDeviceSynchronize());
  const cuda::DeviceAllocations dev1 = cuda::live_device_allocations();
  EXPECT_EQ(dev1.count, dev0.count);
  EXPECT_EQ(dev1.bytes, dev0.bytes);
}

INSTANTIATE_TEST_SUITE_P(Backends, CudaFaults, ::testing::Values("cuda-mma", "cuda-hopper"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           std::string s = p.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });

}  // namespace
}  // namespace mxq
