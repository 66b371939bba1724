// The cuda-hopper GEMM's host side: the weight repack kernel, the launch decision (the schedule
// of gemm_schedule.h) and the dense and FP8 entry points (gemm.h); the grouped entry point is
// gemm_grouped.cc.
#include <cuda.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <type_traits>

#include "cuda/common/cuda_check.h"
#include "cuda/common/instance_set.h"
#include "cuda/gemm/repack_stats.cuh"
#include "cuda/hopper/gemm.h"
#include "cuda/hopper/fp8_layout.h"
#include "cuda/hopper/fp8_predecode.h"
#include "cuda/hopper/gemm_kernel.cuh"
#include "cuda/hopper/gemm_schedule.h"
#include "cuda/hopper/layout_word.h"
#include "cuda/hopper/tma_maps.h"

namespace mxq::cuda::hopper {

// Instances (instances/*.cu).
template <typename T, bool kFp4, int NT, int C, bool kMoE, int KH = 1, bool kFp8 = false,
          int TW = 0, bool kTiles = false>
Status launch(const CUtensorMap&, const CUtensorMap&, const KernelParams&, const HopperGemmConfig&,
              cudaStream_t);
template <typename T, bool kFp4, int NT, int C, int KH = 1, bool kFp8 = false, int TW = 0,
          bool kTiles = false>
StatusOr<int> max_active_clusters(int splits);

namespace detail {

// ---- repack ------------------------------------------------------------------------------
// One thread per (chunk, stripe, lane): the lane's words from the same functions as the CPU
// definition (layout_word.h), written with 16-byte stores.
__global__ void repack_hopper_kernel(frag::Source src, int64_t n64, int64_t k64, int64_t threads,
                                     int lane_bytes, int chunk, uint8_t* out, RepackStats* stats) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= threads) return;
  const int lane = int(i % 32), stripe = int((i / 32) % 4);
  const int64_t c = i / 128;  // chunk index ((b * n64 + nb) * k64 + kt)
  const int64_t kt = c % k64, nb = (c / k64) % n64, b = c / (k64 * n64);
  uint32_t w[8], sw = 0;
  lane_words(src, b, 4 * nb + stripe, kt, lane, w, sw);
  uint8_t* base = out + c * chunk;
  auto* dst = reinterpret_cast<uint4*>(base + chunk_lane_offset(lane_bytes, stripe, lane));
  dst[0] = make_uint4(w[0], w[1], w[2], w[3]);
  bool nan = false;
  if (!src.fp4) {
    dst[1] = make_uint4(w[4], w[5], w[6], w[7]);
    for (int j = 0; j < 8; ++j) nan |= e4m3_word_has_nan(w[j]);
  }
  if (lane % 4 == 0)
    *reinterpret_cast<uint32_t*>(base + chunk_scale_offset(lane_bytes, stripe, lane / 4)) = sw;
  record_repack_stats(stats, sw, nan);
}

// ---- the schedule ------------------------------------------------------------------------
template <typename T, bool kFp4>
StatusOr<int> active_clusters(int nt, int c, int splits, int kh) {
  if (c == 4)
    return kh == 2 ? max_active_clusters<T, kFp4, 16, 4, 2>(splits)
                   : max_active_clusters<T, kFp4, 16, 4>(splits);
  if (c == 3) switch (nt) {
      case 16: return max_active_clusters<T, kFp4, 16, 3>(splits);
      case 32: return max_active_clusters<T, kFp4, 32, 3>(splits);
      default: return max_active_clusters<T, kFp4, 64, 3>(splits);
    }
  switch (nt) {
    case 80: return max_active_clusters<T, kFp4, 80, 2>(splits);
    case 144: return max_active_clusters<T, kFp4, 144, 2>(splits);
    case 288: return max_active_clusters<T, kFp4, 288, 2>(splits);
    case 16: return max_active_clusters<T, kFp4, 16, 2>(splits);
    case 32: return max_active_clusters<T, kFp4, 32, 2>(splits);
    case 64: return max_active_clusters<T, kFp4, 64, 2>(splits);
    case 128: return max_active_clusters<T, kFp4, 128, 2>(splits);
    default: return max_active_clusters<T, kFp4, 256, 2>(splits);
  }
}

// The FP8 instances (gemm_launch.cuh, MXQ_HOPPER_FP8_INSTANCES).
template <typename T>
StatusOr<int> active_clusters_fp8(int nt, int c, int splits, int tw, bool tiles) {
  if (tiles) return max_active_clusters<T, true, 128, 2, 1, true, 0, true>(splits);
  if (tw == 1) return max_active_clusters<T, true, 128, 2, 1, true, 1>(splits);
  if (tw == 2) return max_active_clusters<T, true, 128, 2, 1, true, 2>(splits);
  if (c == 4) return max_active_clusters<T, true, 16, 4, 1, true>(splits);
  if (c == 3) switch (nt) {
      case 16: return max_active_clusters<T, true, 16, 3, 1, true>(splits);
      case 32: return max_active_clusters<T, true, 32, 3, 1, true>(splits);
      default: return max_active_clusters<T, true, 64, 3, 1, true>(splits);
    }
  switch (nt) {
    case 16: return max_active_clusters<T, true, 16, 2, 1, true>(splits);
    case 32: return max_active_clusters<T, true, 32, 2, 1, true>(splits);
    case 64: return max_active_clusters<T, true, 64, 2, 1, true>(splits);
    default: return max_active_clusters<T, true, 128, 2, 1, true>(splits);
  }
}

// active_clusters for the type pairs this build has instances of (common/instance_set.h); the
// absent pairs of a minimal build are never named, so their instance files need not exist.
// (FP8: the output type's instances exist where T x E2M1 does.)
template <typename T, bool kFp4, bool kFp8 = false>
StatusOr<int> active_clusters_of(int nt, int c, int splits, int kh, int tw = 0,
                                 bool tiles = false) {
  if constexpr (instance_types_compiled(std::is_same_v<T, __nv_bfloat16>, kFp4)) {
    if constexpr (kFp8)
      return active_clusters_fp8<T>(nt, c, splits, tw, tiles);
    else
      return active_clusters<T, kFp4>(nt, c, splits, kh);
  } else {
    return unimplemented(std::string("cuda-hopper: ") + kMinimalInstancesNote);
  }
}

// Resident clusters per (device, instance, split): asked once of the runtime, then cached
// (graph capture and the launch path stay free of occupancy queries).
// FP8 (`fp8`): `act` is the instance's 16-bit type (the output's), elem E2M1; tw its transform
// warpgroups, tiles its pre-decoded weights.
StatusOr<int> resident_clusters(ElemType elem, DType act, int nt, int c, int splits, int kh = 1,
                                bool fp8 = false, int tw = 0, bool tiles = false) {
  static std::mutex mu;
  // [device][type][E2M1, E4M3, FP8, FP8 1 / 2 transform WGs, FP8 tiles][tile][consumers 2, 3, 4,
  // 4 + K halves][split]
  static int cache[16][2][6][kTokenTileCount][4][8] = {};
  int dev = 0;
  MXQ_CUDA_TRY(cudaGetDevice(&dev));
  const int ti = act == DType::kBF16 ? 0 : 1;
  const int fi = fp8 ? (tiles ? 5 : 2 + tw) : elem == ElemType::kE2M1 ? 0 : 1;
  const int ni = std::max(0, tile_index(nt));
  const int si = std::clamp(splits, 1, 8) - 1;
  std::lock_guard<std::mutex> lock(mu);
  int& slot = cache[dev % 16][ti][fi][ni][kh == 2 ? 3 : c - 2][si];
  if (slot == 0) {
    StatusOr<int> n =
        fi >= 2 ? (ti == 0 ? active_clusters_of<__nv_bfloat16, true, true>(nt, c, splits, kh, tw,
                                                                            tiles)
                           : active_clusters_of<__half, true, true>(nt, c, splits, kh, tw, tiles))
        : ti == 0 ? (fi == 0 ? active_clusters_of<__nv_bfloat16, true>(nt, c, splits, kh)
                             : active_clusters_of<__nv_bfloat16, false>(nt, c, splits, kh))
                  : (fi == 0 ? active_clusters_of<__half, true>(nt, c, splits, kh)
                             : active_clusters_of<__half, false>(nt, c, splits, kh));
    if (!n.ok()) return n.status();
    if (n.value() < 1)
      return Status(StatusCode::kInternal, "cuda-hopper: no cluster of " + std::to_string(splits) +
                      " CTAs fits this device");
    slot = n.value();
  }
  return slot;
}

// The schedule's cost model: a CTA's time for one k64 step (all its consumer warpgroups, the
// whole item) by token tile, in SM cycles at ~1.75 GHz under load. Small tiles are
// decode-bound (the same weights cost the same whatever the tokens), large ones MMA-bound.
// Tiles up to 64 tokens run two k64 steps per ring stage (gemm_config.h stage_steps); their
// costs are fitted to the H200 MXFP4 runs of 2026-12-04 with that ring (gemm-hopper.md, "Cost
// model"; M = 1..64 on 8192 x 8192, 28672 x 8192, 8192 x 28672, 4096^2, fitted to the large
// layers, whose steady state dominates): 2 consumers 16 / 32 / 64 tokens 430 / 450 / 530
// (one step per stage: 560 / 600 / 700); 3 consumers (192-row items) 16 / 32 tokens 550 / 610
// (28672 x 8192 M = 1, 32: 3 rounds of 64 steps, 66.4 / 73.7 us), 64 tokens 720 (one step per
// stage 950, scaled by the 2-consumer ratio: not measured yet); 4 consumers (256-row items, 16
// tokens) 670 (28672 x 8192 M = 1 split 1, 1 round of 128 steps: 53.0 us; 8192 x 28672 split
// 3: 63.4; 8192^2 split 2 / 3: 31.1 / 25.2). 128 and 256 tokens from the runs of dac13a0.
// The tail tiles (grouped only): the main tile's cost plus the tail's MMAs, FIRST GUESS by
// MMA share (288: 1180 x 288 / 256 = 1330; 80, 144: + 60), to be refitted by measurement.
// K halves (16 tokens, 4 consumers on 128-row items), measured on an H100 (2026-12-05, after the
// E2M1 layout change; bench/results/h100/gemm-hopper-k-halves-2026-12-05.md): ~350 cycles a
// step on 64 CTAs (8192^2 M = 1 forced 16:4:1:2, 30.1 us), as predicted from the 256-row rate,
// but 420 once 128 CTAs stream together (16:4:2:2, 21.1 us, against 21.3 for 16:2:2): the
// weight stream, not the decode, bounds a full GPU there. Fitted to the latter, so the model
// keeps the 2-consumer tiles wherever the two are within its 2% margin.
// FP8 (one k128 step = two k64 steps of K): FIRST GUESS, not fitted yet: the 16-bit cost of
// two k64 steps, x 0.85 up to 32 tokens (the decode: 9 instructions per 8 codes against 11 +
// the scale's HMUL2, plus the table loads) and x 0.6 from 64 (half the MMA time).
// With transform warpgroups (128 tokens): never offered unless forced (rank_splits). The
// first guess (the stage's 512 MMA cycles + 15%) was wrong: measured on the H100 (2026-12-07,
// gemm-fp8-transform-ab-2026-12-07.md) they run 1.1-1.24x slower than the register-A tile,
// ~1290 cycles a stage, bound by shared-memory traffic; the values below are kept only so a
// forced launch prints an estimate.
// Pre-decoded tiles (128 tokens, 2 consumers): PREDICTED, not measured yet: bound by shared-
// memory traffic per k128 stage, the TMA writes (16 KB of activations + 16 KB of tiles) and the
// wgmma reads (2 consumers x 4 x (2 KB of A + 4 KB of B)), 80 KB at ~128 B per cycle: ~625
// cycles, against 512 for the MMAs; 650 with the ring's overhead. The pre-pass comes on top
// (predecode_cycles).
double fp8_step_cycles(int nt, int c, int tw, bool tiles) {
  if (tiles) return 650;
  const double register_a = 2.0 * step_cycles(nt, c, false) * (nt <= 32 ? 0.85 : 0.6);
  return register_a * (tw == 1 ? 1.19 : tw == 2 ? 1.15 : 1.0);  // (measured ratios, above)
}
double step_cycles(int nt, int c, bool grouped, int kh, bool fp8, int tw, bool tiles) {
  if (fp8) return fp8_step_cycles(nt, c, tw, tiles);
  if (kh == 2) return 420;
  if (c == 4) return 670;
  if (c == 3) return nt == 16 ? 550 : nt == 32 ? 610 : 720;
  switch (nt) {
    case 80: return 760;
    case 144: return 910;
    case 288: return 1330;
    case 16: return 430;
    case 32: return 450;
    case 64: return 530;
    // Dense 128 tokens refitted after 1883034 took the dummy wgmma out of its loop (H200,
    // 2026-12-04, 128:2:1 one round: 8192^2 M = 256 57.8 us, 4096^2 M = 512 32.2 us: 720-745
    // cycles); the grouped one is not refitted (its block model was fitted with 850).
    case 128: return grouped ? 850 : 740;
    default: return 1180;  // 256
  }
}
// A split's extra work per item and round, per rank beyond the first: the partial sums through
// distributed shared memory, rank 0 adding them and the barrier round trips. From 0b8663a on the
// H200: 4096^2 M = 1 split 8 ran 3 rounds of 8 steps in 23.2 us, about 6000 cycles per round
// more than its steps (bench/results/h200/gemm-hopper.md, "Cost model").
constexpr double kSplitCyclesPerRank = 850;
// ... for the tiles up to 64 tokens (8-32 floats a thread). 128 and 256 tokens (64 / 128 floats,
// 256: 4 buffer rounds), fitted on the H200 after the conflict-free st.async reduction (
// 2026-12-04, gemm-hopper.md "Split K for 256 tokens"): one item per cluster, forced configs
// against the model's steps, 4096^2 M = 256 128:2:2 23.2 us (~4000 cycles beyond its steps),
// 8192^2 M = 256 / 4096^2 M = 512 / 8192 x 28672 M = 256 256:2:2 55.9 / 36.3 / 163.0 us
// (~10000-15000).
double split_cycles(int nt) {
  return nt == 256 ? 11000 : nt >= 128 ? 3700 : kSplitCyclesPerRank;
}
// Launch, prologue (barrier init, cluster sync, first copies) and exit, the same for every
// candidate: it changes no choice, only the printed estimate (~5 us at M = 1 on 2880^2).
constexpr double kLaunchCycles = 8750;
// K halves: the hand-off of the second half's partial sums per item (8 floats a thread through
// shared memory and a named barrier each way): an estimate, not measured apart (it is inside
// the fit of step_cycles above).
constexpr double kPairCycles = 400;

// Estimated cycles of the launch: rounds of items over the resident clusters, times the k64
// steps of one rank's K range, times the tile's step cost, plus the reductions.
double estimate_cycles(int items, int resident, int64_t ksteps, int nt, int c, int splits,
                       bool grouped, int kh = 1, bool fp8 = false, int tw = 0,
                       bool tiles = false) {
  const int rounds = (items + resident - 1) / resident;
  const int64_t steps = (ksteps + splits - 1) / splits;
  return kLaunchCycles +
         rounds * (double(steps) * step_cycles(nt, c, grouped, kh, fp8, tw, tiles) +
                   (splits - 1) * split_cycles(nt) + (kh == 2 ? kPairCycles : 0));
}

// The FP8 pre-pass (fp8_predecode.h) over n64 row blocks of k128 steps: it reads each 4352-byte
// chunk and writes its 8 KB tile, at ~3 TB/s (PREDICTED, the H100's copy rate; the H200's is
// higher), plus a launch per workspace chunk of rows.
double predecode_cycles(int64_t n64, int64_t k128, int chunks) {
  const double bytes = double(n64) * double(k128) * double(kFp8ChunkBytes + kFp8TileBytes);
  return bytes / 3.0e12 * 1.75e9 + chunks * kLaunchCycles;
}

// The pre-pass's workspace (HopperFp8GemmArgs::workspace): at most this many bytes of tiles (or
// one item's, if larger), the
// layer's rows cut into chunks of whole 128-row items that fit (MXQ_HOPPER_FP8_WORKSPACE_MB, read
// per call, overrides the default 64 MiB: the tests use 1 to reach several chunks). A raster
// group of row blocks (item_coords) is sized to stay in L2 beside the activations it meets:
// 16 MiB of tiles.
int64_t fp8_workspace_limit() {
  const char* v = std::getenv("MXQ_HOPPER_FP8_WORKSPACE_MB");
  const int64_t mb = v != nullptr && std::atoll(v) > 0 ? std::atoll(v) : 64;
  return mb << 20;
}
constexpr int64_t kRasterGroupBytes = int64_t(16) << 20;

// How the pre-decoded path cuts a layer of n rows and k128 steps: chunks of `rows` (a multiple
// of the 128-row item) whose tiles fit the workspace limit, and raster groups of row blocks.
struct Fp8Chunking {
  int64_t rows = 0;
  int chunks = 0;
  int raster_group = 0;  // 128-row blocks per group
};
Fp8Chunking fp8_chunking(int64_t n, int64_t k128) {
  const int64_t item_bytes = 2 * k128 * kFp8TileBytes;  // one 128-row item's tiles
  const int64_t items = (n + 127) / 128;
  const int64_t fit = std::max<int64_t>(1, fp8_workspace_limit() / item_bytes);
  Fp8Chunking c;
  // Chunks about equal (the last no larger, never empty): items per chunk, then the count.
  const int64_t per = (items + (items + fit - 1) / fit - 1) / ((items + fit - 1) / fit);
  c.chunks = int((items + per - 1) / per);
  c.rows = per * 128;
  c.raster_group = int(std::max<int64_t>(1, kRasterGroupBytes / item_bytes));
  // MXQ_HOPPER_FP8_RASTER_BLOCKS (read per call): the group size, for tests and A/B runs.
  const char* v = std::getenv("MXQ_HOPPER_FP8_RASTER_BLOCKS");
  if (v != nullptr && std::atoi(v) > 0) c.raster_group = std::atoi(v);
  return c;
}

// MXQ_HOPPER_FP8_PREDECODE=0|1 (read per call): force the pre-decoded tiles off or on (1 also
// forces the 128-token tile); unset: the model's choice (-1).
int forced_fp8_tiles() {
  const char* v = std::getenv("MXQ_HOPPER_FP8_PREDECODE");
  if (v == nullptr || (v[0] != '0' && v[0] != '1') || v[1] != 0) return -1;
  return v[0] - '0';
}

// MXQ_HOPPER_CONFIG=tokens:consumers:splits[:halves[:transform[:tiles]]] (0 = the model's
// choice for the first four; halves 1 or 2: K halves inside the CTA; transform 0, 1 or 2: the FP8
// path's transform warpgroups, also MXQ_HOPPER_FP8_TRANSFORM; tiles 0 or 1: its pre-decoded
// tiles, also MXQ_HOPPER_FP8_PREDECODE) fixes the launch for A/B runs and for tests that
// must reach a given instance; the config says "forced". Invalid values are ignored field by
// field.
Forced forced_config() {
  Forced f;
  const char* v = std::getenv("MXQ_HOPPER_CONFIG");
  if (v == nullptr || *v == 0) return f;
  int t = 0, c = 0, s = 0, h = 0, w = -1, d = -1;
  if (std::sscanf(v, "%d:%d:%d:%d:%d:%d", &t, &c, &s, &h, &w, &d) >= 1) {
    if (tile_index(t) >= 0) f.tokens = t;
    if (c >= 2 && c <= 4) f.consumers = c;
    if (s >= 1 && s <= 8) f.splits = s;
    if (h == 1 || h == 2) f.halves = h;
    if (w >= 0 && w <= 2) f.transform = w;  // FP8 only: transform warpgroups
    if (d == 0 || d == 1) f.tiles = d;      // FP8 only: pre-decoded tiles
  }
  return f;
}
// MXQ_HOPPER_FP8_TRANSFORM=0|1|2 (read per call): the FP8 path's transform warpgroups (0: the
// register-A consumers), for A/B runs and the tests; other values are ignored.
int forced_fp8_transform() {
  const char* v = std::getenv("MXQ_HOPPER_FP8_TRANSFORM");
  if (v == nullptr || v[0] < '0' || v[0] > '2' || v[1] != 0) return -1;
  return v[0] - '0';
}

// The dense 16-bit epilogue goes through shared memory + TMA stores by default (measured on
// the H200: bench/results/h200/gemm-hopper-tma-epilogue-ab-2026-12-05.md);
// MXQ_HOPPER_EPILOGUE=direct (read per call, like MXQ_HOPPER_CONFIG) keeps the direct stores
// from the accumulators, for A/B runs.
bool tma_epilogue_requested() {
  const char* v = std::getenv("MXQ_HOPPER_EPILOGUE");
  return v == nullptr || std::strcmp(v, "direct") != 0;
}

template <typename T, bool kFp4, bool kMoE>
Status launch_tokens(const CUtensorMap& map, const CUtensorMap& ymap, const KernelParams& p,
                     const HopperGemmConfig& c, cudaStream_t s) {
  if constexpr (!kMoE) {  // 4 consumers: dense only (gemm_launch.cuh)
    if (c.consumers == 4)
      return c.k_halves == 2 ? launch<T, kFp4, 16, 4, false, 2>(map, ymap, p, c, s)
                             : launch<T, kFp4, 16, 4, false>(map, ymap, p, c, s);
  }
  if (c.consumers == 3) switch (c.tokens) {
      case 16: return launch<T, kFp4, 16, 3, kMoE>(map, ymap, p, c, s);
      case 32: return launch<T, kFp4, 32, 3, kMoE>(map, ymap, p, c, s);
      default: return launch<T, kFp4, 64, 3, kMoE>(map, ymap, p, c, s);
    }
  if constexpr (kMoE) {  // the tail tiles exist for the grouped GEMMs only
    if (c.tokens == 80) return launch<T, kFp4, 80, 2, true>(map, ymap, p, c, s);
    if (c.tokens == 144) return launch<T, kFp4, 144, 2, true>(map, ymap, p, c, s);
    if (c.tokens == 288) return launch<T, kFp4, 288, 2, true>(map, ymap, p, c, s);
  }
  switch (c.tokens) {
    case 16: return launch<T, kFp4, 16, 2, kMoE>(map, ymap, p, c, s);
    case 32: return launch<T, kFp4, 32, 2, kMoE>(map, ymap, p, c, s);
    case 64: return launch<T, kFp4, 64, 2, kMoE>(map, ymap, p, c, s);
    case 128: return launch<T, kFp4, 128, 2, kMoE>(map, ymap, p, c, s);
    default: return launch<T, kFp4, 256, 2, kMoE>(map, ymap, p, c, s);
  }
}

// launch_tokens for the type pairs this build has instances of (as active_clusters_of).
template <typename T, bool kFp4, bool kMoE>
Status launch_tokens_of(const CUtensorMap& map, const CUtensorMap& ymap, const KernelParams& p,
                        const HopperGemmConfig& c, cudaStream_t s) {
  if constexpr (instance_types_compiled(std::is_same_v<T, __nv_bfloat16>, kFp4))
    return launch_tokens<T, kFp4, kMoE>(map, ymap, p, c, s);
  else
    return unimplemented(std::string("cuda-hopper: ") + kMinimalInstancesNote);
}

template <bool kMoE>
Status launch_types(ElemType elem, DType act, const CUtensorMap& map, const CUtensorMap& ymap,
                    const KernelParams& p, const HopperGemmConfig& c, cudaStream_t s) {
  const bool fp4 = elem == ElemType::kE2M1;
  return act == DType::kBF16
             ? (fp4 ? launch_tokens_of<__nv_bfloat16, true, kMoE>(map, ymap, p, c, s)
                    : launch_tokens_of<__nv_bfloat16, false, kMoE>(map, ymap, p, c, s))
             : (fp4 ? launch_tokens_of<__half, true, kMoE>(map, ymap, p, c, s)
                    : launch_tokens_of<__half, false, kMoE>(map, ymap, p, c, s));
}

// The FP8 instances of output type T (gemm_launch.cuh, MXQ_HOPPER_FP8_INSTANCES).
template <typename T>
Status launch_fp8_tokens(const CUtensorMap& map, const CUtensorMap& ymap, const KernelParams& p,
                         const HopperGemmConfig& c, cudaStream_t s) {
  if constexpr (instance_types_compiled(std::is_same_v<T, __nv_bfloat16>, true)) {
    if (c.fp8_tiles) return launch<T, true, 128, 2, false, 1, true, 0, true>(map, ymap, p, c, s);
    if (c.fp8_transform == 1) return launch<T, true, 128, 2, false, 1, true, 1>(map, ymap, p, c, s);
    if (c.fp8_transform == 2) return launch<T, true, 128, 2, false, 1, true, 2>(map, ymap, p, c, s);
    if (c.consumers == 4) return launch<T, true, 16, 4, false, 1, true>(map, ymap, p, c, s);
    if (c.consumers == 3) switch (c.tokens) {
        case 16: return launch<T, true, 16, 3, false, 1, true>(map, ymap, p, c, s);
        case 32: return launch<T, true, 32, 3, false, 1, true>(map, ymap, p, c, s);
        default: return launch<T, true, 64, 3, false, 1, true>(map, ymap, p, c, s);
      }
    switch (c.tokens) {
      case 16: return launch<T, true, 16, 2, false, 1, true>(map, ymap, p, c, s);
      case 32: return launch<T, true, 32, 2, false, 1, true>(map, ymap, p, c, s);
      case 64: return launch<T, true, 64, 2, false, 1, true>(map, ymap, p, c, s);
      default: return launch<T, true, 128, 2, false, 1, true>(map, ymap, p, c, s);
    }
  } else {
    return unimplemented(std::string("cuda-hopper FP8: ") + kMinimalInstancesNote);
  }
}

// The cheapest consumer count and split of K for token tile `nt` (cost model above) over
// `m_tiles` token tiles of N rows, given the best estimate so far: updates `best`,
// `c.tokens`, `c.consumers` and `c.splits` when it wins by 2% (2 consumers and smaller
// splits first: ties keep them). `f` restricts the candidates (MXQ_HOPPER_CONFIG).
Status rank_splits(ElemType elem, DType act, int64_t n, int64_t k64, int nt, int64_t m_tiles,
                   bool grouped, const Forced& f, double& best, HopperGemmConfig& c,
                   bool fp8) {
  for (int cons : {2, 3, 4})
    for (int kh : {1, 2})
      for (int tw : {0, 1, 2})
      for (bool tiles : {false, true}) {
      if (!has_consumers(nt, cons) || (f.consumers != 0 && f.consumers != cons)) continue;
      if (tiles && (!fp8 || tw > 0 || !has_fp8_tiles(nt, cons, kh))) continue;
      if (fp8 && f.tiles >= 0 && f.tiles != int(tiles)) continue;
      // Until the pre-decoded tiles are measured on the device (their step cost is predicted)
      // the model offers them only when forced.
      if (tiles && f.tiles < 0) continue;
      if (fp8 && !has_fp8_tile(nt, cons, kh)) continue;
      if (tw > 0 && (!fp8 || !has_fp8_transform(nt, cons, kh, tw))) continue;
      if (f.transform >= 0 && fp8 && f.transform != tw) continue;
      // Until the transform warpgroups are measured on the device (fp8_step_cycles is a guess)
      // the model offers them only when forced.
      if (tw > 0 && f.transform < 0) continue;
      if (!has_k_halves(nt, cons, kh) || (f.halves != 0 && f.halves != kh)) continue;
      if (grouped && cons == 4) continue;  // dense-only instances (gemm_launch.cuh)
      const int64_t items = m_tiles * ((n + item_rows(cons, kh) - 1) / item_rows(cons, kh));
      // Any split up to the reduction buffer's (clusters of 3, 5, 6, 7 CTAs fill the SMs where
      // powers of two leave a third of them idle: 43 items of 192 rows x 3 = 129 CTAs).
      for (int s = 1; s <= max_splits(nt, cons, tw, tiles) && s <= k64; ++s) {
        if (f.splits != 0 && f.splits != s) continue;
        // 3 consumers split at most 2 ways unless forced: measured at 073f86c, split 8 ran 3x
        // slower per step than the model (8192 x 28672 M = 1: 73.4 us against 62.0 with 2
        // consumers, split 2; not understood yet, see gemm-hopper.md) and split 4 never won.
        if (cons == 3 && s > 2 && f.splits == 0) continue;
        auto r = resident_clusters(elem, act, nt, cons, s, kh, fp8, tw, tiles);
        if (!r.ok()) return r.status();
        double e = 0;
        if (tiles) {
          // One pre-pass + GEMM per workspace chunk of rows (fp8_chunking), each its own waves.
          const Fp8Chunking ch = fp8_chunking(n, k64);
          for (int i = 0; i < ch.chunks; ++i) {
            const int64_t rows = std::min<int64_t>(ch.rows, n - i * ch.rows);
            e += estimate_cycles(int(std::min<int64_t>(m_tiles * ((rows + 127) / 128), 1 << 30)),
                                 r.value(), k64, nt, cons, s, grouped, kh, fp8, tw, tiles);
          }
          e += predecode_cycles((n + 127) / 128 * 2, k64, ch.chunks);
        } else {
          e = estimate_cycles(int(std::min<int64_t>(items, 1 << 30)), r.value(), k64, nt, cons,
                              s, grouped, kh, fp8, tw);
        }
        if (best == 0.0 || e < best * 0.98) {  // a bigger tile, split or CTA must win by 2%
          best = e;
          c.tokens = nt;
          c.consumers = cons;
          c.k_halves = kh;
          c.splits = s;
          c.fp8_transform = tw;
          c.fp8_tiles = tiles;
        }
      }
    }
  return Status::Ok();
}

// The rest of the config once tile and split are chosen.
Status finish_config(ElemType elem, DType act, int64_t n, double best, HopperGemmConfig& c) {
  if (best == 0.0)
    return invalid_argument("cuda-hopper: MXQ_HOPPER_CONFIG leaves no launch for this problem");
  const int rows = item_rows(c.consumers, c.k_halves);
  c.n_blocks = int((n + rows - 1) / rows);
  c.estimate_us = best / 1.75e3;  // at ~1.75 GHz under load
  c.stages = stages(c.tokens, elem == ElemType::kE2M1, c.consumers, c.k_halves, c.fp8,
                    c.fp8_transform, c.fp8_tiles);
  c.stage_steps = stage_steps(c.tokens, c.consumers, c.fp8);
  c.items = c.m_tiles * c.n_blocks;
  auto r = resident_clusters(elem, act, c.tokens, c.consumers, c.splits, c.k_halves, c.fp8,
                             c.fp8_transform, c.fp8_tiles);
  if (!r.ok()) return r.status();
  c.clusters = std::min(c.items, r.value());
  return Status::Ok();
}

// The grouped GEMMs' launch (gemm_grouped.cc).
template Status launch_types<true>(ElemType, DType, const CUtensorMap&, const CUtensorMap&,
                                   const KernelParams&, const HopperGemmConfig&, cudaStream_t);

}  // namespace detail

using namespace detail;  // (the schedule above: gemm_schedule.h)

std::string HopperGemmConfig::to_string() const {
  return std::string(fp8 ? "FP8 wgmma m64n" + std::to_string(tokens) +
                               "k32 e4m3 (MXFP4 folded into E4M3 weights as A" +
                               (fp8_tiles
                                    ? " in shared memory, pre-decoded into E4M3 tiles by a "
                                      "pre-pass per chunk of " + std::to_string(fp8_chunk_rows) +
                                          " rows (" + std::to_string(fp8_chunks) +
                                          (fp8_chunks > 1 ? " chunks" : " chunk") +
                                          ", raster groups of " + std::to_string(raster_group) +
                                          " row blocks), "
                                : fp8_transform > 0
                                    ? std::string(" in shared memory, decoded by ") +
                                          std::to_string(fp8_transform) + " transform warpgroup" +
                                          (fp8_transform > 1 ? "s" : "") + ", "
                                    : std::string(" in registers, "))
                         : "wgmma m64n" + std::to_string(tokens) + " (weights as A, ") +
         std::to_string(tokens) + " tokens per item), " + std::to_string(stages) +
         "-stage TMA ring of " + std::to_string(stage_steps) + (fp8 ? " k128 step" : " k64 step") +
         (stage_steps > 1 ? "s, " : ", ") + (!fp8 ? ""
                 : fp8_group_scales
                     ? "FP32 promotion per stage x the token's 128-column group scale, "
                 : fp8_promote_stages == 1
                     ? "FP32 promotion per stage, "
                     : "FP32 promotion every " + std::to_string(fp8_promote_stages) +
                           " stages (MXQ_HOPPER_FP8_PROMOTE), ") +
         std::to_string(m_tiles) + " x " + std::to_string(n_blocks) + " items of " +
         std::to_string(item_rows(consumers, k_halves)) + " rows (" + std::to_string(consumers) +
         " consumer warpgroups" + (k_halves == 2 ? ", K in 2 halves inside the CTA" : "") +
         "), split K " + std::to_string(splits) + ", " +
         std::to_string(clusters) + " persistent clusters (" + std::to_string(ctas()) +
         " CTAs), model " + std::to_string(int(estimate_us + 0.5)) + " us" +
         (forced ? " (forced by MXQ_HOPPER_CONFIG)" : "") +
         (tma_store ? ", epilogue through shared memory + TMA store" : ", epilogue direct stores");
}

Status repack_hopper(const FragSource& fs, uint8_t* out, RepackStats* stats, cudaStream_t stream) {
  MXQ_RETURN_IF_ERROR(check_frag_layout(fs));
  const HopperLayout l = hopper_layout(fs);
  frag::Source src = fs.source();
  src.natural_k = true;
  const int64_t threads = l.chunks() * 128;
  const int block = 256;
  repack_hopper_kernel<<<unsigned((threads + block - 1) / block), block, 0, stream>>>(
      src, l.n64(), l.k64(), threads, HopperLayout::lane_bytes(l.elem), l.chunk_bytes(), out, stats);
  MXQ_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

// The schedule. Decode (M <= 64): the smallest token tile that holds M, and the split of K
// across a cluster that best fills the resident clusters (N = 8192: 64 items of 128 rows on
// 132 SMs run as 64 clusters of 2). Larger M: 64, 128 or 256 tokens per item, whichever fills
// the waves better (the larger preferred: more reuse of each decoded weight fragment).
StatusOr<HopperGemmConfig> choose_hopper_config(const HopperGemmArgs& a) {
  HopperGemmConfig c;
  const int64_t k64 = (a.k + 63) / 64;
  // Every token tile and split the kernel has, ranked by the cost model; ties go to the
  // smaller tile and the smaller split (less padding, no reduction).
  double best = 0.0;
  const Forced f = forced_config();
  c.forced = f.tokens != 0 || f.consumers != 0 || f.splits != 0 || f.halves != 0;
  for (int nt : kDenseTiles) {
    if (f.tokens != 0 ? nt != f.tokens : nt > 16 && (a.m + nt / 2 - 1) / (nt / 2) == 1)
      continue;  // forced elsewhere, or half the tile would be padding
    MXQ_RETURN_IF_ERROR(
        rank_splits(a.elem, a.act, a.n, k64, nt, (a.m + nt - 1) / nt, false, f, best, c));
  }
  c.m_tiles = int((a.m + c.tokens - 1) / c.tokens);
  MXQ_RETURN_IF_ERROR(finish_config(a.elem, a.act, a.n, best, c));
  // (hopper_gemm turns it off for output rows that are not 16-byte aligned)
  c.tma_store = a.out != DType::kF32 && tma_epilogue_requested();
  return c;
}

// The dense GEMMs' shape and stride limits (16-bit and FP8 entry points), `what` naming the entry.
static Status check_dense_shape(const char* what, int64_t m, int64_t n, int64_t k, int64_t ldx,
                                int64_t ldy) {
  if (m < 1 || n < 16 || k < 32 || n % 16 != 0 || k % 32 != 0)
    return invalid_argument(std::string(what) + ": need M >= 1, N a multiple of 16, K a multiple "
                            "of 32; got M=" + std::to_string(m) + " N=" + std::to_string(n) +
                            " K=" + std::to_string(k));
  if (m > 0x7FFFFFFF || n > 0x7FFFFFFF || k > 0x7FFFFFFF)
    return invalid_argument(std::string(what) + ": M, N or K too large for one launch");
  if (ldx < k || ldy < n)
    return invalid_argument(std::string(what) + ": row strides ldx=" + std::to_string(ldx) +
                            " / ldy=" + std::to_string(ldy) + " smaller than K / N");
  return Status::Ok();
}

Status hopper_gemm(const HopperGemmArgs& a, cudaStream_t stream, HopperGemmConfig* ran) {
  if (a.elem != ElemType::kE2M1 && a.elem != ElemType::kE4M3)
    return unimplemented(std::string("cuda-hopper GEMM: weights must be E2M1 or E4M3, got ") +
                         elem_type_name(a.elem));
  if (a.act != DType::kBF16 && a.act != DType::kF16)
    return unimplemented(std::string("cuda-hopper GEMM: activations must be BF16 or F16, got ") +
                         dtype_name(a.act));
  if (a.out != a.act && a.out != DType::kF32)
    return unimplemented(std::string("cuda-hopper GEMM: output must be ") + dtype_name(a.act) +
                         " (the activation dtype) or F32, got " + dtype_name(a.out));
  MXQ_RETURN_IF_ERROR(check_dense_shape("cuda-hopper GEMM", a.m, a.n, a.k, a.ldx, a.ldy));
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || a.ldx % 8 != 0)
    return invalid_argument("cuda-hopper GEMM: activation rows must be 16-byte aligned for TMA (x "
                            "pointer and row stride a multiple of 8 elements)");
  if (a.w == nullptr || a.x == nullptr || a.y == nullptr)
    return invalid_argument("cuda-hopper GEMM: null weight, activation or output pointer");
  auto cfg = choose_hopper_config(a);
  if (!cfg.ok()) return cfg.status();
  HopperGemmConfig c = cfg.value();
  auto map = activation_map(a.x, a.act, a.m, a.k, a.ldx, c.tokens);
  if (!map.ok()) return map.status();
  // The TMA-store epilogue needs 16-byte aligned output rows; else (and for F32) direct stores.
  c.tma_store = c.tma_store && reinterpret_cast<uintptr_t>(a.y) % 16 == 0 && a.ldy % 8 == 0;
  CUtensorMap ymap = {};
  if (c.tma_store) {
    auto m = output_map(a.y, a.out, a.m, a.n, a.ldy, c.tokens);
    if (!m.ok()) return m.status();
    ymap = m.value();
  }
  KernelParams p = base_params(a.elem, a.w, a.bias, a.y, a.m, a.n, a.k, a.ldy, c);
  p.items = c.items;
  p.splits = c.splits;
  p.out_f32 = a.out == DType::kF32;
  p.tma_store = c.tma_store;
  MXQ_RETURN_IF_ERROR(launch_types<false>(a.elem, a.act, map.value(), ymap, p, c, stream));
  if (ran != nullptr) *ran = c;
  return Status::Ok();
}

// The FP8 instance type: the 16-bit output's, BF16 for F32 outputs.
static DType fp8_instance_type(DType out) { return out == DType::kF16 ? DType::kF16 : DType::kBF16; }

// MXQ_HOPPER_FP8_PROMOTE=1|2|4 (read per call): k128 stages per FP32 promotion (A/B runs; other
// values are ignored).
static int fp8_promote_requested() {
  const char* v = std::getenv("MXQ_HOPPER_FP8_PROMOTE");
  if (v == nullptr) return 1;
  const int n = std::atoi(v);
  return n == 2 || n == 4 ? n : 1;
}

StatusOr<HopperGemmConfig> choose_hopper_fp8_config(const HopperFp8GemmArgs& a) {
  HopperGemmConfig c;
  c.fp8 = true;
  const int64_t k128 = (a.k + 127) / 128;
  const DType t = fp8_instance_type(a.out);
  double best = 0.0;
  Forced f = forced_config();
  f.halves = 0;
  if (forced_fp8_transform() >= 0) f.transform = forced_fp8_transform();
  if (forced_fp8_tiles() >= 0) f.tiles = forced_fp8_tiles();
  if (f.tiles == 1 && f.transform < 0) f.transform = 0;  // (no transform warpgroups with tiles)
  // the transform warpgroups' and the pre-decoded tiles' token tile
  if ((f.transform > 0 || f.tiles == 1) && f.tokens == 0) f.tokens = 128;
  c.forced = f.tokens != 0 || f.consumers != 0 || f.splits != 0 || f.transform >= 0 ||
             f.tiles >= 0;
  for (int nt : kFp8DenseTiles) {
    if (f.tokens != 0 ? nt != f.tokens : nt > 16 && (a.m + nt / 2 - 1) / (nt / 2) == 1)
      continue;  // forced elsewhere, or half the tile would be padding
    MXQ_RETURN_IF_ERROR(rank_splits(ElemType::kE2M1, t, a.n, k128, nt, (a.m + nt - 1) / nt, false,
                                    f, best, c, /*fp8=*/true));
  }
  c.m_tiles = int((a.m + c.tokens - 1) / c.tokens);
  MXQ_RETURN_IF_ERROR(finish_config(ElemType::kE2M1, t, a.n, best, c));
  c.tma_store = a.out != DType::kF32 && tma_epilogue_requested();
  // The group key's scale changes every k128 stage: promotion after each (an override of
  // MXQ_HOPPER_FP8_PROMOTE would sum two groups under one scale).
  c.fp8_group_scales = a.act_group_scale != nullptr;
  c.fp8_promote_stages = c.fp8_group_scales ? 1 : fp8_promote_requested();
  if (c.fp8_tiles) {
    const Fp8Chunking ch = fp8_chunking(a.n, k128);
    c.fp8_chunk_rows = int(ch.rows);
    c.fp8_chunks = ch.chunks;
    c.raster_group = ch.raster_group;
  }
  return c;
}

StatusOr<size_t> hopper_fp8_workspace_bytes(const HopperFp8GemmArgs& a) {
  auto c = choose_hopper_fp8_config(a);
  if (!c.ok()) return c.status();
  if (!c.value().fp8_tiles) return size_t(0);
  return fp8::tiles_bytes(std::min<int64_t>(c.value().fp8_chunk_rows, (a.n + 127) / 128 * 128) / 64,
                          (a.k + 127) / 128);
}

Status hopper_fp8_gemm(const HopperFp8GemmArgs& a, cudaStream_t stream, HopperGemmConfig* ran) {
  if (a.out != DType::kBF16 && a.out != DType::kF16 && a.out != DType::kF32)
    return unimplemented(std::string("cuda-hopper FP8 GEMM: output must be BF16, F16 or F32, got ") +
                         dtype_name(a.out));
  MXQ_RETURN_IF_ERROR(check_dense_shape("cuda-hopper FP8 GEMM", a.m, a.n, a.k, a.ldx, a.ldy));
  if (reinterpret_cast<uintptr_t>(a.x) % 16 != 0 || a.ldx % 16 != 0)
    return invalid_argument("cuda-hopper FP8 GEMM: activation code rows must be 16-byte aligned "
                            "for TMA (x pointer and row stride a multiple of 16 bytes)");
  if (a.w == nullptr || a.row_mul == nullptr || a.x == nullptr || a.y == nullptr)
    return invalid_argument("cuda-hopper FP8 GEMM: null weight, row multiplier, activation or "
                            "output pointer");
  if (a.act_group_scale != nullptr && (a.act_row_scale != nullptr || a.act_scale != 1.0f))
    return invalid_argument("cuda-hopper FP8 GEMM: group scales (fp8-dynamic-group128) exclude "
                            "per-token scales and a per-tensor scale other than 1");
  auto cfg = choose_hopper_fp8_config(a);
  if (!cfg.ok()) return cfg.status();
  HopperGemmConfig c = cfg.value();
  const fp8::Fp8Layout l{1, a.n, a.k};
  if (c.fp8_tiles) {
    const size_t need = fp8::tiles_bytes(std::min<int64_t>(c.fp8_chunk_rows, l.n_pad()) / 64,
                                         l.k128());
    if (a.workspace == nullptr || a.workspace_bytes < need)
      return invalid_argument("cuda-hopper FP8 GEMM: the launch chosen (" + c.to_string() +
                              ") needs a workspace of " + std::to_string(need) + " bytes, got " +
                              std::to_string(a.workspace_bytes) +
                              " (hopper_fp8_workspace_bytes tells the size)");
  }
  auto map = activation_map(a.x, DType::kBF16, a.m, a.k, a.ldx, c.tokens, /*fp8=*/true);
  if (!map.ok()) return map.status();
  c.tma_store = c.tma_store && reinterpret_cast<uintptr_t>(a.y) % 16 == 0 && a.ldy % 8 == 0;
  CUtensorMap ymap = {};
  if (c.tma_store && !c.fp8_tiles) {
    auto m = output_map(a.y, a.out, a.m, a.n, a.ldy, c.tokens);
    if (!m.ok()) return m.status();
    ymap = m.value();
  }
  KernelParams p = {};
  p.w = a.w;
  p.bias = a.bias;
  p.y = a.y;
  p.m = int(a.m);
  p.n = int(a.n);
  p.ksteps = int(l.k128());
  p.n64 = int(l.n64());
  p.ldy = a.ldy;
  p.n_blocks = c.n_blocks;
  p.items = c.items;
  p.splits = c.splits;
  p.out_f32 = a.out == DType::kF32;
  p.tma_store = c.tma_store;
  p.row_mul = a.row_mul;
  p.act_row_scale = a.act_row_scale;
  p.act_scale = a.act_scale;
  p.act_group_scale = a.act_group_scale;
  p.act_groups = int(l.k128());  // one group per k128 stage
  p.promote_stages = c.fp8_promote_stages;
  auto launch_gemm = [&](const CUtensorMap& ym, const KernelParams& kp,
                         const HopperGemmConfig& kc) {
    return fp8_instance_type(a.out) == DType::kBF16
               ? launch_fp8_tokens<__nv_bfloat16>(map.value(), ym, kp, kc, stream)
               : launch_fp8_tokens<__half>(map.value(), ym, kp, kc, stream);
  };
  if (!c.fp8_tiles) {
    MXQ_RETURN_IF_ERROR(launch_gemm(ymap, p, c));
  } else {
    // Per chunk of rows [n0, n0 + rows): the pre-pass decodes its blocks into the workspace,
    // then the GEMM runs on them as a layer of its own (its rows, row multipliers, bias and
    // output columns offset by n0; items in raster groups). Both launches use programmatic
    // dependent launch: the pre-pass of the next chunk decodes while this GEMM runs and stores
    // the tiles only once it has completed (fp8_predecode.h).
    const size_t out_bytes = size_t(dtype_bytes(a.out));
    for (int64_t n0 = 0; n0 < a.n; n0 += c.fp8_chunk_rows) {
      const int64_t rows = std::min<int64_t>(c.fp8_chunk_rows, a.n - n0);
      const int64_t blocks = (rows + 127) / 128 * 2;
      MXQ_RETURN_IF_ERROR(fp8::predecode_fp8(l, a.w, n0 / 64, blocks, a.workspace, stream));
      HopperGemmConfig cc = c;
      cc.n_blocks = int(blocks / 2);
      cc.items = cc.m_tiles * cc.n_blocks;
      cc.clusters = std::min(cc.items, c.clusters);
      KernelParams q = p;
      q.w = a.workspace;
      q.n = int(rows);
      q.n64 = int(blocks);
      q.n_blocks = cc.n_blocks;
      q.items = cc.items;
      q.raster_group = c.raster_group;
      q.row_mul = a.row_mul + n0;
      q.bias = a.bias != nullptr ? a.bias + n0 : nullptr;
      q.y = static_cast<uint8_t*>(a.y) + size_t(n0) * out_bytes;
      CUtensorMap ym = {};
      if (c.tma_store) {
        auto m = output_map(q.y, a.out, a.m, rows, a.ldy, c.tokens);
        if (!m.ok()) return m.status();
        ym = m.value();
      }
      MXQ_RETURN_IF_ERROR(launch_gemm(ym, q, cc));
    }
  }
  if (ran != nullptr) *ran = c;
  return Status::Ok();
}

}  // namespace mxq::cuda::hopper
