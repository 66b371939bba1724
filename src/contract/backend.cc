// The Backend base: the public entry of every backend call (prepare_* / run_*), where the
// arguments are checked once with the shared contract checks before the backend's do_* method
// runs (docs/architecture.md, "Where arguments are checked"), and the defaults for an op a
// backend does not provide (a clear error, not a crash).
#include <new>
#include <string>

#include "contract/weight_checks.h"
#include "mxq/backend.h"

namespace mxq {

namespace {

Status not_provided(const Backend& b, const char* what) {
  return unimplemented("backend " + std::string(b.name()) + " does not provide " + what);
}

// `s` with "<backend>: " before its message (the entry's errors name the backend called).
Status named(const Backend& b, Status s) {
  if (s.ok()) return s;
  return {s.code(), std::string(b.name()) + ": " + s.message()};
}

// The checks allocate only when they fail; if building that message runs out of host memory,
// the call still returns (the message that needs no allocation).
template <typename Fn>
Status guarded(Fn&& check) noexcept {
  try {
    return check();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kResourceExhausted, "out of memory");
  }
}

// A std::bad_alloc that leaves a backend's do_* method (the CPU backends catch their own and say
// more; the CUDA backends' host buffers do not) is a resource-exhausted Status naming the
// backend, the call and the problem, not an exception through the API; when even that message
// cannot be built, the short one.
Status host_out_of_memory(const Backend& b, const char* call, const Problem& p) noexcept {
  try {
    return Status(StatusCode::kResourceExhausted,
                  "out of host memory in " + std::string(b.name()) + " " + call + " for " +
                      p.to_string() + ": std::bad_alloc (the size of the failed request is " +
                      "not known here)");
  } catch (...) {
    return Status(StatusCode::kResourceExhausted, "out of memory");
  }
}

// A resource-exhausted Status from a backend's do_* method names the backend: "<backend>: "
// before a message that does not name it already (a device allocation's message names what and
// how much, not who asked); unchanged when even that cannot be allocated.
Status name_exhausted(const Backend& b, Status s) noexcept {
  if (s.code() != StatusCode::kResourceExhausted) return s;
  try {
    if (s.message().find(b.name()) != std::string::npos) return s;
    return Status(s.code(), std::string(b.name()) + ": " + s.message());
  } catch (...) {
    return s;
  }
}

Status named_result(const Backend& b, Status s) { return name_exhausted(b, std::move(s)); }
template <typename T>
StatusOr<T> named_result(const Backend& b, StatusOr<T> r) {
  if (r.ok()) return r;
  return name_exhausted(b, r.status());
}

// `fn()` (a do_* call) with a std::bad_alloc that escapes it as host_out_of_memory, and its
// resource-exhausted errors naming the backend.
template <typename Fn>
auto caught(const Backend& b, const char* call, const Problem& p, Fn&& fn) -> decltype(fn()) {
  try {
    return named_result(b, fn());
  } catch (const std::bad_alloc&) {
    return host_out_of_memory(b, call, p);
  }
}

}  // namespace

Verdict Backend::check_problem(const Problem& p) const {
  if ((p.op == Op::kLinear || p.op == Op::kMoE) && !declares_act_key(p.act)) {
    std::string keys;
    for (ActKey a : kAllActKeys)
      if (declares_act_key(a)) keys += (keys.empty() ? "" : ", ") + std::string(act_key_name(a));
    return Verdict::no("activation key " + std::string(act_key_name(p.act)) + " is not declared by " +
                       std::string(name()) + " (it runs " + (keys.empty() ? "none" : keys) +
                       "; running it would drop the activation quantization)");
  }
  return can_implement(p);
}

// ---- the public entry ------------------------------------------------------------------------

Status Backend::check_call(const Problem& p, Op op, const char* call) const {
  if (p.op != op)
    return invalid_argument(std::string(name()) + " " + call + ": expected a " + op_name(op) +
                            " problem, got " + p.to_string());
  if (Status s = p.validate(); !s.ok()) return named(*this, s);
  if (const Verdict v = check_problem(p); !v)
    return unimplemented(std::string(name()) + " cannot run " + p.to_string() + ": " + v.reason);
  return Status::Ok();
}

Status Backend::check_prepared(const Problem& p, const PreparedWeights& w, Op op) const {
  const std::string_view prep = op == Op::kLinear ? "prepare_linear" : "prepare_moe";
  if (w.prepared_by() != this || w.prepared_for().op != op)
    return invalid_argument(
        std::string(name()) + ": the prepared weights do not come from " + std::string(name()) +
        " " + std::string(prep) +
        (w.prepared_by() == nullptr
             ? std::string(" (they were not made by a prepare call)")
             : " (they come from " + std::string(w.prepared_by()->name()) + " for " +
                   w.prepared_for().to_string() + ")"));
  if (!contract::same_layer(w.prepared_for(), p))
    return invalid_argument(std::string(name()) + ": the prepared weights are for " +
                            w.prepared_for().to_string() + "; the call asks for " + p.to_string() +
                            " (only M may differ)");
  return Status::Ok();
}

StatusOr<std::unique_ptr<PreparedWeights>> Backend::prepare_linear(const Problem& p,
                                                                   const LinearWeights& w) const {
  const Status checked = guarded([&] {
    MXQ_RETURN_IF_ERROR(check_call(p, Op::kLinear, "prepare_linear"));
    return named(*this, contract::check_linear_weights(p, w));
  });
  if (!checked.ok()) return checked;
  auto prepared = caught(*this, "prepare_linear", p, [&] { return do_prepare_linear(p, w); });
  if (prepared.ok()) {
    prepared.value()->prepared_by_ = this;
    prepared.value()->prepared_for_ = p;
  }
  return prepared;
}

Status Backend::run_linear(const Problem& p, const PreparedWeights& w, const DenseView& x,
                           const DenseMutView& y, void* stream) const {
  const Status checked = guarded([&] {
    MXQ_RETURN_IF_ERROR(check_prepared(p, w, Op::kLinear));
    MXQ_RETURN_IF_ERROR(check_call(p, Op::kLinear, "run_linear"));
    return named(*this, contract::check_linear_call(p, x, y));
  });
  if (!checked.ok()) return checked;
  return caught(*this, "run_linear", p, [&] { return do_run_linear(p, w, x, y, stream); });
}

StatusOr<std::unique_ptr<PreparedWeights>> Backend::prepare_moe(const Problem& p,
                                                                const MoEWeights& w) const {
  const Status checked = guarded([&] {
    MXQ_RETURN_IF_ERROR(check_call(p, Op::kMoE, "prepare_moe"));
    return named(*this, contract::check_moe_weights(p, w));
  });
  if (!checked.ok()) return checked;
  auto prepared = caught(*this, "prepare_moe", p, [&] { return do_prepare_moe(p, w); });
  if (prepared.ok()) {
    prepared.value()->prepared_by_ = this;
    prepared.value()->prepared_for_ = p;
  }
  return prepared;
}

Status Backend::run_moe(const Problem& p, const PreparedWeights& w, const DenseView& x,
                        const MoERouting& r, const DenseMutView& y, void* stream) const {
  const Status checked = guarded([&] {
    MXQ_RETURN_IF_ERROR(check_prepared(p, w, Op::kMoE));
    MXQ_RETURN_IF_ERROR(check_call(p, Op::kMoE, "run_moe"));
    return named(*this, contract::check_moe_call(p, x, r, y));
  });
  if (!checked.ok()) return checked;
  return caught(*this, "run_moe", p, [&] { return do_run_moe(p, w, x, r, y, stream); });
}

// ---- defaults --------------------------------------------------------------------------------

StatusOr<std::unique_ptr<PreparedWeights>> Backend::do_prepare_linear(const Problem&,
                                                                      const LinearWeights&) const {
  return not_provided(*this, "linear layers");
}
Status Backend::do_run_linear(const Problem&, const PreparedWeights&, const DenseView&,
                              const DenseMutView&, void*) const {
  return not_provided(*this, "linear layers");
}
StatusOr<std::unique_ptr<PreparedWeights>> Backend::do_prepare_moe(const Problem&,
                                                                   const MoEWeights&) const {
  return not_provided(*this, "MoE layers");
}
Status Backend::do_run_moe(const Problem&, const PreparedWeights&, const DenseView&,
                           const MoERouting&, const DenseMutView&, void*) const {
  return not_provided(*this, "MoE layers");
}

}  // namespace mxq
