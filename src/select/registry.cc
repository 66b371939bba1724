// The built-in backends, registered explicitly (see select.h for why not by static objects).
// Adding a backend: construct it here, in any order; priority() decides the ranking.
#include "cpu/backends.h"
#if defined(MXQ_WITH_CUDA_BACKENDS)
#include "cuda/backends.h"
#endif
#include "oracle.h"

namespace mxq {

const std::vector<const Backend*>& backends() {
  static const std::vector<std::unique_ptr<Backend>> owned = [] {
    std::vector<std::unique_ptr<Backend>> v;
    v.push_back(make_cpu_reference_backend());
    v.push_back(make_cpu_backend());
#if defined(MXQ_WITH_CUDA_BACKENDS)
    for (auto& b : make_cuda_backends()) v.push_back(std::move(b));
#endif
    return v;
  }();
  static const std::vector<const Backend*> view = [] {
    std::vector<const Backend*> v;
    for (const auto& b : owned) v.push_back(b.get());
    return v;
  }();
  return view;
}

const Backend* find_backend(std::string_view name) {
  for (const Backend* b : backends())
    if (b->name() == name) return b;
  return nullptr;
}

StatusOr<Selection> select_backend(const Problem& p, const Device& d, const SelectOptions& o) {
  return detail::select_from(backends(), p, d, o);
}

std::string explain(const Problem& p, const Device& d, const SelectOptions& o) {
  return detail::explain_from(backends(), p, d, o);
}

}  // namespace mxq
