// `mxq demo`: the numerics on an embedded sample, as the README's first command runs it.
//
// Part 1 quantizes the worked-example blocks of docs/numerics.md under every scale rule and
// prints scale codes and decoded values, which shows where producers' rules disagree.
// Part 2 quantizes a deterministic [64, 4096] sample matrix to every MX format and reports
// the round-trip error and the CPU quantize throughput.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "mxq/numerics.h"
#include "mxq/quantize.h"

namespace mxq::cli {
namespace {

struct SampleBlock {
  const char* what;
  ElemType elem;
  std::vector<float> values;  // the rest of the 32-element block is zero
};

std::vector<SampleBlock> sample_blocks() {
  return {
      {"rules disagree on amax 7", ElemType::kE2M1, {7.0f, 3.5f, 0.25f, 0.3f}},
      {"rules disagree on amax 6.5", ElemType::kE2M1, {6.5f, 0.3f, -0.75f}},
      {"amax just below 16 (float log2 trap)", ElemType::kE2M1,
       {num::f32_from_bits(0x417FFFFFu), 1.0f}},
      {"E4M3 above max normal", ElemType::kE4M3, {480.0f, 1.0f, 0x1p-10f}},
      {"E4M3 amax exactly 448", ElemType::kE4M3, {448.0f, -3.0f}},
      {"MXINT8 fixed point", ElemType::kInt8, {1.0f, -0.3f, 0.015625f}},
  };
}

std::string fmt_values(ElemType t, const uint8_t* codes, uint8_t scale, size_t n) {
  std::string s = "[";
  for (size_t i = 0; i < n; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%g", i ? ", " : "", double(num::dequantize_elem(t, codes[i], scale)));
    s += buf;
  }
  return s + "]";
}

int run_demo() {
  std::printf("mxq numerics demo (docs/numerics.md)\n\n");
  std::printf("1. Worked examples: one block under every scale rule (RNE elements)\n");
  for (const SampleBlock& b : sample_blocks()) {
    std::printf("\n  %s, %s, block starts [", b.what, mx_format_name(b.elem));
    for (size_t i = 0; i < b.values.size(); ++i)
      std::printf("%s%.9g", i ? ", " : "", double(b.values[i]));
    std::printf("]\n");
    uint32_t x[kBlockSize] = {};
    for (size_t i = 0; i < b.values.size(); ++i) x[i] = num::f32_bits(b.values[i]);
    for (ScaleRule r : kAllScaleRules) {
      uint8_t codes[kBlockSize];
      num::BlockRules rules;
      rules.scale_rule = r;
      const uint8_t s = num::quantize_block(b.elem, rules, x, kBlockSize, codes);
      std::printf("    %-18s scale %3u (2^%-4d) -> %s\n", scale_rule_name(r), unsigned(s),
                  int(s) - 127, fmt_values(b.elem, codes, s, b.values.size()).c_str());
    }
  }

  constexpr int64_t kRows = 64, kK = 4096;
  std::vector<float> w(size_t(kRows * kK));
  for (int64_t i = 0; i < kRows * kK; ++i) {  // smooth rows with outliers, like real weights
    const double t = double(i);
    w[size_t(i)] = float(0.02 * std::sin(t * 0.37) * std::cos(t * 0.0011) +
                         (i % 997 == 0 ? 0.5 : 0.0));
  }
  std::printf("\n2. Sample matrix [%lld, %lld] (deterministic), default options\n",
              (long long)kRows, (long long)kK);
  std::printf("  %-12s %10s %12s %14s %12s\n", "format", "bytes", "rel. RMSE", "max |err|",
              "quant MB/s");
  for (ElemType t : kAllElemTypes) {
    QuantOptions o;
    o.elem = t;
    const auto t0 = std::chrono::steady_clock::now();
    MXMatrix m = quantize(w, kRows, kK, o).value();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<float> back = dequantize(m).value();
    double se = 0, ss = 0, maxerr = 0;
    for (size_t i = 0; i < w.size(); ++i) {
      const double e = double(back[i]) - double(w[i]);
      se += e * e;
      ss += double(w[i]) * double(w[i]);
      maxerr = std::fmax(maxerr, std::fabs(e));
    }
    std::printf("  %-12s %10zu %12.5f %14.3g %12.0f\n", mx_format_name(t),
                m.packed.size() + m.scales.size(), std::sqrt(se / ss), maxerr,
                double(w.size()) * 4 / secs / 1e6);
  }
  return 0;
}

}  // namespace

void add_demo(CLI::App& app) {
  auto* demo = app.add_subcommand("demo", "Show the MX numerics on an embedded sample");
  demo->callback([] { exit_code() = run_demo(); });
}

}  // namespace mxq::cli
