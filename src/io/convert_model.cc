// mxq convert: any readable MX checkpoint -> compressed-tensors, bit for bit.
#include <chrono>
#include <cstring>
#include <map>
#include <set>

#include "formats/compressed_tensors.h"
#include "mxq/pipeline.h"
#include "output_dir.h"
#include "pipeline_util.h"

namespace mxq::io {

using formats::json;

namespace {

enum class Role { kPacked, kScale, kBias, kInputScale };
struct Use {
  const MXWeight* w;
  Role role;
};

// Reorders rows of a [batch, 2I, row_bytes] buffer from interleaved (g0 u0 g1 u1 ...) to
// chunked (g0 g1 ... u0 u1 ...). Pure byte permutation: bits are untouched.
std::vector<uint8_t> deinterleave_rows(std::span<const uint8_t> src, int64_t batch, int64_t rows,
                                       int64_t row_bytes) {
  std::vector<uint8_t> out(src.size());
  const int64_t half = rows / 2;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t dst = r % 2 == 0 ? r / 2 : half + r / 2;
      std::memcpy(out.data() + (b * rows + dst) * row_bytes,
                  src.data() + (b * rows + r) * row_bytes, size_t(row_bytes));
    }
  return out;
}

}  // namespace

StatusOr<QuantizeReport> convert_model(const std::string& input, const std::string& outdir,
                                       bool overwrite, bool progress_on) {
  const auto t0 = std::chrono::steady_clock::now();
  auto opened = detail::open_model(input);
  if (!opened.ok()) return opened.status();
  const Checkpoint& ck = *opened.value().ck;
  const ModelInfo& info = opened.value().info;
  if (info.weights.empty())
    return invalid_argument("'" + input + "' has no MX weights (format " + info.format +
                            "); use `mxq quantize` for a dense model");
  std::set<ElemType> elems;
  for (const MXWeight& w : info.weights) elems.insert(w.elem);
  if (elems.size() > 1) {
    std::string list;
    for (ElemType e : elems) list += (list.empty() ? "" : ", ") + std::string(mx_format_name(e));
    return unimplemented("'" + input + "' mixes MX formats (" + list +
                         "); a compressed-tensors model holds one weight format");
  }
  json config = opened.value().config;

  std::map<std::string, Use, std::less<>> uses;
  for (const MXWeight& w : info.weights) {
    uses[w.packed_name] = {&w, Role::kPacked};
    uses[w.scale_name] = {&w, Role::kScale};
    if (!w.bias_name.empty()) uses[w.bias_name] = {&w, Role::kBias};
    if (!w.input_scale_name.empty()) uses[w.input_scale_name] = {&w, Role::kInputScale};
  }

  auto staged_or = StagedDir::create(outdir, overwrite);
  if (!staged_or.ok()) return staged_or.status();
  StagedDir staged = std::move(staged_or).value();
  formats::ct::Recipe recipe;
  recipe.elem = *elems.begin();
  recipe.act = info.act;
  recipe.scale_rule = info.scale_rule;
  recipe.ignore = info.ignored;
  for (const MXWeight& w : info.weights)
    if (w.gate_up != GateUpLayout::kNone)
      recipe.gate_up.emplace_back(
          w.module, w.gate_up == GateUpLayout::kInterleaved ? GateUpLayout::kChunked : w.gate_up);

  QuantizeReport rep;
  uint64_t total = 0;
  for (const auto& f : ck.files())
    for (const TensorInfo& t : f->tensors()) total += t.nbytes();
  detail::Progress progress(progress_on, total);
  json weight_map = json::object();

  for (const auto& file : ck.files()) {
    const std::string fname = detail::shard_name(ck, *file);
    // What to write, in order: (decl, bytes producer).
    struct Item {
      SafetensorsWriter::Decl decl;
      std::span<const uint8_t> bytes;
      const MXWeight* deinterleave = nullptr;  // reorder rows of this weight's tensor
      int64_t row_bytes = 0;
    };
    std::vector<Item> items;
    for (const TensorInfo& t : file->tensors()) {
      const auto u = uses.find(t.name);
      if (u == uses.end()) {
        items.push_back({{t.name, t.dtype, t.shape}, file->data(t)});
        continue;
      }
      const MXWeight& w = *u->second.w;
      const bool il = w.gate_up == GateUpLayout::kInterleaved;
      const formats::ct::Names n = formats::ct::names_for(w.module, w.elem);
      std::vector<int64_t> lead(w.shape.begin(), w.shape.end() - 1);
      switch (u->second.role) {
        case Role::kPacked: {
          std::vector<int64_t> ps = lead, ss = lead;
          ps.push_back(packed_bytes(w.elem, w.k()));
          ss.push_back(w.k() / kBlockSize);
          items.push_back({{n.packed, n.packed_dtype, ps}, w.packed, il ? &w : nullptr,
                           packed_bytes(w.elem, w.k())});
          items.push_back({{n.scale, StDType::kU8, ss}, w.scales, il ? &w : nullptr,
                           w.k() / kBlockSize});
          ++rep.quantized;
          break;
        }
        case Role::kScale: break;  // written next to its packed partner
        case Role::kBias:
          items.push_back({{w.module + ".bias", t.dtype, t.shape}, file->data(t),
                           il ? &w : nullptr, st_dtype_bits(t.dtype) / 8});
          break;
        case Role::kInputScale:
          items.push_back({{w.module + ".input_scale", t.dtype, t.shape}, file->data(t)});
          break;
      }
    }
    std::vector<SafetensorsWriter::Decl> decls;
    for (const Item& it : items) {
      decls.push_back(it.decl);
      weight_map[it.decl.name] = fname;
    }
    auto writer_or = SafetensorsWriter::create((staged.path() / fname).string(), decls,
                                               file->metadata());
    if (!writer_or.ok()) return writer_or.status();
    for (const Item& it : items) {
      progress.begin(it.decl.name);
      if (it.deinterleave != nullptr) {
        const MXWeight& w = *it.deinterleave;
        const std::vector<uint8_t> re = deinterleave_rows(it.bytes, w.batch(), w.n(), it.row_bytes);
        MXQ_RETURN_IF_ERROR(writer_or.value()->write(re));
      } else {
        MXQ_RETURN_IF_ERROR(writer_or.value()->write(it.bytes));
      }
      progress.advance(it.bytes.size());
    }
    MXQ_RETURN_IF_ERROR(ck.check_unchanged());  // an input shard truncated or written meanwhile
    MXQ_RETURN_IF_ERROR(writer_or.value()->finish());
  }
  rep.copied = int64_t(info.passthrough.size());
  config["quantization_config"] = formats::ct::make_quantization_config(recipe);
  MXQ_RETURN_IF_ERROR(detail::write_model_metadata(ck, staged.path(), config, weight_map));
  MXQ_RETURN_IF_ERROR(detail::copy_side_files(ck, staged.path()));
  progress.done();
  rep.bytes_in = total;
  rep.bytes_out = detail::dir_bytes(staged.path());
  rep.ignored = info.ignored;
  MXQ_RETURN_IF_ERROR(ck.check_unchanged());
  MXQ_RETURN_IF_ERROR(staged.commit());
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace mxq::io
