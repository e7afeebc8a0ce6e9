#!/usr/bin/env python3
"""scripts/make_qwen3_moe_checkpoint.py writes what an HF Qwen3-MoE checkpoint holds: the same
tensor names, shapes and dtype as the tiny fixture (written by transformers) for its config, sharded
with an index that loom loads; bad --layers is refused."""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loom", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--script", required=True)
    a = ap.parse_args()
    fixture = os.path.join(a.data, "models", "tiny-qwen3-moe")
    want = {k: (v["dtype"], v["shape"]) for k, v in header(os.path.join(fixture, "model.safetensors")).items()}
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, a.script, "--config", fixture, "--out", out, "--shard-gb", "0.0001"], check=True)
        index = json.load(open(os.path.join(out, "model.safetensors.index.json")))["weight_map"]
        got = {}
        for shard in sorted(set(index.values())):
            for k, v in header(os.path.join(out, shard)).items():
                got[k] = (v["dtype"], v["shape"])
                assert index[k] == shard, f"{k} is in {shard}, the index says {index[k]}"
        assert got == want, f"tensors differ from the fixture: {sorted(set(got.items()) ^ set(want.items()))[:6]}"
        assert len(set(index.values())) > 1, "expected several shards"
        r = subprocess.run([a.loom, "generate", "--model-path", out, "--prompt-ids", "1,2,3", "--max-new-tokens", "4"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert len(json.loads(r.stdout)["output_ids"]) == 4, r.stdout
        bad = subprocess.run([sys.executable, a.script, "--config", fixture, "--out", out, "--layers", "0"],
                             capture_output=True, text=True)
        assert bad.returncode == 2 and "--layers 0" in bad.stderr, bad.stderr
    print(f"ok: {len(want)} tensors as in the fixture, loom generated 4 tokens")


if __name__ == "__main__":
    main()
