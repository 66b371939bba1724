// GPU quantize kernels (src/cuda/quant) against measured device-to-device copy bandwidth.
//
//   mxq_bench_cuda_quant [--json FILE] [--md FILE] [--reps N] [--quick]
//
// For each case: random inputs (never zeros), outputs poisoned, a spot check of the first rows
// against the CPU core (bit-exact), then `reps` timed launches (CUDA events around each launch),
// median reported. GB/s counts bytes read + bytes written (input, packed elements, scales), the
// same way as the copy: cudaMemcpyAsync D2D of 1 GiB counts 2 GiB moved. Every tensor is larger
// than L2, so each launch streams from HBM.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "provenance.h"
#include "cuda/quant/quantize.h"
#include "cuda/quant/silu.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"

namespace {

using mxq::DType;
using mxq::ElemType;

#define CK(expr)                                                                         \
  do {                                                                                   \
    const cudaError_t e_ = (expr);                                                       \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

void must(const mxq::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}

// Activation-like values: roughly normal with a heavy tail, from a counter hash.
__global__ void fill_kernel(void* out, DType d, size_t n, uint32_t seed, float scale) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 0x9E3779B1u ^ seed ^ uint32_t(i >> 32) * 0x85EBCA6Bu;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    h *= 0x297A2D39u;
    h ^= h >> 15;
    // sum of two uniforms (triangular), times a per-32-block magnitude for MX-like structure
    const float u1 = float(h & 0xFFFF) / 65536.0f, u2 = float(h >> 16) / 65536.0f;
    const uint32_t b = uint32_t(i / 32) * 0x27D4EB2Fu ^ seed;
    const float mag = scale * float(1u << ((b >> 7) % 6));
    const float v = (u1 + u2 - 1.0f) * mag;
    if (d == DType::kF32) static_cast<float*>(out)[i] = v;
    else if (d == DType::kBF16) static_cast<uint16_t*>(out)[i] = mxq::num::f32_to_bf16(v);
    else static_cast<uint16_t*>(out)[i] = mxq::num::f32_to_f16(v);
  }
}

struct Result {
  std::string name, op, format, rule, dtype, shape;
  double bytes = 0, median_us = 0, min_us = 0, gbps = 0, pct_copy = 0;
  bool spot_ok = true;
};

template <typename F>
std::vector<float> time_runs(F&& launch, int warmup, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) launch();
  CK(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    launch();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms;
}

double median(const std::vector<float>& v) { return v[v.size() / 2]; }

struct Bench {
  int reps = 100;
  int warmup = 10;
  double copy_gbps = 0;
  std::vector<Result> results;

  void finish(Result r, const std::vector<float>& ms) {
    r.median_us = median(ms) * 1e3;
    r.min_us = ms.front() * 1e3;
    r.gbps = r.bytes / (r.median_us * 1e-6) / 1e9;
    r.pct_copy = copy_gbps > 0 ? 100.0 * r.gbps / copy_gbps : 0;
    std::printf("  %-44s %9.1f us  %7.1f GB/s  %5.1f%% of copy  spot-check %s\n", r.name.c_str(),
                r.median_us, r.gbps, r.pct_copy, r.spot_ok ? "ok" : "FAILED");
    std::fflush(stdout);
    results.push_back(r);
  }

  void copy_bandwidth(size_t bytes) {
    void *src = nullptr, *dst = nullptr;
    CK(cudaMalloc(&src, bytes));
    CK(cudaMalloc(&dst, bytes));
    CK(cudaMemset(src, 1, bytes));
    const auto ms = time_runs(
        [&] { CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr)); }, warmup,
        reps);
    copy_gbps = 2.0 * double(bytes) / (median(ms) * 1e-3) / 1e9;
    Result r;
    r.name = "copy D2D " + std::to_string(bytes >> 20) + " MiB";
    r.op = "copy";
    r.bytes = 2.0 * double(bytes);
    finish(r, ms);
    CK(cudaFree(src));
    CK(cudaFree(dst));
  }

  // Compares the first `check_rows` rows of GPU output with the CPU core.
  static bool spot_check_quant(const void* d_in, DType d, int64_t k, const mxq::QuantOptions& o,
                               const uint8_t* d_packed, const uint8_t* d_scales,
                               int64_t check_rows) {
    const size_t n = size_t(check_rows * k), ib = n * size_t(mxq::dtype_bytes(d));
    std::vector<uint8_t> in(ib), gp(size_t(check_rows * mxq::packed_bytes(o.elem, k))),
        gs(size_t(check_rows * k / 32)), wp(gp.size()), ws(gs.size());
    CK(cudaMemcpy(in.data(), d_in, ib, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gp.data(), d_packed, gp.size(), cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gs.data(), d_scales, gs.size(), cudaMemcpyDeviceToHost));
    must(mxq::quantize(in.data(), d, check_rows, k, o, wp.data(), ws.data()), "cpu quantize");
    return gp == wp && gs == ws;
  }

  void quantize_case(DType d, int64_t rows, int64_t k, ElemType t, mxq::ScaleRule rule,
                     mxq::Rounding rnd = mxq::Rounding::kRne) {
    mxq::QuantOptions o;
    o.elem = t;
    o.scale_rule = rule;
    o.rounding = rnd;
    const size_t n = size_t(rows * k), ib = n * size_t(mxq::dtype_bytes(d));
    const size_t pb = size_t(rows * mxq::packed_bytes(t, k)), sb = size_t(rows * k / 32);
    void* in = nullptr;
    uint8_t *packed = nullptr, *scales = nullptr;
    CK(cudaMalloc(&in, ib));
    CK(cudaMalloc(&packed, pb));
    CK(cudaMalloc(&scales, sb));
    fill_kernel<<<4096, 256>>>(in, d, n, 17u, 3.0f);
    CK(cudaMemset(packed, 0xCD, pb));
    CK(cudaMemset(scales, 0xCD, sb));
    must(mxq::cuda::quantize(in, d, rows, k, o, packed, scales, nullptr), "cuda quantize");
    CK(cudaDeviceSynchronize());
    Result r;
    r.spot_ok = spot_check_quant(in, d, k, o, packed, scales, 16);
    r.op = "quantize";
    r.format = mxq::mx_format_name(t);
    r.rule = std::string(mxq::scale_rule_name(rule)) + "/" + mxq::rounding_name(rnd);
    r.dtype = mxq::dtype_name(d);
    r.shape = std::to_string(rows) + "x" + std::to_string(k);
    r.name = "quantize " + r.dtype + " " + r.shape + " -> " + r.format + " " + r.rule;
    r.bytes = double(ib + pb + sb);
    const auto ms = time_runs(
        [&] { must(mxq::cuda::quantize(in, d, rows, k, o, packed, scales, nullptr), "quantize"); },
        warmup, reps);
    finish(r, ms);
    CK(cudaFree(in));
    CK(cudaFree(packed));
    CK(cudaFree(scales));
  }

  void silu_case(DType d, int64_t rows, int64_t inter, ElemType t, mxq::cuda::GateUpLayout layout) {
    if (!mxq::cuda::silu_and_mul_quantize_built()) {
      std::printf("skipped silu_and_mul_quantize %s: fused kernels not built "
                  "(-DMXQ_CUDA_SILU_QUANT=ON)\n", mxq::mx_format_name(t));
      return;
    }
    mxq::QuantOptions o;
    o.elem = t;
    const size_t n = size_t(rows * 2 * inter), ib = n * size_t(mxq::dtype_bytes(d));
    const size_t pb = size_t(rows * mxq::packed_bytes(t, inter)), sb = size_t(rows * inter / 32);
    void* in = nullptr;
    uint8_t *packed = nullptr, *scales = nullptr;
    CK(cudaMalloc(&in, ib));
    CK(cudaMalloc(&packed, pb));
    CK(cudaMalloc(&scales, sb));
    fill_kernel<<<4096, 256>>>(in, d, n, 23u, 2.0f);
    CK(cudaMemset(packed, 0xCD, pb));
    CK(cudaMemset(scales, 0xCD, sb));
    auto run = [&] {
      must(mxq::cuda::silu_and_mul_quantize(in, d, rows, inter, o, packed, scales, nullptr, layout),
           "silu_and_mul_quantize");
    };
    run();
    CK(cudaDeviceSynchronize());
    // Spot check: CPU composition on the first 16 rows.
    Result r;
    {
      const int64_t cr = 16;
      const size_t cn = size_t(cr * 2 * inter);
      std::vector<uint8_t> gu(cn * size_t(mxq::dtype_bytes(d)));
      CK(cudaMemcpy(gu.data(), in, gu.size(), cudaMemcpyDeviceToHost));
      std::vector<uint8_t> h(size_t(cr * inter) * size_t(mxq::dtype_bytes(d)));
      const bool il = layout == mxq::cuda::GateUpLayout::kInterleaved;
      for (int64_t row = 0; row < cr; ++row)
        for (int64_t j = 0; j < inter; ++j) {
          const int64_t gi = row * 2 * inter + (il ? 2 * j : j);
          const int64_t ui = row * 2 * inter + (il ? 2 * j + 1 : inter + j);
          const float v = mxq::cuda::act::silu_mul_f32(mxq::num::load_dense(gu.data(), d, gi),
                                                       mxq::num::load_dense(gu.data(), d, ui));
          const size_t o2 = size_t(row * inter + j);
          if (d == DType::kF32) {
            std::memcpy(&h[o2 * 4], &v, 4);
          } else {
            const uint16_t b = d == DType::kBF16 ? mxq::num::f32_to_bf16(v) : mxq::num::f32_to_f16(v);
            std::memcpy(&h[o2 * 2], &b, 2);
          }
        }
      std::vector<uint8_t> wp(size_t(cr * mxq::packed_bytes(t, inter))), ws(size_t(cr * inter / 32));
      std::vector<uint8_t> gp(wp.size()), gs(ws.size());
      must(mxq::quantize(h.data(), d, cr, inter, o, wp.data(), ws.data()), "cpu quantize");
      CK(cudaMemcpy(gp.data(), packed, gp.size(), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(gs.data(), scales, gs.size(), cudaMemcpyDeviceToHost));
      r.spot_ok = gp == wp && gs == ws;
    }
    r.op = "silu_and_mul_quantize";
    r.format = mxq::mx_format_name(t);
    r.rule = std::string("floor/rne/") + (layout == mxq::cuda::GateUpLayout::kInterleaved ? "interleaved" : "chunked");
    r.dtype = mxq::dtype_name(d);
    r.shape = std::to_string(rows) + "x2x" + std::to_string(inter);
    r.name = "silu-mul-quant " + r.dtype + " " + r.shape + " -> " + r.format + " " +
             (layout == mxq::cuda::GateUpLayout::kInterleaved ? "interleaved" : "chunked");
    r.bytes = double(ib + pb + sb);
    const auto ms = time_runs(run, warmup, reps);
    finish(r, ms);
    CK(cudaFree(in));
    CK(cudaFree(packed));
    CK(cudaFree(scales));
  }

  void dequantize_case(ElemType t, int64_t rows, int64_t k, DType d) {
    mxq::QuantOptions o;
    o.elem = t;
    const size_t n = size_t(rows * k), ib = n * 2;
    const size_t pb = size_t(rows * mxq::packed_bytes(t, k)), sb = size_t(rows * k / 32);
    const size_t ob = n * size_t(mxq::dtype_bytes(d));
    void *in = nullptr, *out = nullptr;
    uint8_t *packed = nullptr, *scales = nullptr;
    CK(cudaMalloc(&in, ib));
    CK(cudaMalloc(&packed, pb));
    CK(cudaMalloc(&scales, sb));
    CK(cudaMalloc(&out, ob));
    fill_kernel<<<4096, 256>>>(in, DType::kBF16, n, 29u, 3.0f);
    must(mxq::cuda::quantize(in, DType::kBF16, rows, k, o, packed, scales, nullptr), "quantize");
    CK(cudaMemset(out, 0xCD, ob));
    auto run = [&] {
      must(mxq::cuda::dequantize(packed, scales, t, rows, k, d, out, nullptr), "dequantize");
    };
    run();
    CK(cudaDeviceSynchronize());
    Result r;
    {
      const int64_t cr = 16;
      std::vector<uint8_t> p(size_t(cr * mxq::packed_bytes(t, k))), s(size_t(cr * k / 32));
      std::vector<uint8_t> got(size_t(cr * k) * size_t(mxq::dtype_bytes(d))), want(got.size());
      CK(cudaMemcpy(p.data(), packed, p.size(), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(s.data(), scales, s.size(), cudaMemcpyDeviceToHost));
      CK(cudaMemcpy(got.data(), out, got.size(), cudaMemcpyDeviceToHost));
      must(mxq::dequantize(p.data(), s.data(), t, cr, k, d, want.data(), 1), "cpu dequantize");
      r.spot_ok = got == want;
    }
    r.op = "dequantize";
    r.format = mxq::mx_format_name(t);
    r.dtype = mxq::dtype_name(d);
    r.shape = std::to_string(rows) + "x" + std::to_string(k);
    r.name = "dequantize " + r.format + " " + r.shape + " -> " + r.dtype;
    r.bytes = double(pb + sb + ob);
    const auto ms = time_runs(run, warmup, reps);
    finish(r, ms);
    CK(cudaFree(in));
    CK(cudaFree(out));
    CK(cudaFree(packed));
    CK(cudaFree(scales));
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string json_path, md_path;
  Bench b;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--md" && i + 1 < argc) md_path = argv[++i];
    else if (a == "--reps" && i + 1 < argc) b.reps = std::max(3, std::atoi(argv[++i]));
    else if (a == "--quick") quick = true;
    else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--md FILE] [--reps N] [--quick]\n", argv[0]);
      return 2;
    }
  }
  int dev = 0;
  CK(cudaGetDevice(&dev));
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, dev));
  int drv = 0, rt = 0;
  CK(cudaDriverGetVersion(&drv));
  CK(cudaRuntimeGetVersion(&rt));
  std::printf("device: %s, %d SMs, %.1f GiB, L2 %d MiB, driver %d, runtime %d; median of %d runs\n",
              prop.name, prop.multiProcessorCount, double(prop.totalGlobalMem) / (1 << 30),
              prop.l2CacheSize >> 20, drv, rt, b.reps);

  using mxq::ScaleRule;
  const int64_t big = quick ? 2048 : 8192;
  b.copy_bandwidth(size_t(1) << 30);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE4M3, ScaleRule::kFloor);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE2M1, ScaleRule::kFloor);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE4M3, ScaleRule::kRceil);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE2M1, ScaleRule::kRceil);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE5M2, ScaleRule::kFloor);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE4M3, ScaleRule::kFloor, mxq::Rounding::kHalfAway);
  b.quantize_case(DType::kBF16, big, big, ElemType::kE3M2, ScaleRule::kFloor);
  b.quantize_case(DType::kF32, big, big, ElemType::kE4M3, ScaleRule::kFloor);
  b.quantize_case(DType::kF16, big, big, ElemType::kE2M1, ScaleRule::kFloor);
  b.quantize_case(DType::kBF16, 2 * big, 7168, ElemType::kE4M3, ScaleRule::kFloor);
  b.quantize_case(DType::kBF16, 2 * big, 7168, ElemType::kE2M1, ScaleRule::kFloor);
  b.silu_case(DType::kBF16, big, big, ElemType::kE4M3, mxq::cuda::GateUpLayout::kChunked);
  b.silu_case(DType::kBF16, big, big, ElemType::kE2M1, mxq::cuda::GateUpLayout::kChunked);
  b.silu_case(DType::kBF16, big, big, ElemType::kE2M1, mxq::cuda::GateUpLayout::kInterleaved);
  b.silu_case(DType::kBF16, 2 * big, 7168, ElemType::kE4M3, mxq::cuda::GateUpLayout::kChunked);
  b.dequantize_case(ElemType::kE4M3, big, big, DType::kBF16);
  b.dequantize_case(ElemType::kE2M1, big, big, DType::kBF16);

  // Markdown table.
  std::string md = "| case | median us | min us | GB/s (read+write) | % of copy | spot check |\n"
                   "|---|---|---|---|---|---|\n";
  char line[512];
  for (const Result& r : b.results) {
    std::snprintf(line, sizeof line, "| %s | %.1f | %.1f | %.0f | %.1f | %s |\n", r.name.c_str(),
                  r.median_us, r.min_us, r.gbps, r.pct_copy, r.spot_ok ? "bit-exact" : "FAILED");
    md += line;
  }
  std::printf("\n%s", md.c_str());
  if (!md_path.empty()) {
    FILE* f = std::fopen(md_path.c_str(), "w");
    if (f) {
      std::fprintf(f, "device: %s (%d SMs), driver %d, runtime %d, median of %d runs\n\n%s",
                   prop.name, prop.multiProcessorCount, drv, rt, b.reps, md.c_str());
      std::fclose(f);
    }
  }
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"sms\": %d,\n  \"driver\": %d,\n  \"runtime\": %d,\n"
                    "  \"commit\": \"%s\",\n  \"binary_sha256\": \"%s\",\n"
                    "  \"reps\": %d,\n  \"copy_gbps\": %.1f,\n  \"results\": [\n",
                 prop.name, prop.multiProcessorCount, drv, rt, mxq::bench::commit().c_str(),
                 mxq::bench::binary_sha256().c_str(), b.reps, b.copy_gbps);
    for (size_t i = 0; i < b.results.size(); ++i) {
      const Result& r = b.results[i];
      std::fprintf(f,
                   "    {\"name\": \"%s\", \"op\": \"%s\", \"format\": \"%s\", \"rule\": \"%s\", "
                   "\"dtype\": \"%s\", \"shape\": \"%s\", \"bytes\": %.0f, \"median_us\": %.2f, "
                   "\"min_us\": %.2f, \"gbps\": %.1f, \"pct_of_copy\": %.1f, \"spot_check\": %s}%s\n",
                   r.name.c_str(), r.op.c_str(), r.format.c_str(), r.rule.c_str(), r.dtype.c_str(),
                   r.shape.c_str(), r.bytes, r.median_us, r.min_us, r.gbps, r.pct_copy,
                   r.spot_ok ? "true" : "false", i + 1 < b.results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  for (const Result& r : b.results)
    if (!r.spot_ok) return 1;
  return 0;
}
