// Does compute-sanitizer racecheck understand an mbarrier-guarded ring refilled by bulk copies?
// (standalone: no CMake, builds in seconds on the GPU host)
//   nvcc -std=c++20 -gencode=arch=compute_90a,code=sm_90a -Isrc \
//        tests/cuda/standalone/racecheck_ring_probe.cu -o /tmp/ring_probe
//   compute-sanitizer --tool racecheck /tmp/ring_probe generic   # producer: st.shared
//   compute-sanitizer --tool racecheck /tmp/ring_probe bulk      # producer: cp.async.bulk
//   compute-sanitizer --tool racecheck /tmp/ring_probe bulk-fence
// The smallest form of cuda-hopper's ring (gemm_kernel.cuh): one producer thread fills 2 slots
// of 512 bytes, one consumer warp reads each slot with LDS, the lanes meet at __syncwarp and
// lane 0 releases the slot on its `empty` mbarrier (arrive: release), the producer waits on it
// (acquire) before refilling; 16 rounds, so the ring wraps 7 times. The three variants differ
// only in how the producer writes a slot: plain shared stores + arrive on `full`, a bulk copy
// completing bytes on `full`, or the bulk copy after a generic -> async proxy fence. The sums
// the consumer reads are checked (a real race would show as a wrong sum sooner or later); what
// racecheck reports for each variant is the point.
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "cuda/hopper/sm90_ptx.cuh"

namespace {

constexpr int kSlots = 2, kSlotWords = 128, kRounds = 16;

enum class Fill { kGeneric, kBulk, kBulkFence };

__global__ void ring_probe(const uint32_t* src, uint32_t* sums, Fill fill) {
  using namespace mxq::cuda;
  __shared__ alignas(128) uint32_t slot[kSlots][kSlotWords];
  __shared__ alignas(8) uint64_t full[kSlots], empty[kSlots];
  if (threadIdx.x == 0) {
    for (int s = 0; s < kSlots; ++s) {
      sm90::mbar_init(&full[s], 1);
      sm90::mbar_init(&empty[s], 1);
    }
    sm90::fence_mbar_init();
  }
  __syncthreads();
  if (threadIdx.x >= 32) {  // producer: one thread of warp 1
    if (threadIdx.x != 32) return;
    for (int r = 0; r < kRounds; ++r) {
      const int s = r % kSlots;
      const uint32_t parity = ((r / kSlots) & 1) ^ 1u;
      sm90::mbar_wait(&empty[s], parity);
      const uint32_t* from = src + r * kSlotWords;
      if (fill == Fill::kGeneric) {
        for (int i = 0; i < kSlotWords; ++i) slot[s][i] = from[i];
        sm90::mbar_arrive(&full[s]);
      } else {
        if (fill == Fill::kBulkFence) ptx::fence_proxy_async();
        sm90::mbar_arrive_expect_tx(&full[s], kSlotWords * 4);
        sm90::bulk_load(slot[s], from, kSlotWords * 4, &full[s], sm90::l2_evict_first());
      }
    }
    return;
  }
  // consumer: warp 0
  const int lane = int(threadIdx.x);
  for (int r = 0; r < kRounds; ++r) {
    const int s = r % kSlots;
    sm90::mbar_wait(&full[s], (r / kSlots) & 1);
    uint32_t sum = 0;
    for (int i = 0; i < kSlotWords / 32; ++i)
      sum += sm90::lds_u32(sm90::smem_addr(&slot[s][lane + 32 * i]));
    __syncwarp();
    if (lane == 0) sm90::mbar_arrive(&empty[s]);
    sums[r * 32 + lane] = sum;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* v = argc > 1 ? argv[1] : "bulk";
  const Fill fill = !std::strcmp(v, "generic") ? Fill::kGeneric
                    : !std::strcmp(v, "bulk-fence") ? Fill::kBulkFence
                                                   : Fill::kBulk;
  uint32_t host[kRounds * kSlotWords];
  for (int i = 0; i < kRounds * kSlotWords; ++i) host[i] = uint32_t(i * 2654435761u) >> 8;
  uint32_t *src = nullptr, *sums = nullptr;
  cudaMalloc(&src, sizeof host);
  cudaMalloc(&sums, kRounds * 32 * 4);
  cudaMemcpy(src, host, sizeof host, cudaMemcpyHostToDevice);
  ring_probe<<<1, 64>>>(src, sums, fill);
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::printf("%s: CUDA error %s\n", v, cudaGetErrorString(e));
    return 2;
  }
  uint32_t got[kRounds * 32];
  cudaMemcpy(got, sums, sizeof got, cudaMemcpyDeviceToHost);
  int wrong = 0;
  for (int r = 0; r < kRounds; ++r)
    for (int lane = 0; lane < 32; ++lane) {
      uint32_t want = 0;
      for (int i = 0; i < kSlotWords / 32; ++i) want += host[r * kSlotWords + lane + 32 * i];
      wrong += got[r * 32 + lane] != want;
    }
  std::printf("%s: %d rounds through %d slots, %d wrong sums\n", v, kRounds, kSlots, wrong);
  return wrong == 0 ? 0 : 1;
}
