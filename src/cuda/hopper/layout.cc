#include "cuda/hopper/layout.h"

#include <cstring>

#include "cuda/hopper/layout_word.h"

namespace mxq::cuda::hopper {

void repack_hopper_cpu(const FragSource& fs, uint8_t* out) {
  const HopperLayout l = hopper_layout(fs);
  frag::Source src = fs.source();
  src.natural_k = true;
  const int lb = HopperLayout::lane_bytes(l.elem), cb = l.chunk_bytes();
  for (int64_t b = 0; b < l.batch; ++b)
    for (int64_t nb = 0; nb < l.n64(); ++nb)
      for (int64_t kt = 0; kt < l.k64(); ++kt) {
        uint8_t* chunk = out + size_t(((b * l.n64() + nb) * l.k64() + kt) * cb);
        for (int j = 0; j < 4; ++j)
          for (int lane = 0; lane < 32; ++lane) {
            uint32_t w[8], sw = 0;
            lane_words(src, b, 4 * nb + j, kt, lane, w, sw);
            std::memcpy(chunk + chunk_lane_offset(lb, j, lane), w, size_t(lb));
            if (lane % 4 == 0) std::memcpy(chunk + chunk_scale_offset(lb, j, lane / 4), &sw, 4);
          }
      }
}

}  // namespace mxq::cuda::hopper
