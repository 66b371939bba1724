#include "case_list.h"

#include <nlohmann/json.hpp>

#include <stdexcept>

#include "mxq_cases_json.h"  // generated: kCasesJson, the text of tests/cases/cases.json

namespace mxq::cases {

namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::runtime_error("tests/cases/cases.json: " + where + ": " + what);
}

const json& at(const json& j, const std::string& key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) bad(where, "missing \"" + key + "\"");
  return j.at(key);
}

int64_t positive(const json& j, const std::string& key, const std::string& where) {
  const json& v = at(j, key, where);
  if (!v.is_number_integer() || v.get<int64_t>() <= 0)
    bad(where + "." + key, "not a positive integer: " + v.dump());
  return v.get<int64_t>();
}

std::vector<int64_t> ints(const json& j, const std::string& key, const std::string& where) {
  const json& v = at(j, key, where);
  if (!v.is_array() || v.empty()) bad(where + "." + key, "not a non-empty list");
  std::vector<int64_t> out;
  for (const json& e : v) {
    if (!e.is_number_integer() || e.get<int64_t>() <= 0)
      bad(where + "." + key, "not a positive integer: " + e.dump());
    out.push_back(e.get<int64_t>());
  }
  return out;
}

std::string text(const json& j, const std::string& key, const std::string& where) {
  const json& v = at(j, key, where);
  if (!v.is_string()) bad(where + "." + key, "not a string");
  return v.get<std::string>();
}

template <typename T>
T parsed(StatusOr<T> s, const std::string& where) {
  if (!s.ok()) bad(where, s.status().to_string());
  return s.value();
}

Mnk mnk(const json& j, const std::string& where) {
  return {positive(j, "m", where), positive(j, "n", where), positive(j, "k", where)};
}

std::vector<Shape> shapes(const json& root, const json& names, const std::string& where) {
  if (!names.is_array() || names.empty()) bad(where, "not a non-empty list of shape names");
  std::vector<Shape> out;
  for (const json& n : names) {
    if (!n.is_string()) bad(where, "not a shape name: " + n.dump());
    const std::string name = n.get<std::string>();
    const json& s = at(at(root, "linear_shapes", "top level"), name, "linear_shapes");
    out.push_back({name, positive(s, "n", "linear_shapes." + name),
                   positive(s, "k", "linear_shapes." + name)});
  }
  return out;
}

MoELayer layer(const json& root, const std::string& name, const std::string& where) {
  const json& l = at(at(root, "moe_layers", "top level"), name, where + " -> moe_layers");
  const std::string w = "moe_layers." + name;
  MoELayer out;
  out.name = name;
  out.h = positive(l, "h", w);
  out.i = positive(l, "i", w);
  out.e = positive(l, "e", w);
  out.k = positive(l, "k", w);
  out.layout = parsed(io::parse_gate_up_layout(text(l, "layout", w)), w + ".layout");
  out.act = parsed(parse_moe_activation(text(l, "act", w)), w + ".act");
  out.routing = parsed(parse_routing(text(l, "routing", w)), w + ".routing");
  out.n_group = positive(l, "n_group", w);
  out.topk_group = positive(l, "topk_group", w);
  const json& b = at(l, "bias", w);
  if (!b.is_boolean()) bad(w + ".bias", "not true/false");
  out.bias = b.get<bool>();
  if (l.contains("correction_bias")) out.correction_bias = l.at("correction_bias").get<bool>();
  if (l.contains("routed_scaling")) out.routed_scaling = l.at("routed_scaling").get<float>();
  if (out.k > out.e) bad(w, "top-k above the expert count");
  if (out.e % out.n_group != 0) bad(w, "experts not a multiple of n_group");
  return out;
}

}  // namespace

CaseList parse_case_list(const std::string& json_text) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::exception& e) {
    bad("parse", e.what());
  }
  // Every shape and layer is checked, also those only the Python benchmarks read.
  for (const auto& [name, v] : at(root, "linear_shapes", "top level").items()) {
    positive(v, "n", "linear_shapes." + name);
    positive(v, "k", "linear_shapes." + name);
  }
  for (const auto& [name, v] : at(root, "moe_layers", "top level").items()) layer(root, name, "");
  const json& sets = at(root, "sets", "top level");
  CaseList c;
  {
    const std::string w = "sets.tests_quick_linear";
    const json& q = at(sets, "tests_quick_linear", "sets");
    c.tests_quick_linear.every_format = mnk(at(q, "every_format", w), w + ".every_format");
    c.tests_quick_linear.f32_out = mnk(at(q, "f32_out", w), w + ".f32_out");
    c.tests_quick_linear.act_rule = mnk(at(q, "act_rule", w), w + ".act_rule");
    const json& nk = at(q, "awkward_nk", w);
    if (!nk.is_array() || nk.empty()) bad(w + ".awkward_nk", "not a non-empty list");
    for (const json& p : nk) {
      if (!p.is_array() || p.size() != 2 || !p[0].is_number_integer() ||
          !p[1].is_number_integer() || p[0].get<int64_t>() <= 0 || p[1].get<int64_t>() <= 0)
        bad(w + ".awkward_nk", "not an [N, K] pair of positive integers: " + p.dump());
      c.tests_quick_linear.awkward_nk.emplace_back(p[0].get<int64_t>(), p[1].get<int64_t>());
    }
    c.tests_quick_linear.awkward_ms = ints(q, "awkward_ms", w);
  }
  {
    const std::string w = "sets.tests_quick_moe";
    const json& q = at(sets, "tests_quick_moe", "sets");
    for (const auto& [name, v] : q.items()) {
      if (name == "about") continue;
      c.tests_quick_moe.push_back(
          {name, layer(root, text(v, "layer", w + "." + name), w + "." + name),
           ints(v, "ms", w + "." + name)});
    }
    if (c.tests_quick_moe.empty()) bad(w, "no entries");
  }
  {
    const std::string w = "sets.tests_full_linear";
    const json& f = at(sets, "tests_full_linear", "sets");
    c.tests_full_linear = {shapes(root, at(f, "shapes", w), w + ".shapes"), ints(f, "ms", w)};
  }
  {
    const std::string w = "sets.tests_full_moe";
    const json& f = at(sets, "tests_full_moe", "sets");
    if (!f.is_array() || f.empty()) bad(w, "not a non-empty list");
    for (const json& v : f)
      c.tests_full_moe.push_back({text(v, "name", w), layer(root, text(v, "layer", w), w),
                                  {positive(v, "m", w)}});
  }
  {
    const std::string w = "sets.gemv_bench";
    const json& g = at(sets, "gemv_bench", "sets");
    c.gemv_bench = {shapes(root, at(g, "shapes", w), w + ".shapes"), ints(g, "ms", w)};
    c.gemv_llc_shapes = shapes(root, at(g, "llc_shapes", w), w + ".llc_shapes");
  }
  return c;
}

const CaseList& case_list() {
  static const CaseList c = parse_case_list(kCasesJson);
  return c;
}

}  // namespace mxq::cases
