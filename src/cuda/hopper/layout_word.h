// The words of one lane of one chunk of the cuda-hopper layout (layout.h), shared by the CPU
// definition (layout.cc) and the GPU repack (repack.cu) so the two cannot drift apart.
#pragma once

#include <cstdint>

#include "cuda/gemm/frag_word.h"

namespace mxq::cuda::hopper {

// Byte offsets inside a chunk.
MXQ_FRAG_FN int64_t chunk_lane_offset(int lane_bytes, int stripe, int lane) {
  return (int64_t(stripe) * 32 + lane) * lane_bytes;
}
MXQ_FRAG_FN int64_t chunk_scale_offset(int lane_bytes, int stripe, int quad) {
  return int64_t(4) * 32 * lane_bytes + (int64_t(stripe) * frag::kScaleWordsPerTile + quad) * 4;
}

// Lane `lane` of 16-row tile tn, k64 step tk: its element words (4 for E2M1, 8 for E4M3, in
// the order the kernel loads them) and its quad's scale word. Tiles past the source's rows
// (the padding to 128 rows) are zeros with scale code 127.
MXQ_FRAG_FN void lane_words(const frag::Source& s, int64_t b, int64_t tn, int64_t tk, int lane,
                            uint32_t (&w)[8], uint32_t& scale) {
  if (16 * tn >= s.n) {
    for (int i = 0; i < 8; ++i) w[i] = 0;
    scale = 0x7F7F7F7Fu;
    return;
  }
  if (s.fp4) {
    for (int sub = 0; sub < 4; ++sub) w[sub] = frag::fp4_word(s, b, tn, tk, lane, sub);
    for (int i = 4; i < 8; ++i) w[i] = 0;
  } else {
    for (int sub = 0; sub < 4; ++sub)
      for (int h = 0; h < 2; ++h) w[2 * sub + h] = frag::fp8_word(s, b, tn, tk, lane, sub, h);
  }
  scale = frag::scale_word(s, b, tn, tk, lane);
}

}  // namespace mxq::cuda::hopper
