// Random canonical MX weights for the cuda-mma tests (CPU layout test and GPU tests alike).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "mxq/formats.h"
#include "mxq/views.h"

namespace mxq::testing {

struct Weights {
  std::vector<uint8_t> packed, scales;
  MXWeightView view;
};

// Random codes (no E4M3 NaN codes) with E8M0 scale codes drawn from [smin, smax].
inline Weights random_weights(ElemType e, int64_t batch, int64_t n, int64_t k, uint32_t seed,
                              int smin = 0, int smax = 255) {
  std::mt19937 g(seed);
  Weights w;
  w.packed.resize(size_t(batch * n * packed_bytes(e, k)));
  w.scales.resize(size_t(batch * n * k / 32));
  for (auto& b : w.packed) {
    b = uint8_t(g());
    if (e == ElemType::kE4M3 && (b & 0x7F) == 0x7F) b ^= 1;
  }
  std::uniform_int_distribution<int> sc(smin, smax);
  for (auto& s : w.scales) s = uint8_t(sc(g));
  w.view = {e, batch, n, k, w.packed.data(), w.scales.data()};
  return w;
}

}  // namespace mxq::testing
