// Device probe: CPU features through the compiler's cpuid builtins, GPUs through the CUDA
// runtime when the CUDA part is built (a machine without a GPU reports why none is usable).
#include <filesystem>
#include <sstream>
#include <thread>

#include "mxq/device.h"

#if defined(MXQ_WITH_CUDA)
#include <cuda_runtime.h>
#endif

namespace mxq {

namespace {

Device probe() {
  Device d;
  const unsigned hw = std::thread::hardware_concurrency();
  d.cpu_threads = hw == 0 ? 1 : int(hw);
#if defined(__x86_64__)
  __builtin_cpu_init();
  d.avx2 = __builtin_cpu_supports("avx2");
  d.fma = __builtin_cpu_supports("fma");
  d.avx512f = __builtin_cpu_supports("avx512f");
  d.f16c = __builtin_cpu_supports("f16c");
#endif
#if defined(MXQ_WITH_CUDA)
  d.cuda_built = true;
  {
    // CMAKE_CUDA_ARCHITECTURES with ',' for ';' (CMakeLists.txt), e.g. "80-real,90a-real"
    // -> {80, 90}
    std::string archs = MXQ_CUDA_ARCHS;
    for (char& c : archs)
      if (c == ';') c = ',';
    std::stringstream ss(archs);
    std::string a;
    while (std::getline(ss, a, ',')) {
      int v = 0;
      for (char c : a) {
        if (c < '0' || c > '9') break;
        v = v * 10 + (c - '0');
      }
      if (v > 0) d.cuda_archs_compiled.push_back(v);
    }
  }
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    // No driver (or one older than the runtime, or no device node) is how a machine without an
    // NVIDIA GPU looks to the runtime: say so first, then the runtime's own words.
    // (An installed driver that is merely too old keeps the runtime's text alone.)
    const bool no_gpu = (e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) &&
                        !std::filesystem::exists("/proc/driver/nvidia/version");
    d.cuda_status = std::string(no_gpu ? "no NVIDIA driver or GPU found (CUDA runtime: "
                                       : "CUDA runtime: ") +
                    cudaGetErrorString(e) + (no_gpu ? ")" : "");
    (void)cudaGetLastError();
  } else if (n == 0) {
    d.cuda_status = "no CUDA device present";
  }
  for (int i = 0; e == cudaSuccess && i < n; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    d.gpus.push_back({i, p.name, p.major, p.minor, p.totalGlobalMem, p.multiProcessorCount});
  }
#else
  d.cuda_status = "mxq was built without the CUDA part (no nvcc at build time)";
#endif
  return d;
}

}  // namespace

const Device& this_device() {
  static const Device d = probe();
  return d;
}

std::string Device::to_string() const {
  std::ostringstream s;
  s << "cpu: " << cpu_threads << " threads" << (avx2 ? ", avx2" : "") << (fma ? ", fma" : "")
    << (avx512f ? ", avx512f" : "") << (f16c ? ", f16c" : "") << "\n";
  if (gpus.empty()) {
    s << "gpu: none (" << cuda_status << ")\n";
  } else {
    for (const auto& g : gpus)
      s << "gpu " << g.index << ": " << g.name << ", sm_" << g.cc_major << g.cc_minor << ", "
        << (g.memory_bytes >> 30) << " GiB, " << g.sm_count << " SMs\n";
  }
  if (cuda_built) {
    s << "cuda archs compiled:";
    for (int a : cuda_archs_compiled) s << " sm_" << a;
    s << "\n";
  }
  return s.str();
}

}  // namespace mxq
