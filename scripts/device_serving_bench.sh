#!/usr/bin/env bash
# `loom bench serving` against `loom serve` on the GPU machine: the Qwen3-30B-A3B shape with dummy
# weights, random 1,024-token prompts and 256-token outputs. Builds loom into build-gpu (with the
# carried .debs, scripts/device_env.sh), starts the server, runs each load, prints a table last.
#   bash scripts/device_serving_bench.sh            # LOOM_SERVING_LOADS="64:64 1:4" (concurrency:requests)
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $LOOM_CMAKE_ARGS >"$LOGS/configure.log" 2>&1 &&
  cmake --build build-gpu -j16 --target loom >"$LOGS/build.log" 2>&1 || { tail -20 "$LOGS/build.log"; exit 1; }
PORT=30777
t0=$SECONDS
./build-gpu/loom serve --device cuda --model-path bench/models/qwen3-30b-a3b --load-format dummy \
  --tokenizer tests/data/tokenizers/qwen3 --port $PORT ${LOOM_SERVE_FLAGS:-} 2>"$LOGS/serve.log" &
pid=$!
trap 'kill -9 $pid 2>/dev/null' EXIT
for _ in $(seq 1 600); do grep -q listening "$LOGS/serve.log" && break; kill -0 $pid || { tail "$LOGS/serve.log"; exit 1; }; sleep 0.2; done
echo "server up in $((SECONDS - t0)) s"
rows=()
for load in ${LOOM_SERVING_LOADS:-64:64 1:4}; do
  c=${load%%:*} n=${load##*:}
  ./build-gpu/loom bench serving --base-url http://127.0.0.1:$PORT --num-prompts "$n" --max-concurrency "$c" \
    --random-input-len 1024 --random-output-len 256 --random-range-ratio 1 --random-vocab-size 150000 \
    --output-file "$LOGS/serving_c$c.json" >"$LOGS/serving_c$c.log" 2>&1 || { tail "$LOGS/serving_c$c.log"; }
  rows+=("$(python3 -c "import json; j=json.load(open('$LOGS/serving_c$c.json')); print('%5d %5d %9.0f %9.0f %9.0f %9.1f %9.1f' % ($c, j['completed'], j['output_throughput'], j['ttft_ms']['p50'], j['ttft_ms']['p99'], j['itl_ms']['p50'], j['tpot_ms']['p50']))")")
done
kill -TERM $pid; wait $pid
echo
printf '%5s %5s %9s %9s %9s %9s %9s\n' conc reqs "out tok/s" "TTFT p50" "TTFT p99" "ITL p50" "TPOT p50"
printf '%s\n' "${rows[@]}"
