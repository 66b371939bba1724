// Internal to src/cpu/fast: pieces shared by the linear (cpu_backend.cc) and MoE (cpu_moe.cc)
// halves of the cpu backend.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/fast/cpu_backend.h"
#include "cpu/fast/mx_gemv.h"

namespace mxq::cpu::fast::internal {

inline int64_t round_up_32(int64_t k) { return (k + kBlockSize - 1) / kBlockSize * kBlockSize; }

// Matrix b of a batched canonical weight view.
inline MXMatrixRef matrix(const MXWeightView& w, int64_t b) {
  const int64_t kb = w.k / kBlockSize;
  return {w.elem, w.n, w.k, w.packed + b * w.n * packed_bytes(w.elem, w.k),
          w.scales + b * w.n * kb};
}

// A weight view plus, when its K padding held Inf/NaN codes, the sanitized copy it points to.
struct OwnedWeight {
  MXWeightView view;
  std::vector<uint8_t> copy;  // empty: `view` is the caller's memory
};
// K = the problem's dimension, w.k = K rounded up to 32 (checked before).
OwnedWeight sanitize_padding(const MXWeightView& w, int64_t k_valid);

// Shape / dtype / presence checks with messages that say expected vs got.
Status check_mx(const char* name, const MXWeightView& w, const Problem& p, int64_t batch,
                int64_t n, int64_t k);
Status check_bias(const char* name, const DenseView& b, int64_t rows, int64_t cols);
Status check_dense(const char* name, const void* data, DType got_dtype, int64_t got_rows,
                   int64_t got_cols, DType dtype, int64_t rows, int64_t cols);
std::string shape_str(int64_t rows, int64_t cols);

// x [rows, k] under p.act -> FP32 [rows, kq] (columns k..kq zero).
Status quantize_activations(ActKey key, const DenseView& x, float input_scale, int64_t kq,
                            std::vector<float>& out);

// Rows [0, n) split over threads in contiguous chunks of at least `min_rows` rows.
int64_t min_rows_per_thread(const CpuBackendOptions& o, int64_t row_bytes);

Status run_moe_impl(const CpuBackendOptions& o, const Problem& p, const MoEWeights& w,
                    const DenseView& x, const MoERouting& r, const DenseMutView& y);
Status check_moe(const Problem& p, const MoEWeights& w);

}  // namespace mxq::cpu::fast::internal
