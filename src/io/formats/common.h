// Shared pieces of the format adapters: the per-format entry points read_model() dispatches
// to, and the checks every adapter runs when it turns a pair of tensors into an MXWeight.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mxq/model.h"

namespace mxq::io::formats {

using json = nlohmann::json;

// Entry points. `config` is the parsed config.json (an empty object when there is none);
// each adapter reads its own quantization section from it (or from hf_quant_config.json).
StatusOr<ModelInfo> read_compressed_tensors(const Checkpoint& ckpt, const json& config);
StatusOr<ModelInfo> read_gpt_oss(const Checkpoint& ckpt, const json& config);
StatusOr<ModelInfo> read_quark(const Checkpoint& ckpt, const json& config);
StatusOr<ModelInfo> read_modelopt(const Checkpoint& ckpt, const json& config,
                                  const json& hf_quant_config);
StatusOr<ModelInfo> read_deepseek(const Checkpoint& ckpt, const json& config);

// Builds an MXWeight from a packed-element tensor and a scale tensor, checking dtypes and
// shapes against the canonical layout. `packed_dtypes` lists the dtypes the format allows for
// the elements (U8 for packed FP4/FP6, F8_E4M3/F8_E5M2/U8/I8 for 8-bit); scale bytes may be
// U8, I8 or F8_E8M0 and are always read as bits. The logical shape is derived from the
// scale tensor ([.., N, K/32] -> K) and cross-checked with the packed bytes.
StatusOr<MXWeight> make_weight(const Checkpoint& ckpt, std::string module, ElemType elem,
                               std::string_view packed_name, std::string_view scale_name);

// Like make_weight but the packed tensor may carry extra trailing dims that flatten into the
// canonical row (gpt-oss blocks [.., N, K/32, 16]).
StatusOr<MXWeight> make_weight_flatten(const Checkpoint& ckpt, std::string module,
                                       ElemType elem, std::string_view packed_name,
                                       std::string_view scale_name);

// Sorts weights by module, fills `passthrough` with every tensor no weight references.
void finalize(ModelInfo& info, const Checkpoint& ckpt);

// compressed-tensors / Quark style ignore lists: exact module names, or regexes prefixed
// "re:" matched against the whole module name.
bool matches_ignore(const std::vector<std::string>& patterns, std::string_view module);

// Tries `candidates` in order and returns the first tensor name present, or an error listing
// every name tried ("<what> for <module>: tried a, b, c").
StatusOr<std::string> resolve_alias(const Checkpoint& ckpt, std::string_view what,
                                    std::string_view module,
                                    const std::vector<std::string>& candidates);

// "a.b.c.weight_packed" -> "a.b.c" (strips the last dotted component).
std::string module_of(std::string_view tensor_name);
bool ends_with(std::string_view s, std::string_view suffix);

// ---- helpers shared by the gpt-oss, Quark, ModelOpt and DeepSeek adapters ----

// "[2, 64, 16]" for error messages.
std::string shape_string(std::span<const int64_t> shape);

// config["quantization_config"] when it is an object, else nullptr.
const json* quantization_config(const json& config);

// obj[key] when obj is an object holding `key` with a non-null value, else nullptr.
const json* member(const json& obj, const std::string& key);

// A list-of-strings config field: absent or null gives an empty list; anything but an array of
// strings is an error naming `where` and `key`.
StatusOr<std::vector<std::string>> string_list(const json& obj, const std::string& key,
                                               const std::string& where);

// fnmatch-style glob over the whole string: '*' matches any run of characters (dots
// included, as Python's fnmatch does), '?' any one character; everything else is literal.
bool glob_match(std::string_view pattern, std::string_view text);

// Quark / ModelOpt exclude lists: "re:<regex>" entries match as in matches_ignore, every other
// entry is a glob (an entry without '*' or '?' is therefore an exact module name).
bool matches_pattern(const std::vector<std::string>& patterns, std::string_view module);

// Checks that `name` is a static activation scale: an F32 scalar (shape [] or [1]). The error
// names the tensor, its module, and what was expected.
Status check_input_scale(const Checkpoint& ckpt, const std::string& name,
                         std::string_view module);

// Checks an optional bias tensor against `w`: a float tensor (BF16, F16 or F32) of shape
// w.shape without its last dim ([.., N]). Sets w.bias_name when `name` exists.
Status attach_bias(const Checkpoint& ckpt, const std::string& name, MXWeight& w);


// Canonical shapes implied by a partner, for "missing partner" messages: the packed shape
// [.., N, K * bits / 8] for a scale shape [.., N, K/32], and the scale shape for a packed one.
// A shape that does not have the needed form comes back as is.
std::vector<int64_t> packed_shape_for(std::span<const int64_t> scale_shape, ElemType elem);
std::vector<int64_t> scale_shape_for(std::span<const int64_t> packed_shape, ElemType elem);

}  // namespace mxq::io::formats
