// MXQ_HAS_WGMMA: 1 in device code compiled for sm_90a (wgmma, TMA, setmaxnreg exist only
// there), 0 elsewhere, where the wrappers compile to traps the host never launches.
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MXQ_HAS_WGMMA 1
#else
#define MXQ_HAS_WGMMA 0
#endif
