// MoE token dispatch: count per tile -> scan -> stable placement -> block map (see dispatch.h).
// A tile is kTile consecutive pairs handled by one warp in order, 32 at a time; within 32 pairs
// __match_any_sync groups equal experts and a pair's rank is the number of lower lanes in its
// group, so every position depends on topk_ids only.
#include "cuda/moe/dispatch.h"

#include <algorithm>
#include <string>

#include "cuda/common/pdl.h"

namespace mxq::cuda {
namespace {

constexpr int kWarps = 4;               // warps (tiles) per block
constexpr int64_t kTile = 512;          // pairs per tile (16 rounds of 32)
constexpr int64_t kMaxLocalExperts = 2048;
constexpr int64_t kMaxBlock = 4096;
constexpr unsigned kFull = 0xffffffffu;

struct Args {
  const int32_t* ids;
  const int32_t* map;
  int64_t pairs;  // M * k
  int experts, local;
  int block;
  int64_t tiles, capacity;
  int32_t* tile_counts;  // [tiles, local]
  int32_t* offsets;
  int32_t* sorted;
  int32_t* block_expert;
  int32_t* counts;
};

__device__ __forceinline__ int local_of(const Args& a, int64_t p) {
  if (p >= a.pairs) return -1;
  const int g = a.ids[p];
  if (g < 0 || g >= a.experts) return -1;
  const int e = a.map ? a.map[g] : g;
  return (e >= 0 && e < a.local) ? e : -1;
}

// kPlace = false: per-tile counts into tile_counts. kPlace = true: tile_counts holds each tile's
// exclusive prefix within its expert; write the pairs at offsets[e] + prefix + rank.
template <bool kPlace>
__global__ void __launch_bounds__(32 * kWarps) tile_kernel(const Args a) {
  extern __shared__ int smem[];
  pdl::launch_dependents();
  pdl::wait();  // the routing's ids (count), the scan's prefixes (place)
  const int lane = int(threadIdx.x & 31u), warp = int(threadIdx.x >> 5);
  const int64_t tile = int64_t(blockIdx.x) * kWarps + warp;
  if (tile >= a.tiles) return;  // uniform per warp; no block-level barrier below
  int* cnt = smem + warp * a.local;
  int32_t* row = a.tile_counts + tile * a.local;
  for (int e = lane; e < a.local; e += 32) cnt[e] = kPlace ? a.offsets[e] + row[e] : 0;
  __syncwarp();
  const unsigned lower = (1u << lane) - 1u;
  for (int64_t c = 0; c < kTile; c += 32) {
    const int64_t p = tile * kTile + c + lane;
    const int e = local_of(a, p);
    const unsigned group = __match_any_sync(kFull, e);
    const bool leader = (__ffs(int(group)) - 1) == lane;
    if (kPlace && e >= 0) a.sorted[cnt[e] + __popc(group & lower)] = int32_t(p);
    __syncwarp();
    if (e >= 0 && leader) cnt[e] += __popc(group);
    __syncwarp();
  }
  if (!kPlace)
    for (int e = lane; e < a.local; e += 32) row[e] = cnt[e];
}

// One block: per expert, the exclusive prefix over tiles (in place) and the count; then the
// padded exclusive scan over experts (warp 0, 32 experts at a time).
__global__ void __launch_bounds__(1024) scan_kernel(const Args a) {
  __shared__ int padded[kMaxLocalExperts];
  pdl::launch_dependents();
  pdl::wait();
  for (int e = int(threadIdx.x); e < a.local; e += int(blockDim.x)) {
    int run = 0;
    for (int64_t t = 0; t < a.tiles; ++t) {
      int32_t* q = a.tile_counts + t * a.local + e;
      const int c = *q;
      *q = run;
      run += c;
    }
    if (a.counts) a.counts[e] = run;
    padded[e] = (run + a.block - 1) / a.block * a.block;
  }
  __syncthreads();
  if (threadIdx.x >= 32) return;
  const int lane = int(threadIdx.x);
  int base = 0;
  for (int e0 = 0; e0 < a.local; e0 += 32) {
    const int e = e0 + lane;
    const int v = e < a.local ? padded[e] : 0;
    int incl = v;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const int o = __shfl_up_sync(kFull, incl, off);
      if (lane >= off) incl += o;
    }
    if (e < a.local) a.offsets[e] = base + incl - v;
    base += __shfl_sync(kFull, incl, 31);
  }
  if (lane == 0) a.offsets[a.local] = base;
}

// The local expert whose padded range holds padded block b (-1 past the end `total`).
__device__ __forceinline__ int expert_of_block(const Args& a, int64_t b, int total) {
  const int64_t start = b * a.block;
  if (start >= total) return -1;
  int lo = 0, hi = a.local;  // offsets[lo] <= start < offsets[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    if (a.offsets[mid] <= start)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

__global__ void block_expert_kernel(const Args a) {
  pdl::launch_dependents();
  pdl::wait();
  const int64_t blocks = a.capacity / a.block;
  const int total = a.offsets[a.local];
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x)
    a.block_expert[b] = expert_of_block(a, b, total);
}

// The whole dispatch in one block when the pairs fit one tile (decode and small batches): the
// clear, the count, the padded scan, the placement and the block map of the four-launch path
// in one launch, with the same results (warp 0 walks the pairs in the same order).
__global__ void __launch_bounds__(256) small_kernel(const Args a) {
  extern __shared__ int cnt[];  // [local]: counts, then each expert's next free position
  pdl::launch_dependents();
  pdl::wait();  // the routing's ids; and the previous call's readers of `sorted` are done
  for (int64_t i = threadIdx.x; i < a.capacity; i += blockDim.x) a.sorted[i] = -1;
  for (int e = int(threadIdx.x); e < a.local; e += int(blockDim.x)) cnt[e] = 0;
  __syncthreads();
  if (threadIdx.x < 32) {
    const int lane = int(threadIdx.x);
    const unsigned lower = (1u << lane) - 1u;
    for (int pass = 0; pass < 2; ++pass) {  // 0: count, 1: place
      for (int64_t c = 0; c < a.pairs; c += 32) {
        const int64_t p = c + lane;
        const int e = local_of(a, p);
        const unsigned group = __match_any_sync(kFull, e);
        const bool leader = (__ffs(int(group)) - 1) == lane;
        if (pass == 1 && e >= 0) a.sorted[cnt[e] + __popc(group & lower)] = int32_t(p);
        __syncwarp();
        if (e >= 0 && leader) cnt[e] += __popc(group);
        __syncwarp();
      }
      if (pass == 1) break;
      int base = 0;  // padded exclusive scan over experts, 32 at a time
      for (int e0 = 0; e0 < a.local; e0 += 32) {
        const int e = e0 + lane;
        const int c = e < a.local ? cnt[e] : 0;
        const int v = (c + a.block - 1) / a.block * a.block;
        int incl = v;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const int o = __shfl_up_sync(kFull, incl, off);
          if (lane >= off) incl += o;
        }
        if (e < a.local) {
          if (a.counts) a.counts[e] = c;
          a.offsets[e] = base + incl - v;
          cnt[e] = base + incl - v;
        }
        base += __shfl_sync(kFull, incl, 31);
      }
      if (lane == 0) a.offsets[a.local] = base;
      __syncwarp();
    }
  }
  __syncthreads();
  const int64_t blocks = a.capacity / a.block;
  const int total = a.offsets[a.local];
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x)
    a.block_expert[b] = expert_of_block(a, b, total);
}

int64_t tiles_of(const MoEDispatchShape& s) {
  return s.tokens > 0 && s.topk > 0 ? (s.tokens * s.topk + kTile - 1) / kTile : 0;
}

}  // namespace

int64_t moe_dispatch_capacity(const MoEDispatchShape& s) {
  if (s.tokens <= 0 || s.topk <= 0 || s.block <= 0 || s.local_experts <= 0) return 0;
  const int64_t pairs = s.tokens * s.topk;
  const int64_t n = pairs + std::min(s.local_experts, pairs) * (s.block - 1);
  return (n + s.block - 1) / s.block * s.block;
}

size_t moe_dispatch_workspace_bytes(const MoEDispatchShape& s) {
  if (s.local_experts <= 0) return 0;
  return size_t(tiles_of(s)) * size_t(s.local_experts) * sizeof(int32_t);
}

Status moe_dispatch(const MoEDispatchShape& s, const int32_t* topk_ids,
                    const int32_t* expert_map, int32_t* expert_offsets,
                    int32_t* sorted_token_pairs, int32_t* block_expert, int32_t* expert_counts,
                    void* workspace, cudaStream_t stream) {
  const std::string fn = "cuda::moe_dispatch: ";
  if (s.tokens < 0 || s.topk < 1 || s.experts < 1)
    return invalid_argument(fn + "need tokens >= 0, topk >= 1, experts >= 1, got tokens " +
                            std::to_string(s.tokens) + ", topk " + std::to_string(s.topk) +
                            ", experts " + std::to_string(s.experts));
  if (s.local_experts < 1 || s.local_experts > kMaxLocalExperts)
    return invalid_argument(fn + "local_experts = " + std::to_string(s.local_experts) +
                            " must be in [1, " + std::to_string(kMaxLocalExperts) + "]");
  if (expert_map == nullptr && s.local_experts != s.experts)
    return invalid_argument(fn + "without an expert map local_experts (" +
                            std::to_string(s.local_experts) + ") must equal experts (" +
                            std::to_string(s.experts) + ")");
  if (s.experts > INT32_MAX)
    return invalid_argument(fn + "experts = " + std::to_string(s.experts) + " is too large");
  if (s.block < 1 || s.block > kMaxBlock)
    return invalid_argument(fn + "block = " + std::to_string(s.block) + " must be in [1, " +
                            std::to_string(kMaxBlock) + "]");
  if (s.tokens > INT32_MAX / s.topk)
    return invalid_argument(fn + "tokens * topk must be < 2^31");
  const int64_t capacity = moe_dispatch_capacity(s);
  if (capacity > INT32_MAX)
    return invalid_argument(fn + "capacity " + std::to_string(capacity) + " must be < 2^31");
  if (expert_offsets == nullptr) return invalid_argument(fn + "expert_offsets is a null pointer");
  const int64_t tiles = tiles_of(s);
  if (tiles > 0 && (topk_ids == nullptr || sorted_token_pairs == nullptr ||
                    block_expert == nullptr || workspace == nullptr))
    return invalid_argument(fn + (topk_ids == nullptr             ? "topk_ids"
                                  : sorted_token_pairs == nullptr ? "sorted_token_pairs"
                                  : block_expert == nullptr       ? "block_expert"
                                                                  : "workspace") +
                            " is a null pointer");
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    return invalid_argument(fn + "workspace must be 16-byte aligned");

  Args a{};
  a.ids = topk_ids;
  a.map = expert_map;
  a.pairs = s.tokens * s.topk;
  a.experts = int(s.experts);
  a.local = int(s.local_experts);
  a.block = int(s.block);
  a.tiles = tiles;
  a.capacity = capacity;
  a.tile_counts = static_cast<int32_t*>(workspace);
  a.offsets = expert_offsets;
  a.sorted = sorted_token_pairs;
  a.block_expert = block_expert;
  a.counts = expert_counts;

  const size_t smem = size_t(kWarps) * size_t(a.local) * sizeof(int);
  const unsigned tile_blocks = unsigned((tiles + kWarps - 1) / kWarps);
  cudaError_t e = cudaSuccess;
  if (tiles == 1) {  // one launch (small_kernel)
    e = pdl::launch(small_kernel, dim3(1), dim3(256), size_t(a.local) * sizeof(int), stream, a);
    if (e != cudaSuccess)
      return Status(StatusCode::kInternal, fn + "launch failed: " + cudaGetErrorName(e) + " (" +
                                               cudaGetErrorString(e) + ")");
    return Status::Ok();
  }
  if (capacity > 0)
    e = cudaMemsetAsync(sorted_token_pairs, 0xff, size_t(capacity) * sizeof(int32_t), stream);
  if (e == cudaSuccess && tiles > 0) {
    e = pdl::launch(tile_kernel<false>, dim3(tile_blocks), dim3(32 * kWarps), smem, stream, a);
  }
  if (e == cudaSuccess) {
    e = pdl::launch(scan_kernel, dim3(1), dim3(1024), 0, stream, a);
  }
  if (e == cudaSuccess && tiles > 0) {
    e = pdl::launch(tile_kernel<true>, dim3(tile_blocks), dim3(32 * kWarps), smem, stream, a);
  }
  if (e == cudaSuccess && capacity > 0) {
    const int64_t blocks = capacity / s.block;
    const unsigned grid = unsigned(std::min<int64_t>((blocks + 255) / 256, 1024));
    e = pdl::launch(block_expert_kernel, dim3(grid), dim3(256), 0, stream, a);
  }
  if (e != cudaSuccess)
    return Status(StatusCode::kInternal, fn + "launch failed: " + cudaGetErrorName(e) + " (" +
                                             cudaGetErrorString(e) + ")");
  return Status::Ok();
}

namespace {
// One block of 128 threads per output row, one V (16 bytes, or one element for unaligned rows)
// per thread and step.
template <typename V>
__global__ void __launch_bounds__(128) gather_rows_kernel(const V* __restrict__ x, int64_t ldx_v,
                                                         int64_t h_v, const int32_t* __restrict__ sorted,
                                                         int64_t topk, bool zero_padding,
                                                         V* __restrict__ out) {
  pdl::launch_dependents();
  pdl::wait();  // the dispatch's pairs; x from the kernel before the chain
  const int64_t r = blockIdx.x;
  const int p = sorted[r];
  V* dst = out + r * h_v;
  if (p < 0) {
    // Padding rows are zeroed only on request: a swap-AB grouped GEMM reads them as token
    // columns of their own, whose results it never stores, so their contents cannot reach
    // another column (and the copy skips up to half the bytes at large M).
    if (zero_padding)
      for (int64_t i = threadIdx.x; i < h_v; i += blockDim.x) dst[i] = V{};
    return;
  }
  const V* src = x + (int64_t(p) / topk) * ldx_v;
  for (int64_t i = threadIdx.x; i < h_v; i += blockDim.x) dst[i] = src[i];
}
}  // namespace

Status moe_gather_rows(const void* x, int64_t ldx, int64_t h, int elem_bytes,
                       const int32_t* sorted_token_pairs, int64_t capacity, int64_t topk,
                       bool zero_padding, void* out, cudaStream_t stream) {
  if (elem_bytes != 2 || topk < 1 || capacity > 0x7FFFFFFF || ldx < h)
    return invalid_argument("moe_gather_rows: need 16-bit elements, topk >= 1, ldx >= h and "
                            "capacity < 2^31 (got " + std::to_string(elem_bytes) + "-byte, topk " +
                            std::to_string(topk) + ", h " + std::to_string(h) + ", ldx " +
                            std::to_string(ldx) + ")");
  if (capacity == 0) return Status::Ok();
  const bool v16 = (h * 2) % 16 == 0 && (ldx * 2) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  const dim3 grid{unsigned(capacity)}, block{128};
  const cudaError_t e =
      v16 ? pdl::launch(gather_rows_kernel<uint4>, grid, block, 0, stream,
                        static_cast<const uint4*>(x), ldx / 8, h / 8, sorted_token_pairs, topk,
                        zero_padding, static_cast<uint4*>(out))
          : pdl::launch(gather_rows_kernel<uint16_t>, grid, block, 0, stream,
                        static_cast<const uint16_t*>(x), ldx, h, sorted_token_pairs, topk,
                        zero_padding, static_cast<uint16_t*>(out));
  if (e != cudaSuccess)
    return Status(StatusCode::kInternal, std::string("moe_gather_rows: launch failed: ") +
                                             cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  return Status::Ok();
}

}  // namespace mxq::cuda
