// libFuzzer target: config.json / quantization_config parsing and MoE expert-set assembly.
// An input is a config.json text, a line "%%", then one tensor per line "name dtype d0,d1,..."
// (tests/fuzz/corpus/model/ has seeds for every format and expert naming). The target writes
// the checkpoint (config.json + model.safetensors with those tensors, deterministic bytes) to a
// private directory and runs what `mxq inspect / explain / run` run: read_model, model_layers,
// and for each layer linear_weights / moe_weights / correction_bias. Rejections must be clean
// errors with a message; accepted layers must have valid problems and views of the right sizes.
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "mxq/layers.h"
#include "mxq/model.h"
#include "mxq/safetensors.h"

namespace {

[[noreturn]] void fail() { __builtin_trap(); }

void check_error(const mxq::Status& s) {
  if (s.ok() || s.message().empty()) fail();
}

const std::string& dir() {
  static const std::string d = [] {
    const char* t = std::getenv("TMPDIR");
    std::string tmpl = std::string(t != nullptr && *t != '\0' ? t : "/tmp") + "/mxq_model_fuzz.XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) fail();
    static std::string removed;
    removed = tmpl;
    std::atexit([] {
      std::remove((removed + "/model.safetensors").c_str());
      std::remove((removed + "/config.json").c_str());
      ::rmdir(removed.c_str());
    });
    return tmpl;
  }();
  return d;
}

struct Decl {
  std::string name, dtype;
  std::vector<int64_t> shape;
};

// "name dtype d0,d1,..." -> Decl; false for a line that is not one (skipped).
bool parse_line(const std::string& line, Decl* d) {
  std::istringstream in(line);
  std::string dims;
  if (!(in >> d->name >> d->dtype)) return false;
  in >> dims;
  d->shape.clear();
  std::istringstream ds(dims);
  std::string v;
  while (std::getline(ds, v, ',')) {
    if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos) return false;
    d->shape.push_back(std::stoll(v));
  }
  return true;
}

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') o += '\\', o += char(c);
    else if (c < 0x20) { char b[8]; std::snprintf(b, sizeof b, "\\u%04x", c); o += b; }
    else o += char(c);
  }
  return o + "\"";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mxq;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const size_t sep = text.find("\n%%\n");
  if (sep == std::string_view::npos) return 0;
  const std::string config(text.substr(0, sep));
  std::vector<Decl> decls;
  std::istringstream lines(std::string(text.substr(sep + 4)));
  for (std::string line; std::getline(lines, line);) {
    Decl d;
    if (parse_line(line, &d)) decls.push_back(std::move(d));
  }
  // The safetensors image; unknown dtypes / sizes are the reader's to refuse, but keep the data
  // small (the fuzzer explores names and configs, not big tensors).
  std::string header = "{";
  uint64_t off = 0;
  for (const Decl& d : decls) {
    auto dt = io::parse_st_dtype(d.dtype);
    if (!dt.ok()) return 0;
    auto n = io::tensor_bytes(dt.value(), d.shape);
    if (!n.ok() || n.value() > (1u << 20) || off + n.value() > (4u << 20)) return 0;
    std::string shape;
    for (int64_t v : d.shape) shape += (shape.empty() ? "" : ",") + std::to_string(v);
    header += std::string(header.size() > 1 ? "," : "") + json_string(d.name) + ":{\"dtype\":\"" +
              d.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" + std::to_string(off) +
              "," + std::to_string(off + n.value()) + "]}";
    off += n.value();
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');
  {
    std::ofstream st(dir() + "/model.safetensors", std::ios::binary | std::ios::trunc);
    const uint64_t hl = header.size();
    st.write(reinterpret_cast<const char*>(&hl), 8);
    st << header;
    for (uint64_t i = 0; i < off; ++i) st.put(char(uint8_t(i * 37 + 11)));
    std::ofstream(dir() + "/config.json", std::ios::trunc) << config;
  }
  auto ck = io::Checkpoint::open(dir());
  if (!ck.ok()) {
    check_error(ck.status());
    return 0;
  }
  auto info = io::read_model(ck.value());
  if (!info.ok()) {
    check_error(info.status());
    return 0;
  }
  auto layers = model_layers(ck.value(), info.value(), 2);
  if (!layers.ok()) {
    check_error(layers.status());
    return 0;
  }
  for (const LayerSpec& l : layers.value()) {
    if (!l.problem.validate().ok() || l.w == nullptr || l.name.empty()) fail();
    if (l.problem.op == Op::kLinear) {
      auto lw = linear_weights(ck.value(), l);
      if (!lw.ok()) {
        check_error(lw.status());
        continue;
      }
      if (lw.value().w.n != l.problem.n || lw.value().w.k != l.problem.k) fail();
      continue;
    }
    if (l.w2 == nullptr) fail();
    auto mw = moe_weights(ck.value(), l);
    if (!mw.ok()) {
      check_error(mw.status());
      continue;
    }
    const MXWeightView& w2 = mw.value().w2;
    if (w2.batch != l.problem.moe.experts || w2.packed == nullptr) fail();
    unsigned sum = 0;  // every byte of the (possibly assembled) views is readable
    const size_t w2_bytes = size_t(w2.batch * w2.n * w2.k) * size_t(elem_info(w2.elem).bits) / 8;
    for (size_t i = 0; i < w2_bytes; ++i) sum += w2.packed[i];
    volatile unsigned sink = sum;
    (void)sink;
    auto cb = correction_bias(ck.value(), l);
    if (!cb.ok()) check_error(cb.status());
    else if (!cb.value().empty() && int64_t(cb.value().size()) != l.problem.moe.experts) fail();
  }
  return 0;
}
