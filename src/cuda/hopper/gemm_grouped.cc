// The cuda-hopper grouped (MoE) GEMMs' host side (gemm.h): the dispatch block, the launch
// decision over the blocks expected live, and the checked entry point; the schedule they rank
// with is gemm.cu's (gemm_schedule.h).
#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/hopper/gemm.h"
#include "cuda/hopper/gemm_schedule.h"
#include "cuda/hopper/tma_maps.h"

namespace mxq::cuda::hopper {

using detail::finish_config;
using detail::forced_config;
using detail::Forced;
using detail::rank_splits;
using detail::step_cycles;

StatusOr<HopperGemmConfig> choose_hopper_grouped_config(const HopperGroupedShape& g) {
  if (tile_index(g.block) < 0)
    return invalid_argument("cuda-hopper grouped GEMM: the dispatch block must be 16, 32, 64, "
                            "80, 128, 144, 256 or 288 tokens (the token tile), got " +
                            std::to_string(g.block));
  HopperGemmConfig c;
  const int64_t k64 = (g.k + 63) / 64;
  double best = 0.0;
  Forced f = forced_config();
  f.tokens = 0;  // the dispatch block decides the tile
  f.halves = 0;  // K halves: dense only
  // 4 consumers are dense-only instances; a consumer count the block does not have is ignored
  // (else no candidate would be ranked).
  if (f.consumers == 4 || (f.consumers != 0 && !has_consumers(g.block, f.consumers)))
    f.consumers = 0;
  c.forced = f.consumers != 0 || f.splits != 0;
  // The token tile is the dispatch block; the split is ranked over the blocks expected live.
  MXQ_RETURN_IF_ERROR(rank_splits(g.elem, g.act, g.n, k64, g.block,
                                  std::max<int64_t>(1, g.live_blocks), true, f, best, c));
  c.m_tiles = int(g.capacity / g.block);
  MXQ_RETURN_IF_ERROR(finish_config(g.elem, g.act, g.n, best, c));
  return c;
}

int64_t expected_live_blocks(int64_t pairs, int64_t experts, int block) {
  if (pairs <= 0 || experts <= 0) return 0;
  const int64_t hit = std::min(pairs, experts);
  const int64_t per = (pairs + hit - 1) / hit;
  return hit * ((per + block - 1) / block);
}

namespace {
double expected_blocks(double avg, int nt) {
  // Per expert hit, cnt ~ Normal(avg, sd) with sd = sqrt(avg) (uniform routing is binomial)
  // + 0.1 avg (real routers are less even); E[ceil(cnt / nt)] = sum_j P(cnt > j nt), j >= 0,
  // the first term 1 (the expert is hit).
  const double sd = std::sqrt(avg) + 0.1 * avg;
  double e = 1.0;
  for (int j = 1; j < 64; ++j) {
    const double p = 0.5 * std::erfc((j * nt - avg) / (sd * std::sqrt(2.0)));
    e += p;
    if (p < 1e-4) break;
  }
  return e;
}

}  // namespace

int hopper_grouped_block(int64_t tokens, int64_t topk, int64_t experts) {
  const int64_t pairs = tokens * topk;
  const double avg = double(pairs) / double(std::max<int64_t>(1, std::min(pairs, experts)));
  // MXQ_HOPPER_CONFIG's token tile, when it is one the grouped GEMM has, fixes the block.
  const Forced f = forced_config();
  if (f.tokens != 0) return f.tokens;
  int best_nt = 16;
  double best = 0.0;
  for (int nt : kTokenTiles) {
    const double cost = expected_blocks(avg, nt) * step_cycles(nt, 2, true);
    if (best == 0.0 || cost < best * 0.98) {
      best = cost;
      best_nt = nt;
    }
  }
  return best_nt;
}

Status hopper_grouped_gemm(const HopperGroupedArgs& a, cudaStream_t stream, HopperGemmConfig* ran) {
  const HopperGroupedShape& g = a.shape;
  if (g.elem != ElemType::kE2M1 && g.elem != ElemType::kE4M3)
    return unimplemented(std::string("cuda-hopper grouped GEMM: weights must be E2M1 or E4M3, got ") +
                         elem_type_name(g.elem));
  if (g.act != DType::kBF16 && g.act != DType::kF16)
    return unimplemented(std::string("cuda-hopper grouped GEMM: activations must be BF16 or F16, got ") +
                         dtype_name(g.act));
  if (g.n < 16 || g.k < 32 || g.n % 16 != 0 || g.k % 32 != 0 || (a.gate_up && g.n % 32 != 0))
    return invalid_argument("cuda-hopper grouped GEMM: need N a multiple of 16 (gate/up: 32) and "
                            "K a multiple of 32; got N=" + std::to_string(g.n) +
                            " K=" + std::to_string(g.k));
  if (g.capacity < g.block || g.capacity % g.block != 0 || g.capacity > 0x7FFFFFFF)
    return invalid_argument("cuda-hopper grouped GEMM: capacity " + std::to_string(g.capacity) +
                            " is not a positive multiple of the block " + std::to_string(g.block));
  if (a.ldx < g.k || a.ldy < (a.gate_up ? g.n / 2 : g.n))
    return invalid_argument("cuda-hopper grouped GEMM: row strides ldx=" + std::to_string(a.ldx) +
                            " / ldy=" + std::to_string(a.ldy) + " too small");
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || a.ldx % 8 != 0)
    return invalid_argument("cuda-hopper grouped GEMM: activation rows must be 16-byte aligned "
                            "for TMA");
  if (a.w == nullptr || a.x == nullptr || a.y == nullptr || a.block_expert == nullptr ||
      a.pairs == nullptr || (!a.gate_up && a.topk_weights == nullptr))
    return invalid_argument("cuda-hopper grouped GEMM: null weight, activation, output, "
                            "dispatch or top-k weight pointer");
  auto cfg = choose_hopper_grouped_config(g);
  if (!cfg.ok()) return cfg.status();
  const HopperGemmConfig& c = cfg.value();
  auto map = activation_map(a.x, g.act, g.capacity, g.k, a.ldx, c.tokens);
  if (!map.ok()) return map.status();
  const HopperLayout one{g.elem, 1, g.n, g.k};
  KernelParams p = detail::base_params(g.elem, a.w, a.bias, a.y, g.capacity, g.n, g.k, a.ldy, c);
  p.items = c.items;
  p.splits = c.splits;
  p.out_f32 = !a.gate_up;
  p.block_expert = a.block_expert;
  p.pairs = a.pairs;
  p.bias_up = a.bias_up;
  p.topk_weights = a.topk_weights;
  p.expert_bytes = int64_t(one.bytes());
  p.gate_up = a.gate_up;
  p.swiglu = a.swiglu;
  p.alpha = a.alpha;
  p.limit = a.limit;
  const CUtensorMap no_output_map = {};  // (the grouped epilogues store directly)
  MXQ_RETURN_IF_ERROR(detail::launch_types<true>(g.elem, g.act, map.value(), no_output_map, p, c, stream));
  if (ran != nullptr) *ran = c;
  return Status::Ok();
}

}  // namespace mxq::cuda::hopper
