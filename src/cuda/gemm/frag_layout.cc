#include "cuda/gemm/frag_layout.h"

#include <cstring>
#include <string>

#include "mxq/formats.h"

namespace mxq::cuda {

namespace {

int64_t code_bytes(const MXWeightView& w) {
  return w.elem == ElemType::kE2M1 ? w.k / 2 : w.k;
}

MXWeightView slice(const MXWeightView& w, int64_t b0, int64_t count) {
  if (w.packed == nullptr) return w;
  MXWeightView v = w;
  v.batch = count;
  v.packed = w.packed + b0 * w.n * code_bytes(w);
  v.scales = w.scales + b0 * w.n * (w.k / 32);
  return v;
}

}  // namespace

FragSource FragSource::experts(int64_t b0, int64_t count) const {
  return {slice(w, b0, count), order, order == RowOrder::kSeparate ? slice(up, b0, count) : up};
}

Status check_frag_layout(const FragSource& s) {
  const MXWeightView& w = s.w;
  if (w.elem != ElemType::kE2M1 && w.elem != ElemType::kE4M3)
    return unimplemented(std::string("cuda-mma weights must be E2M1 (MXFP4) or E4M3 (MXFP8), got ") +
                         elem_type_name(w.elem));
  if (w.batch < 1 || w.n <= 0 || w.k <= 0)
    return invalid_argument("cuda-mma weights: empty shape [" + std::to_string(w.batch) + ", " +
                            std::to_string(w.n) + ", " + std::to_string(w.k) + "]");
  if (s.order == RowOrder::kPlain && w.n % 16 != 0)
    return invalid_argument("cuda-mma weights: N = " + std::to_string(w.n) +
                            " is not a multiple of 16");
  if (w.k % 32 != 0)
    return invalid_argument("cuda-mma weights: K = " + std::to_string(w.k) +
                            " is not a multiple of 32 (the MX block size)");
  if (w.packed == nullptr || w.scales == nullptr)
    return invalid_argument("cuda-mma weights: null packed or scale pointer");
  if (s.order == RowOrder::kSeparate) {
    const MXWeightView& u = s.up;
    if (u.elem != w.elem || u.batch != w.batch || u.n != w.n || u.k != w.k)
      return invalid_argument("cuda-mma gate/up weights: w3 is " + std::string(elem_type_name(u.elem)) +
                              " [" + std::to_string(u.batch) + ", " + std::to_string(u.n) + ", " +
                              std::to_string(u.k) + "], w1 is " + elem_type_name(w.elem) + " [" +
                              std::to_string(w.batch) + ", " + std::to_string(w.n) + ", " +
                              std::to_string(w.k) + "]: they must match");
    if (u.packed == nullptr || u.scales == nullptr)
      return invalid_argument("cuda-mma gate/up weights: null w3 packed or scale pointer");
  }
  if (s.order != RowOrder::kPlain && s.n() % 16 != 0)
    return invalid_argument("cuda-mma gate/up weights: the intermediate size I = " +
                            std::to_string(s.n() / 2) + " is not a multiple of 8");
  return Status::Ok();
}

void repack_frag_cpu(const FragSource& fs, uint8_t* packed, uint8_t* scales) {
  const MXWeightView& w = fs.w;
  const FragLayout l = fs.layout();
  const frag::Source src = fs.source();
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
          if (lane % 4 == 0) {  // one word per lane quad
            const uint32_t sw = frag::scale_word(src, b, tn, tk, lane);
            std::memcpy(scales + frag::scale_word_index(tile, lane) * 4, &sw, 4);
          }
        }
}

}  // namespace mxq::cuda
