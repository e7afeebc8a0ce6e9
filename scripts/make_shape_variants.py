# Makes small random-weight checkpoints of shapes unlike the shipped fixtures (MHA, MQA, odd
# head_dim, expert counts that are not powers of two, dense layers inside a MoE model, other eps
# and rope_theta) and their HF transformers reference outputs. Run on the GPU machine (it has
# torch + transformers):  python3 scripts/make_shape_variants.py OUT_DIR
import json, os, sys, torch, transformers

out_root = sys.argv[1]
VOCAB = 512
variants = {
    # MHA, head_dim 32, 6 experts top-3 without renormalisation, sparse every 2nd layer, layer 0 dense.
    "qwen3-moe-mha-e6": ("Qwen3MoeConfig", dict(
        hidden_size=48, num_attention_heads=4, num_key_value_heads=4, head_dim=32, intermediate_size=80,
        moe_intermediate_size=24, num_experts=6, num_experts_per_tok=3, norm_topk_prob=False,
        decoder_sparse_step=2, mlp_only_layers=[0], num_hidden_layers=4, rms_norm_eps=1e-5,
        rope_theta=10000.0, tie_word_embeddings=True)),
    # MQA (8 query heads over 1 kv head), head_dim 8, 5 experts top-1.
    "qwen3-moe-mqa-e5": ("Qwen3MoeConfig", dict(
        hidden_size=40, num_attention_heads=8, num_key_value_heads=1, head_dim=8, intermediate_size=64,
        moe_intermediate_size=20, num_experts=5, num_experts_per_tok=1, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[], num_hidden_layers=2, rms_norm_eps=1e-6,
        rope_theta=500000.0, tie_word_embeddings=False)),
    # Dense Qwen3, 6 heads over 3 kv heads, head_dim 24, 3 layers.
    "qwen3-dense-h6-d24": ("Qwen3Config", dict(
        hidden_size=72, num_attention_heads=6, num_key_value_heads=3, head_dim=24, intermediate_size=96,
        num_hidden_layers=3, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False)),
    # 12 experts top-4 over 8 heads / 4 kv heads (GQA 2): divisible by tp 4, ep 2/4, and attn_tp 4.
    "qwen3-moe-h8-e12": ("Qwen3MoeConfig", dict(
        hidden_size=64, num_attention_heads=8, num_key_value_heads=4, head_dim=16, intermediate_size=96,
        moe_intermediate_size=16, num_experts=12, num_experts_per_tok=4, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[1], num_hidden_layers=3, rms_norm_eps=1e-6,
        rope_theta=1000000.0, tie_word_embeddings=False)),
    # DeepSeek-V2 with the released latent (kv_lora_rank 512 + qk_rope_head_dim 64: FlashInfer's MLA
    # kernel on CUDA), the q LoRA, grouped top-k, a scaled routed sum and V2-Lite's YaRN.
    "deepseek-v2-latent512": ("DeepseekV2Config", dict(
        hidden_size=128, num_attention_heads=16, num_key_value_heads=16, q_lora_rank=32, kv_lora_rank=512,
        qk_rope_head_dim=64, qk_nope_head_dim=32, v_head_dim=32, intermediate_size=96, moe_intermediate_size=32,
        n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1, n_group=2,
        topk_group=1, topk_method="group_limited_greedy", routed_scaling_factor=1.5, num_hidden_layers=3,
        rms_norm_eps=1e-6, tie_word_embeddings=False,
        rope_scaling=dict(type="yarn", factor=40.0, original_max_position_embeddings=4096, beta_fast=32,
                          beta_slow=1, mscale=0.707, mscale_all_dim=0.707))),
}
# python3 scripts/make_shape_variants.py OUT_DIR [NAME...]: only the named variants.
only = sys.argv[2:]
torch.manual_seed(0)
for name, (cls, kw) in variants.items():
    if only and name not in only:
        continue
    cfg = getattr(transformers, cls)(vocab_size=VOCAB, max_position_embeddings=4096, **kw)
    model = transformers.AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.float32)
    with torch.no_grad():  # larger-than-init weights so logits are not all ~0
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.08)
            else:
                p.uniform_(0.7, 1.3)
    model = model.to(torch.bfloat16)
    d = os.path.join(out_root, name)
    model.save_pretrained(d, safe_serialization=True)
    # Reference in fp32 on the stored bf16 weights, loaded back as hf_reference.py does (an
    # in-memory .to(bf16).float() would also round the rotary inv_freq buffer to bf16).
    model = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(1)
    cases = []
    with torch.no_grad():
        for n in (1, 2, 3, 7, 33, 257):
            ids = torch.randint(0, VOCAB, (n,), generator=g).tolist()
            x = torch.tensor([ids])
            logits = model(input_ids=x).logits[0].float()
            gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=12,
                                 do_sample=False, eos_token_id=None, pad_token_id=0)
            c = dict(prompt_ids=ids, greedy_ids=gen[0, n:].tolist(),
                     last_logits=[round(float(v), 6) for v in logits[-1]])
            if n <= 33:
                c["all_logits"] = [[round(float(v), 6) for v in row] for row in logits]
            cases.append(c)
    json.dump(dict(arch=cfg.architectures[0] if cfg.architectures else cls, generator=f"transformers {transformers.__version__}",
                   reference_precision="float32 on the stored bf16 weights", cases=cases),
              open(os.path.join(d, "reference.json"), "w"))
    print("wrote", name)
