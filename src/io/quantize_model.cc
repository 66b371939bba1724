// mxq quantize: dense safetensors model -> compressed-tensors MX model, streamed.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include "formats/compressed_tensors.h"
#include "io/json_fields.h"
#include "mxq/pipeline.h"
#include "output_dir.h"
#include "pipeline_util.h"

namespace mxq::io {

namespace fs = std::filesystem;
using formats::json;

const std::vector<std::string>& default_ignore_patterns() {
  // Embeddings, the output head, norms and MoE routers stay in high precision, as every MX
  // producer does: they are small, and routers/norms are precision-sensitive.
  static const std::vector<std::string> kPatterns = {
      "re:.*(embed_tokens|embeddings|embed|wte|wpe)$",
      "re:(.*\\.)?lm_head$",
      "re:.*(norm|ln_f|ln_[0-9]+|layernorm)[^.]*$",
      "re:.*\\.(router|gate)$",
      "re:.*\\.score$",
  };
  return kPatterns;
}

namespace {

// Input row chunk for streaming: bounded memory whatever the tensor size.
constexpr uint64_t kChunkBytes = 64ull << 20;

struct Plan {
  bool quantize = false;
  std::string module;
  DType in_dtype = DType::kF32;
  int64_t rows = 0, k = 0;  // flattened [batch * N, K]
};

std::optional<DType> dense_dtype(StDType d) {
  switch (d) {
    case StDType::kF32: return DType::kF32;
    case StDType::kBF16: return DType::kBF16;
    case StDType::kF16: return DType::kF16;
    default: return std::nullopt;
  }
}

Plan plan_for(const TensorInfo& t, const std::vector<std::string>& ignore) {
  Plan p;
  if (!formats::ends_with(t.name, ".weight")) return p;
  const auto d = dense_dtype(t.dtype);
  if (!d) return p;
  p.module = formats::module_of(t.name);
  const size_t r = t.shape.size();
  const bool linear = r == 2;
  const bool experts = r == 3 && p.module.find("experts") != std::string::npos;
  if (!linear && !experts) return p;
  if (t.shape.back() % kBlockSize != 0 || t.shape.back() == 0) return p;
  if (formats::matches_ignore(ignore, p.module)) return p;
  p.quantize = true;
  p.in_dtype = *d;
  p.k = t.shape.back();
  p.rows = t.numel() / p.k;
  return p;
}

}  // namespace

StatusOr<QuantizeReport> quantize_model(const std::string& input, const std::string& outdir,
                                        const QuantizeModelOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  MXQ_RETURN_IF_ERROR(validate(opts.quant));
  auto ck_or = Checkpoint::open(input);
  if (!ck_or.ok()) return ck_or.status();
  const Checkpoint& ck = ck_or.value();
  {
    auto existing = read_model(ck);
    if (!existing.ok()) return existing.status();
    if (existing.value().format != "unquantized")
      return invalid_argument("'" + input + "' is already quantized (" +
                              existing.value().format + ", " + existing.value().scheme +
                              "); use `mxq convert` to change its format");
  }
  auto cfg = detail::parse_config(ck);
  if (!cfg.ok()) return cfg.status();
  json config = cfg.value();

  std::vector<std::string> ignore = opts.ignore;
  if (opts.default_ignores)
    ignore.insert(ignore.end(), default_ignore_patterns().begin(), default_ignore_patterns().end());
  for (const std::string& p : ignore)
    if (p.rfind("re:", 0) == 0) {
      try {
        std::regex re(p.substr(3));
      } catch (const std::regex_error& e) {
        return invalid_argument("ignore pattern '" + p + "' is not a valid regex: " + e.what());
      }
    }

  if (opts.act == ActScheme::kMxfp6E2M3 || opts.act == ActScheme::kMxfp6E3M2)
    return invalid_argument(std::string("activation scheme ") + act_scheme_name(opts.act) +
                            ": compressed-tensors has no MXFP6 activation preset (mxq reads fp6 "
                            "activations from Quark checkpoints)");
  bool interleaved_moe = false;
  try {
    interleaved_moe = io::field_or(config, "model_type", "") == "gpt_oss";
  } catch (const ConfigFieldError& e) {
    return Status(StatusCode::kDataLoss, ck.root() + "/config.json: " + e.what());
  }
  auto staged_or = StagedDir::create(outdir, opts.overwrite);
  if (!staged_or.ok()) return staged_or.status();
  StagedDir staged = std::move(staged_or).value();

  formats::ct::Recipe recipe;
  recipe.elem = opts.quant.elem;
  recipe.act = opts.act;
  recipe.scale_rule = opts.quant.scale_rule;

  QuantizeReport rep;
  uint64_t total_in = 0;
  for (const auto& f : ck.files())
    for (const TensorInfo& t : f->tensors()) total_in += t.nbytes();
  detail::Progress progress(opts.progress, total_in);
  std::set<std::string> ignored_modules;
  json weight_map = json::object();

  for (const auto& file : ck.files()) {
    const std::string fname = detail::shard_name(ck, *file);
    std::vector<Plan> plans;
    std::vector<SafetensorsWriter::Decl> decls;
    for (const TensorInfo& t : file->tensors()) {
      Plan p = plan_for(t, ignore);
      if (!p.quantize && formats::ends_with(t.name, ".weight") && t.shape.size() >= 2 &&
          dense_dtype(t.dtype))
        ignored_modules.insert(formats::module_of(t.name));
      if (p.quantize) {
        const formats::ct::Names n = formats::ct::names_for(p.module, opts.quant.elem);
        std::vector<int64_t> ps = t.shape, ss = t.shape;
        ps.back() = packed_bytes(opts.quant.elem, p.k);
        ss.back() = p.k / kBlockSize;
        decls.push_back({n.packed, n.packed_dtype, ps});
        decls.push_back({n.scale, StDType::kU8, ss});
        weight_map[n.packed] = fname;
        weight_map[n.scale] = fname;
        if (interleaved_moe && t.shape.size() == 3 && formats::ends_with(p.module, "gate_up_proj"))
          recipe.gate_up.emplace_back(p.module, GateUpLayout::kInterleaved);
      } else {
        decls.push_back({t.name, t.dtype, t.shape});
        weight_map[t.name] = fname;
      }
      plans.push_back(std::move(p));
    }
    auto writer_or = SafetensorsWriter::create((staged.path() / fname).string(), decls,
                                               file->metadata());
    if (!writer_or.ok()) return writer_or.status();
    SafetensorsWriter& writer = *writer_or.value();

    std::vector<uint8_t> packed, scales;
    for (size_t i = 0; i < file->tensors().size(); ++i) {
      const TensorInfo& t = file->tensors()[i];
      const Plan& p = plans[i];
      const std::span<const uint8_t> src = file->data(t);
      progress.begin(t.name);
      if (!p.quantize) {
        for (uint64_t off = 0; off < src.size(); off += kChunkBytes) {
          const uint64_t n = std::min<uint64_t>(kChunkBytes, src.size() - off);
          MXQ_RETURN_IF_ERROR(writer.write(src.subspan(off, n)));
          file->release(src.subspan(off, n));
          progress.advance(n);
        }
        ++rep.copied;
        continue;
      }
      const int64_t row_in = p.k * dtype_bytes(p.in_dtype);
      const int64_t row_out = packed_bytes(opts.quant.elem, p.k);
      const int64_t kb = p.k / kBlockSize;
      const int64_t chunk_rows = std::max<int64_t>(1, int64_t(kChunkBytes) / row_in);
      scales.resize(size_t(p.rows * kb));
      for (int64_t r0 = 0; r0 < p.rows; r0 += chunk_rows) {
        const int64_t nr = std::min(chunk_rows, p.rows - r0);
        packed.resize(size_t(nr * row_out));
        Status s = quantize(src.data() + r0 * row_in, p.in_dtype, nr, p.k, opts.quant,
                            packed.data(), scales.data() + r0 * kb);
        if (!s.ok()) return Status(s.code(), "tensor '" + t.name + "': " + s.message());
        MXQ_RETURN_IF_ERROR(writer.write(packed));
        file->release(src.subspan(size_t(r0 * row_in), size_t(nr * row_in)));
        progress.advance(uint64_t(nr * row_in));
      }
      MXQ_RETURN_IF_ERROR(writer.write(scales));
      ++rep.quantized;
    }
    MXQ_RETURN_IF_ERROR(file->check_unchanged());  // a shard truncated or written meanwhile
    MXQ_RETURN_IF_ERROR(writer.finish());
  }

  rep.ignored.assign(ignored_modules.begin(), ignored_modules.end());
  recipe.ignore = rep.ignored;
  config["quantization_config"] = formats::ct::make_quantization_config(recipe);
  MXQ_RETURN_IF_ERROR(detail::write_model_metadata(ck, staged.path(), config, weight_map));
  MXQ_RETURN_IF_ERROR(detail::copy_side_files(ck, staged.path()));
  progress.done();
  rep.bytes_in = total_in;
  rep.bytes_out = detail::dir_bytes(staged.path());
  MXQ_RETURN_IF_ERROR(ck.check_unchanged());
  MXQ_RETURN_IF_ERROR(staged.commit());
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace mxq::io
