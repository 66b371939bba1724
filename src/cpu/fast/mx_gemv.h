// Fused dequantize-and-multiply kernels of the `cpu` backend: y[m, n] = x[m, :] . dequant(W[n, :])
// for canonical MX weights (packed [N, K * bits / 8], E8M0 scales [N, K / 32]) and FP32
// activations. The dequantized matrix is never materialised: each 32-element block is decoded
// in registers and multiplied straight away.
//
// Arithmetic (identical on every ISA path, so the scalar, AVX2 and AVX-512 kernels agree bit
// for bit):
//   decode:  each element code becomes the FP32 value d * elem, exactly, where d is a power of
//            two per format (mx_gemv_common.h: the SIMD paths decode E2M3/E3M2/E4M3 through FP16
//            bit patterns, which carry elem * 2^(bias - 15); INT8 through the integer q).
//   block:   for each of 16 lanes L, with e0 = block_elem(L, 0), e1 = block_elem(L, 1) (lane L
//            takes elements L and 16 + L; for E2M1 the two nibbles of byte L, elements 2L and
//            2L + 1, the order its SIMD decoders yield), and S = S[scale code] (below):
//            every format but E2M1: q = w[e0]*x[e0] (rounded), q = fma(w[e1], x[e1], q), then
//              acc[L] = fma(q, S, acc[L]);
//            E2M1: the element table is scaled first (v = w * S, exact: its 16 values per block
//              are shared by every activation row, so M rows cost 2 FMAs each per 16 lanes), then
//              acc[L] = fma(v[e0], x[e0], acc[L]); acc[L] = fma(v[e1], x[e1], acc[L]).
//   row:     the blocks in order, with S[c] = 2^(c - 127) / d (exact; S[255] = NaN).
//   result:  t[l] = acc[l] + acc[l + 8] for l < 8, then
//            ((t0+t4) + (t2+t6)) + ((t1+t5) + (t3+t7)).
// (AVX2 keeps the 16 lanes in two 8-lane registers, AVX-512 E2M1 in one 16-lane register.)
// A row's result depends only on that row of W and that row of x: not on M, the row tiling, the
// cache blocking or the thread count (tests check this bitwise).
//
// Rows the factored form cannot take are recomputed in float64 exactly like cpu-reference
// (element * 2^(scale - 127) * x summed in ascending k, rounded once to FP32): rows with a block
// whose S[c] exceeds 2^64 (weights beyond ~1e19, where an FP32 lane partial could overflow
// though the row total does not), with an E4M3 NaN element code (the FP16 route would decode it
// as a finite value), with an E2M1 NaN scale (code 255), or with a nonzero block whose S[c]
// would be subnormal (c = 0 for E5M2, c <= 6 for INT8; c <= 1 for E2M1, whose scaled table must
// stay normal; all-zero blocks stay on the fast path). Real checkpoints have none
// of these, so the slow loop's speed does not matter. On the fast path, products and block
// contributions below FLT_MIN round to the FP32 subnormal grid, as in any FP32 dot product.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "mxq/formats.h"

namespace mxq::cpu::fast {

enum class Isa : uint8_t {
  kScalar,  // portable C++ (std::fma): any x86-64 or other CPU
  kAvx2,    // AVX2 + FMA + F16C intrinsics (Haswell and later, Zen)
  kAvx512,  // the AVX2 kernels plus AVX-512F/VL: E2M1 on 512-bit vectors (Skylake-X+, Zen 4)
};
const char* isa_name(Isa isa);  // "scalar", "avx2+fma+f16c", "avx2+avx512vl"
// Whether this CPU (and build) can run `isa`.
bool isa_available(Isa isa);
// The fastest path this CPU runs (probed once).
Isa best_isa();

// One weight matrix (or one expert's slice) in the canonical layout.
struct MXMatrixRef {
  ElemType elem = ElemType::kE2M1;
  int64_t n = 0, k = 0;            // k % 32 == 0
  const uint8_t* packed = nullptr;  // [n, packed_bytes(elem, k)]
  const uint8_t* scales = nullptr;  // [n, k / 32]
};

namespace detail {
// Allocates on 64-byte boundaries: the kernels load activation blocks as whole 64-byte vectors,
// and a load that straddles two cache lines costs two (malloc's 16-byte alignment made every
// __m512 load of x a split load).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  explicit CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
};
}  // namespace detail

// Activation rows x [m, k] (FP32, row stride ldx) in the layout the kernels of one ISA read
// (mx_gemv_common.h: block-interleaved, lane-permuted for E2M1). Made once per call and shared
// by every thread; x itself must outlive it (the float64 fallback reads it).
class PackedX {
 public:
  PackedX(Isa isa, ElemType t, const float* x, int64_t m, int64_t ldx, int64_t k);
  Isa isa() const { return isa_; }  // the ISA it was made for, lowered to what the CPU has
  ElemType elem() const { return elem_; }
  const float* rows() const { return x_; }
  int64_t m() const { return m_; }
  int64_t ldx() const { return ldx_; }
  const float* simd() const { return buf_.empty() ? x_ : buf_.data(); }

 private:
  Isa isa_;
  ElemType elem_;
  const float* x_;
  int64_t m_, ldx_;
  std::vector<float, detail::CacheLineAllocator<float>> buf_;  // 64-byte aligned
};

// y[r * ldy + j] = x[r] . dequant(W[j]) for r in [0, m) and weight rows j in [n0, n1).
// Single-threaded; callers split [0, n) over threads. x.elem() must be w.elem.
void mx_gemm_rows(const MXMatrixRef& w, const PackedX& x, float* y, int64_t ldy, int64_t n0,
                  int64_t n1);
// Convenience: packs x for this one call.
void mx_gemm_rows(Isa isa, const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, float* y,
                  int64_t ldy, int64_t n0, int64_t n1);

namespace detail {
// d (see above): the decoded value of element code c is d * decode_elem(c).
float decode_factor(ElemType t);
// The float64 loop for rows [n0, n1).
void mx_gemm_rows_exact(const MXMatrixRef& w, const float* x, int64_t m, int64_t ldx, float* y,
                        int64_t ldy, int64_t n0, int64_t n1);
}  // namespace detail

}  // namespace mxq::cpu::fast
