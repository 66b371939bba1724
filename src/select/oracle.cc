// Backend selection: enumerate, filter by hard constraints, rank by priority, explain.
//
// Rules (docs/architecture.md):
//  1. An explicit override (SelectOptions::override_backend, else the env variable of the op)
//     always wins; if that backend cannot run the problem the result is an error carrying its
//     reason. Never a silent fallback.
//  2. Otherwise every backend is checked: supports(device), then check_problem (the activation
//     key is one the backend declares, then can_implement(problem)); the
//     eligible one with the highest priority is chosen (ties: registration order).
//  3. If the choice is a reference backend while faster ones exist, that is a fallback: one
//     warning per process on stderr naming why the others were rejected, or an error in strict
//     mode.
// SelectOptions::memory (the memory of the call's arrays) restricts all three rules to the
// backends taking that memory: the Python package asks with the device of its arrays.
#include "oracle.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <set>
#include <sstream>

namespace mxq::detail {

const char* override_env(const Problem& p) {
  return p.op == Op::kMoE ? "MXQ_MOE_BACKEND" : "MXQ_LINEAR_BACKEND";
}

namespace {

Candidate check(const Backend* b, const Problem& p, const Device& d) {
  Candidate c{b, false, ""};
  const Verdict s = b->supports(d);
  if (!s) {
    c.reason = "device: " + s.reason;
    return c;
  }
  const Verdict v = b->check_problem(p);  // declared activation key, then can_implement
  if (!v) {
    c.reason = v.reason;
    return c;
  }
  c.eligible = true;
  return c;
}

std::string names(const std::vector<const Backend*>& all) {
  std::string s;
  for (const Backend* b : all) s += (s.empty() ? "" : ", ") + std::string(b->name());
  return s;
}

std::string rejected_summary(const std::vector<Candidate>& cs, const Backend* chosen) {
  std::string s;
  for (const Candidate& c : cs)
    if (c.backend != chosen && !c.eligible)
      s += (s.empty() ? "" : "; ") + std::string(c.backend->name()) + ": " + c.reason;
  return s;
}

bool takes(const Backend* b, MemoryKind m) {
  return m == MemoryKind::kAny || b->memory_kind() == m;
}

// The backends taking memory `m`, in rank order for p (ties: registration order).
std::vector<const Backend*> ranked_for(const std::vector<const Backend*>& all, const Problem& p,
                                       MemoryKind m) {
  std::vector<const Backend*> ranked;
  for (const Backend* b : all)
    if (takes(b, m)) ranked.push_back(b);
  std::stable_sort(ranked.begin(), ranked.end(),
                   [&p](const Backend* a, const Backend* b) { return a->rank(p) > b->rank(p); });
  return ranked;
}

std::string upper(std::string s) {
  for (char& c : s) c = char(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

void warn_once(const std::string& msg) {
  static std::mutex mu;
  static std::set<std::string> seen;
  std::lock_guard<std::mutex> lock(mu);
  if (seen.insert(msg).second) std::fprintf(stderr, "mxq: warning: %s\n", msg.c_str());
}

}  // namespace

StatusOr<Selection> select_from(const std::vector<const Backend*>& all, const Problem& p,
                                const Device& d, const SelectOptions& o) {
  MXQ_RETURN_IF_ERROR(p.validate());
  Selection sel;
  const std::vector<const Backend*> ranked = ranked_for(all, p, o.memory);
  for (const Backend* b : ranked) sel.candidates.push_back(check(b, p, d));

  std::string override_name = o.override_backend;
  std::string source = o.override_source.empty() ? "API override" : o.override_source;
  if (override_name.empty() && o.use_env) {
    if (const char* e = std::getenv(override_env(p)); e != nullptr && *e != '\0') {
      // An environment override naming a backend of the other memory is for the other calls.
      const auto known = std::find_if(all.begin(), all.end(),
                                      [&](const Backend* b) { return b->name() == e; });
      if (known == all.end() || takes(*known, o.memory)) {
        override_name = e;
        source = std::string("override (") + override_env(p) + ")";
      }
    }
  }
  if (!override_name.empty()) {
    const auto known = std::find_if(all.begin(), all.end(),
                                    [&](const Backend* b) { return b->name() == override_name; });
    if (known == all.end())
      return invalid_argument(source + ": unknown backend '" + override_name +
                              "' (built-in backends: " + names(ranked_for(all, p, MemoryKind::kAny)) + ")");
    if (!takes(*known, o.memory))
      return invalid_argument(source + ": backend '" + override_name + "' runs on " +
                              memory_kind_name((*known)->memory_kind()) + " arrays, but the arrays are " +
                              memory_kind_name(o.memory) + " arrays");
    const auto it = std::find_if(sel.candidates.begin(), sel.candidates.end(),
                                 [&](const Candidate& c) { return c.backend == *known; });
    if (!it->eligible)
      return unimplemented(source + ": backend '" + override_name + "' cannot run " +
                           p.to_string() + ": " + it->reason);
    sel.backend = it->backend;
    sel.how = source;
    return sel;
  }
  if (ranked.empty())
    return unimplemented("this build has no " + upper(memory_kind_name(o.memory)) + " backend for " +
                         p.to_string() + " (built-in backends: " + names(ranked_for(all, p, MemoryKind::kAny)) + ")");
  for (const Candidate& c : sel.candidates)
    if (c.eligible) {
      sel.backend = c.backend;
      break;
    }
  if (sel.backend == nullptr)
    return unimplemented(
        std::string("no ") + (o.memory == MemoryKind::kAny ? "" : memory_kind_name(o.memory) + std::string(" ")) +
        "backend can run " + p.to_string() + ": " + rejected_summary(sel.candidates, nullptr));
  sel.how = "automatic";
  const bool faster_exist = std::any_of(sel.candidates.begin(), sel.candidates.end(), [](const Candidate& c) {
    return !c.backend->is_reference();
  });
  if (sel.backend->is_reference() && faster_exist) {
    sel.fallback = true;
    const std::string why = "falling back to reference backend " + std::string(sel.backend->name()) +
                            " for " + p.to_string() + " (" +
                            rejected_summary(sel.candidates, sel.backend) + ")";
    if (o.strict) return unimplemented("strict mode: " + why);
    if (o.warn) warn_once(why);
    sel.how = "automatic (fallback to reference)";
  }
  return sel;
}

std::string explain_from(const std::vector<const Backend*>& all, const Problem& p,
                         const Device& d, const SelectOptions& o) {
  std::ostringstream s;
  s << "problem  " << p.to_string() << "\n";
  std::istringstream dev(d.to_string());
  std::string line;
  bool first = true;
  while (std::getline(dev, line)) {
    s << (first ? "device   " : "         ") << line << "\n";
    first = false;
  }
  SelectOptions quiet = o;
  quiet.warn = false;
  quiet.strict = false;
  const StatusOr<Selection> sel = select_from(all, p, d, quiet);
  std::vector<Candidate> cs;
  if (sel.ok()) {
    cs = sel.value().candidates;
  } else {
    for (const Backend* b : ranked_for(all, p, o.memory)) cs.push_back(check(b, p, d));
  }
  s << "backends (rank order)\n";
  for (const Candidate& c : cs) {
    char head[64];
    std::snprintf(head, sizeof head, "  %-14s prio %3d  ", std::string(c.backend->name()).c_str(),
                  c.backend->rank(p));
    s << head << (c.eligible ? "ok" : "rejected: " + c.reason);
    if (sel.ok() && sel.value().backend == c.backend) s << "   <- chosen";
    s << "\n";
  }
  if (sel.ok()) {
    s << "choice   " << sel.value().backend->name() << " (" << sel.value().how << ")\n";
    if (const std::string plan = sel.value().backend->launch_plan(p); !plan.empty())
      s << "launch   " << plan << "\n";
    if (sel.value().fallback && o.strict) s << "         strict mode would refuse this fallback\n";
  } else {
    s << "choice   none: " << sel.status().message() << "\n";
  }
  return s.str();
}

}  // namespace mxq::detail
