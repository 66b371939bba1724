// The cuda-hopper GEMM kernel's parameters (gemm_kernel.cuh reads them, the host entry points in
// gemm.cu / gemm_grouped.cc fill them). Plain data: host and device code.
#pragma once

#include <cstdint>

namespace mxq::cuda::hopper {

struct KernelParams {
  const uint8_t* w;     // hopper layout chunks
  const float* bias;    // [N] or null (MoE: per expert, see below)
  void* y;              // [M, N], row stride ldy elements
  int m, n, ksteps;     // layout K steps: k64 (16-bit), k128 (FP8) (MoE: m = rows of the
                        // padded dispatch, n and K per expert)
  int n64;              // 64-row blocks of the layout (per expert)
  int64_t ldy;
  int n_blocks, items, splits;
  bool out_f32;
  bool tma_store;       // dense, 16-bit output: the epilogue through shared memory + y_map
  // The FP8 instances only: output = acc x row_mul[row] x (act_row_scale[token], or act_scale
  // when it is null) + bias. row_mul: [n_pad] 2^(base - 127) of each row's fold (fp8_fold.h).
  const float* row_mul;
  const float* act_row_scale;
  float act_scale;
  // fp8-dynamic-group128 (else null): [m, act_groups] per (token, 128-column group) scales,
  // applied at each k128 stage's promotion (acc += s x part; promote_stages 1, one stage = one
  // group), with act_row_scale null and act_scale 1 in the epilogue.
  const float* act_group_scale;
  int act_groups;
  // k128 stages chained in the tensor core's accumulator before each FP32 promotion (1 or 2;
  // HopperGemmConfig::fp8_promote_stages).
  int promote_stages;
  // Row blocks per raster group (HopperGemmConfig::raster_group; item_coords): 0 = none.
  int raster_group;
  // The grouped (MoE) instances only: token tile mt is dispatch block mt (block = NT rows of the
  // padded pair list, moe/dispatch.h) of expert block_expert[mt] (-1: past the end, skipped),
  // whose weights start at w + expert * expert_bytes.
  //   gate/up (gate_up): y = the intermediate [m, ldy = N / 2] in T, act(gate + bias[e, c],
  //     up + bias_up[e, c]) per intermediate column c (weights in the gate/up row order);
  //   down: y = FP32 per-pair rows [pairs, ldy = N], topk_weights[p] * (acc + bias[e, row]).
  const int32_t* block_expert;
  const int32_t* pairs;          // sorted_token_pairs [m] (-1: padding)
  const float* bias_up;          // gate/up: [E, N / 2] or null
  const float* topk_weights;     // down: [pairs]
  int64_t expert_bytes;
  bool gate_up, swiglu;
  float alpha, limit;
};

}  // namespace mxq::cuda::hopper
