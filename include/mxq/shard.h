// MX-aware sharding of a layer's weights for tensor and expert parallelism (issue 21,
// deliverable 1): what one rank of `ranks` holds, as the weight views and the Problem its
// backend prepares. The collectives that join the ranks' results are the caller's (mxq.torch's
// parallel modules over torch.distributed); this is the arithmetic of the split, exact and
// checked.
//
//   linear, column parallel: rows [n0, n1) of W[N, K] and of the bias; y = the rank's columns
//     (all-gather along N). Zero-copy: a row range of the canonical layout is contiguous.
//   linear, row parallel: columns [k0, k1) of W on 32-element block boundaries (the scales
//     split with them); y = a partial sum (all-reduce / reduce-scatter); the bias stays on
//     rank 0 only, so the sum adds it once. A copy (each row's slice is strided).
//   MoE, expert parallel: experts [e0, e1) (balanced contiguous ranges; the first E % ranks
//     ranks take one more) and the local-expert map [E] (global -> local, -1 elsewhere) that
//     the MoE backends take with MoEParams::expert_map; y = this rank's experts' contribution
//     (all-reduce of the partial outputs). Zero-copy: the experts are the outer dimension.
//   MoE, tensor parallel inside the experts: intermediate columns [i0, i1) of every expert,
//     gate and up rows kept together whatever the layout (chunked: the two row ranges;
//     interleaved gpt-oss: the pairs; separate w1 / w3: the same range of each), the down
//     projection's K split likewise, its bias on rank 0 only; y = a partial sum. A copy.
//
// Numerics are never changed silently: a split that would change what a rank computes is an
// error naming the rule. K (row parallel) and the intermediate size (MoE tensor parallel) must
// split into whole 32-element blocks per rank (MX activation keys quantize per block, so the
// blocks stay intact); fp8-dynamic-token takes each token's amax over the whole K (the
// intermediate for MoE), so row-parallel / MoE tensor-parallel shards of it are refused;
// fp8-dynamic-tensor takes one amax over the whole x (and the whole intermediate of every pair),
// so row-parallel and both MoE splits of it are refused (column parallel keeps x whole);
// fp8-dynamic-group128 scales per 128-column group, so its row-parallel / MoE tensor-parallel
// slices must be whole groups (K / ranks, I / ranks multiples of 128).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mxq/backend.h"
#include "mxq/problem.h"
#include "mxq/status.h"

namespace mxq {

struct ShardSpec {
  int rank = 0, ranks = 1;
};

enum class LinearParallel : uint8_t { kColumn, kRow };
enum class MoEParallel : uint8_t { kExpert, kTensor };
const char* linear_parallel_name(LinearParallel p);  // "column", "row"
const char* moe_parallel_name(MoEParallel p);        // "expert", "tensor"

// One rank's linear layer. The views point into the source weights (zero_copy) or into the
// shard's own storage, which moves with it (std::vector buffers keep their address on move).
struct LinearShard {
  // Move-only: the views may point into the shard's own buffers (a copy would point into
  // the original's).
  LinearShard() = default;
  LinearShard(const LinearShard&) = delete;
  LinearShard& operator=(const LinearShard&) = delete;
  LinearShard(LinearShard&&) = default;
  LinearShard& operator=(LinearShard&&) = default;

  ShardSpec spec;
  LinearParallel how = LinearParallel::kColumn;
  Problem problem;         // the rank's problem: n = n1 - n0, k = k1 - k0 (bias: rank 0 / column)
  LinearWeights weights;   // views for the rank's backend
  int64_t n0 = 0, n1 = 0, k0 = 0, k1 = 0;  // ranges of the full layer's N and K
  bool zero_copy = true;
  bool layer_bias = false;  // the full layer has a bias (row parallel: rank 0's shard holds it)
  uint64_t bytes() const;  // packed + scales (+ bias) of the shard
  // "rank 1 of 4: column parallel, N [2048, 4096) of 8192, K [0, 8192) of 8192, 8.5 MiB (view)";
  // row parallel with a bias adds ", bias" (rank 0) or ", no bias (rank 0 adds it)". Sizes
  // below 1 MiB in KiB, below 1 KiB in bytes.
  std::string describe(int64_t full_n, int64_t full_k) const;

  std::vector<uint8_t> own_packed, own_scales;  // row parallel: the copied slices
};

// `p` is the full layer's problem (Op::kLinear), `w` its weights (checked like a backend would).
StatusOr<LinearShard> shard_linear(const Problem& p, const LinearWeights& w, LinearParallel how,
                                   ShardSpec s);

struct MoEShard {
  // Move-only: the views may point into the shard's own buffers (a copy would point into
  // the original's).
  MoEShard() = default;
  MoEShard(const MoEShard&) = delete;
  MoEShard& operator=(const MoEShard&) = delete;
  MoEShard(MoEShard&&) = default;
  MoEShard& operator=(MoEShard&&) = default;

  ShardSpec spec;
  MoEParallel how = MoEParallel::kExpert;
  Problem problem;        // the rank's problem: expert parallel sets moe.expert_map; tensor
                          // parallel k = i1 - i0
  MoEWeights weights;     // views for the rank's backend
  std::vector<int32_t> expert_map;  // expert parallel: [E] global -> local (-1: another rank)
  int64_t e0 = 0, e1 = 0;  // experts held (tensor parallel: all)
  int64_t i0 = 0, i1 = 0;  // intermediate columns held (expert parallel: all)
  bool zero_copy = true;
  uint64_t bytes() const;
  // "rank 0 of 2: expert parallel, experts [0, 64) of 128, I [0, 2880) of 2880, 31.6 MiB (view)"
  // (sizes as LinearShard::describe's)
  std::string describe(int64_t full_experts, int64_t full_inter) const;

  // Tensor parallel: the copied slices (w13 or w1 + w3, w2; biases as F32 copies in the source
  // dtype's bytes).
  std::vector<uint8_t> own_w13p, own_w13s, own_w1p, own_w1s, own_w3p, own_w3s, own_w2p, own_w2s;
  std::vector<uint8_t> own_b13, own_b1, own_b3;
};

// `p` is the full layer's problem (Op::kMoE, without an expert map), `w` its weights.
StatusOr<MoEShard> shard_moe(const Problem& p, const MoEWeights& w, MoEParallel how, ShardSpec s);

// Expert parallelism's balanced contiguous ranges: experts [first, last) of rank `rank`.
void expert_range(int64_t experts, ShardSpec s, int64_t& first, int64_t& last);

}  // namespace mxq
