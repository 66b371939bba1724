// Checkpoint: a single .safetensors file, a directory with model.safetensors, or a directory
// whose model.safetensors.index.json maps every tensor to its shard. The index and the shards
// must agree exactly: each listed tensor is in the shard named for it, each shard tensor is
// listed, and no tensor appears in two shards.
#include <filesystem>
#include <set>

#include "io/internal.h"
#include "mxq/safetensors.h"

namespace mxq::io {

namespace fs = std::filesystem;
using internal::data_loss;
using internal::quote;

namespace {

constexpr const char* kSingleName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// Reads `name` from `dir` into `out` when it exists; "" otherwise.
Status read_optional(const fs::path& dir, const char* name, std::string& out) {
  const fs::path p = dir / name;
  if (!is_file(p)) return Status::Ok();
  auto text = internal::read_text_file(p.string());
  if (!text.ok()) return text.status();
  out = std::move(text).value();
  return Status::Ok();
}

// A shard file name from weight_map, normalised; empty when it would leave the directory.
std::string shard_name(const std::string& raw) {
  const fs::path p = fs::path(raw).lexically_normal();
  if (raw.empty() || p.is_absolute() || p.empty() || p == ".") return {};
  for (const auto& part : p) {
    if (part == "..") return {};
  }
  return p.generic_string();
}

}  // namespace

const Checkpoint::Entry* Checkpoint::find(std::string_view name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second;
}

StatusOr<Checkpoint> Checkpoint::open(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) {
    return Status(StatusCode::kNotFound, path + ": no such file or directory");
  }
  Checkpoint c;
  if (!fs::is_directory(st)) {
    // A lone file: its directory is the root, but sibling config files are not assumed to
    // describe it, so config_json() stays empty.
    const fs::path parent = fs::path(path).parent_path();
    c.root_ = parent.empty() ? "." : parent.string();
    auto f = SafetensorsFile::open(path);
    if (!f.ok()) return f.status();
    c.files_.push_back(std::move(f).value());
  } else {
    c.is_dir_ = true;
    c.root_ = path;
    const fs::path dir(path);
    MXQ_RETURN_IF_ERROR(read_optional(dir, "config.json", c.config_json_));
    MXQ_RETURN_IF_ERROR(read_optional(dir, "hf_quant_config.json", c.hf_quant_config_json_));
    // Like transformers: a single model.safetensors wins over an index.
    if (is_file(dir / kSingleName)) {
      auto f = SafetensorsFile::open((dir / kSingleName).string());
      if (!f.ok()) return f.status();
      c.files_.push_back(std::move(f).value());
    } else if (is_file(dir / kIndexName)) {
      const std::string index_path = (dir / kIndexName).string();
      auto text = internal::read_text_file(index_path);
      if (!text.ok()) return text.status();
      auto doc = internal::parse_json_strict(text.value(), index_path, "index");
      if (!doc.ok()) return doc.status();
      const nlohmann::json& root = doc.value();
      if (!root.is_object()) return data_loss(index_path, "index is not a JSON object");
      if (auto md = root.find("metadata"); md != root.end() && !md->is_object() && !md->is_null()) {
        return data_loss(index_path, "\"metadata\" is not an object");
      }
      auto wm = root.find("weight_map");
      if (wm == root.end()) return data_loss(index_path, "index has no \"weight_map\"");
      if (!wm->is_object()) return data_loss(index_path, "\"weight_map\" is not an object");

      std::map<std::string, std::string, std::less<>> listed;  // tensor -> normalised shard
      std::set<std::string> shards;
      for (const auto& [tensor, shard] : wm->items()) {
        if (!shard.is_string()) {
          return data_loss(index_path, "weight_map value for tensor " + quote(tensor) +
                                           " is not a string");
        }
        const std::string name = shard_name(shard.get<std::string>());
        if (name.empty()) {
          return data_loss(index_path, "weight_map names shard " + quote(shard.get<std::string>()) +
                                           " for tensor " + quote(tensor) +
                                           ", which is not a file inside the checkpoint directory");
        }
        listed.emplace(tensor, name);
        shards.insert(name);
      }
      std::map<std::string, std::string, std::less<>> owner;  // tensor -> shard that holds it
      for (const auto& name : shards) {
        auto f = SafetensorsFile::open((dir / name).string());
        if (!f.ok()) {
          const Status& s = f.status();
          return Status(s.code(), index_path + ": weight_map shard " + quote(name) + ": " +
                                      s.message());
        }
        for (const auto& t : f.value()->tensors()) {
          auto [it, fresh] = owner.emplace(t.name, name);
          if (!fresh) {
            return data_loss(index_path, "duplicate tensor " + quote(t.name) +
                                             " across shards: in both " + quote(it->second) +
                                             " and " + quote(name));
          }
        }
        c.files_.push_back(std::move(f).value());
      }
      for (const auto& [tensor, shard] : listed) {
        auto it = owner.find(tensor);
        if (it == owner.end() || it->second != shard) {
          return data_loss(index_path,
                           "weight_map lists tensor " + quote(tensor) + " in shard " +
                               quote(shard) + ", which does not contain it" +
                               (it == owner.end() ? std::string()
                                                  : " (it is in " + quote(it->second) + ")"));
        }
      }
      for (const auto& [tensor, shard] : owner) {
        if (!listed.contains(tensor)) {
          return data_loss(index_path, "tensor " + quote(tensor) + " of shard " + quote(shard) +
                                           " is not listed in weight_map");
        }
      }
    } else {
      return Status(StatusCode::kNotFound, path + ": directory has neither " + kSingleName +
                                               " nor " + kIndexName);
    }
  }
  for (const auto& f : c.files_) {
    for (const auto& t : f->tensors()) c.entries_.emplace(t.name, Entry{f.get(), &t});
  }
  c.names_.reserve(c.entries_.size());
  for (const auto& [name, e] : c.entries_) c.names_.push_back(name);
  return c;
}

}  // namespace mxq::io

namespace mxq::io {

Status Checkpoint::check_unchanged() const {
  for (const auto& f : files_) MXQ_RETURN_IF_ERROR(f->check_unchanged());
  return Status::Ok();
}

}  // namespace mxq::io
