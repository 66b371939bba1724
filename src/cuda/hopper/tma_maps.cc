// The cuda-hopper GEMM's TMA tensor maps (tma_maps.h). Host code only: kept out of the .cu so
// the sm_90a image holds kernels alone.
#include "cuda/hopper/tma_maps.h"

#include <cuda_runtime.h>
#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <mutex>
#include <string>

#include "cuda/hopper/gemm_config.h"

namespace mxq::cuda::hopper {

namespace {

// The driver entry point, looked up once through the runtime (no -lcuda).
StatusOr<PFN_cuTensorMapEncodeTiled_v12000> encode_fn() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = nullptr;
  static std::once_flag once;
  static cudaError_t err = cudaSuccess;
  std::call_once(once, [] {
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    void* p = nullptr;
    err = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q);
    if (err == cudaSuccess && q == cudaDriverEntryPointSuccess)
      fn = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  });
  if (fn == nullptr)
    return Status(StatusCode::kInternal, std::string("cuda-hopper: the driver has no cuTensorMapEncodeTiled (") +
                    cudaGetErrorString(err) + ")");
  return fn;
}

}  // namespace

StatusOr<CUtensorMap> activation_map(const void* x, DType act, int64_t rows, int64_t k, int64_t ldx,
                                     int nt, bool fp8) {
  auto fn = encode_fn();
  if (!fn.ok()) return fn.status();
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(k), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ldx) * (fp8 ? 1 : 2)};
  const cuuint32_t box[2] = {cuuint32_t(step_k(fp8)), cuuint32_t(box_rows(nt))};  // (288: 3 boxes)
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUtensorMapDataType type = fp8                   ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                   : act == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                         : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  const CUresult r = fn.value()(
      &map, type,
      2, const_cast<void*>(x), dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::kInternal, "cuda-hopper: cuTensorMapEncodeTiled failed (CUresult " + std::to_string(int(r)) +
                    ") for x [" + std::to_string(rows) + ", " + std::to_string(k) + "], ldx " +
                    std::to_string(ldx));
  return map;
}

StatusOr<CUtensorMap> output_map(void* y, DType out, int64_t rows, int64_t n, int64_t ldy, int nt) {
  auto fn = encode_fn();
  if (!fn.ok()) return fn.status();
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(n), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ldy) * 2};
  const cuuint32_t box[2] = {64, cuuint32_t(epilogue_rows(nt))};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult r = fn.value()(
      &map, out == DType::kBF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
      2, y, dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status(StatusCode::kInternal, "cuda-hopper: cuTensorMapEncodeTiled failed (CUresult " +
                    std::to_string(int(r)) + ") for y [" + std::to_string(rows) + ", " +
                    std::to_string(n) + "], ldy " + std::to_string(ldy));
  return map;
}

}  // namespace mxq::cuda::hopper
