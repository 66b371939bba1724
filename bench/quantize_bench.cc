// Throughput of the whole-tensor CPU paths: mxq::quantize and mxq::dequantize.
//
// One large [4096, 8192] tensor (128 MiB as FP32, 64 MiB as BF16) of LLM-weight-like values:
// Gaussian rows whose scales spread over several binades, with rare large outliers, so blocks
// get many different scale codes and elements hit every rounding path.
//
// Every benchmark reports bytes_processed as FP32-equivalent input bytes (elements * 4), so
// "bytes_per_second" reads as FP32 GB/s for every input/output dtype, plus an element rate.
// Timings are wall-clock (UseRealTime): the library spawns its own worker threads.
//
// Names: quantize/<format>/<scale rule>/<input dtype>/threads:<all|1>
//        dequantize/<format>/bf16/threads:<all|1>
// Filter with --benchmark_filter, e.g. --benchmark_filter='quantize/mxfp4/.*/f32'.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "provenance.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"

namespace {

constexpr int64_t kRows = 4096;
constexpr int64_t kK = 8192;
constexpr int64_t kElems = kRows * kK;

struct Data {
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
};

const Data& data() {
  static const Data d = [] {
    Data r;
    r.f32.resize(size_t(kElems));
    r.bf16.resize(size_t(kElems));
    std::mt19937_64 rng(20261122);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    for (int64_t row = 0; row < kRows; ++row) {
      // Per-row standard deviation 2^-10 .. 2^-2 (typical weight magnitudes).
      const float row_scale = std::exp2(-10.0f + 8.0f * unit(rng));
      float* x = r.f32.data() + row * kK;
      for (int64_t i = 0; i < kK; ++i) {
        float v = normal(rng) * row_scale;
        if (unit(rng) < 1e-3f) v *= 50.0f;  // outlier channels
        x[i] = v;
      }
    }
    for (int64_t i = 0; i < kElems; ++i) r.bf16[size_t(i)] = mxq::num::f32_to_bf16(r.f32[size_t(i)]);
    return r;
  }();
  return d;
}

void set_rates(benchmark::State& state) {
  const auto n = int64_t(state.iterations()) * kElems;
  state.SetBytesProcessed(n * int64_t(sizeof(float)));
  state.counters["elems_per_second"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsRate);
}

void BM_Quantize(benchmark::State& state, mxq::ElemType elem, mxq::ScaleRule rule,
                 mxq::DType dtype, int threads) {
  const Data& d = data();
  const void* in = dtype == mxq::DType::kF32 ? static_cast<const void*>(d.f32.data())
                                             : static_cast<const void*>(d.bf16.data());
  std::vector<uint8_t> packed(size_t(kRows * mxq::packed_bytes(elem, kK)));
  std::vector<uint8_t> scales(size_t(kRows * (kK / mxq::kBlockSize)));
  mxq::QuantOptions opts;
  opts.elem = elem;
  opts.scale_rule = rule;
  opts.threads = threads;
  for (auto _ : state) {
    const mxq::Status s =
        mxq::quantize(in, dtype, kRows, kK, opts, packed.data(), scales.data());
    if (!s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      return;
    }
    benchmark::DoNotOptimize(packed.data());
    benchmark::DoNotOptimize(scales.data());
    benchmark::ClobberMemory();
  }
  set_rates(state);
}

void BM_DequantizeBf16(benchmark::State& state, mxq::ElemType elem, int threads) {
  const Data& d = data();
  std::vector<uint8_t> packed(size_t(kRows * mxq::packed_bytes(elem, kK)));
  std::vector<uint8_t> scales(size_t(kRows * (kK / mxq::kBlockSize)));
  mxq::QuantOptions opts;
  opts.elem = elem;
  const mxq::Status qs =
      mxq::quantize(d.f32.data(), mxq::DType::kF32, kRows, kK, opts, packed.data(), scales.data());
  if (!qs.ok()) {
    state.SkipWithError(qs.to_string().c_str());
    return;
  }
  std::vector<uint16_t> out(static_cast<size_t>(kElems));
  for (auto _ : state) {
    const mxq::Status s = mxq::dequantize(packed.data(), scales.data(), elem, kRows, kK,
                                          mxq::DType::kBF16, out.data(), threads);
    if (!s.ok()) {
      state.SkipWithError(s.to_string().c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_rates(state);
}

const char* threads_name(int threads) { return threads == 0 ? "all" : "1"; }

void register_all() {
  const int thread_counts[] = {0, 1};  // 0: every hardware thread (the library default)
  const mxq::ScaleRule rules[] = {mxq::ScaleRule::kFloor, mxq::ScaleRule::kRceil};
  const mxq::DType dtypes[] = {mxq::DType::kF32, mxq::DType::kBF16};
  for (const mxq::ElemType elem : mxq::kAllElemTypes) {
    for (const mxq::DType dtype : dtypes) {
      for (const mxq::ScaleRule rule : rules) {
        for (const int threads : thread_counts) {
          const std::string name = std::string("quantize/") + mxq::mx_format_name(elem) + "/" +
                                   mxq::scale_rule_name(rule) + "/" + mxq::dtype_name(dtype) +
                                   "/threads:" + threads_name(threads);
          benchmark::RegisterBenchmark(name.c_str(), BM_Quantize, elem, rule, dtype, threads)
              ->Unit(benchmark::kMillisecond)
              ->UseRealTime();
        }
      }
    }
  }
  for (const mxq::ElemType elem : mxq::kAllElemTypes) {
    for (const int threads : thread_counts) {
      const std::string name = std::string("dequantize/") + mxq::mx_format_name(elem) +
                               "/bf16/threads:" + threads_name(threads);
      benchmark::RegisterBenchmark(name.c_str(), BM_DequantizeBf16, elem, threads)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all();
  benchmark::AddCustomContext("mxq_commit", mxq::bench::commit());
  benchmark::AddCustomContext("mxq_binary_sha256", mxq::bench::binary_sha256());
  benchmark::AddCustomContext("mxq_tensor", std::to_string(kRows) + "x" + std::to_string(kK) +
                                                " (" + std::to_string(kElems * 4 >> 20) +
                                                " MiB as f32)");
  benchmark::AddCustomContext("mxq_hardware_threads",
                              std::to_string(std::thread::hardware_concurrency()));
  benchmark::AddCustomContext("mxq_bytes_processed", "f32-equivalent: elements * 4");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
