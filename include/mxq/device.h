// What the machine offers: CPU cores and SIMD, and CUDA devices when the CUDA part is built.
#pragma once

#include <string>
#include <vector>

namespace mxq {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;  // compute capability
  size_t memory_bytes = 0;
  int sm_count = 0;
};

struct Device {
  // CPU
  int cpu_threads = 1;
  bool avx2 = false, fma = false, avx512f = false, f16c = false;
  // CUDA (empty when the CUDA part is not built or no GPU is present)
  bool cuda_built = false;
  std::vector<int> cuda_archs_compiled;  // e.g. {80, 90}
  std::string cuda_status;               // why no GPU is usable ("" when one is)
  std::vector<CudaDeviceInfo> gpus;

  std::string to_string() const;  // one line per CPU / GPU
};

// Probes the current machine once (cached); the CUDA runtime is queried only when built in.
const Device& this_device();

}  // namespace mxq
