// GPU stress test (issue 19, deliverable 5): for MXQ_STRESS_SECONDS (default 120) seconds,
// MXQ_STRESS_THREADS (default 6) host threads, each with its own stream, run linear and MoE
// layers of different shapes, formats and activation keys on every CUDA backend of the registry
// that runs here (cuda-mma; cuda-hopper on sm_90): runs of weights prepared once and shared by
// every thread, prepare + run + free of their own weights, CUDA graph capture (thread-local
// capture mode) and replay, and random bad calls mixed in (wrong x rows, wrong dtype, null y,
// another layer's or another backend's prepared weights, K not a multiple of 32), which must come
// back as their invalid-argument / unimplemented error naming the backend and leave y untouched.
// Captures and the calls that synchronise the whole device (a prepare ends with
// cudaDeviceSynchronize; freeing prepared weights is cudaFree) do not overlap: a device-wide
// synchronisation invalidates a capture in progress in any other thread whatever its capture
// mode (CUDA's rule, not mxq's), so an engine must not prepare or free while it captures; the
// test holds a reader-writer lock for that (captures shared, prepare / free exclusive). Runs,
// replays and bad calls overlap everything.
// Every output is compared bitwise with the serial run of the same layer made before the
// threads start (and graph replays with it too). At the end device memory must be back where it
// was before the threads started: mxq's live device allocations (cuda::live_device_allocations,
// count and bytes) and cudaMemGetInfo's free bytes (with the stream-ordered pool and the graph
// memory trimmed). Prints a summary; exit 0 when everything held, 1 otherwise, 0 with a
// printed reason when no GPU is present. MXQ_STRESS_SEED (default 1) seeds the threads' choices.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda/common/device_memory.h"
#include "fault_layers.h"

namespace mxq {
namespace {

using faulttest::DevBytes;
using faulttest::Layer;
using faulttest::LayerSpec;

constexpr uint8_t kFill = 0xAB;

long env_long(const char* name, long def) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return def;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  return (end && *end == '\0' && x > 0) ? x : def;
}

struct MemLevel {
  cuda::DeviceAllocations mxq;
  size_t free_bytes = 0;
};

MemLevel mem_level() {
  cudaDeviceSynchronize();
  int dev = 0;
  cudaGetDevice(&dev);
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
  cudaDeviceGraphMemTrim(dev);
  cudaDeviceSynchronize();
  MemLevel m;
  m.mxq = cuda::live_device_allocations();
  size_t total = 0;
  cudaMemGetInfo(&m.free_bytes, &total);
  return m;
}

// One layer on one backend: the weights every thread shares and the serial reference output.
struct Slot {
  const Backend* b = nullptr;
  const Layer* l = nullptr;
  std::unique_ptr<PreparedWeights> shared;
  std::vector<uint8_t> ref;
  std::string what;
};

struct Stats {
  std::atomic<long> runs{0}, prepares{0}, graphs{0}, replays{0}, bad_calls{0};
  std::atomic<long> errors_expected{0}, errors_seen{0}, mismatches{0}, failures{0};
  std::mutex mu;
  std::shared_mutex capture_mu;  // captures shared; prepare and free (device-wide syncs) exclusive
  std::vector<std::string> first_failures;
  void fail(const std::string& why) {
    failures.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu);
    if (first_failures.size() < 20) first_failures.push_back(why);
  }
};

// The layers: decode and prefill shapes, MXFP4 and MXFP8, BF16 / FP16 / MX activation keys;
// MoE with few and many experts (device pointers only: graphs need them).
std::vector<LayerSpec> stress_specs() {
  std::vector<LayerSpec> v;
  auto lin = [&](ElemType e, ActKey a, int64_t m, int64_t n, int64_t k) {
    LayerSpec s;
    s.op = Op::kLinear;
    s.weight = e;
    s.act = a;
    s.m = m;
    s.n = n;
    s.k = k;
    s.seed = uint32_t(100 + v.size());
    v.push_back(s);
  };
  auto moe = [&](ElemType e, ActKey a, int64_t m, int64_t h, int64_t i, int64_t ex, int64_t k) {
    LayerSpec s;
    s.op = Op::kMoE;
    s.weight = e;
    s.act = a;
    s.m = m;
    s.n = h;
    s.k = i;
    s.experts = ex;
    s.topk = k;
    s.seed = uint32_t(100 + v.size());
    v.push_back(s);
  };
  lin(ElemType::kE2M1, ActKey::kBF16, 1, 4096, 4096);
  lin(ElemType::kE4M3, ActKey::kBF16, 64, 2048, 2880);
  lin(ElemType::kE2M1, ActKey::kFP16, 300, 1024, 1024);
  lin(ElemType::kE2M1, ActKey::kMXFP8Dynamic, 17, 512, 768);
  lin(ElemType::kE4M3, ActKey::kFP8DynamicToken, 9, 256, 512);  // cuda-mma (M <= 16, small layer)
  moe(ElemType::kE2M1, ActKey::kBF16, 1, 1024, 512, 32, 4);
  moe(ElemType::kE2M1, ActKey::kBF16, 128, 512, 256, 16, 4);
  moe(ElemType::kE4M3, ActKey::kBF16, 40, 256, 128, 8, 2);
  moe(ElemType::kE2M1, ActKey::kMXFP4Dynamic, 20, 256, 256, 8, 2);
  return v;
}

class Worker {
 public:
  Worker(int id, const std::vector<Slot>& slots, Stats& st, uint32_t seed, size_t ybytes)
      : id_(id), slots_(slots), st_(st), rng_(seed), y_(ybytes), host_(ybytes) {
    cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking);
  }
  ~Worker() {
    if (s_) cudaStreamDestroy(s_);
  }

  void loop(std::chrono::steady_clock::time_point until) {
    while (std::chrono::steady_clock::now() < until && st_.failures.load() < 50) {
      const Slot& slot = slots_[rng_() % slots_.size()];
      const int action = int(rng_() % 100);
      if (action < 45) {
        run_shared(slot);
      } else if (action < 62) {
        prepare_run_free(slot);
      } else if (action < 80) {
        graph(slot);
      } else {
        bad_call(slot);
      }
    }
  }

 private:
  std::string who(const Slot& slot) const {
    return "thread " + std::to_string(id_) + ": " + std::string(slot.b->name()) + " " + slot.what;
  }
  void fill(size_t bytes) { cudaMemsetAsync(y_.p, kFill, bytes, s_); }
  // y compared with the serial reference; false (and a failure recorded) when it differs.
  bool check(const Slot& slot, const char* how) {
    const size_t yb = slot.ref.size();
    cudaMemcpyAsync(host_.data(), y_.p, yb, cudaMemcpyDeviceToHost, s_);
    const cudaError_t e = cudaStreamSynchronize(s_);
    if (e != cudaSuccess) {
      st_.fail(who(slot) + " " + how + ": stream error " + cudaGetErrorName(e));
      return false;
    }
    if (std::memcmp(host_.data(), slot.ref.data(), yb) != 0) {
      st_.mismatches.fetch_add(1);
      st_.fail(who(slot) + " " + how + ": differs from the serial run");
      return false;
    }
    return true;
  }
  void run_shared(const Slot& slot) {
    fill(slot.ref.size());
    const Status s = slot.l->run(*slot.b, *slot.shared, y_.p, s_);
    st_.runs.fetch_add(1);
    if (!s.ok()) return st_.fail(who(slot) + " run: " + s.to_string());
    check(slot, "run of the shared weights");
  }
  void prepare_run_free(const Slot& slot) {
    std::unique_ptr<PreparedWeights> w;
    {
      std::unique_lock<std::shared_mutex> lock(st_.capture_mu);
      auto r = slot.l->prepare(*slot.b);
      st_.prepares.fetch_add(1);
      if (!r.ok()) return st_.fail(who(slot) + " prepare: " + r.status().to_string());
      w = std::move(r).value();
    }
    fill(slot.ref.size());
    const Status s = slot.l->run(*slot.b, *w, y_.p, s_);
    st_.runs.fetch_add(1);
    if (!s.ok()) st_.fail(who(slot) + " run of its own weights: " + s.to_string());
    if (s.ok()) check(slot, "run of its own weights");
    cudaStreamSynchronize(s_);
    std::unique_lock<std::shared_mutex> lock(st_.capture_mu);
    w.reset();  // cudaFree while other threads run and replay
  }
  void graph(const Slot& slot) {
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    Status s;
    cudaError_t e = cudaSuccess;
    {
      std::shared_lock<std::shared_mutex> lock(st_.capture_mu);
      e = cudaStreamBeginCapture(s_, cudaStreamCaptureModeThreadLocal);
      if (e != cudaSuccess) return st_.fail(who(slot) + " begin capture: " + cudaGetErrorName(e));
      fill(slot.ref.size());
      s = slot.l->run(*slot.b, *slot.shared, y_.p, s_);
      e = cudaStreamEndCapture(s_, &g);
    }
    st_.graphs.fetch_add(1);
    if (!s.ok() || e != cudaSuccess) {
      if (g) cudaGraphDestroy(g);
      (void)cudaGetLastError();
      return st_.fail(who(slot) + " capture: " + s.to_string() + " / " + cudaGetErrorName(e));
    }
    e = cudaGraphInstantiate(&ge, g, 0);
    if (e != cudaSuccess) {
      cudaGraphDestroy(g);
      return st_.fail(who(slot) + " instantiate: " + cudaGetErrorName(e));
    }
    const int replays = 1 + int(rng_() % 3);
    for (int r = 0; r < replays; ++r) {
      cudaMemsetAsync(y_.p, 0x5A, slot.ref.size(), s_);  // the graph's own fill must run too
      e = cudaGraphLaunch(ge, s_);
      st_.replays.fetch_add(1);
      if (e != cudaSuccess) {
        st_.fail(who(slot) + " graph launch: " + cudaGetErrorName(e));
        break;
      }
      if (!check(slot, "graph replay")) break;
    }
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
  }
  // A call the entry must refuse: its error code, the backend named, y untouched.
  void bad_call(const Slot& slot) {
    const Layer& l = *slot.l;
    const Backend& b = *slot.b;
    const size_t yb = slot.ref.size();
    fill(yb);
    cudaStreamSynchronize(s_);
    Status s;
    const int kind = int(rng_() % 6);
    Problem p = l.p;
    const DType xd = act_input_dtype(p.act);
    const int64_t xcols = p.op == Op::kLinear ? p.k : p.n;
    std::vector<StatusCode> want = {StatusCode::kInvalidArgument};
    switch (kind) {
      case 0: {  // x with one row too many for the problem
        const DenseView x{l.x_dev->p, xd, p.m + 1, xcols};
        const DenseMutView y{y_.p, p.out, p.m, p.n};
        if (p.op == Op::kLinear) {
          s = b.run_linear(p, *slot.shared, x, y, s_);
        } else {
          MoERouting r;
          r.router_logits = {l.logits_dev->p, DType::kF32, p.m, p.moe.experts};
          s = b.run_moe(p, *slot.shared, x, r, y, s_);
        }
        break;
      }
      case 1: {  // y null
        const DenseView x{l.x_dev->p, xd, p.m, xcols};
        const DenseMutView y{nullptr, p.out, p.m, p.n};
        if (p.op == Op::kLinear) {
          s = b.run_linear(p, *slot.shared, x, y, s_);
        } else {
          MoERouting r;
          r.router_logits = {l.logits_dev->p, DType::kF32, p.m, p.moe.experts};
          s = b.run_moe(p, *slot.shared, x, r, y, s_);
        }
        break;
      }
      case 2: {  // another layer's prepared weights (or, with one layer, M changes nothing)
        const Slot* other = nullptr;
        for (const Slot& o : slots_)
          if (o.b == slot.b && o.l != slot.l && o.l->p.op == p.op) other = &o;
        if (other == nullptr) other = &slot;
        if (other == &slot) {
          want = {StatusCode::kOk};
          s = Status::Ok();
          break;
        }
        s = l.run(b, *other->shared, y_.p, s_);
        break;
      }
      case 3: {  // another backend's prepared weights of the same layer
        const Slot* other = nullptr;
        for (const Slot& o : slots_)
          if (o.b != slot.b && o.l == slot.l) other = &o;
        if (other == nullptr) {
          want = {StatusCode::kOk};
          s = Status::Ok();
          break;
        }
        s = l.run(b, *other->shared, y_.p, s_);
        break;
      }
      case 4: {  // K not a multiple of 32 (refused by the entry; locked in case it is not)
        std::unique_lock<std::shared_mutex> lock(st_.capture_mu);
        Problem q = p;
        q.k += 1;
        LinearWeights lw;
        lw.w = l.p.op == Op::kLinear ? l.w.view : MXWeightView{};
        lw.w.k = q.k;
        if (q.op == Op::kLinear) {
          auto r = b.prepare_linear(q, lw);
          s = r.ok() ? Status(StatusCode::kInternal, "prepared") : r.status();
        } else {
          MoEWeights mw;
          mw.w13 = l.w13.view;
          mw.w2 = l.w2.view;
          auto r = b.prepare_moe(q, mw);
          s = r.ok() ? Status(StatusCode::kInternal, "prepared") : r.status();
        }
        want = {StatusCode::kInvalidArgument, StatusCode::kUnimplemented};
        break;
      }
      default: {  // x in F32 instead of the activation dtype
        const DenseView x{l.x_dev->p, DType::kF32, p.m, xcols};
        const DenseMutView y{y_.p, p.out, p.m, p.n};
        if (p.op == Op::kLinear) {
          s = b.run_linear(p, *slot.shared, x, y, s_);
        } else {
          MoERouting r;
          r.router_logits = {l.logits_dev->p, DType::kF32, p.m, p.moe.experts};
          s = b.run_moe(p, *slot.shared, x, r, y, s_);
        }
        break;
      }
    }
    if (want.front() == StatusCode::kOk) return;  // nothing to misuse for this slot
    st_.bad_calls.fetch_add(1);
    st_.errors_expected.fetch_add(1);
    const std::string tag = who(slot) + " bad call " + std::to_string(kind) + ": ";
    if (s.ok()) return st_.fail(tag + "accepted");
    if (std::find(want.begin(), want.end(), s.code()) == want.end())
      return st_.fail(tag + "wrong code: " + s.to_string());
    if (s.message().find(std::string(b.name())) == std::string::npos)
      return st_.fail(tag + "the error does not name the backend: " + s.to_string());
    cudaMemcpyAsync(host_.data(), y_.p, yb, cudaMemcpyDeviceToHost, s_);
    cudaStreamSynchronize(s_);
    if (!std::all_of(host_.begin(), host_.begin() + long(yb), [](uint8_t v) { return v == kFill; }))
      return st_.fail(tag + "y was written");
    st_.errors_seen.fetch_add(1);
  }

  int id_;
  const std::vector<Slot>& slots_;
  Stats& st_;
  std::mt19937 rng_;
  cudaStream_t s_ = nullptr;
  DevBytes y_;
  std::vector<uint8_t> host_;
};

int stress_main() {
  int devs = 0;
  if (cudaGetDeviceCount(&devs) != cudaSuccess || devs == 0) {
    (void)cudaGetLastError();
    std::printf("SKIPPED: no usable CUDA device\n");
    return 0;
  }
  const long seconds = env_long("MXQ_STRESS_SECONDS", 120);
  const int threads = int(env_long("MXQ_STRESS_THREADS", 6));
  const uint32_t seed = uint32_t(env_long("MXQ_STRESS_SEED", 1));
  std::string skipped;
  const std::vector<const Backend*> bs = faulttest::cuda_backends_here(&skipped);
  if (!skipped.empty()) std::printf("not run: %s\n", skipped.c_str());
  if (bs.empty()) {
    std::printf("SKIPPED: no CUDA backend runs on this device\n");
    return 0;
  }
  const MemLevel start0 = mem_level();

  std::vector<std::unique_ptr<Layer>> layers;
  for (const LayerSpec& s : stress_specs()) layers.push_back(std::make_unique<Layer>(s));
  std::vector<Slot> slots;
  size_t ymax = 0;
  int bad = 0;
  for (const Backend* b : bs) {
    for (const auto& l : layers) {
      if (const Verdict v = b->check_problem(l->p); !v) {
        std::printf("not run: %s %s: %s\n", std::string(b->name()).c_str(), l->what().c_str(),
                    v.reason.c_str());
        continue;
      }
      Slot s;
      s.b = b;
      s.l = l.get();
      s.what = l->p.to_string();
      auto w = l->prepare(*b);
      if (!w.ok()) {
        std::printf("FAIL: %s %s prepare: %s\n", std::string(b->name()).c_str(), s.what.c_str(),
                    w.status().to_string().c_str());
        ++bad;
        continue;
      }
      s.shared = std::move(w).value();
      // The serial reference: eager twice (deterministic), then a serial graph replay.
      DevBytes y(l->y_bytes());
      std::vector<uint8_t> again(l->y_bytes());
      s.ref.resize(l->y_bytes());
      for (int rep = 0; rep < 3; ++rep) {
        cudaMemset(y.p, kFill, y.n);
        Status st;
        if (rep < 2) {
          st = l->run(*b, *s.shared, y.p);
        } else {
          cudaStream_t cs;
          cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking);
          cudaGraph_t g = nullptr;
          cudaGraphExec_t ge = nullptr;
          cudaStreamBeginCapture(cs, cudaStreamCaptureModeThreadLocal);
          st = l->run(*b, *s.shared, y.p, cs);
          cudaStreamEndCapture(cs, &g);
          if (st.ok() && g && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess) {
            cudaGraphLaunch(ge, cs);
            cudaStreamSynchronize(cs);
            cudaGraphExecDestroy(ge);
          } else if (st.ok()) {
            st = Status(StatusCode::kInternal, "serial graph capture failed");
          }
          if (g) cudaGraphDestroy(g);
          cudaStreamDestroy(cs);
        }
        const cudaError_t e = cudaDeviceSynchronize();
        if (!st.ok() || e != cudaSuccess) {
          std::printf("FAIL: %s %s serial run %d: %s / %s\n", std::string(b->name()).c_str(),
                      s.what.c_str(), rep, st.to_string().c_str(), cudaGetErrorName(e));
          ++bad;
          break;
        }
        cudaMemcpy(rep == 0 ? s.ref.data() : again.data(), y.p, y.n, cudaMemcpyDeviceToHost);
        if (rep > 0 && again != s.ref) {
          std::printf("FAIL: %s %s: serial %s differs from the first serial run\n",
                      std::string(b->name()).c_str(), s.what.c_str(),
                      rep == 1 ? "eager run" : "graph replay");
          ++bad;
        }
      }
      ymax = std::max(ymax, l->y_bytes());
      slots.push_back(std::move(s));
    }
  }
  if (bad || slots.empty()) {
    std::printf("FAILED before the threads started (%d failure(s), %zu layers)\n", bad,
                slots.size());
    return 1;
  }
  std::string names;
  for (const Backend* b : bs) names += (names.empty() ? "" : ", ") + std::string(b->name());

  Stats st;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int t = 0; t < threads; ++t)
    workers.push_back(std::make_unique<Worker>(t, slots, st, seed * 7919u + uint32_t(t), ymax));
  const MemLevel start = mem_level();
  std::printf("stress: %ld s, %d threads with a stream each, backends %s, %zu layer x backend "
              "slots; mxq device allocations %lld (%lld bytes), %zu bytes free\n",
              seconds, threads, names.c_str(), slots.size(), (long long)start.mxq.count,
              (long long)start.mxq.bytes, start.free_bytes);
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + std::chrono::seconds(seconds);
  std::vector<std::thread> ts;
  for (auto& w : workers) ts.emplace_back([&w, until] { w->loop(until); });
  for (auto& t : ts) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const MemLevel end = mem_level();
  workers.clear();
  const bool mem_ok = end.mxq.count == start.mxq.count && end.mxq.bytes == start.mxq.bytes &&
                      end.free_bytes == start.free_bytes;
  slots.clear();
  layers.clear();
  const MemLevel final_level = mem_level();

  std::printf("elapsed %.1f s\n", elapsed);
  std::printf("calls: %ld runs (%ld of freshly prepared weights, prepared and freed), %ld graph "
              "captures with %ld replays, %ld bad calls\n",
              st.runs.load(), st.prepares.load(), st.graphs.load(), st.replays.load(),
              st.bad_calls.load());
  std::printf("errors: expected %ld, seen as expected %ld; outputs differing from the serial "
              "runs %ld; failures %ld\n",
              st.errors_expected.load(), st.errors_seen.load(), st.mismatches.load(),
              st.failures.load());
  std::printf("device memory: mxq allocations %lld -> %lld (%lld -> %lld bytes), free bytes "
              "%zu -> %zu%s\n",
              (long long)start.mxq.count, (long long)end.mxq.count, (long long)start.mxq.bytes,
              (long long)end.mxq.bytes, start.free_bytes, end.free_bytes,
              mem_ok ? " (back to the start)" : " (NOT back to the start)");
  std::printf("after freeing the layers: mxq allocations %lld (%lld bytes; before them %lld), "
              "free bytes %zu (before them %zu)\n",
              (long long)final_level.mxq.count, (long long)final_level.mxq.bytes,
              (long long)start0.mxq.count, final_level.free_bytes, start0.free_bytes);
  for (const auto& f : st.first_failures) std::printf("FAIL: %s\n", f.c_str());
  const bool ok = st.failures.load() == 0 && mem_ok && st.errors_seen == st.errors_expected &&
                  final_level.mxq.count == start0.mxq.count && st.runs.load() > 0;
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace mxq

int main() { return mxq::stress_main(); }
