// config.json of a Hugging Face checkpoint, both styles: transformers 4.x (`rope_theta`,
// `rope_scaling`, `num_experts`) and 5.x (`rope_parameters`, `num_local_experts`).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loom::io {

struct RopeParameters {
  std::string type = "default";  // default | linear | yarn | llama3 | ...
  double theta = 10000.0;
  double factor = 1.0;
  double original_max_position_embeddings = 0;  // 0 = not given
  double beta_fast = 32.0, beta_slow = 1.0;     // yarn
  std::optional<double> mscale, mscale_all_dim; // yarn (DeepSeek style)
  bool truncate = true;                          // yarn (gpt-oss sets false)
};

struct ModelConfig {
  std::string architecture;  // architectures[0], e.g. "Qwen3MoeForCausalLM"
  std::string model_type;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense MLP
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  double rms_norm_eps = 1e-6;
  RopeParameters rope;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  std::optional<int64_t> sliding_window;
  std::vector<std::string> layer_types;  // "full_attention" / "sliding_attention" per layer, if given

  // Mixture of experts (0 experts = dense model).
  int64_t num_experts = 0;           // num_experts | num_local_experts | n_routed_experts
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  // DeepSeek (read when kv_lora_rank is given): multi-head latent attention and DeepSeekMoE
  // routing. Absent fields take transformers' DeepseekV2Config defaults.
  struct Mla {
    int64_t kv_lora_rank = 0;
    int64_t q_lora_rank = 0;  // 0: queries straight from q_proj (config.json's null)
    int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
    int64_t n_shared_experts = 2;
    std::string topk_method = "greedy";  // greedy | group_limited_greedy
    int64_t n_group = 1, topk_group = 1;
    double routed_scaling_factor = 1.0;
  };
  std::optional<Mla> mla;

  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // eos_token_id may be an int or a list

  nlohmann::json raw;  // the whole file, for architecture-specific fields

  // Reads DIR/config.json. Errors name the directory/file and the field.
  static ModelConfig load(const std::string& dir);
  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);

  // Qwen3-MoE rule: sparse iff num_experts > 0, layer not in mlp_only_layers and
  // (layer + 1) % decoder_sparse_step == 0.
  bool is_moe_layer(int64_t layer) const;
};

}  // namespace loom::io
