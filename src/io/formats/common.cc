#include "common.h"

#include <algorithm>
#include <numeric>
#include <regex>
#include <set>

#include "mxq/quantize.h"

namespace mxq::io::formats {
namespace {

std::string shape_str(std::span<const int64_t> s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

Status data_loss(std::string msg) { return {StatusCode::kDataLoss, std::move(msg)}; }

StatusOr<const Checkpoint::Entry*> get(const Checkpoint& ckpt, std::string_view name,
                                       std::string_view module) {
  const Checkpoint::Entry* e = ckpt.find(name);
  if (e == nullptr)
    return Status(StatusCode::kNotFound, "tensor '" + std::string(name) + "' (for module '" +
                                             std::string(module) + "') is missing");
  return e;
}

bool is_scale_dtype(StDType d) {
  return d == StDType::kU8 || d == StDType::kI8 || d == StDType::kF8_E8M0;
}

// Element dtypes accepted for `elem`'s packed tensor.
bool packed_dtype_ok(ElemType elem, StDType d) {
  if (d == StDType::kU8 || d == StDType::kI8) return true;
  switch (elem) {
    case ElemType::kE4M3: return d == StDType::kF8_E4M3;
    case ElemType::kE5M2: return d == StDType::kF8_E5M2;
    default: return false;
  }
}

StatusOr<MXWeight> make(const Checkpoint& ckpt, std::string module, ElemType elem,
                        std::string_view packed_name, std::string_view scale_name,
                        bool flatten_trailing) {
  auto p = get(ckpt, packed_name, module);
  if (!p.ok()) return p.status();
  auto s = get(ckpt, scale_name, module);
  if (!s.ok()) return s.status();
  const TensorInfo& pi = *p.value()->info;
  const TensorInfo& si = *s.value()->info;
  if (!packed_dtype_ok(elem, pi.dtype))
    return data_loss("tensor '" + pi.name + "' has dtype " + st_dtype_name(pi.dtype) +
                     ", expected U8 (packed " + mx_format_name(elem) + ")");
  if (!is_scale_dtype(si.dtype))
    return data_loss("scale tensor '" + si.name + "' has dtype " + st_dtype_name(si.dtype) +
                     ", expected U8 or F8_E8M0 (E8M0 scale bytes)");
  if (si.shape.size() < 2)
    return data_loss("scale tensor '" + si.name + "' has shape " + shape_str(si.shape) +
                     ", expected [.., N, K/32]");
  std::vector<int64_t> shape = si.shape;
  shape.back() *= kBlockSize;  // logical K
  const int64_t k = shape.back();
  const int64_t row_bytes = packed_bytes(elem, k);
  // Expected packed shape: scale's leading dims, then K * bits / 8 (or flattened blocks).
  std::vector<int64_t> want(si.shape.begin(), si.shape.end() - 1);
  bool ok;
  if (flatten_trailing) {
    // [.., N, K/32, 32 * bits / 8]
    ok = pi.shape.size() == si.shape.size() + 1 &&
         std::equal(si.shape.begin(), si.shape.end(), pi.shape.begin()) &&
         pi.shape.back() == kBlockSize * elem_info(elem).bits / 8;
    want = si.shape;
    want.push_back(kBlockSize * elem_info(elem).bits / 8);
  } else {
    want.push_back(row_bytes);
    // 8-bit elements stored as FP8 have one element per byte: same numbers.
    ok = pi.shape == want;
  }
  if (!ok)
    return data_loss("tensor '" + pi.name + "' has shape " + shape_str(pi.shape) + ", expected " +
                     shape_str(want) + " to match scale tensor '" + si.name + "' " +
                     shape_str(si.shape) + " (" + mx_format_name(elem) + ", K = " +
                     std::to_string(k) + ")");
  MXWeight w;
  w.module = std::move(module);
  w.elem = elem;
  w.shape = std::move(shape);
  w.packed_name = pi.name;
  w.scale_name = si.name;
  w.packed = p.value()->bytes();
  w.scales = s.value()->bytes();
  return w;
}

}  // namespace

StatusOr<MXWeight> make_weight(const Checkpoint& ckpt, std::string module, ElemType elem,
                               std::string_view packed_name, std::string_view scale_name) {
  return make(ckpt, std::move(module), elem, packed_name, scale_name, false);
}

StatusOr<MXWeight> make_weight_flatten(const Checkpoint& ckpt, std::string module,
                                       ElemType elem, std::string_view packed_name,
                                       std::string_view scale_name) {
  return make(ckpt, std::move(module), elem, packed_name, scale_name, true);
}

void finalize(ModelInfo& info, const Checkpoint& ckpt) {
  std::sort(info.weights.begin(), info.weights.end(),
            [](const MXWeight& a, const MXWeight& b) { return a.module < b.module; });
  std::set<std::string, std::less<>> used;
  for (const MXWeight& w : info.weights) {
    used.insert(w.packed_name);
    used.insert(w.scale_name);
  }
  info.passthrough.clear();
  for (const std::string& n : ckpt.names())
    if (!used.count(n)) info.passthrough.push_back(n);
  std::sort(info.ignored.begin(), info.ignored.end());
}

bool matches_ignore(const std::vector<std::string>& patterns, std::string_view module) {
  for (const std::string& p : patterns) {
    if (p.rfind("re:", 0) == 0) {
      try {
        if (std::regex_match(module.begin(), module.end(), std::regex(p.substr(3)))) return true;
      } catch (const std::regex_error&) {
        // An invalid regex never matches; config validation reports it separately.
      }
    } else if (module == p) {
      return true;
    }
  }
  return false;
}

StatusOr<std::string> resolve_alias(const Checkpoint& ckpt, std::string_view what,
                                    std::string_view module,
                                    const std::vector<std::string>& candidates) {
  std::string tried;
  for (const std::string& c : candidates) {
    if (ckpt.find(c) != nullptr) return c;
    tried += (tried.empty() ? "" : ", ") + c;
  }
  return Status(StatusCode::kNotFound, std::string(what) + " for '" + std::string(module) +
                                           "' not found; tried: " + tried);
}

std::string module_of(std::string_view tensor_name) {
  const size_t dot = tensor_name.rfind('.');
  return std::string(dot == std::string_view::npos ? tensor_name : tensor_name.substr(0, dot));
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// ---- helpers shared by the gpt-oss, Quark, ModelOpt and DeepSeek adapters ----

std::string shape_string(std::span<const int64_t> shape) { return shape_str(shape); }

const json* quantization_config(const json& config) {
  const json* q = member(config, "quantization_config");
  return q != nullptr && q->is_object() ? q : nullptr;
}

const json* member(const json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

StatusOr<std::vector<std::string>> string_list(const json& obj, const std::string& key,
                                               const std::string& where) {
  std::vector<std::string> out;
  const json* v = member(obj, key);
  if (v == nullptr) return out;
  if (!v->is_array())
    return data_loss(where + "." + key + " must be a list of strings, got " + v->dump());
  for (const json& e : *v) {
    if (!e.is_string())
      return data_loss(where + "." + key + " must be a list of strings; entry " + e.dump() +
                       " is not a string");
    out.push_back(e.get<std::string>());
  }
  return out;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  // Iterative wildcard matching with single-star backtracking: O(|p| * |t|) worst case.
  size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool matches_pattern(const std::vector<std::string>& patterns, std::string_view module) {
  for (const std::string& p : patterns) {
    if (p.rfind("re:", 0) == 0) {
      if (matches_ignore({p}, module)) return true;
    } else if (glob_match(p, module)) {
      return true;
    }
  }
  return false;
}

Status check_input_scale(const Checkpoint& ckpt, const std::string& name,
                         std::string_view module) {
  const Checkpoint::Entry* e = ckpt.find(name);
  if (e == nullptr)
    return Status(StatusCode::kNotFound,
                  "static activation scale '" + name + "' (for module '" + std::string(module) +
                      "') is missing; expected an F32, BF16 or F16 scalar");
  const TensorInfo& t = *e->info;
  const bool scalar = t.shape.empty() || (t.shape.size() == 1 && t.shape[0] == 1);
  // Quark 0.13 writes the scalar in BF16, others in F16 or F32: each converts to F32 exactly.
  const bool float_type =
      t.dtype == StDType::kF32 || t.dtype == StDType::kBF16 || t.dtype == StDType::kF16;
  if (!float_type || !scalar)
    return data_loss("static activation scale '" + name + "' is " + st_dtype_name(t.dtype) + " " +
                     shape_str(t.shape) +
                     ", expected an F32, BF16 or F16 scalar (shape [] or [1])");
  return Status::Ok();
}

Status attach_bias(const Checkpoint& ckpt, const std::string& name, MXWeight& w) {
  const Checkpoint::Entry* e = ckpt.find(name);
  if (e == nullptr) return Status::Ok();
  const TensorInfo& t = *e->info;
  const std::vector<int64_t> want(w.shape.begin(), w.shape.end() - 1);
  const bool float_type =
      t.dtype == StDType::kBF16 || t.dtype == StDType::kF16 || t.dtype == StDType::kF32;
  if (!float_type || t.shape != want)
    return data_loss("bias tensor '" + name + "' is " + st_dtype_name(t.dtype) + " " +
                     shape_str(t.shape) + ", expected BF16, F16 or F32 " + shape_str(want) +
                     " for weight '" + w.packed_name + "' " + shape_str(w.shape));
  w.bias_name = name;
  return Status::Ok();
}


std::vector<int64_t> packed_shape_for(std::span<const int64_t> scale_shape, ElemType elem) {
  std::vector<int64_t> s(scale_shape.begin(), scale_shape.end());
  if (!s.empty()) s.back() = packed_bytes(elem, s.back() * kBlockSize);
  return s;
}

std::vector<int64_t> scale_shape_for(std::span<const int64_t> packed_shape, ElemType elem) {
  std::vector<int64_t> s(packed_shape.begin(), packed_shape.end());
  if (!s.empty()) s.back() = s.back() * 8 / elem_info(elem).bits / kBlockSize;
  return s;
}

}  // namespace mxq::io::formats
