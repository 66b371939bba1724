// mxq verify: decode every MX weight, check consistency, compare with the original model.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "formats/common.h"
#include "mxq/pipeline.h"
#include "pipeline_util.h"

namespace mxq::io {

StatusOr<VerifyReport> verify_model(const std::string& path, const std::string& original,
                                    int threads) {
  auto ck_or = Checkpoint::open(path);
  if (!ck_or.ok()) return ck_or.status();
  const Checkpoint& ck = ck_or.value();
  auto info_or = read_model(ck);
  if (!info_or.ok()) return info_or.status();
  std::optional<Checkpoint> orig;
  if (!original.empty()) {
    auto o = Checkpoint::open(original);
    if (!o.ok()) return o.status();
    orig = std::move(o).value();
  }
  VerifyReport rep;
  rep.info = std::move(info_or).value();
  if (rep.info.format == "unquantized") rep.problems.push_back("no MX weights: the model is not quantized");
  for (const MXWeight& w : rep.info.weights) {
    VerifyLayer l;
    l.module = w.module;
    l.format = mx_format_name(w.elem);
    l.shape = w.shape;
    l.nan_blocks = std::count(w.scales.begin(), w.scales.end(), uint8_t{0xFF});
    if (l.nan_blocks > 0)
      rep.problems.push_back(w.module + ": " + std::to_string(l.nan_blocks) +
                             " blocks have the NaN scale 0xFF");
    if (formats::matches_ignore(rep.info.ignored, w.module))
      rep.problems.push_back(w.module + " is quantized but listed in the config's ignore list");
    if (w.gate_up == GateUpLayout::kNone && w.shape.size() == 3 &&
        formats::ends_with(w.module, "gate_up_proj"))
      rep.problems.push_back(w.module + ": fused gate/up experts without a recorded gate/up layout");
    auto deq = dequantize_weight(w, threads);
    if (!deq.ok()) return deq.status();
    if (orig) {
      const Checkpoint::Entry* e = orig->find(w.module + ".weight");
      if (e == nullptr) e = orig->find(w.module);
      if (e != nullptr && e->info->shape == w.shape) {
        auto ref = detail::to_f32(*e);
        if (!ref.ok()) return ref.status();
        double se = 0, ss = 0, mx = 0;
        const std::vector<float>& a = ref.value();
        const std::vector<float>& b = deq.value();
        for (size_t i = 0; i < a.size(); ++i) {
          const double d = double(b[i]) - double(a[i]);
          se += d * d;
          ss += double(a[i]) * double(a[i]);
          mx = std::max(mx, std::fabs(d));
        }
        l.compared = true;
        l.rel_error = ss > 0 ? std::sqrt(se / ss) : std::sqrt(se);
        l.max_abs_error = mx;
        if (rep.info.scale_rule) {
          // Re-quantize the original with the recorded rule: the bits must come back.
          QuantOptions q;
          q.elem = w.elem;
          q.scale_rule = *rep.info.scale_rule;
          q.rounding = rep.info.rounding;
          q.threads = threads;
          std::vector<uint8_t> p(w.packed.size()), s(w.scales.size());
          const int64_t rows = w.batch() * w.n();
          Status st = quantize(a.data(), DType::kF32, rows, w.k(), q, p.data(), s.data());
          if (!st.ok()) return st;
          l.bit_exact = std::equal(p.begin(), p.end(), w.packed.begin()) &&
                        std::equal(s.begin(), s.end(), w.scales.begin());
          if (!l.bit_exact)
            rep.problems.push_back(w.module + ": re-quantizing the original with scale rule " +
                                   scale_rule_name(q.scale_rule) + " and rounding " +
                                   rounding_name(q.rounding) + " does not reproduce the bits");
        }
      } else {
        rep.problems.push_back(w.module + ": no original tensor with shape matching the weight");
      }
    }
    rep.layers.push_back(std::move(l));
  }
  // A model (or original) truncated or written while it was read: the numbers above are void.
  MXQ_RETURN_IF_ERROR(ck.check_unchanged());
  if (orig) MXQ_RETURN_IF_ERROR(orig->check_unchanged());
  return rep;
}

}  // namespace mxq::io
