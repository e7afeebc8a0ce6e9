#!/usr/bin/env python3
"""Writes a Qwen3-MoE checkpoint of random bf16 weights (sharded safetensors + index), the shape
of a real one, to time loading from disk (scripts/device_load_bench.sh). Standard library only:
the GPU machine reaches no package registry.

    python3 scripts/make_qwen3_moe_checkpoint.py --config bench/models/qwen3-30b-a3b --layers 16 --out /tmp/ckpt

The config's num_hidden_layers is replaced by --layers (the checkpoint is written for that many).
Values are small (|x| < 0.05) and repeat every few MB: loading times are what this is for.
"""
import argparse
import json
import os
import random
import struct


def tensors(c):
    """(name, shape) of every tensor a Qwen3-MoE checkpoint holds, in file order."""
    h, v, hd = c["hidden_size"], c["vocab_size"], c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    e, inter = c["num_experts"], c["moe_intermediate_size"]
    yield "model.embed_tokens.weight", [v, h]
    for layer in range(c["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", [h]
        yield p + "post_attention_layernorm.weight", [h]
        yield p + "self_attn.q_proj.weight", [q, h]
        yield p + "self_attn.k_proj.weight", [kv, h]
        yield p + "self_attn.v_proj.weight", [kv, h]
        yield p + "self_attn.o_proj.weight", [h, q]
        yield p + "self_attn.q_norm.weight", [hd]
        yield p + "self_attn.k_norm.weight", [hd]
        yield p + "mlp.gate.weight", [e, h]
        for x in range(e):
            yield p + f"mlp.experts.{x}.gate_proj.weight", [inter, h]
            yield p + f"mlp.experts.{x}.up_proj.weight", [inter, h]
            yield p + f"mlp.experts.{x}.down_proj.weight", [h, inter]
    yield "model.norm.weight", [h]
    if not c.get("tie_word_embeddings", False):
        yield "lm_head.weight", [v, h]


def pattern(nbytes, seed):
    """nbytes of bf16 values uniform in (-0.05, 0.05) (the upper halves of f32s)."""
    rng = random.Random(seed)
    f32 = struct.pack(f"<{nbytes // 2}f", *(rng.uniform(-0.05, 0.05) for _ in range(nbytes // 2)))
    return b"".join(f32[i + 2:i + 4] for i in range(0, len(f32), 4))


def write_shard(path, entries, block):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in entries:
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        left = offset
        while left > 0:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            left -= len(chunk)
        f.flush()
        os.fsync(f.fileno())
    return offset


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="directory with the model's config.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, help="num_hidden_layers to write (default: the config's)")
    ap.add_argument("--shard-gb", type=float, default=4.0)
    a = ap.parse_args()
    with open(os.path.join(a.config, "config.json")) as f:
        c = json.load(f)
    if a.layers is not None:
        if a.layers < 1:
            ap.error(f"--layers {a.layers}: must be at least 1")
        c["num_hidden_layers"] = a.layers
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    block = pattern(1 << 20, 0) * 8  # 8 MB written over and over
    shard_bytes = int(a.shard_gb * (1 << 30))
    shards, current, size = [], [], 0
    for name, shape in tensors(c):
        n = 2
        for d in shape:
            n *= d
        if current and size + n > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += n
    shards.append(current)
    weight_map, total = {}, 0
    for i, entries in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        total += write_shard(os.path.join(a.out, file), entries, block)
        weight_map.update({name: file for name, _ in entries})
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    print(f"{a.out}: {len(weight_map)} tensors, {total / 1e9:.2f} GB in {len(shards)} shards")


if __name__ == "__main__":
    main()
