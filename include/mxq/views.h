// Raw views of weights and dense tensors: pointers plus shapes, no ownership. Kept free of
// C++20-only headers so CUDA code (compiled as C++17) can use them too.
#pragma once

#include <cstdint>

#include "mxq/formats.h"

namespace mxq {

// Canonical MX weights: packed [batch, n, k * bits / 8] and E8M0 scales [batch, n, k / 32].
struct MXWeightView {
  ElemType elem = ElemType::kE2M1;
  int64_t batch = 1, n = 0, k = 0;
  const uint8_t* packed = nullptr;
  const uint8_t* scales = nullptr;
};

// A dense matrix/vector view, row-major, contiguous rows of `cols` elements.
struct DenseView {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0;
};
struct DenseMutView {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0;
};

}  // namespace mxq
