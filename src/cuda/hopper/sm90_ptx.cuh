// The Hopper (sm_90) PTX the cuda-hopper kernels are built from, one wrapper per instruction so
// the kernels read as algorithms: mbarriers (transaction counts, parity waits, remote arrives
// inside a cluster), the bulk copy engine (cp.async.bulk: 1-D copies and 2-D tensor-map
// tiles), cluster rank / distributed shared memory, register reallocation (setmaxnreg) and the
// 128-byte-swizzle wgmma shared-memory descriptor. Everything is device code for sm_90a; the
// wrappers compile to nothing elsewhere (the host never launches these kernels there).
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cstdint>

#include "cuda/common/wgmma.cuh"  // MXQ_HAS_WGMMA (sm_90a)

namespace mxq::cuda::sm90 {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// ---- mbarrier ------------------------------------------------------------------------------
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#if MXQ_HAS_WGMMA
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count));
#endif
}
// Makes the initialisations visible to the async proxy (TMA) and to the other CTAs of the
// cluster; followed by a CTA or cluster barrier.
__device__ __forceinline__ void fence_mbar_init() {
#if MXQ_HAS_WGMMA
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
// Arrive and announce `bytes` of transactions that complete this phase (the producer).
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if MXQ_HAS_WGMMA
  asm volatile("mbarrier.arrive.expect_tx.release.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   smem_addr(bar)),
               "r"(bytes)
               : "memory");
#endif
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if MXQ_HAS_WGMMA
  asm volatile("mbarrier.arrive.release.cta.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar))
               : "memory");
#endif
}
// Arrive on the barrier at the same offset in CTA `rank` of the cluster, releasing this
// thread's earlier (remote) shared-memory stores at cluster scope.
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t* bar, uint32_t rank) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
      "mbarrier.arrive.release.cluster.shared::cluster.b64 _, [ra];\n}\n" ::"r"(smem_addr(bar)),
      "r"(rank)
      : "memory");
#endif
}
// Wait until the phase of parity `parity` has completed (acquire at CTA scope).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAIT_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}
// The same with acquire at cluster scope (the phase was completed by remote arrives).
__device__ __forceinline__ void mbar_wait_cluster(uint64_t* bar, uint32_t parity) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "{\n.reg .pred p;\nWAITC_%=:\n"
      "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%0], %1;\n"
      "@!p bra WAITC_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

// ---- shared-memory loads -------------------------------------------------------------------
// Explicit LDS: the kernels align their dynamic shared memory by integer arithmetic, after which
// nvcc no longer knows a pointer is shared and emits generic 64-bit loads (LD.E plus the 64-bit
// address arithmetic: measured 148 instructions per warp per k64 step at M = 1, ncu, H200).
// Volatile so they stay after the mbarrier wait that makes the bytes visible.
__device__ __forceinline__ uint4 lds_v4(uint32_t addr) {
  uint4 v = {0, 0, 0, 0};
#if MXQ_HAS_WGMMA
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(addr));
#endif
  return v;
}
__device__ __forceinline__ uint2 lds_v2(uint32_t addr) {
  uint2 v = {0, 0};
#if MXQ_HAS_WGMMA
  asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
#endif
  return v;
}
__device__ __forceinline__ uint32_t lds_u32(uint32_t addr) {
  uint32_t v = 0;
#if MXQ_HAS_WGMMA
  asm volatile("ld.shared.u32 %0, [%1];\n" : "=r"(v) : "r"(addr));
#endif
  return v;
}
// Explicit STS (the FP8 transform warpgroups' decoded tiles; volatile: before the proxy fence
// and the barrier arrive that publish them).
__device__ __forceinline__ void sts_u32(uint32_t addr, uint32_t v) {
#if MXQ_HAS_WGMMA
  asm volatile("st.shared.u32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
#endif
}

// Pins values in registers at this point of the instruction stream: the computation of `r`
// cannot sink below (or rise above) the neighbouring volatile asm, e.g. a wgmma wait_group, so
// a decode overlaps the wgmma group in flight instead of running after it retires (nvcc
// otherwise schedules pure arithmetic freely across asm volatile).
template <int N>
__device__ __forceinline__ void pin_registers(uint32_t (&r)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i)
    asm volatile("" : "+r"(r[i][0]), "+r"(r[i][1]), "+r"(r[i][2]), "+r"(r[i][3])::"memory");
}

// ---- bulk copies (TMA) ---------------------------------------------------------------------
// An L2 policy for data read exactly once (the weights): evicted first.
__device__ __forceinline__ uint64_t l2_evict_first() {
  uint64_t pol = 0;
#if MXQ_HAS_WGMMA
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(pol));
#endif
  return pol;
}
// ... for data read many times from L2 (the FP8 path's pre-decoded weight tiles).
__device__ __forceinline__ uint64_t l2_evict_normal() {
  uint64_t pol = 0;
#if MXQ_HAS_WGMMA
  asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;\n" : "=l"(pol));
#endif
  return pol;
}
// `bytes` (a multiple of 16, both addresses 16-byte aligned) from global to this CTA's shared
// memory, completing `bytes` transactions on `bar`.
__device__ __forceinline__ void bulk_load(void* dst, const void* src, uint32_t bytes,
                                          uint64_t* bar, uint64_t policy) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint "
      "[%0], [%1], %2, [%3], %4;\n" ::"r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
      : "memory");
#endif
}
// `bytes` (a multiple of 16) from global memory into L2, nothing else (no shared memory, no
// barrier): the weights of a kernel's first stages while it waits for its prerequisite grid.
__device__ __forceinline__ void bulk_prefetch_l2(const void* src, uint32_t bytes) {
#if MXQ_HAS_WGMMA
  asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(bytes) : "memory");
#endif
}
// One box of a 2-D tensor map at element coordinates (c0 inner, c1 outer); out-of-bounds
// elements are written as zeros and count towards the transaction bytes.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            uint64_t* bar) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes "
      "[%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem_addr(dst)),
      "l"(map), "r"(c0), "r"(c1), "r"(smem_addr(bar))
      : "memory");
#endif
}
__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
#if MXQ_HAS_WGMMA
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(map) : "memory");
#endif
}

// ---- the epilogue's shared-memory tile and TMA store -----------------------------------------
// Four 8x8 16-bit matrices stored transposed (stmatrix .trans): lane l gives the shared address
// of row l % 8 of matrix l / 8 (16 bytes), register r of lane (g, t) holds elements (g, 2t) and
// (g, 2t + 1) of matrix r as the MMA accumulator layout has them, which land in column g of
// rows 2t and 2t + 1 of the stored matrix.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t r0, uint32_t r1,
                                                  uint32_t r2, uint32_t r3) {
#if MXQ_HAS_WGMMA
  asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(
                   addr),
               "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
#else
  (void)addr; (void)r0; (void)r1; (void)r2; (void)r3;
#endif
}
// Named barrier `id` (1..15; 0 is __syncthreads) over `threads` threads (a multiple of 32).
__device__ __forceinline__ void named_barrier_sync(uint32_t id, uint32_t threads) {
#if MXQ_HAS_WGMMA
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
#else
  (void)id; (void)threads;
#endif
}
// Arrives on named barrier `id` without waiting: this thread's earlier shared-memory writes are
// visible to the threads that complete the barrier with named_barrier_sync (the producer side
// of a hand-off; `threads` counts both sides).
__device__ __forceinline__ void named_barrier_arrive(uint32_t id, uint32_t threads) {
#if MXQ_HAS_WGMMA
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
#else
  (void)id; (void)threads;
#endif
}
// One box of a 2-D tensor map from shared memory to global at element coordinates (c0 inner,
// c1 outer); out-of-bounds elements are not written. Completes in this thread's bulk group.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int c0,
                                             int c1) {
#if MXQ_HAS_WGMMA
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                   map),
               "r"(c0), "r"(c1), "r"(smem_addr(src))
               : "memory");
#else
  (void)map; (void)src; (void)c0; (void)c1;
#endif
}
__device__ __forceinline__ void bulk_commit_group() {
#if MXQ_HAS_WGMMA
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#endif
}
// Until at most N of this thread's bulk groups still read their shared-memory source.
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
#if MXQ_HAS_WGMMA
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#endif
}
// Until every bulk group of this thread has completed (its global writes done).
__device__ __forceinline__ void bulk_wait_group_all() {
#if MXQ_HAS_WGMMA
  asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory");
#endif
}

// ---- clusters ------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t cluster_rank() {
  uint32_t r = 0;
#if MXQ_HAS_WGMMA
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
  return r;
}
// Every thread of every CTA of the cluster.
__device__ __forceinline__ void cluster_sync() {
#if MXQ_HAS_WGMMA
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::
                   : "memory");
#endif
}
// 16 bytes to the same shared-memory offset as `local` in CTA `rank` of the cluster.
__device__ __forceinline__ void st_cluster_v4(const void* local, uint32_t rank, float4 v) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
      "st.shared::cluster.v4.f32 [ra], {%2, %3, %4, %5};\n}\n" ::"r"(smem_addr(local)),
      "r"(rank), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
      : "memory");
#else
  (void)local; (void)rank; (void)v;
#endif
}

// 16 bytes to the same shared-memory offset as `local` in CTA `rank` of the cluster, as an
// asynchronous store that completes 16 transaction bytes on the barrier at `bar`'s offset in
// that CTA (st.async: no fence, the receiver's barrier phase orders the data).
__device__ __forceinline__ void st_async_v4(const void* local, uint32_t rank, float4 v,
                                            uint64_t* bar) {
#if MXQ_HAS_WGMMA
  asm volatile(
      "{\n.reg .b32 ra, rb;\nmapa.shared::cluster.u32 ra, %0, %1;\n"
      "mapa.shared::cluster.u32 rb, %6, %1;\n"
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [ra], {%2, %3, %4, %5}, [rb];\n}\n"
      ::"r"(smem_addr(local)), "r"(rank), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w),
      "r"(smem_addr(bar))
      : "memory");
#else
  (void)local; (void)rank; (void)v; (void)bar;
#endif
}

// ---- registers -----------------------------------------------------------------------------
// Warpgroup-wide register budget changes (need a register cap at kernel entry).
template <int N>
__device__ __forceinline__ void regs_dealloc() {
#if MXQ_HAS_WGMMA
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void regs_alloc() {
#if MXQ_HAS_WGMMA
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

// ---- wgmma operand descriptors -------------------------------------------------------------
// K-major operand tile with the 128-byte swizzle as TMA writes it: rows of 128 bytes (64
// 16-bit elements of K), 8-row swizzle atoms of 1024 bytes (the stride between 8-row groups,
// SBO), LBO unused for K-major swizzled layouts (1 by convention). `p` is the tile base plus
// the byte offset of the k16 step inside the 128-byte row; the tile base is 1024-aligned.
__device__ __forceinline__ uint64_t desc_kmajor_sw128(uint32_t addr) {
  return uint64_t((addr >> 4) & 0x3FFF) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) |
         (uint64_t(1) << 62);
}
__device__ __forceinline__ uint64_t desc_kmajor_sw128(const void* p) {
  return desc_kmajor_sw128(smem_addr(p));
}

}  // namespace mxq::cuda::sm90
