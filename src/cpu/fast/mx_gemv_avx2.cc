// The AVX2 + FMA + F16C instance of the kernels in mx_gemv_kernels.h. Entered only after
// best_isa() has checked the CPU (cpuid), so the rest of the library stays baseline x86-64.
// (target_clones would need the intrinsics to compile for the baseline clone too; a target
// region plus one runtime check does not.)
#include "cpu/fast/mx_gemv_common.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#define MXQ_KERNELS_AVX512VL 0
#include "cpu/fast/mx_gemv_kernels.h"  // NOLINT(build/include): the kernels, in this target
#undef MXQ_KERNELS_AVX512VL

namespace mxq::cpu::fast::detail {

bool avx2_compiled() { return true; }

void gemm_rows_avx2(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
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
bool avx2_compiled() { return false; }
void gemm_rows_avx2(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx,
                    const float* xi, float* y, int64_t ldy, int64_t n0, int64_t n1) {
  (void)xi;
  gemm_rows_scalar(w, x, m, ldx, y, ldy, n0, n1);
}
}  // namespace mxq::cpu::fast::detail

#endif
