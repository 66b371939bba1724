// Decode-shaped GEMV/GEMM throughput of the `cpu` backend against the machine's memory bandwidth
// and OpenBLAS, all measured in this one process.
//
//   bandwidth/read/streams:<s>/threads:<n>
//                                    AVX2 sum over a 1 GiB buffer (bytes read / s), each thread
//                                    reading its part as s interleaved sequential streams: the
//                                    ceiling for a kernel that streams its weights once (the
//                                    8-stream number is the machine's; 1 stream per core is
//                                    what the L2 prefetcher sustains for a single stream).
//   bandwidth/read/streams:8/threads:<all>/again
//                                    the same reading once more after every other benchmark.
//   bandwidth/memcpy                 1 GiB memcpy (bytes read + written / s), for reference.
//   gemv/<format>/M:<m>/N:<n>/K:<k>/<dram|llc>/threads:<all|1>
//                                    (shapes and M: tests/cases/cases.json, sets.gemv_bench)
//                                    mxq's cpu backend, run_linear with BF16 x and BF16 y, from
//                                    prepare'd weights. `dram` rotates through enough distinct
//                                    weight matrices (>= 1 GiB in all) that every call streams
//                                    its weights from DRAM, not from the 105 MiB LLC of the
//                                    2-core CI VM; `llc` reuses one matrix (cache-resident).
//   openblas/sgemv|sgemm/M:<m>/N:<n>/K:<k>/dram
//                                    the same shape in FP32 through OpenBLAS (cblas_sgemv for
//                                    M = 1, cblas_sgemm otherwise), weights rotated the same way.
//                                    Debian's OpenBLAS 0.3.21 is built without BFLOAT16, so
//                                    cblas_sbgemv/sbgemm are not available to compare with.
// bytes_per_second counts weight bytes only (MX: packed elements + E8M0 scales; OpenBLAS: 4 B
// per element), so every row reads as "weight streaming rate"; `elems_per_second` is weight
// elements per second, comparable across formats. Wall-clock time (both libraries start
// threads). MX weights are random bytes with realistic scales (codes 118..126; E4M3 NaN codes
// avoided so no row takes the float64 fallback): the kernels' speed does not depend on values.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "provenance.h"
#include "case_list.h"
#include "cpu/fast/cpu_backend.h"
#include "mxq/numerics.h"

namespace {

using mxq::DType;
using mxq::ElemType;

constexpr int64_t kRotateBytes = int64_t(1) << 30;  // weights touched per rotation: >> LLC

// ---- bandwidth ------------------------------------------------------------------------------

struct BigBuffer {
  std::vector<float> a, b;
  BigBuffer() : a(size_t(kRotateBytes / 4), 1.0f), b(size_t(kRotateBytes / 4), 0.0f) {}
};
BigBuffer& big() {
  static BigBuffer buf;
  return buf;
}

// Sums n floats read as `streams` interleaved sequential streams (one per sub-range): one
// stream per core is limited by the L2 prefetcher (~10 GB/s here); several streams per core
// (as OpenBLAS's sgemv reads several rows at once) reach the memory system's real limit.
template <int kStreams>
__attribute__((target("avx2"))) float read_sum(const float* p, int64_t n) {
  __m256 a[kStreams][2];
  for (auto& s : a) s[0] = s[1] = _mm256_setzero_ps();
  const int64_t len = n / kStreams;
  for (int64_t i = 0; i < len; i += 16) {
    for (int s = 0; s < kStreams; ++s) {
      a[s][0] = _mm256_add_ps(a[s][0], _mm256_loadu_ps(p + s * len + i));
      a[s][1] = _mm256_add_ps(a[s][1], _mm256_loadu_ps(p + s * len + i + 8));
    }
  }
  __m256 t = _mm256_setzero_ps();
  for (auto& s : a) t = _mm256_add_ps(t, _mm256_add_ps(s[0], s[1]));
  alignas(32) float v[8];
  _mm256_store_ps(v, t);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}

template <int kStreams>
void BM_Read(benchmark::State& state, int threads) {
  const float* p = big().a.data();
  const int64_t n = kRotateBytes / 4, chunk = n / threads;
  for (auto _ : state) {
    std::vector<float> sums(static_cast<size_t>(threads));
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t)
      pool.emplace_back([&, t] { sums[size_t(t)] = read_sum<kStreams>(p + t * chunk, chunk); });
    sums[0] = read_sum<kStreams>(p, chunk);
    for (auto& th : pool) th.join();
    benchmark::DoNotOptimize(sums.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRotateBytes);
}

void BM_Memcpy(benchmark::State& state) {
  for (auto _ : state) {
    std::memcpy(big().b.data(), big().a.data(), size_t(kRotateBytes));
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * 2 * kRotateBytes);
}

// ---- mxq cpu backend ---------------------------------------------------------------------------

struct MXSet {
  std::vector<std::vector<uint8_t>> packed, scales;
  int64_t bytes_each = 0;
};

uint64_t xorshift(uint64_t& st) {
  st ^= st << 13;
  st ^= st >> 7;
  st ^= st << 17;
  return st;
}

// `count` random [n, k] MX matrices. The last set is kept: consecutive benchmarks of one shape
// (M = 1, 4, 16) and Google Benchmark's repeated calls share it.
const MXSet& mx_set(ElemType t, int64_t n, int64_t k, int count) {
  static std::unique_ptr<MXSet> last;
  static std::string last_key;
  const std::string key = std::to_string(int(t)) + "/" + std::to_string(n) + "/" +
                          std::to_string(k) + "/" + std::to_string(count);
  if (last && key == last_key) return *last;
  last.reset();  // free the previous set before building the next
  auto s = std::make_unique<MXSet>();
  uint64_t st = 0x9E3779B97F4A7C15ull ^ uint64_t(int(t) * 977 + n);
  for (int i = 0; i < count; ++i) {
    std::vector<uint8_t> p(size_t(n * mxq::packed_bytes(t, k))), sc(size_t(n * k / 32));
    for (size_t j = 0; j + 8 <= p.size(); j += 8) {
      uint64_t v = xorshift(st);
      if (t == ElemType::kE4M3) v &= 0xBEBEBEBEBEBEBEBEull;  // no 0x7F/0xFF (NaN) codes
      std::memcpy(p.data() + j, &v, 8);
    }
    for (auto& b : sc) b = uint8_t(118 + xorshift(st) % 9);
    s->packed.push_back(std::move(p));
    s->scales.push_back(std::move(sc));
  }
  s->bytes_each = int64_t(s->packed[0].size() + s->scales[0].size());
  last = std::move(s);
  last_key = key;
  return *last;
}

std::vector<uint16_t> bf16_randn(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<uint16_t> v(static_cast<size_t>(n));
  for (auto& h : v) h = mxq::num::f32_to_bf16(nd(rng));
  return v;
}

void BM_MxGemv(benchmark::State& state, ElemType t, int64_t m, int64_t n, int64_t k, bool dram,
               int threads) {
  const int64_t one = n * mxq::packed_bytes(t, k) + n * k / 32;
  const int count = dram ? int((kRotateBytes + one - 1) / one) : 1;
  const MXSet& set = mx_set(t, n, k, count);
  mxq::cpu::fast::CpuBackendOptions opts;
  opts.threads = threads;
  const mxq::cpu::fast::CpuBackend backend(opts);
  const mxq::Problem p = mxq::Problem::linear(t, mxq::ActKey::kBF16, m, n, k);
  std::vector<std::unique_ptr<mxq::PreparedWeights>> prepared;
  for (int i = 0; i < count; ++i) {
    mxq::LinearWeights w;
    w.w = {t, 1, n, k, set.packed[size_t(i)].data(), set.scales[size_t(i)].data()};
    prepared.push_back(std::move(backend.prepare_linear(p, w).value()));
  }
  const std::vector<uint16_t> x = bf16_randn(m * k, 1);
  std::vector<uint16_t> y(size_t(m * n));
  int i = 0;
  for (auto _ : state) {
    const mxq::Status s = backend.run_linear(p, *prepared[size_t(i)], {x.data(), DType::kBF16, m, k},
                                             {y.data(), DType::kBF16, m, n});
    if (!s.ok()) state.SkipWithError(s.to_string().c_str());
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % count;
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * set.bytes_each);
  state.counters["elems_per_second"] =
      benchmark::Counter(double(state.iterations()) * double(n * k), benchmark::Counter::kIsRate);
  state.counters["matrices"] = count;
}

// ---- OpenBLAS FP32 ------------------------------------------------------------------------------

void BM_OpenBlas(benchmark::State& state, int64_t m, int64_t n, int64_t k) {
  const int64_t one = n * k * 4;
  const int count = int((kRotateBytes + one - 1) / one);
  static std::vector<std::vector<float>> ws;  // kept across calls of one shape, as mx_set
  static int64_t ws_elems = 0;
  if (ws_elems != n * k) {
    ws.clear();
    uint64_t st = 12345;
    for (int i = 0; i < count; ++i) {
      std::vector<float> w(size_t(n * k));
      for (auto& v : w) v = float(int64_t(xorshift(st) % 2001) - 1000) * 1e-3f;
      ws.push_back(std::move(w));
    }
    ws_elems = n * k;
  }
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> x(size_t(m * k)), y(size_t(m * n));
  for (auto& v : x) v = nd(rng);
  int i = 0;
  for (auto _ : state) {
    const float* w = ws[size_t(i)].data();
    if (m == 1) {
      // y[n] = W[n, k] . x[k]
      cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), 1.0f, w, blasint(k),
                  x.data(), 1, 0.0f, y.data(), 1);
    } else {
      // y[m, n] = x[m, k] . W[n, k]^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(m), blasint(n), blasint(k),
                  1.0f, x.data(), blasint(k), w, blasint(k), 0.0f, y.data(), blasint(n));
    }
    benchmark::DoNotOptimize(y.data());
    i = (i + 1) % count;
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * one);
  state.counters["elems_per_second"] =
      benchmark::Counter(double(state.iterations()) * double(n * k), benchmark::Counter::kIsRate);
  state.counters["matrices"] = count;
  state.counters["openblas_threads"] = openblas_get_num_threads();
}

void register_all() {
  const int hw = int(std::thread::hardware_concurrency());
  for (int threads : {1, hw}) {
    const std::string t = "/threads:" + std::to_string(threads);
    benchmark::RegisterBenchmark(("bandwidth/read/streams:1" + t).c_str(), BM_Read<1>, threads)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("bandwidth/read/streams:8" + t).c_str(), BM_Read<8>, threads)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark("bandwidth/memcpy", BM_Memcpy)->UseRealTime();

  // Shapes and M from tests/cases/cases.json (sets.gemv_bench), the one case list.
  const mxq::cases::CaseList& list = mxq::cases::case_list();
  auto llc = [&](const mxq::cases::Shape& s) {
    for (const auto& l : list.gemv_llc_shapes)
      if (l.n == s.n && l.k == s.k) return true;
    return false;
  };
  for (ElemType t : {ElemType::kE2M1, ElemType::kE4M3}) {
    for (const mxq::cases::Shape& s : list.gemv_bench.shapes) {
      for (bool dram : {true, false}) {  // consecutive benchmarks share one weight set
        for (int64_t m : list.gemv_bench.ms) {
          if (!dram && !llc(s)) continue;  // the LLC case: one 4096^2 matrix is enough
          for (int threads : {0, 1}) {
            if (threads == 1 && (m != 1 || !dram)) continue;  // scaling check at decode only
            const std::string name = std::string("gemv/") + mxq::mx_format_name(t) + "/M:" +
                                     std::to_string(m) + "/N:" + std::to_string(s.n) + "/K:" +
                                     std::to_string(s.k) + (dram ? "/dram" : "/llc") +
                                     "/threads:" + (threads == 0 ? "all" : "1");
            benchmark::RegisterBenchmark(name.c_str(), BM_MxGemv, t, m, s.n, s.k, dram, threads)
                ->UseRealTime();
          }
        }
      }
    }
  }
  for (const mxq::cases::Shape& s : list.gemv_bench.shapes)
    for (int64_t m : list.gemv_bench.ms) {
      const std::string name = std::string("openblas/") + (m == 1 ? "sgemv" : "sgemm") + "/M:" +
                               std::to_string(m) + "/N:" + std::to_string(s.n) + "/K:" +
                               std::to_string(s.k) + "/dram";
      benchmark::RegisterBenchmark(name.c_str(), BM_OpenBlas, m, s.n, s.k)->UseRealTime();
    }
  // The machine's read bandwidth again at the end of the run: on the shared VM it drifts by
  // 10-30% within minutes, and the report divides by the higher of the two readings.
  const std::string t = "/threads:" + std::to_string(hw);
  benchmark::RegisterBenchmark(("bandwidth/read/streams:8" + t + "/again").c_str(), BM_Read<8>, hw)
      ->UseRealTime();
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("mxq_commit", mxq::bench::commit());
  benchmark::AddCustomContext("mxq_binary_sha256", mxq::bench::binary_sha256());
  benchmark::AddCustomContext("mxq_cpu_isa", mxq::cpu::fast::isa_name(mxq::cpu::fast::best_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
