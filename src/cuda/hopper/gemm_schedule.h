// The cuda-hopper GEMMs' launch decision, shared by the entry points (host code, internal to
// src/cuda/hopper): gemm.cu defines it (cost model, forced configs, the instance dispatch) and
// its dense and FP8 entry points; gemm_grouped.cc the grouped (MoE) entry point on top of it.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/hopper/gemm_config.h"
#include "cuda/hopper/kernel_params.h"
#include "cuda/hopper/layout.h"
#include "mxq/formats.h"
#include "mxq/status.h"

namespace mxq::cuda::hopper::detail {

// MXQ_HOPPER_CONFIG's fields (forced_config, gemm.cu says the syntax): 0 / -1 = the model's
// choice.
struct Forced {
  int tokens = 0, consumers = 0, splits = 0, halves = 0;
  int transform = -1;  // FP8: MXQ_HOPPER_FP8_TRANSFORM=0|1|2 (-1: the model's choice)
  int tiles = -1;      // FP8: MXQ_HOPPER_FP8_PREDECODE=0|1 (-1: the model's choice)
};
Forced forced_config();

// The cost model's cycles of one layout step of a CTA (gemm.cu says where each figure comes from).
double step_cycles(int nt, int c, bool grouped, int kh = 1, bool fp8 = false, int tw = 0,
                   bool tiles = false);

// Ranks every consumer count, K-halves and split of token tile `nt` over `m_tiles` token tiles of
// N rows against `best`, updating `c` where one wins by 2%; then the rest of the config.
Status rank_splits(ElemType elem, DType act, int64_t n, int64_t k64, int nt, int64_t m_tiles,
                   bool grouped, const Forced& f, double& best, HopperGemmConfig& c,
                   bool fp8 = false);
Status finish_config(ElemType elem, DType act, int64_t n, double best, HopperGemmConfig& c);

// The fields every launch sets the same way (dense and grouped): weights, bias, output, the
// problem's M (grouped: the dispatch capacity), N, k64 steps, 64-row blocks, output stride and
// the config's row blocks per item; the rest of KernelParams zero.
inline KernelParams base_params(ElemType elem, const uint8_t* w, const float* bias, void* y,
                                int64_t m, int64_t n, int64_t k, int64_t ldy,
                                const HopperGemmConfig& c) {
  KernelParams p = {};
  p.w = w;
  p.bias = bias;
  p.y = y;
  p.m = int(m);
  p.n = int(n);
  p.ksteps = int((k + 63) / 64);
  p.n64 = int(HopperLayout{elem, 1, n, k}.n64());
  p.ldy = ldy;
  p.n_blocks = c.n_blocks;
  return p;
}

// The instance of (weight, activation type, c) on `s` (kMoE: the grouped instances).
template <bool kMoE>
Status launch_types(ElemType elem, DType act, const CUtensorMap& map, const CUtensorMap& ymap,
                    const KernelParams& p, const HopperGemmConfig& c, cudaStream_t s);

}  // namespace mxq::cuda::hopper::detail
