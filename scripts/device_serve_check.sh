#!/usr/bin/env bash
# `loom serve` end to end on a device (cuda on the GPU machine; cpu works too, for trying it here):
# a greedy completion over HTTP must equal `loom generate` on the same device, a streamed chat must
# end in [DONE], 16 concurrent requests must equal the same prompt run alone, and SIGTERM must exit 0.
#   bash scripts/device_serve_check.sh [BUILD_DIR] [DEVICE]
# LOOM_SERVE_FLAGS adds runner flags to both (e.g. "--tp 2 --dist-backend device-copy").
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
DEVICE=${2:-cuda}
MODEL=tests/data/models/tiny-qwen3-moe-realvocab
PORT=${LOOM_SERVE_PORT:-30123}
LOG=$(mktemp)
FLAGS=${LOOM_SERVE_FLAGS:-}

# Before the server: it sizes its KV pool from the GPU memory that is free when it starts.
expected=$("$BUILD/loom" generate --model-path "$MODEL" --device "$DEVICE" $FLAGS --prompt-ids 1,2,3,4,5 --max-new-tokens 12 \
  | python3 -c 'import json,sys; print(",".join(map(str, json.load(sys.stdin)["output_ids"])))')
expected_text=$("$BUILD/loom" detokenize --tokenizer tests/data/tokenizers/qwen3 --ids "$expected" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["text"])')

"$BUILD/loom" serve --model-path "$MODEL" --tokenizer tests/data/tokenizers/qwen3 --device "$DEVICE" $FLAGS \
  --port "$PORT" --max-running-requests 8 2>"$LOG" &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q listening "$LOG" && break; kill -0 $pid || { cat "$LOG"; exit 1; }; sleep 0.2; done
grep -q listening "$LOG" || { echo "server did not start"; cat "$LOG"; exit 1; }


PORT=$PORT EXPECTED="$expected_text" python3 - <<'EOF'
import concurrent.futures, json, os, urllib.request
base = f"http://127.0.0.1:{os.environ['PORT']}"

def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read().decode()

greedy = {"prompt": [1, 2, 3, 4, 5], "max_tokens": 12, "temperature": 0, "ignore_eos": True}
text = json.loads(post("/v1/completions", greedy))["choices"][0]["text"]
assert text == os.environ["EXPECTED"], (text, os.environ["EXPECTED"])
print("completion equals loom generate:", repr(text))

stream = post("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 16,
                                       "stream": True})
events = [l[6:] for l in stream.splitlines() if l.startswith("data: ")]
assert events[-1] == "[DONE]", events[-3:]
print("streamed chat:", len(events) - 1, "chunks, then [DONE]")

with concurrent.futures.ThreadPoolExecutor(16) as pool:
    texts = list(pool.map(lambda _: json.loads(post("/v1/completions", greedy))["choices"][0]["text"], range(16)))
assert all(t == text for t in texts), texts
print("16 concurrent greedy requests equal the single one")
EOF

kill -TERM $pid
wait $pid
echo "serve on $DEVICE $FLAGS: SIGTERM exit $?"
