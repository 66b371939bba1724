// mxq dequantize: MX checkpoint -> dense checkpoint with the decoded weights.
#include <chrono>
#include <map>

#include "mxq/pipeline.h"
#include "output_dir.h"
#include "pipeline_util.h"

namespace mxq::io {

using formats::json;

StatusOr<QuantizeReport> dequantize_model(const std::string& input, const std::string& outdir,
                                          DType dtype, bool overwrite) {
  const auto t0 = std::chrono::steady_clock::now();
  auto opened = detail::open_model(input);
  if (!opened.ok()) return opened.status();
  const Checkpoint& ck = *opened.value().ck;
  const ModelInfo& info = opened.value().info;
  json config = opened.value().config;
  config.erase("quantization_config");

  std::map<std::string, const MXWeight*, std::less<>> by_packed;
  std::map<std::string, bool, std::less<>> scale_names;
  for (const MXWeight& w : info.weights) {
    by_packed[w.packed_name] = &w;
    scale_names[w.scale_name] = true;
  }
  auto staged_or = StagedDir::create(outdir, overwrite);
  if (!staged_or.ok()) return staged_or.status();
  StagedDir staged = std::move(staged_or).value();
  const StDType out_dt = dtype == DType::kF32 ? StDType::kF32
                         : dtype == DType::kBF16 ? StDType::kBF16 : StDType::kF16;
  QuantizeReport rep;
  json weight_map = json::object();
  for (const auto& file : ck.files()) {
    const std::string fname = detail::shard_name(ck, *file);
    std::vector<SafetensorsWriter::Decl> decls;
    std::vector<const TensorInfo*> order;
    for (const TensorInfo& t : file->tensors()) {
      if (scale_names.count(t.name)) continue;
      order.push_back(&t);
      const auto it = by_packed.find(t.name);
      if (it != by_packed.end())
        decls.push_back({it->second->module + ".weight", out_dt, it->second->shape});
      else
        decls.push_back({t.name, t.dtype, t.shape});
      weight_map[decls.back().name] = fname;
    }
    auto writer = SafetensorsWriter::create((staged.path() / fname).string(), decls,
                                            file->metadata());
    if (!writer.ok()) return writer.status();
    for (const TensorInfo* t : order) {
      const auto it = by_packed.find(t->name);
      if (it == by_packed.end()) {
        MXQ_RETURN_IF_ERROR(writer.value()->write(file->data(*t)));
        ++rep.copied;
        continue;
      }
      const MXWeight& w = *it->second;
      const int64_t rows = w.batch() * w.n();
      std::vector<uint8_t> out(size_t(rows * w.k() * dtype_bytes(dtype)));
      MXQ_RETURN_IF_ERROR(dequantize(w.packed.data(), w.scales.data(), w.elem, rows, w.k(), dtype,
                                     out.data()));
      MXQ_RETURN_IF_ERROR(writer.value()->write(out));
      ++rep.quantized;
    }
    MXQ_RETURN_IF_ERROR(ck.check_unchanged());  // an input shard truncated or written meanwhile
    MXQ_RETURN_IF_ERROR(writer.value()->finish());
  }
  MXQ_RETURN_IF_ERROR(detail::write_model_metadata(ck, staged.path(), config, weight_map));
  MXQ_RETURN_IF_ERROR(detail::copy_side_files(ck, staged.path()));
  rep.bytes_out = detail::dir_bytes(staged.path());
  MXQ_RETURN_IF_ERROR(ck.check_unchanged());
  MXQ_RETURN_IF_ERROR(staged.commit());
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace mxq::io
