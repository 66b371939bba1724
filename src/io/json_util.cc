// Strict JSON parsing (duplicate keys and ill-formed UTF-8 are errors, not "last one wins"),
// UTF-8 validation, and small file helpers for src/io.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "io/internal.h"

namespace mxq::io::internal {

Status data_loss(const std::string& file, const std::string& rule) {
  return {StatusCode::kDataLoss, file + ": " + rule};
}

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp, min;
    if ((c >> 5) == 0x6) {
      len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c >> 4) == 0xE) {
      len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c >> 3) == 0x1E) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return i;  // continuation byte without a lead, or 0xF8..0xFF
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string quote(std::string_view s) {
  constexpr size_t kMax = 200;
  const bool cut = s.size() > kMax;
  if (cut) s = s.substr(0, kMax);
  std::string out = nlohmann::json(std::string(s)).dump(-1, ' ', false,
                                                          nlohmann::json::error_handler_t::replace);
  if (cut) out += "...";
  return out;
}

namespace {

// Thrown from the parser callback to stop at the first structural violation nlohmann itself
// does not detect.
struct StrictViolation {
  std::string rule;
};

}  // namespace

StatusOr<nlohmann::json> parse_json_strict(std::string_view text, const std::string& file,
                                           const char* what) {
  if (size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    return data_loss(file, std::string(what) + " is not valid UTF-8 (ill-formed byte at " + what +
                               " offset " + std::to_string(bad) + ")");
  }
  // nlohmann's lexer takes a NUL byte for the end of input, so "{}\0<anything>" would parse as
  // "{}"; JSON text never contains a raw NUL (inside strings it must be escaped).
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {
    return data_loss(file, std::string(what) + " is not valid JSON: NUL byte at " + what +
                               " offset " + std::to_string(nul));
  }
  // One set of seen keys per open object; nlohmann's DOM parser keeps the last duplicate.
  std::vector<std::set<std::string, std::less<>>> open_objects;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    switch (event) {
      case E::object_start:
      case E::array_start:
        if (depth >= kMaxJsonDepth) {
          throw StrictViolation{"JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
                                " levels"};
        }
        if (event == E::object_start) open_objects.emplace_back();
        break;
      case E::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case E::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.empty() && !open_objects.back().insert(key).second) {
          throw StrictViolation{"duplicate key " + quote(key)};
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                                 /*ignore_comments=*/false);
  } catch (const StrictViolation& v) {
    return data_loss(file, std::string(what) + " JSON is invalid: " + v.rule);
  } catch (const nlohmann::json::exception& e) {
    return data_loss(file, std::string(what) + " is not valid JSON: " + e.what());
  }
}

Status open_error(const std::string& path, int err) {
  const StatusCode code = (err == ENOENT || err == ENOTDIR) ? StatusCode::kNotFound
                                                            : StatusCode::kInvalidArgument;
  return {code, path + ": cannot open: " + std::strerror(err)};
}

StatusOr<std::string> read_text_file(const std::string& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) return open_error(path, errno != 0 ? errno : ENOENT);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return data_loss(path, "read failed");
  return ss.str();
}

}  // namespace mxq::io::internal
