#include "loom/io/model_config.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "io_test_util.h"

using namespace loom;
using namespace loom::io;
using namespace loom::io::testing;

namespace {

const std::string kModels = std::string(LOOM_TEST_DATA) + "/models";

ModelConfig fixture(const std::string& name) { return ModelConfig::load(kModels + "/" + name); }

// Writes `config` as DIR/config.json and loads it.
ModelConfig load_json(const std::string& config) {
  TempDir dir;
  write_text(dir.file("config.json"), config);
  return ModelConfig::load(dir.str());
}

std::string minimal(const std::string& extra = "") {
  return R"({"architectures": ["Qwen3ForCausalLM"], "vocab_size": 100, "hidden_size": 64,
             "num_hidden_layers": 2, "num_attention_heads": 4)" +
         extra + "}";
}

}  // namespace

TEST(ModelConfig, EveryFixtureLoads) {
  int n = 0;
  for (const auto& base : {kModels, kModels + "/variants"}) {
    for (const auto& entry : std::filesystem::directory_iterator(base)) {
      if (!std::filesystem::exists(entry.path() / "config.json")) continue;
      SCOPED_TRACE(entry.path().string());
      const ModelConfig c = ModelConfig::load(entry.path().string());
      EXPECT_FALSE(c.architecture.empty());
      EXPECT_GT(c.vocab_size, 0);
      EXPECT_GT(c.head_dim, 0);
      EXPECT_EQ(c.num_attention_heads % c.num_key_value_heads, 0);
      EXPECT_GT(c.rope.theta, 0);
      EXPECT_TRUE(c.raw.is_object());
      ++n;
    }
  }
  EXPECT_GE(n, 10);
}

TEST(ModelConfig, Qwen3MoeStyle4x) {
  const ModelConfig c = fixture("tiny-qwen3-moe");
  EXPECT_EQ(c.architecture, "Qwen3MoeForCausalLM");
  EXPECT_EQ(c.model_type, "qwen3_moe");
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_experts_per_tok, 2);
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_EQ(c.intermediate_size, 96);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));
  EXPECT_EQ(c.bos_token_id, 151643);
  EXPECT_FALSE(c.tie_word_embeddings);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) EXPECT_TRUE(c.is_moe_layer(l));
}

TEST(ModelConfig, Qwen3MoeStyle5xGivesTheSameKindOfValues) {
  const ModelConfig c = fixture("tiny-qwen3-moe-realvocab");
  EXPECT_EQ(c.architecture, "Qwen3MoeForCausalLM");
  EXPECT_EQ(c.num_experts, 4);  // from num_local_experts
  EXPECT_EQ(c.moe_intermediate_size, 16);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);  // from rope_parameters.rope_theta
  EXPECT_EQ(c.vocab_size, 151936);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151645}));
}

TEST(ModelConfig, DenseQwen3) {
  const ModelConfig c = fixture("tiny-qwen3");
  EXPECT_EQ(c.architecture, "Qwen3ForCausalLM");
  EXPECT_EQ(c.num_experts, 0);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_EQ(c.layer_types, (std::vector<std::string>{"full_attention", "full_attention"}));
  EXPECT_TRUE(c.tie_word_embeddings);
}

TEST(ModelConfig, VariantsSparseLayout) {
  const ModelConfig h8 = fixture("variants/qwen3-moe-h8-e12");
  EXPECT_EQ(h8.num_experts, 12);
  EXPECT_EQ(h8.mlp_only_layers, (std::vector<int64_t>{1}));
  EXPECT_TRUE(h8.is_moe_layer(0));
  EXPECT_FALSE(h8.is_moe_layer(1));

  const ModelConfig mha = fixture("variants/qwen3-moe-mha-e6");  // decoder_sparse_step 2, mlp_only [0]
  EXPECT_EQ(mha.decoder_sparse_step, 2);
  EXPECT_FALSE(mha.is_moe_layer(0));
  EXPECT_TRUE(mha.is_moe_layer(1));
  EXPECT_FALSE(mha.is_moe_layer(2));
  EXPECT_TRUE(mha.is_moe_layer(3));
  EXPECT_FALSE(mha.norm_topk_prob);
  EXPECT_DOUBLE_EQ(mha.rope.theta, 10000.0);

  const ModelConfig mqa = fixture("variants/qwen3-moe-mqa-e5");
  EXPECT_EQ(mqa.num_key_value_heads, 1);
  EXPECT_DOUBLE_EQ(mqa.rope.theta, 500000.0);
  EXPECT_TRUE(mqa.eos_token_ids.empty());  // eos_token_id: null
  EXPECT_FALSE(mqa.bos_token_id.has_value());
}

TEST(ModelConfig, GptOssYarnAndSlidingWindow) {
  const ModelConfig c = fixture("tiny-gpt-oss");
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.rope.type, "yarn");
  EXPECT_DOUBLE_EQ(c.rope.theta, 150000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.original_max_position_embeddings, 4096.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 1.0);
  EXPECT_FALSE(c.rope.truncate);
  EXPECT_EQ(c.sliding_window, 8);
  EXPECT_EQ(c.layer_types, (std::vector<std::string>{"sliding_attention", "full_attention"}));
  EXPECT_EQ(c.moe_intermediate_size, c.intermediate_size);  // experts use intermediate_size
}

TEST(ModelConfig, DeepseekKeepsRawFieldsAndDenseFirstLayers) {
  const ModelConfig c = fixture("tiny-deepseek-v2");
  EXPECT_EQ(c.num_experts, 8);  // n_routed_experts
  EXPECT_EQ(c.raw["first_k_dense_replace"], 1);
  EXPECT_EQ(c.raw["kv_lora_rank"].is_number(), true);
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
}

TEST(ModelConfig, DeepseekLatentAttentionAndRouting) {
  const ModelConfig c = fixture("tiny-deepseek-v2");
  ASSERT_TRUE(c.mla);
  EXPECT_EQ(c.mla->kv_lora_rank, 32);
  EXPECT_EQ(c.mla->q_lora_rank, 0);  // null: q_proj
  EXPECT_EQ(c.mla->qk_nope_head_dim, 16);
  EXPECT_EQ(c.mla->qk_rope_head_dim, 8);
  EXPECT_EQ(c.mla->v_head_dim, 16);
  EXPECT_EQ(c.mla->n_shared_experts, 1);
  EXPECT_EQ(c.mla->topk_method, "greedy");
  EXPECT_DOUBLE_EQ(c.mla->routed_scaling_factor, 1.0);
  EXPECT_FALSE(fixture("tiny-qwen3-moe").mla);

  const std::string mla = R"(, "kv_lora_rank": 32, "qk_nope_head_dim": 16, "v_head_dim": 16)";
  const ModelConfig v2 = load_json(minimal(mla + R"(, "qk_rope_head_dim": 8, "q_lora_rank": 24, "n_group": 8,
      "topk_group": 3, "topk_method": "group_limited_greedy", "routed_scaling_factor": 16.0, "n_shared_experts": 2)"));
  EXPECT_EQ(v2.mla->q_lora_rank, 24);
  EXPECT_EQ(v2.mla->n_group, 8);
  EXPECT_EQ(v2.mla->topk_group, 3);
  EXPECT_EQ(v2.mla->topk_method, "group_limited_greedy");
  EXPECT_DOUBLE_EQ(v2.mla->routed_scaling_factor, 16.0);
  expect_error([&] { load_json(minimal(mla + R"(, "qk_rope_head_dim": 7)")); }, {"'qk_rope_head_dim'", "even"});
  expect_error([&] { load_json(minimal(mla)); }, {"'qk_rope_head_dim'", "missing"});
  expect_error([&] { load_json(minimal(mla + R"(, "qk_rope_head_dim": 8, "n_group": 0)")); }, {"'n_group'", "positive"});
}

TEST(ModelConfig, MixtralNullSlidingWindow) {
  const ModelConfig c = fixture("tiny-mixtral");
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_FALSE(c.sliding_window.has_value());
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
}

// The shape of ../shared/models/qwen3-30b-a3b/config.json (transformers 4.51), inlined so CI
// does not depend on ../shared.
TEST(ModelConfig, Qwen3_30B_A3B) {
  const ModelConfig c = load_json(R"({
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 6144,
    "max_position_embeddings": 40960, "max_window_layers": 48, "mlp_only_layers": [],
    "model_type": "qwen3_moe", "moe_intermediate_size": 768, "norm_topk_prob": true,
    "num_attention_heads": 32, "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "output_router_logits": false, "rms_norm_eps": 1e-06,
    "rope_scaling": null, "rope_theta": 1000000.0, "router_aux_loss_coef": 0.001,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
  EXPECT_EQ(c.num_experts, 128);
  EXPECT_EQ(c.num_experts_per_tok, 8);
  EXPECT_EQ(c.head_dim, 128);  // not hidden / heads = 64
  EXPECT_EQ(c.max_position_embeddings, 40960);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_TRUE(c.is_moe_layer(47));
}

TEST(ModelConfig, Defaults) {
  const ModelConfig c = load_json(minimal());
  EXPECT_EQ(c.head_dim, 16);             // hidden / heads
  EXPECT_EQ(c.num_key_value_heads, 4);  // = heads
  EXPECT_DOUBLE_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.type, "default");
  EXPECT_EQ(c.num_experts, 0);
  EXPECT_TRUE(c.eos_token_ids.empty());
}

TEST(ModelConfig, EosListAndRopeScalingVariants) {
  const ModelConfig list = load_json(minimal(R"(, "eos_token_id": [1, 7, 9])"));
  EXPECT_EQ(list.eos_token_ids, (std::vector<int64_t>{1, 7, 9}));

  // 4.x rope_scaling with the old "type" key.
  const ModelConfig linear = load_json(minimal(R"(, "rope_theta": 5e5, "rope_scaling": {"type": "linear", "factor": 4.0})"));
  EXPECT_EQ(linear.rope.type, "linear");
  EXPECT_DOUBLE_EQ(linear.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(linear.rope.theta, 5e5);

  // 4.x gpt-oss style: yarn under rope_scaling, theta at the top.
  const ModelConfig yarn = load_json(minimal(
      R"(, "rope_theta": 150000, "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 16,
         "beta_slow": 2, "original_max_position_embeddings": 4096, "truncate": false,
         "mscale": 0.707, "mscale_all_dim": 1.0})"));
  EXPECT_EQ(yarn.rope.type, "yarn");
  EXPECT_DOUBLE_EQ(yarn.rope.theta, 150000.0);
  EXPECT_DOUBLE_EQ(yarn.rope.beta_fast, 16.0);
  EXPECT_DOUBLE_EQ(yarn.rope.beta_slow, 2.0);
  EXPECT_FALSE(yarn.rope.truncate);
  EXPECT_DOUBLE_EQ(yarn.rope.mscale.value(), 0.707);
  EXPECT_DOUBLE_EQ(yarn.rope.mscale_all_dim.value(), 1.0);

  // 5.x with one rope object per layer type: the full-attention one is used.
  const ModelConfig per_type = load_json(minimal(
      R"(, "rope_parameters": {"full_attention": {"rope_type": "linear", "rope_theta": 1e6, "factor": 8},
                               "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})"));
  EXPECT_EQ(per_type.rope.type, "linear");
  EXPECT_DOUBLE_EQ(per_type.rope.theta, 1e6);

  // Qwen2/3 write a window size even when sliding is off.
  const ModelConfig off = load_json(minimal(R"(, "sliding_window": 4096, "use_sliding_window": false)"));
  EXPECT_FALSE(off.sliding_window.has_value());
}

TEST(ModelConfig, ErrorsNameTheDirectoryFileAndField) {
  expect_error<InvalidArgument>([] { ModelConfig::load("/nonexistent/loom-model"); }, {"/nonexistent/loom-model"});
  TempDir empty;
  expect_error([&] { ModelConfig::load(empty.str()); }, {empty.str(), "config.json"});

  TempDir bad;
  write_text(bad.file("config.json"), "{\"vocab_size\": 10,");
  expect_error([&] { ModelConfig::load(bad.str()); }, {bad.file("config.json"), "invalid JSON", "parse error"});

  const auto fails = [](const std::string& json, const std::vector<std::string>& parts) {
    TempDir dir;
    write_text(dir.file("config.json"), json);
    std::vector<std::string> all = parts;
    all.push_back(dir.file("config.json"));
    expect_error([&] { ModelConfig::load(dir.str()); }, all);
  };
  fails(R"({"architectures": ["X"], "vocab_size": 100, "num_hidden_layers": 2, "num_attention_heads": 4})",
        {"'hidden_size'", "missing"});
  fails(R"({"architectures": ["X"], "vocab_size": 100, "hidden_size": "64", "num_hidden_layers": 2,
           "num_attention_heads": 4})",
        {"'hidden_size'", "integer", "\"64\""});
  fails(R"({"architectures": ["X"], "vocab_size": 0, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4})",
        {"'vocab_size'", "positive"});
  fails(minimal(R"(, "num_key_value_heads": -2)"), {"'num_key_value_heads'", "positive"});
  fails(minimal(R"(, "num_key_value_heads": 3)"), {"num_key_value_heads", "multiple"});
  fails(minimal(R"(, "rope_theta": "big")"), {"'rope_theta'", "number"});
  fails(minimal(R"(, "rope_parameters": {"rope_theta": -1})"), {"'rope_parameters.rope_theta'", "positive"});
  fails(minimal(R"(, "rope_scaling": 3)"), {"'rope_scaling'", "object"});
  fails(minimal(R"(, "eos_token_id": "x")"), {"'eos_token_id'"});
  fails(minimal(R"(, "num_experts": 8)"), {"num_experts_per_tok"});
  fails(minimal(R"(, "mlp_only_layers": [5])"), {"mlp_only_layers", "5"});
  fails(minimal(R"(, "layer_types": ["full_attention"])"), {"layer_types"});
  fails(minimal(R"(, "tie_word_embeddings": "yes")"), {"'tie_word_embeddings'", "true or false"});
  fails(R"({"vocab_size": 100})", {"'architectures'"});
  fails("[1, 2]", {"JSON object"});
}

// The benchmark configs (bench/models: the public model cards' config.json, run with dummy
// weights) load, and DeepSeek-V2-Lite's latent attention and routing read as its card gives them.
TEST(ModelConfig, BenchConfigsLoad) {
  const std::string bench = std::string(LOOM_TEST_DATA) + "/../../bench/models";
  const ModelConfig qwen = ModelConfig::load(bench + "/qwen3-30b-a3b");
  EXPECT_EQ(qwen.num_experts, 128);
  const ModelConfig ds = ModelConfig::load(bench + "/deepseek-v2-lite");
  EXPECT_EQ(ds.architecture, "DeepseekV2ForCausalLM");
  EXPECT_EQ(ds.num_hidden_layers, 27);
  EXPECT_EQ(ds.hidden_size, 2048);
  EXPECT_EQ(ds.num_attention_heads, 16);
  EXPECT_EQ(ds.num_experts, 64);
  EXPECT_EQ(ds.num_experts_per_tok, 6);
  EXPECT_EQ(ds.moe_intermediate_size, 1408);
  ASSERT_TRUE(ds.mla.has_value());
  EXPECT_EQ(ds.mla->kv_lora_rank, 512);
  EXPECT_EQ(ds.mla->q_lora_rank, 0);
  EXPECT_EQ(ds.mla->qk_nope_head_dim, 128);
  EXPECT_EQ(ds.mla->qk_rope_head_dim, 64);
  EXPECT_EQ(ds.mla->v_head_dim, 128);
  EXPECT_EQ(ds.mla->n_shared_experts, 2);
  EXPECT_EQ(ds.rope.mscale_all_dim.value_or(0), 0.707);
}
