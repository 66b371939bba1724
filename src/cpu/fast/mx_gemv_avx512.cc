// The AVX-512F/VL instance of the SIMD kernels (mx_gemv_kernels.h): the same lanes and
// arithmetic as the AVX2 instance (results are identical), with E2M1 decoded and multiplied on
// 512-bit vectors (half the shuffle uops per block) and 32 registers (larger row tiles).
// Entered only after best_isa() has checked the CPU.
#define MXQ_KERNELS_AVX512 1
#include "cpu/fast/mx_gemv_kernels.h"  // NOLINT(build/include): the kernels, in this target
