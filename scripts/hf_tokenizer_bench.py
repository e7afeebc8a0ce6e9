#!/usr/bin/env python3
"""Hugging Face `tokenizers` throughput on the exact text loom's tokenizer benchmark encodes.

    build/bench/bench_tokenizer --dump_text=/tmp/mixed.txt --dump_ids=/tmp/mixed_ids.json
    python3 scripts/hf_tokenizer_bench.py --text /tmp/mixed.txt --ids /tmp/mixed_ids.json

Prints MB/s for one-call encoding of the whole text (what BM_EncodeMixedText measures), and,
with --ids, whether HF's ids equal loom's. --cases FILE (a JSON list of {"text", "ids"}) checks
more texts the same way.
"""
import argparse
import json
import pathlib
import sys
import time

from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--text", required=True, help="file written by bench_tokenizer --dump_text")
    p.add_argument("--tokenizer", default=str(ROOT / "tests/data/tokenizers/qwen3"), help="directory with tokenizer.json")
    p.add_argument("--ids", help="loom's ids for --text (bench_tokenizer --dump_ids) to compare with")
    p.add_argument("--cases", help="JSON list of {text, ids} produced by loom to compare with")
    p.add_argument("--seconds", type=float, default=5.0, help="time budget for the measurement")
    args = p.parse_args()

    tok = Tokenizer.from_file(str(pathlib.Path(args.tokenizer) / "tokenizer.json"))
    text = pathlib.Path(args.text).read_bytes().decode("utf-8")
    nbytes = len(text.encode("utf-8"))
    ids = tok.encode(text, add_special_tokens=False).ids  # warm-up (and the ids to compare)

    runs, start = 0, time.perf_counter()
    while True:
        tok.encode(text, add_special_tokens=False)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= args.seconds and runs >= 3:
            break
    mbps = nbytes * runs / elapsed / 1e6
    print(f"HF tokenizers {getattr(sys.modules['tokenizers'], '__version__', '?')}: {nbytes / 1e6:.2f} MB, "
          f"{len(ids)} tokens, {elapsed / runs * 1e3:.1f} ms per encode, {mbps:.1f} MB/s (single call, whole text)")

    ok = True
    if args.ids:
        loom_ids = json.loads(pathlib.Path(args.ids).read_text())
        same = loom_ids == ids
        ok &= same
        if not same:
            first = next((i for i, (a, b) in enumerate(zip(loom_ids, ids)) if a != b), min(len(loom_ids), len(ids)))
            print(f"ids DIFFER from loom's: lengths {len(loom_ids)} vs {len(ids)}, first difference at {first}")
        else:
            print(f"ids equal loom's ({len(ids)} tokens)")
    if args.cases:
        cases = json.loads(pathlib.Path(args.cases).read_text())
        bad = [c for c in cases if tok.encode(c["text"], add_special_tokens=False).ids != c["ids"]]
        ok &= not bad
        print(f"cases: {len(cases) - len(bad)}/{len(cases)} equal loom's ids")
        for c in bad[:5]:
            print("  differs:", json.dumps(c["text"], ensure_ascii=False)[:200])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
