// Typed, optional fields of a config.json object. nlohmann's `obj.value(key, def)` throws a
// bare type_error ("type must be string, but is object") when the key holds another type,
// which names neither the key nor the file; `field_or` names the key and what it holds, and
// the readers' boundaries (read_model, model_layers, quantize_model) turn it into a
// data-loss Status naming the file.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace mxq::io {

// A config field present with the wrong type (or an integer out of T's range).
struct ConfigFieldError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// obj[key] as T; `def` when obj is not an object, the key is absent, or its value is null.
template <class T>
T field_or(const nlohmann::json& obj, const char* key, T def) {
  if (!obj.is_object()) return def;
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return def;
  const nlohmann::json& v = *it;
  const auto wrong = [&](const char* expected) {
    return ConfigFieldError(std::string("field \"") + key + "\" must be " + expected + ", got " +
                            v.dump());
  };
  if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) throw wrong("a string");
    return v.get<std::string>();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) throw wrong("true or false");
    return v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) throw wrong("an integer");
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<T>::max())) throw wrong("an integer in range");
      return T(u);
    }
    const int64_t s = v.get<int64_t>();
    if (s < int64_t(std::numeric_limits<T>::min()) ||
        (s > 0 && uint64_t(s) > uint64_t(std::numeric_limits<T>::max())))
      throw wrong("an integer in range");
    return T(s);
  } else {
    static_assert(std::is_floating_point_v<T>, "field_or: string, bool, integer or floating");
    if (!v.is_number()) throw wrong("a number");
    return v.get<T>();
  }
}

// The string form, so that a literal default needs no std::string().
inline std::string field_or(const nlohmann::json& obj, const char* key, const char* def) {
  return field_or<std::string>(obj, key, std::string(def));
}

}  // namespace mxq::io
