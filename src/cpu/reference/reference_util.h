// Internals of cpu-reference shared by the linear and MoE files: exact float64 weight rows,
// dot products, view checks with messages that say expected vs got.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/problem.h"

namespace mxq::cpu::ref {

inline int64_t round_up_32(int64_t k) { return (k + kBlockSize - 1) / kBlockSize * kBlockSize; }

std::string shape_str(int64_t rows, int64_t cols);

// Row r of matrix b of w, dequantized exactly into out[0, w.k): element * 2^(scale - 127) in
// float64 (NaN for a 0xFF scale). `codes` is scratch.
void decode_row(const MXWeightView& w, int64_t b, int64_t r, std::vector<double>& out,
                std::vector<uint8_t>& codes);

// sum_{i<n} double(x[i]) * w[i], i ascending.
double dot(const float* x, const double* w, int64_t n);

// Element i of an optional bias view, 0 when it has no data.
double bias_at(const DenseView& b, int64_t i);

// `name` must be a canonical MX weight of p.weight with [batch, n, k] logical shape
// (k = round_up_32 of the problem's dimension).
Status check_mx(const char* name, const MXWeightView& w, const Problem& p, int64_t batch,
                int64_t n, int64_t k);
// A bias [rows, cols] of F32/BF16/F16 with data.
Status check_bias(const char* name, const DenseView& b, int64_t rows, int64_t cols);
// x [rows, cols] in `dtype`.
Status check_in(const char* name, const DenseView& v, DType dtype, int64_t rows, int64_t cols);
Status check_out(const char* name, const DenseMutView& v, DType dtype, int64_t rows,
                 int64_t cols);
// The backend's can_implement as a Status.
Status check_problem(const Problem& p, Op op);

}  // namespace mxq::cpu::ref
