#include "cuda/gemm/frag_layout.h"

#include <cstring>
#include <string>

#include "cuda/gemm/frag_word.h"

namespace mxq::cuda {

Status check_frag_layout(const MXWeightView& w) {
  if (w.elem != ElemType::kE2M1 && w.elem != ElemType::kE4M3)
    return unimplemented(std::string("cuda-mma weights must be E2M1 (MXFP4) or E4M3 (MXFP8), got ") +
                         elem_type_name(w.elem));
  if (w.batch < 1 || w.n <= 0 || w.k <= 0)
    return invalid_argument("cuda-mma weights: empty shape [" + std::to_string(w.batch) + ", " +
                            std::to_string(w.n) + ", " + std::to_string(w.k) + "]");
  if (w.n % 16 != 0)
    return invalid_argument("cuda-mma weights: N = " + std::to_string(w.n) +
                            " is not a multiple of 16");
  if (w.k % 32 != 0)
    return invalid_argument("cuda-mma weights: K = " + std::to_string(w.k) +
                            " is not a multiple of 32 (the MX block size)");
  if (w.packed == nullptr || w.scales == nullptr)
    return invalid_argument("cuda-mma weights: null packed or scale pointer");
  return Status::Ok();
}

void repack_frag_cpu(const MXWeightView& w, uint8_t* packed, uint8_t* scales) {
  const FragLayout l{w.elem, w.batch, w.n, w.k};
  const frag::Source src{w.packed, w.scales, w.n, w.k};
  const int words = l.lane_bytes() / 4;
  int64_t tile = 0;
  for (int64_t b = 0; b < w.batch; ++b)
    for (int64_t tn = 0; tn < l.n16(); ++tn)
      for (int64_t tk = 0; tk < l.k64(); ++tk, ++tile)
        for (int lane = 0; lane < 32; ++lane) {
          uint32_t out[8];
          for (int s = 0; s < 4; ++s) {
            if (w.elem == ElemType::kE2M1) {
              out[s] = frag::fp4_word(src, b, tn, tk, lane, s);
            } else {
              out[2 * s] = frag::fp8_word(src, b, tn, tk, lane, s, 0);
              out[2 * s + 1] = frag::fp8_word(src, b, tn, tk, lane, s, 1);
            }
          }
          std::memcpy(packed + (tile * 32 + lane) * l.lane_bytes(), out, size_t(words) * 4);
          const uint32_t sw = frag::scale_word(src, b, tn, tk, lane);
          std::memcpy(scales + (tile * 32 + lane) * 4, &sw, 4);
        }
}

}  // namespace mxq::cuda
