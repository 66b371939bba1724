// mxq._core: shard_linear / shard_moe, the C++ sharding (include/mxq/shard.h) for numpy
// weights. The rank's arrays come back as new numpy arrays (copies: the shard's views would
// otherwise point into the caller's arrays, whose lifetime Python owns), with the rank's
// problem and the ranges.
#include <memory>

#include "core.h"
#include "layers.h"
#include "mxq/shard.h"

namespace mxq::py {
namespace {

using namespace nb::literals;

nb::object copy_bytes(const uint8_t* p, int64_t rows, int64_t cols) {
  if (p == nullptr) return nb::none();
  auto* buf = new std::vector<uint8_t>(p, p + rows * cols);
  nb::capsule owner(buf, [](void* q) noexcept { delete static_cast<std::vector<uint8_t>*>(q); });
  const size_t shape[2] = {size_t(rows), size_t(cols)};
  return nb::cast(nb::ndarray<nb::numpy, uint8_t>(buf->data(), 2, shape, owner));
}
// An MX weight view as (packed [batch * n, row bytes], scales [batch * n, k / 32]), or Nones.
nb::tuple weight_arrays(const MXWeightView& w) {
  if (w.packed == nullptr) return nb::make_tuple(nb::none(), nb::none());
  return nb::make_tuple(copy_bytes(w.packed, w.batch * w.n, packed_bytes(w.elem, w.k)),
                        copy_bytes(w.scales, w.batch * w.n, w.k / 32));
}
// A bias view as float32 [rows, cols] (the Python side passes f32 biases), or None.
nb::object bias_array(const DenseView& d) {
  if (d.data == nullptr) return nb::none();
  if (d.dtype != DType::kF32) fail("shard: expected an f32 bias");
  const auto* p = static_cast<const float*>(d.data);
  auto* buf = new std::vector<float>(p, p + d.rows * d.cols);
  nb::capsule owner(buf, [](void* q) noexcept { delete static_cast<std::vector<float>*>(q); });
  const size_t shape[2] = {size_t(d.rows), size_t(d.cols)};
  return nb::cast(nb::ndarray<nb::numpy, float>(buf->data(), 2, shape, owner));
}

}  // namespace

void bind_shard(nb::module_& m) {
  m.def("shard_linear", [](const Problem& p, const Array& packed, const Array& scales,
                           const std::optional<Array>& bias, const std::string& how, int rank,
                           int ranks) {
        LinearParallel par;
        if (how == "column") par = LinearParallel::kColumn;
        else if (how == "row") par = LinearParallel::kRow;
        else fail("shard_linear: how must be 'column' or 'row', got '" + how + "'");
        LinearWeights w;
        w.w = weight_view(packed, scales, p.weight, 1, "weight");
        w.bias = dense_host(bias, "bias", 1, p.n);
        const LinearShard s = get(shard_linear(p, w, par, {rank, ranks}));
        nb::dict d;
        const nb::tuple ws = weight_arrays(s.weights.w);
        d["problem"] = s.problem;
        d["packed"] = ws[0];
        d["scales"] = ws[1];
        d["bias"] = bias_array(s.weights.bias);
        d["n0"] = s.n0, d["n1"] = s.n1, d["k0"] = s.k0, d["k1"] = s.k1;
        d["zero_copy"] = s.zero_copy;  // (in C++; Python gets copies)
        d["bytes"] = s.bytes();
        d["describe"] = s.describe(p.n, p.k);
        return d;
      }, "problem"_a, "packed"_a, "scales"_a, "bias"_a.none(), "how"_a, "rank"_a, "ranks"_a);

  m.def("shard_moe", [](const Problem& p, const nb::dict& arrays, const std::string& how, int rank,
                        int ranks) {
        MoEParallel par;
        if (how == "expert") par = MoEParallel::kExpert;
        else if (how == "tensor") par = MoEParallel::kTensor;
        else fail("shard_moe: how must be 'expert' or 'tensor', got '" + how + "'");
        const int64_t e = p.moe.experts, h = p.n, i = p.k;
        auto arr = [&](const char* k) -> std::optional<Array> {
          if (!arrays.contains(k) || arrays[k].is_none()) return std::nullopt;
          return nb::cast<Array>(arrays[k]);
        };
        MoEWeights w;
        auto wv = [&](const char* name, const char* pk, const char* sk) -> MXWeightView {
          auto pa = arr(pk), sa = arr(sk);
          if (!pa && !sa) return {};
          if (!pa || !sa) fail(std::string("shard_moe: ") + name + " needs both packed and scales");
          return weight_view(*pa, *sa, p.weight, e, name);
        };
        w.w13 = wv("w13", "w13_packed", "w13_scales");
        w.w1 = wv("w1", "w1_packed", "w1_scales");
        w.w3 = wv("w3", "w3_packed", "w3_scales");
        w.w2 = wv("w2", "w2_packed", "w2_scales");
        w.bias13 = dense_host(arr("bias13"), "bias13", e, 2 * i);
        w.bias1 = dense_host(arr("bias1"), "bias1", e, i);
        w.bias3 = dense_host(arr("bias3"), "bias3", e, i);
        w.bias2 = dense_host(arr("bias2"), "bias2", e, h);
        const MoEShard s = get(shard_moe(p, w, par, {rank, ranks}));
        nb::dict d;
        d["problem"] = s.problem;
        const std::pair<const char*, const MXWeightView*> views[] = {
            {"w13", &s.weights.w13}, {"w1", &s.weights.w1}, {"w3", &s.weights.w3}, {"w2", &s.weights.w2}};
        for (const auto& [name, v] : views) {
          const nb::tuple t = weight_arrays(*v);
          d[(std::string(name) + "_packed").c_str()] = t[0];
          d[(std::string(name) + "_scales").c_str()] = t[1];
        }
        d["bias13"] = bias_array(s.weights.bias13);
        d["bias1"] = bias_array(s.weights.bias1);
        d["bias3"] = bias_array(s.weights.bias3);
        d["bias2"] = bias_array(s.weights.bias2);
        if (s.expert_map.empty()) {
          d["expert_map"] = nb::none();
        } else {
          auto* buf = new std::vector<int32_t>(s.expert_map);
          nb::capsule owner(buf, [](void* q) noexcept { delete static_cast<std::vector<int32_t>*>(q); });
          const size_t shape[1] = {buf->size()};
          d["expert_map"] = nb::cast(nb::ndarray<nb::numpy, int32_t>(buf->data(), 1, shape, owner));
        }
        d["e0"] = s.e0, d["e1"] = s.e1, d["i0"] = s.i0, d["i1"] = s.i1;
        d["bytes"] = s.bytes();
        d["describe"] = s.describe(e, i);
        return d;
      }, "problem"_a, "arrays"_a, "how"_a, "rank"_a, "ranks"_a);
}

}  // namespace mxq::py
