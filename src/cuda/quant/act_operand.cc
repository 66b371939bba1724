// The activation operand of the 16-bit GEMMs (act_operand.h).
#include "cuda/quant/act_operand.h"

#include <string>

#include "cuda/common/device_memory.h"
#include "cuda/quant/fake_quant.h"

namespace mxq::cuda {

Status StreamBuffer::allocate(size_t bytes, const char* what) {
  if (p_ != nullptr) return invalid_argument("StreamBuffer: already allocated");
  MXQ_RETURN_IF_ERROR(keep_pool_memory());
  const cudaError_t e = injected_device_allocation_failure()
                            ? cudaErrorMemoryAllocation
                            : cudaMallocAsync(&p_, bytes < 256 ? 256 : bytes, stream_);
  if (e != cudaSuccess) {
    p_ = nullptr;
    return device_allocation_status(e, "cudaMallocAsync", bytes, what);
  }
  bytes_ = bytes;
  note_device_allocation(bytes);
  return Status::Ok();
}

Status act_operand(ActKey key, ScaleRule rule, const void* x, DType dtype, int64_t rows, int64_t k,
                   StreamBuffer& tmp, const void** operand, cudaStream_t stream) {
  if (key == ActKey::kBF16 || key == ActKey::kFP16) {
    *operand = x;
    return Status::Ok();
  }
  ElemType elem = ElemType::kE2M1;
  if (!act_key_mx_elem(key, &elem))
    return invalid_argument(std::string("activation key ") + act_key_name(key) +
                            ": the 16-bit GEMMs cannot run it exactly (see act_operand.h)");
  const size_t bytes = size_t(rows) * size_t(k) * size_t(dtype_bytes(dtype));
  MXQ_RETURN_IF_ERROR(tmp.allocate(bytes, "the quantized activations"));
  MXQ_RETURN_IF_ERROR(mx_fake_quant(elem, x, dtype, rows, k, tmp.get(), stream, rule));
  *operand = tmp.get();
  return Status::Ok();
}

Status fp8_operand(ActKey key, const void* x, DType dtype, int64_t rows, int64_t k,
                   float input_scale, StreamBuffer& tmp, StreamBuffer& scales,
                   const void** operand, const float** row_scale, cudaStream_t stream) {
  if (!act_key_is_fp8_mma(key) || key == ActKey::kFP8DynamicGroup128)
    return invalid_argument(std::string("fp8_operand: ") + act_key_name(key) +
                            " is not an FP8 key with one scale per row (fp8_group_operand runs "
                            "fp8-dynamic-group128)");
  const bool per_row = key == ActKey::kFP8DynamicToken;
  MXQ_RETURN_IF_ERROR(tmp.allocate(size_t(rows) * size_t(k) * size_t(dtype_bytes(dtype)), "the E4M3 activations"));
  float* rs = nullptr;
  if (key == ActKey::kFP8DynamicTensor) {
    // [rows] floats (the tensor scale per row, for scale_rows), then the partial maxima.
    const int parts = fp8_tensor_parts(rows, k);
    MXQ_RETURN_IF_ERROR(scales.allocate(size_t(rows) * sizeof(float) + size_t(parts) * sizeof(uint32_t),
                                        "the per-tensor activation scale"));
    rs = static_cast<float*>(scales.get());
    MXQ_RETURN_IF_ERROR(fp8_tensor_act_quant(x, dtype, rows, k, reinterpret_cast<uint32_t*>(rs + rows),
                                             tmp.get(), rs, stream));
    *operand = tmp.get();
    *row_scale = rs;
    return Status::Ok();
  }
  if (per_row) {
    MXQ_RETURN_IF_ERROR(scales.allocate(size_t(rows) * sizeof(float), "the per-token activation scales"));
    rs = static_cast<float*>(scales.get());
  }
  MXQ_RETURN_IF_ERROR(fp8_act_quant(x, dtype, rows, k, per_row, input_scale, tmp.get(), rs, stream));
  *operand = tmp.get();
  *row_scale = rs;
  return Status::Ok();
}

Status fp8_group_operand(const void* x, DType dtype, int64_t rows, int64_t k, StreamBuffer& tmp,
                         StreamBuffer& scales, const void** operand, const float** group_scales,
                         cudaStream_t stream) {
  MXQ_RETURN_IF_ERROR(tmp.allocate(size_t(rows) * size_t(k) * size_t(dtype_bytes(dtype)), "the E4M3 activations"));
  MXQ_RETURN_IF_ERROR(scales.allocate(size_t(rows) * size_t(fp8_act_groups(k)) * sizeof(float),
                                      "the per-(token, 128-group) activation scales"));
  float* gs = static_cast<float*>(scales.get());
  MXQ_RETURN_IF_ERROR(fp8_group_act_quant(x, dtype, rows, k, tmp.get(), gs, stream));
  *operand = tmp.get();
  *group_scales = gs;
  return Status::Ok();
}

Status act_quantize_in_place(ActKey key, ScaleRule rule, void* a, DType dtype, int64_t rows,
                             int64_t k, cudaStream_t stream) {
  if (key == ActKey::kBF16 || key == ActKey::kFP16) return Status::Ok();
  ElemType elem = ElemType::kE2M1;
  if (!act_key_mx_elem(key, &elem))
    return invalid_argument(std::string("activation key ") + act_key_name(key) +
                            ": the 16-bit GEMMs cannot run it exactly (see act_operand.h)");
  return mx_fake_quant(elem, a, dtype, rows, k, a, stream, rule);
}

}  // namespace mxq::cuda
