// Uses the installed mxq through its public headers only: version, quantize / dequantize, the
// oracle, a linear layer on the backend it picks and on cpu-reference. Exit 0 only when every
// result is the exact expected value.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/device.h"
#include "mxq/formats.h"
#include "mxq/layers.h"
#include "mxq/model.h"
#include "mxq/numerics.h"
#include "mxq/packing.h"
#include "mxq/pipeline.h"
#include "mxq/problem.h"
#include "mxq/quantize.h"
#include "mxq/safetensors.h"
#include "mxq/select.h"
#include "mxq/status.h"
#include "mxq/version.h"
#include "mxq/views.h"

namespace {
int failures = 0;
void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}
}  // namespace

int main() {
  check(std::string(mxq::version()) == WANT_VERSION,
        std::string("mxq::version() ") + mxq::version() + " != package version " WANT_VERSION);

  // Two rows of 32 values exactly representable in E2M1 with scale 1 (amax 6 -> floor rule 2^0).
  const float vals[8] = {0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -1.0f};
  const int64_t n = 2, k = 32;
  std::vector<float> w(size_t(n * k));
  double row_sum[2] = {0, 0};
  for (int64_t r = 0; r < n; ++r)
    for (int64_t c = 0; c < k; ++c) {
      const float v = vals[(c + r) % 8] * (r == 1 ? -1.0f : 1.0f);
      w[size_t(r * k + c)] = v;
      row_sum[r] += v;
    }
  mxq::QuantOptions o;
  o.elem = mxq::ElemType::kE2M1;
  const mxq::MXMatrix q = mxq::quantize(w, n, k, o).value();
  const std::vector<float> back = mxq::dequantize(q).value();
  check(back == w, "quantize/dequantize round trip of exactly representable values");

  // y = x . W^T with x = ones (BF16): each output is its row's sum, exactly.
  const mxq::Problem p = mxq::Problem::linear(mxq::ElemType::kE2M1, mxq::ActKey::kBF16, 1, n, k);
  mxq::LinearWeights lw;
  lw.w = {mxq::ElemType::kE2M1, 1, n, k, q.packed.data(), q.scales.data()};
  const std::vector<uint16_t> x(size_t(k), mxq::num::f32_to_bf16(1.0f));
  mxq::SelectOptions so;
  so.warn = false;
  const mxq::Selection sel = mxq::select_backend(p, mxq::this_device(), so).value();
  std::printf("backends:");
  for (const mxq::Backend* b : mxq::backends()) std::printf(" %s", std::string(b->name()).c_str());
  std::printf("\nselected: %s (%s)\n", std::string(sel.backend->name()).c_str(), sel.how.c_str());
  for (const mxq::Backend* b : {sel.backend, mxq::find_backend("cpu-reference")}) {
    check(b != nullptr, "cpu-reference is registered");
    if (b == nullptr) continue;
    auto prepared = b->prepare_linear(p, lw).value();
    std::vector<uint16_t> y(size_t(n), 0);
    mxq::throw_if_error(b->run_linear(p, *prepared, {x.data(), mxq::DType::kBF16, 1, k},
                                      {y.data(), mxq::DType::kBF16, 1, n}));
    for (int64_t j = 0; j < n; ++j)
      check(double(mxq::num::bf16_to_f32(y[size_t(j)])) == row_sum[j],
            std::string(b->name()) + ": y[" + std::to_string(j) + "] = " +
                std::to_string(mxq::num::bf16_to_f32(y[size_t(j)])) + ", want " +
                std::to_string(row_sum[j]));
  }

  // A bad option is a clear error, not a crash.
  check(!mxq::parse_elem_type("mxfp5").ok(), "parse_elem_type(\"mxfp5\") is an error");
  if (failures == 0) std::printf("consumer ok (mxq %s)\n", mxq::version());
  return failures == 0 ? 0 : 1;
}
