#!/usr/bin/env bash
# The cost of constrained decoding on the GPU (issue 17): `loom serve` on the Qwen3-30B-A3B shape
# with dummy weights, `loom bench serving` at concurrency 32 (random 1,024-token prompts, up to 256
# out) plain, then with response_format json_object and with a json_schema, in one device call.
# Also runs the GPU sampling tests (grammar masks on the device against the host sampler).
#   bash scripts/device_structured_bench.sh
# Prints a table last: time per output token and ITL of each load against the plain one.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
loom_device_build "$LOGS" || exit 1
./build-gpu/tests/test_cuda --gtest_filter="${LOOM_GPU_TESTS:-DeviceSampling.*}" >"$LOGS/gpu_tests.log" 2>&1
gpu_tests="$(grep -E '^\[  (PASSED|FAILED) ' "$LOGS/gpu_tests.log" | tr '\n' ' ')"
grep -E "FAILED|Failure|Expected|Which is" "$LOGS/gpu_tests.log" | head -20

PORT=30777
loom_device_serve "$LOGS" $PORT || exit 1
schema='{"type": "object", "properties": {"title": {"type": "string"}, "year": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}, "required": ["title", "year", "tags"]}'
declare -A extra=(
  [plain]='{}'
  [json_object]='{"response_format": {"type": "json_object"}}'
  [json_schema]="{\"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"doc\", \"schema\": $schema}}}"
)
rows=()
for tag in plain json_object json_schema; do
  ./build-gpu/loom bench serving --base-url http://127.0.0.1:$PORT --num-prompts ${LOOM_NUM_PROMPTS:-128} \
    --max-concurrency 32 --random-input-len 1024 --random-output-len 256 --random-range-ratio 1 \
    --random-vocab-size 150000 --extra-request-body "${extra[$tag]}" --output-file "$LOGS/structured_$tag.json" \
    >"$LOGS/structured_$tag.log" 2>&1 || tail -5 "$LOGS/structured_$tag.log"
  rows+=("$(python3 -c "
import json
j = json.load(open('$LOGS/structured_$tag.json')); p = json.load(open('$LOGS/structured_plain.json'))
out = j['total_output_tokens'] / max(j['completed'], 1)
print('%-12s %5d %6.0f %9.0f %9.2f %9.2f %8.3f %8.3f' % ('$tag', j['completed'], out, j['output_throughput'],
  j['tpot_ms']['mean'], j['itl_ms']['p50'], j['tpot_ms']['mean'] / p['tpot_ms']['mean'], j['itl_ms']['p50'] / p['itl_ms']['p50']))")")
done
kill -TERM $serve_pid; wait $serve_pid

echo
echo "GPU tests: $gpu_tests"
printf '%-12s %5s %6s %9s %9s %9s %8s %8s\n' load done "out/req" "out tok/s" "TPOT mean" "ITL p50" "TPOT x" "ITL x"
printf '%s\n' "${rows[@]}"
