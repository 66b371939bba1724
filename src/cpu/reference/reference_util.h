// Internals of cpu-reference shared by the linear and MoE files: exact float64 weight rows,
// dot products; the view checks (messages that say expected vs got) are the ground floor's
// (contract/weight_checks.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "contract/weight_checks.h"
#include "mxq/backend.h"
#include "mxq/problem.h"

namespace mxq::cpu::ref {

using contract::check_in;
using contract::check_out;
using contract::shape_str;

// Row r of matrix b of w, dequantized exactly into out[0, w.k): element * 2^(scale - 127) in
// float64 (NaN for a 0xFF scale). `codes` is scratch.
void decode_row(const MXWeightView& w, int64_t b, int64_t r, std::vector<double>& out,
                std::vector<uint8_t>& codes);

// sum_{i<n} double(x[i]) * w[i], i ascending.
double dot(const float* x, const double* w, int64_t n);

// Element i of an optional bias view, 0 when it has no data.
double bias_at(const DenseView& b, int64_t i);

// reference_linear / reference_moe on arguments already checked (by them, or by the backend
// entry Backend::run_*).
Status linear_checked(const Problem& p, const LinearWeights& w, const DenseView& x,
                      const DenseMutView& y);
Status moe_checked(const Problem& p, const MoEWeights& w, const DenseView& x,
                   const MoERouting& r, const DenseMutView& y);

}  // namespace mxq::cpu::ref
