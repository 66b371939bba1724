// The AVX-512VL instance of the kernels in mx_gemv_kernels.h: still 256-bit vectors (the same
// lanes and arithmetic as the AVX2 instance, so results are identical), plus AVX-512VL's
// two-register permute (E2M1 decode in 2 uops instead of 4) and 32 registers (16-row tiles).
// 512-bit vectors would change the lane structure, and on the 2-core CI VM zmm FMAs issue at
// half the ymm rate (same FLOP/s), so they buy nothing here. Entered only after best_isa().
#include "cpu/fast/mx_gemv_common.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512vl,prefer-vector-width=256")
#define MXQ_KERNELS_AVX512VL 1
#include "cpu/fast/mx_gemv_kernels.h"  // NOLINT(build/include): the kernels, in this target
#undef MXQ_KERNELS_AVX512VL

namespace mxq::cpu::fast::detail {

bool avx512_compiled() { return true; }

void gemm_rows_avx512(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
                      const float* xi, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  switch (w.elem) {
    case ElemType::kE2M1: return gemm_rows<ElemType::kE2M1>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE2M3: return gemm_rows<ElemType::kE2M3>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE3M2: return gemm_rows<ElemType::kE3M2>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE4M3: return gemm_rows<ElemType::kE4M3>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kE5M2: return gemm_rows<ElemType::kE5M2>(w, x, m, ldx, xi, y, ldy, n0, n1);
    case ElemType::kInt8: return gemm_rows<ElemType::kInt8>(w, x, m, ldx, xi, y, ldy, n0, n1);
  }
}

}  // namespace mxq::cpu::fast::detail
#pragma GCC pop_options

#else  // not x86-64: the scalar kernel is the only one

namespace mxq::cpu::fast::detail {
bool avx512_compiled() { return false; }
void gemm_rows_avx512(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
                      const float* xi, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  gemm_rows_avx2(w, x, m, ldx, xi, y, ldy, n0, n1);
}
}  // namespace mxq::cpu::fast::detail

#endif
