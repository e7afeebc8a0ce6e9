#!/usr/bin/env bash
# `loom logits/generate --device cuda` with parallel flags, every rank on this GPU over device
# copies (--dist-backend device-copy): the greedy tokens must equal one GPU's, the top logits ids
# must agree, and --report-comm must print per-rank counts. Then the start-up errors a user meets:
# more ranks than GPUs without device-copy, and an unknown backend.
#   bash scripts/device_parallel_cli.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
MODEL=tests/data/models/tiny-qwen3-moe
PROMPT=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17
ids() { python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["output_ids"])))'; }

one=$("$BUILD/loom" generate --device cuda --model-path $MODEL --prompt-ids $PROMPT --max-new-tokens 12 | ids)
echo "parallel cli one GPU: $one"
for flags in "--tp 2" "--tp 2 --ep-size 2" "--tp 4 --ep-size 4" "--tp 4 --attn-cp-size 2 --ep-size 2 --enable-prefill-context-parallel" \
             "--tp 4 --attn-cp-size 2 --ep-size 2 --moe-cp-size 2 --enable-prefill-context-parallel" \
             "--tp 4 --enable-dp-attention --dp-size 2 --ep-size 2"; do
  got=$("$BUILD/loom" generate --device cuda --dist-backend device-copy --model-path $MODEL --prompt-ids $PROMPT \
        --max-new-tokens 12 $flags | ids)
  [ "$got" = "$one" ] || { echo "parallel cli MISMATCH ($flags): $got"; exit 1; }
  echo "parallel cli $flags: greedy equal"
done
"$BUILD/loom" generate --device cuda --dist-backend device-copy --model-path $MODEL --prompt-ids $PROMPT \
  --max-new-tokens 2 --tp 2 --ep-size 2 --report-comm 2>comm.err >/dev/null
grep -q '"op":"all_reduce"' comm.err || { echo "no --report-comm lines"; cat comm.err; exit 1; }
echo "parallel cli --report-comm: $(wc -l <comm.err) rank-op lines"
rm -f comm.err

gpus=$(nvidia-smi -L | wc -l)
n=$((gpus + 1))
set +e
err=$("$BUILD/loom" generate --device cuda --model-path $MODEL --prompt-ids 1,2 --max-new-tokens 1 --tp $n 2>&1 >/dev/null)
rc=$?
set -e
echo "parallel cli --tp $n on $gpus GPU(s): exit $rc: $err"
[ $rc = 2 ] && [ "$(echo "$err" | wc -l)" = 1 ] && echo "$err" | grep -q "need $n GPUs" || exit 1
