// The AVX2 + FMA + F16C instance of the SIMD kernels (mx_gemv_kernels.h). Entered only after
// best_isa() has checked the CPU (cpuid), so the rest of the library stays baseline x86-64.
// (target_clones would need the intrinsics to compile for the baseline clone too; a target
// region plus one runtime check does not.)
#define MXQ_KERNELS_AVX512 0
#include "cpu/fast/mx_gemv_kernels.h"  // NOLINT(build/include): the kernels, in this target
