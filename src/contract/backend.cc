// Default Backend methods: an op a backend does not provide is a clear error, not a crash.
#include <string>

#include "mxq/backend.h"

namespace mxq {

namespace {
Status not_provided(const Backend& b, const char* what) {
  return unimplemented("backend " + std::string(b.name()) + " does not provide " + what);
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

StatusOr<std::unique_ptr<PreparedWeights>> Backend::prepare_linear(const Problem&,
                                                                   const LinearWeights&) const {
  return not_provided(*this, "linear layers");
}
Status Backend::run_linear(const Problem&, const PreparedWeights&, const DenseView&,
                           const DenseMutView&, void*) const {
  return not_provided(*this, "linear layers");
}
StatusOr<std::unique_ptr<PreparedWeights>> Backend::prepare_moe(const Problem&,
                                                                const MoEWeights&) const {
  return not_provided(*this, "MoE layers");
}
Status Backend::run_moe(const Problem&, const PreparedWeights&, const DenseView&,
                        const MoERouting&, const DenseMutView&, void*) const {
  return not_provided(*this, "MoE layers");
}

}  // namespace mxq
