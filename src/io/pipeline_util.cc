#include "pipeline_util.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include "mxq/numerics.h"
#include "output_dir.h"

namespace mxq::io::detail {

namespace fs = std::filesystem;
using formats::json;

StatusOr<json> parse_config(const Checkpoint& ck) {
  if (ck.config_json().empty()) return json::object();
  try {
    json j = json::parse(ck.config_json());
    if (!j.is_object())
      return Status(StatusCode::kDataLoss, ck.root() + "/config.json is not a JSON object");
    return j;
  } catch (const json::exception& e) {
    return Status(StatusCode::kDataLoss, ck.root() + "/config.json is not valid JSON: " + e.what());
  }
}

StatusOr<OpenedModel> open_model(const std::string& path) {
  auto ck = Checkpoint::open(path);
  if (!ck.ok()) return ck.status();
  OpenedModel m;
  m.ck = std::make_unique<Checkpoint>(std::move(ck).value());
  auto info = read_model(*m.ck);
  if (!info.ok()) return info.status();
  m.info = std::move(info).value();
  auto cfg = parse_config(*m.ck);
  if (!cfg.ok()) return cfg.status();
  m.config = std::move(cfg).value();
  return m;
}

std::string shard_name(const Checkpoint& ck, const SafetensorsFile& f) {
  if (!ck.is_directory()) return "model.safetensors";
  return fs::path(f.path()).filename().string();
}

Status write_model_metadata(const Checkpoint& ck, const fs::path& out, const json& config,
                            const json& weight_map) {
  MXQ_RETURN_IF_ERROR(write_text_file(out / "config.json", config.dump(2) + "\n"));
  if (ck.files().size() > 1) {
    uint64_t total = 0;
    for (const auto& e : fs::directory_iterator(out))
      if (e.path().extension() == ".safetensors") total += e.file_size();
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    MXQ_RETURN_IF_ERROR(
        write_text_file(out / "model.safetensors.index.json", index.dump(2) + "\n"));
  }
  return Status::Ok();
}

Status copy_side_files(const Checkpoint& ck, const fs::path& out) {
  if (!ck.is_directory()) return Status::Ok();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ck.root(), ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".safetensors" || name == "model.safetensors.index.json" ||
        name == "config.json" || name == "hf_quant_config.json")
      continue;
    fs::copy_file(e.path(), out / name, fs::copy_options::overwrite_existing, ec);
    if (ec) return invalid_argument("cannot copy '" + e.path().string() + "': " + ec.message());
  }
  if (ec) return invalid_argument("cannot list '" + ck.root() + "': " + ec.message());
  return Status::Ok();
}

uint64_t dir_bytes(const fs::path& dir) {
  uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file()) n += e.file_size();
  return n;
}

StatusOr<std::vector<float>> to_f32(const Checkpoint::Entry& e) {
  const TensorInfo& t = *e.info;
  const auto b = e.bytes();
  std::vector<float> out(size_t(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    switch (t.dtype) {
      case StDType::kF32: {
        uint32_t u;
        std::memcpy(&u, b.data() + i * 4, 4);
        out[i] = num::f32_from_bits(u);
        break;
      }
      case StDType::kBF16:
      case StDType::kF16: {
        uint16_t h;
        std::memcpy(&h, b.data() + i * 2, 2);
        out[i] = t.dtype == StDType::kBF16 ? num::bf16_to_f32(h) : num::f16_to_f32(h);
        break;
      }
      default:
        return invalid_argument("tensor '" + t.name + "' has dtype " + st_dtype_name(t.dtype) +
                                ", expected F32, BF16 or F16");
    }
  }
  return out;
}

void Progress::begin(const std::string& what) {
  what_ = what;
  draw();
}

void Progress::advance(uint64_t bytes) {
  done_ += bytes;
  const int pct = int(100.0 * double(done_) / double(total_));
  if (pct != last_pct_) draw();
}

void Progress::draw() {
  if (!on_) return;
  const int pct = int(100.0 * double(std::min(done_, total_)) / double(total_));
  last_pct_ = pct;
  const int fill = pct * 30 / 100;
  std::string name = what_.size() > 48 ? "..." + what_.substr(what_.size() - 45) : what_;
  std::fprintf(stderr, "\r[%-30s] %3d%% %-48s", std::string(size_t(fill), '#').c_str(), pct,
               name.c_str());
  std::fflush(stderr);
}

void Progress::done() {
  if (!on_) return;
  done_ = total_;
  what_ = "done";
  draw();
  std::fprintf(stderr, "\n");
}

}  // namespace mxq::io::detail
