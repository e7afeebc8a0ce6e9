#include "loom/io/model_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "loom/tensor/error.h"

namespace loom::io {
namespace {

using nlohmann::json;

// Typed field readers over one JSON object; every error names the file and the field.
struct Fields {
  const json& j;
  const std::string& where;
  std::string prefix = "";  // "rope_parameters." for nested objects

  bool present(const char* k) const { return j.contains(k) && !j[k].is_null(); }

  [[noreturn]] void wrong(const char* k, const char* expected) const {
    throw Error(str(where, ": field '", prefix, k, "' must be ", expected, ", got ", j[k].dump()));
  }

  // Integers of a config (sizes, counts, ids) fit in int32; a larger one is a corrupt file, and
  // checking here keeps the conversions below defined (found by tests/fuzz/model_config_fuzz.cc).
  int64_t integer_or(const char* k, int64_t fallback) const {
    if (!present(k)) return fallback;
    const json& v = j[k];
    constexpr double kLimit = 2147483647.0;
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > static_cast<uint64_t>(kLimit)) wrong(k, "an integer below 2^31");
      return static_cast<int64_t>(v.get<uint64_t>());
    }
    if (v.is_number_integer()) {
      if (std::abs(static_cast<double>(v.get<int64_t>())) > kLimit) wrong(k, "an integer of magnitude below 2^31");
      return v.get<int64_t>();
    }
    // 4096.0 is accepted as 4096 (some exporters write integral floats).
    if (v.is_number_float() && std::isfinite(v.get<double>()) && v.get<double>() == std::floor(v.get<double>())) {
      if (std::abs(v.get<double>()) > kLimit) wrong(k, "an integer of magnitude below 2^31");
      return static_cast<int64_t>(v.get<double>());
    }
    wrong(k, "an integer");
  }
  int64_t required_positive(const char* k) const {
    if (!present(k)) throw Error(str(where, ": required field '", prefix, k, "' is missing"));
    return positive_or(k, 0);
  }
  int64_t positive_or(const char* k, int64_t fallback) const {
    const int64_t v = integer_or(k, fallback);
    if (v <= 0) throw Error(str(where, ": field '", prefix, k, "' must be positive, got ", v));
    return v;
  }
  int64_t non_negative_or(const char* k, int64_t fallback) const {
    const int64_t v = integer_or(k, fallback);
    if (v < 0) throw Error(str(where, ": field '", prefix, k, "' must not be negative, got ", v));
    return v;
  }
  double number_or(const char* k, double fallback) const {
    if (!present(k)) return fallback;
    if (!j[k].is_number()) wrong(k, "a number");
    return j[k].get<double>();
  }
  double positive_number_or(const char* k, double fallback) const {
    const double v = number_or(k, fallback);
    if (!(v > 0) || !std::isfinite(v)) throw Error(str(where, ": field '", prefix, k, "' must be positive, got ", v));
    return v;
  }
  bool boolean_or(const char* k, bool fallback) const {
    if (!present(k)) return fallback;
    if (!j[k].is_boolean()) wrong(k, "true or false");
    return j[k].get<bool>();
  }
  std::string string_or(const char* k, const std::string& fallback) const {
    if (!present(k)) return fallback;
    if (!j[k].is_string()) wrong(k, "a string");
    return j[k].get<std::string>();
  }
  std::vector<int64_t> integer_list(const char* k) const {
    std::vector<int64_t> out;
    if (!present(k)) return out;
    if (!j[k].is_array()) wrong(k, "a list of integers");
    for (const json& v : j[k]) {
      if (!v.is_number_integer()) wrong(k, "a list of integers");
      out.push_back(v.get<int64_t>());
    }
    return out;
  }
  std::vector<std::string> string_list(const char* k) const {
    std::vector<std::string> out;
    if (!present(k)) return out;
    if (!j[k].is_array()) wrong(k, "a list of strings");
    for (const json& v : j[k]) {
      if (!v.is_string()) wrong(k, "a list of strings");
      out.push_back(v.get<std::string>());
    }
    return out;
  }
};

// The object holding the rope settings: 5.x `rope_parameters` (possibly one object per layer
// type, then the full-attention one), else 4.x `rope_scaling`; null when neither is given.
const json* rope_object(const Fields& f, std::string& name) {
  for (const char* k : {"rope_parameters", "rope_scaling"}) {
    if (!f.present(k)) continue;
    const json& o = f.j[k];
    if (!o.is_object()) f.wrong(k, "an object");
    name = k;
    if (!o.contains("rope_type") && !o.contains("type") && !o.contains("rope_theta") && o.contains("full_attention") &&
        o["full_attention"].is_object()) {
      name += ".full_attention";
      return &o["full_attention"];
    }
    return &o;
  }
  return nullptr;
}

RopeParameters read_rope(const Fields& top) {
  RopeParameters r;
  r.theta = top.positive_number_or("rope_theta", r.theta);  // 4.x: at the top level
  std::string name;
  const json* o = rope_object(top, name);
  if (!o) return r;
  const Fields f{*o, top.where, name + "."};
  r.theta = f.positive_number_or("rope_theta", r.theta);  // 5.x: inside rope_parameters
  r.type = f.string_or("rope_type", f.string_or("type", r.type));
  r.factor = f.positive_number_or("factor", r.factor);
  r.original_max_position_embeddings = f.number_or("original_max_position_embeddings", 0);
  r.beta_fast = f.number_or("beta_fast", r.beta_fast);
  r.beta_slow = f.number_or("beta_slow", r.beta_slow);
  if (f.present("mscale")) r.mscale = f.number_or("mscale", 1.0);
  if (f.present("mscale_all_dim")) r.mscale_all_dim = f.number_or("mscale_all_dim", 1.0);
  r.truncate = f.boolean_or("truncate", r.truncate);
  return r;
}

ModelConfig::Mla read_mla(const Fields& f) {
  ModelConfig::Mla m;
  m.kv_lora_rank = f.positive_or("kv_lora_rank", 0);
  if (f.present("q_lora_rank")) m.q_lora_rank = f.positive_or("q_lora_rank", 0);
  m.qk_nope_head_dim = f.required_positive("qk_nope_head_dim");
  m.qk_rope_head_dim = f.required_positive("qk_rope_head_dim");
  m.v_head_dim = f.required_positive("v_head_dim");
  if (m.qk_rope_head_dim % 2 != 0)
    throw Error(str(f.where, ": field 'qk_rope_head_dim' must be even for RoPE, got ", m.qk_rope_head_dim));
  m.n_shared_experts = f.non_negative_or("n_shared_experts", m.n_shared_experts);
  m.topk_method = f.string_or("topk_method", m.topk_method);
  m.n_group = f.positive_or("n_group", m.n_group);
  m.topk_group = f.positive_or("topk_group", m.topk_group);
  m.routed_scaling_factor = f.positive_number_or("routed_scaling_factor", m.routed_scaling_factor);
  return m;
}

void read_config(ModelConfig& c, const json& j, const std::string& where) {
  const Fields f{j, where};
  const std::vector<std::string> archs = f.string_list("architectures");
  if (archs.empty()) throw Error(str(where, ": field 'architectures' must be a non-empty list of names"));
  c.architecture = archs[0];
  c.model_type = f.string_or("model_type", "");

  c.vocab_size = f.required_positive("vocab_size");
  c.hidden_size = f.required_positive("hidden_size");
  c.num_hidden_layers = f.required_positive("num_hidden_layers");
  c.num_attention_heads = f.required_positive("num_attention_heads");
  c.intermediate_size = f.non_negative_or("intermediate_size", 0);
  c.num_key_value_heads = f.positive_or("num_key_value_heads", c.num_attention_heads);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error(str(where, ": num_attention_heads (", c.num_attention_heads, ") is not a multiple of num_key_value_heads (",
                    c.num_key_value_heads, ")"));
  if (!f.present("head_dim") && c.hidden_size % c.num_attention_heads != 0)
    throw Error(str(where, ": no 'head_dim' and hidden_size (", c.hidden_size, ") is not a multiple of num_attention_heads (",
                    c.num_attention_heads, ")"));
  c.head_dim = f.positive_or("head_dim", c.hidden_size / c.num_attention_heads);
  c.rms_norm_eps = f.positive_number_or("rms_norm_eps", c.rms_norm_eps);
  c.rope = read_rope(f);
  c.max_position_embeddings = f.non_negative_or("max_position_embeddings", 0);
  c.tie_word_embeddings = f.boolean_or("tie_word_embeddings", false);
  c.attention_bias = f.boolean_or("attention_bias", false);

  // Qwen2/3 keep a `sliding_window` size even when `use_sliding_window` is false.
  if (f.present("sliding_window") && f.boolean_or("use_sliding_window", true))
    c.sliding_window = f.positive_or("sliding_window", 0);
  c.layer_types = f.string_list("layer_types");
  if (!c.layer_types.empty() && static_cast<int64_t>(c.layer_types.size()) != c.num_hidden_layers)
    throw Error(str(where, ": 'layer_types' has ", c.layer_types.size(), " entries for ", c.num_hidden_layers, " layers"));

  // Experts: Qwen3-MoE 4.x `num_experts`, 5.x/Mixtral/gpt-oss `num_local_experts`, DeepSeek `n_routed_experts`.
  for (const char* k : {"num_experts", "num_local_experts", "n_routed_experts"})
    if (f.present(k)) c.num_experts = f.non_negative_or(k, 0);
  c.num_experts_per_tok = f.non_negative_or("num_experts_per_tok", f.non_negative_or("experts_per_token", 0));
  c.moe_intermediate_size = f.non_negative_or("moe_intermediate_size", c.intermediate_size);
  c.norm_topk_prob = f.boolean_or("norm_topk_prob", false);
  c.decoder_sparse_step = f.positive_or("decoder_sparse_step", 1);
  c.mlp_only_layers = f.integer_list("mlp_only_layers");
  for (int64_t l : c.mlp_only_layers)
    if (l < 0 || l >= c.num_hidden_layers)
      throw Error(str(where, ": 'mlp_only_layers' names layer ", l, " but the model has ", c.num_hidden_layers, " layers"));
  if (c.num_experts > 0) {
    if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_experts)
      throw Error(str(where, ": 'num_experts_per_tok' must be in [1, ", c.num_experts, "] for a model with ",
                      c.num_experts, " experts, got ", c.num_experts_per_tok));
    if (c.moe_intermediate_size <= 0)
      throw Error(str(where, ": a mixture-of-experts model needs a positive 'moe_intermediate_size' or 'intermediate_size'"));
  }
  // DeepSeek: dense layers before first_k_dense_replace; kept in raw, checked here.
  f.non_negative_or("first_k_dense_replace", 0);
  f.positive_or("moe_layer_freq", 1);
  if (f.present("kv_lora_rank")) c.mla = read_mla(f);

  if (f.present("bos_token_id")) c.bos_token_id = f.integer_or("bos_token_id", 0);
  if (f.present("eos_token_id")) {
    if (j["eos_token_id"].is_array()) c.eos_token_ids = f.integer_list("eos_token_id");
    else c.eos_token_ids = {f.integer_or("eos_token_id", 0)};
  }
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(str(where, ": expected a JSON object, got ", j.type_name()));
  ModelConfig c;
  c.raw = j;
  try {
    read_config(c, j, where);
  } catch (const json::exception& e) {  // a type error the readers did not anticipate
    throw Error(str(where, ": ", e.what()));
  }
  return c;
}

ModelConfig ModelConfig::load(const std::string& dir) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(dir))
    throw InvalidArgument(str("model directory '", dir, "' does not exist or is not a directory"));
  const std::string path = (fs::path(dir) / "config.json").string();
  if (!fs::exists(path)) throw InvalidArgument(str("model directory '", dir, "' has no config.json"));
  std::ifstream in(path);
  if (!in) throw Error(str("cannot read ", path));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw Error(str(path, ": invalid JSON: ", e.what()));
  }
  return from_json(j, path);
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (num_experts <= 0) return false;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
  // DeepSeek-V2/V3 layout: dense below first_k_dense_replace, then every moe_layer_freq-th layer.
  if (raw.contains("first_k_dense_replace") && raw["first_k_dense_replace"].is_number_integer()) {
    const int64_t k = raw["first_k_dense_replace"].get<int64_t>();
    const int64_t freq = raw.value("moe_layer_freq", int64_t{1});
    return layer >= k && layer % std::max<int64_t>(freq, 1) == 0;
  }
  return (layer + 1) % decoder_sparse_step == 0;
}

}  // namespace loom::io
