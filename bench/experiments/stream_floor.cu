// Diagnostic (issue 14): how fast can one SM stream weights through a TMA bulk-copy ring, and
// what does the harness itself cost? Three kernels, timed by stream_floor.py in the same
// harness as cuda_gemm_bench.py (events, L2 flushed by a read, a GPU sleep before each run):
// - empty: one launch of 132 CTAs that do nothing (the harness + launch floor);
// - ldg: every thread streams 16-byte loads, 8 in flight, and sums them (the plain-load floor);
// - ring: one producer thread per CTA feeds a `stages`-deep shared-memory ring with `copies`
//   bulk copies (cp.async.bulk) per stage, `stage_bytes` in all, plus optionally one small
//   copy per stage from an L2-resident buffer (as the activation tile), and `consumer_warps`
//   warps wait on each stage's full barrier, read 16 bytes per lane and release it, the
//   protocol of the cuda-hopper GEMM without its decode and MMA.
// Built by hand for the device (see stream_floor.py); not part of the library.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/hopper/sm90_ptx.cuh"

namespace sm90 = mxq::cuda::sm90;

__global__ void empty_kernel() {}

__global__ void ldg_kernel(const uint4* __restrict__ src, size_t n16, uint32_t* out) {
  uint32_t acc = 0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 7 * stride < n16; i += 8 * stride) {
    uint4 v[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) v[u] = __ldcs(src + i + u * stride);
#pragma unroll
    for (int u = 0; u < 8; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n16; i += stride) {
    const uint4 v = __ldcs(src + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;
}

struct RingArgs {
  const uint8_t* src;
  const uint8_t* side;  // small L2-resident buffer (the activation tile), or null
  size_t bytes_per_cta;
  int stage_bytes, copies, stages, side_bytes;
  uint32_t* out;
};

__global__ void __launch_bounds__(384, 1) ring_kernel(const RingArgs a) {
#if MXQ_HAS_WGMMA
  extern __shared__ __align__(1024) uint8_t smem[];
  uint8_t* ring = smem;
  uint8_t* side = ring + size_t(a.stages) * a.stage_bytes;
  uint64_t* full = reinterpret_cast<uint64_t*>(side + size_t(a.stages) * a.side_bytes);
  uint64_t* empty = full + a.stages;
  const int consumer_warps = int(blockDim.x) / 32 - 4;
  if (threadIdx.x == 0) {
    for (int s = 0; s < a.stages; ++s) {
      sm90::mbar_init(&full[s], 1);
      sm90::mbar_init(&empty[s], consumer_warps);
    }
    sm90::fence_mbar_init();
  }
  __syncthreads();
  const int steps = int(a.bytes_per_cta / a.stage_bytes);
  const uint8_t* base = a.src + size_t(blockIdx.x) * a.bytes_per_cta;
  if (threadIdx.x < 128) {
    if (threadIdx.x == 0) {
      const uint64_t policy = sm90::l2_evict_first();
      const int chunk = a.stage_bytes / a.copies;
      int slot = 0;
      uint32_t phase = 0;
      for (int s = 0; s < steps; ++s) {
        sm90::mbar_wait(&empty[slot], phase ^ 1u);
        sm90::mbar_arrive_expect_tx(&full[slot], uint32_t(a.stage_bytes + (a.side ? a.side_bytes : 0)));
        for (int c = 0; c < a.copies; ++c)
          sm90::bulk_load(ring + size_t(slot) * a.stage_bytes + c * chunk,
                          base + size_t(s) * a.stage_bytes + c * chunk, uint32_t(chunk), &full[slot],
                          policy);
        if (a.side)
          sm90::bulk_load(side + size_t(slot) * a.side_bytes, a.side, uint32_t(a.side_bytes),
                          &full[slot], 0ull);
        if (++slot == a.stages) {
          slot = 0;
          phase ^= 1u;
        }
      }
    }
    return;
  }
  const int lane = threadIdx.x & 31, warp = int(threadIdx.x) / 32 - 4;
  uint32_t acc = 0;
  int slot = 0;
  uint32_t phase = 0;
  for (int s = 0; s < steps; ++s) {
    sm90::mbar_wait(&full[slot], phase);
    const uint32_t off = uint32_t((warp * 32 + lane) * 16) % uint32_t(a.stage_bytes);
    const uint4 v = sm90::lds_v4(sm90::smem_addr(ring + size_t(slot) * a.stage_bytes) + off);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
    __syncwarp();
    if (lane == 0) sm90::mbar_arrive(&empty[slot]);
    if (++slot == a.stages) {
      slot = 0;
      phase ^= 1u;
    }
  }
  if (acc == 0x12345678u) a.out[0] = acc;
#endif
}

extern "C" {

int sf_empty(cudaStream_t st) {
  empty_kernel<<<132, 128, 0, st>>>();
  return int(cudaGetLastError());
}

int sf_ldg(const void* src, size_t bytes, uint32_t* out, int blocks, int threads, cudaStream_t st) {
  ldg_kernel<<<blocks, threads, 0, st>>>(static_cast<const uint4*>(src), bytes / 16, out);
  return int(cudaGetLastError());
}

// `bytes` is split evenly over `ctas` (each CTA's share a multiple of stage_bytes).
int sf_ring(const void* src, size_t bytes, const void* side, int side_bytes, uint32_t* out, int ctas,
            int stage_bytes, int copies, int stages, int consumer_warps, cudaStream_t st) {
  RingArgs a{static_cast<const uint8_t*>(src), static_cast<const uint8_t*>(side),
             bytes / size_t(ctas) / size_t(stage_bytes) * size_t(stage_bytes), stage_bytes, copies,
             stages, side ? side_bytes : 0, out};
  const size_t smem = size_t(stages) * (stage_bytes + a.side_bytes) + 16 * size_t(stages) + 1024;
  cudaError_t e = cudaFuncSetAttribute(ring_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       int(smem));
  if (e != cudaSuccess) return int(e);
  ring_kernel<<<ctas, 128 + 32 * consumer_warps, smem, st>>>(a);
  return int(cudaGetLastError());
}

}  // extern "C"
