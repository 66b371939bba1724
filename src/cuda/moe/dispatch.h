// MoE token dispatch on the GPU: from the routing's topk_ids [M, k], per-expert lists of
// (token, slot) pairs padded to a block size B, the input of a grouped GEMM over experts.
//
//   pair p = token * k + slot routes to global expert g = topk_ids[p]; its local expert is
//   e = expert_map ? expert_map[g] : g. Pairs with g outside [0, experts) or e outside
//   [0, local_experts) (a non-local expert under expert parallelism: map value -1) are dropped.
//   counts[e]          = pairs of expert e
//   expert_offsets[e]  = sum over e' < e of round_up(counts[e'], B); [local_experts + 1] entries
//   sorted_token_pairs[expert_offsets[e] + r] = the r-th pair of expert e in increasing p (so
//                        by token, then slot), r < counts[e]; every other entry of the
//                        `capacity` ones (the padding of each expert, and the tail past
//                        expert_offsets[local_experts]) is -1
//   block_expert[b]    = the local expert whose padded range holds entries [b * B, (b + 1) * B),
//                        -1 past the end; [capacity / B] entries
//   expert_counts[e]   = counts[e] (optional: nullptr skips it)
// The output is a function of topk_ids alone: a counting pass per tile of pairs, a scan, and a
// stable placement pass; no result depends on the order of atomic operations.
//
// Device pointers and a stream; no allocation, no synchronization (the caller passes the
// workspace): graph-capturable. Limits: capacity < 2^31, local_experts <= 2048, 1 <= B <= 4096.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "mxq/status.h"

namespace mxq::cuda {

struct MoEDispatchShape {
  int64_t tokens = 0;         // M
  int64_t topk = 0;           // k
  int64_t experts = 0;        // E, global (the range of topk_ids, the length of expert_map)
  int64_t local_experts = 0;  // experts this device holds (= experts without a map)
  int64_t block = 16;         // B, the padding block (the grouped GEMM's token tile)
};

// Entries of sorted_token_pairs (a multiple of B, at least the padded total for any routing):
// round_up(M * k + min(local_experts, M * k) * (B - 1), B).
int64_t moe_dispatch_capacity(const MoEDispatchShape& s);
// Bytes of the workspace moe_dispatch needs (per-tile counts).
size_t moe_dispatch_workspace_bytes(const MoEDispatchShape& s);

// expert_offsets [local_experts + 1], sorted_token_pairs [capacity], block_expert
// [capacity / B], expert_counts [local_experts] or nullptr, workspace of
// moe_dispatch_workspace_bytes (any contents, 16-byte aligned).
Status moe_dispatch(const MoEDispatchShape& s, const int32_t* topk_ids,
                    const int32_t* expert_map, int32_t* expert_offsets,
                    int32_t* sorted_token_pairs, int32_t* block_expert, int32_t* expert_counts,
                    void* workspace, cudaStream_t stream);

// The activation rows in dispatch order, for a grouped GEMM that reads its token tiles as one
// dense 2-D array (cuda-hopper's TMA cannot gather rows on sm_90):
//   out[r, :] = x[sorted_token_pairs[r] / topk, :]  where the entry is a pair
// for r < capacity; rows of -1 entries (padding) are zeros with `zero_padding`, else left
// untouched. x [M, h] 16-bit rows with stride ldx, out [capacity, h] contiguous (16-byte
// copies when rows and pointers are 16-byte aligned, else 2-byte). Asynchronous.
Status moe_gather_rows(const void* x, int64_t ldx, int64_t h, int elem_bytes,
                       const int32_t* sorted_token_pairs, int64_t capacity, int64_t topk,
                       bool zero_padding, void* out, cudaStream_t stream);

}  // namespace mxq::cuda
