#!/usr/bin/env bash
# `loom bench serving` against `loom serve` on the GPU machine (issue 13's measurement), in one
# device call: the Qwen3-30B-A3B shape with dummy weights. Builds loom and test_cuda into
# build-gpu (with the carried .debs, scripts/device_env.sh), runs the sampling and dummy-weight GPU
# tests, measures `bench latency` (decode step at bs 1 and 64, 8K prefill) as the baseline of the
# same run, starts the server, times start-up to the first answered request, runs each load and
# prints a table last.
#   bash scripts/device_serving_bench.sh
# Loads are concurrency:requests[:input_len:output_len]; default
#   LOOM_SERVING_LOADS="1:8 64:256 256:512 1:3:8192:1"
# LOOM_SERVE_FLAGS adds flags to `loom serve`; LOOM_SERVE_AB="FLAGS;FLAGS..." serves again with each
# (an A/B run, e.g. LOOM_SERVE_AB="--disable-overlap-schedule"), the same loads each time, one table
# row per load and variant; a variant's NAME=VALUE words are set in the server's environment instead
# (e.g. LOOM_SERVE_AB="LOOM_PDL=0"). LOOM_SERVING_BODY (JSON) is merged into every
# request (e.g. '{"temperature": 1.0, "top_p": 0.9}' for sampled requests). LOOM_LATENCY_BS (default 1,64) are the baseline's batch sizes;
# LOOM_SKIP_LATENCY=1 skips the baseline.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
MODEL=bench/models/qwen3-30b-a3b
loom_device_build "$LOGS" || exit 1

timeout "${LOOM_TEST_TIMEOUT:-300}" ./build-gpu/tests/test_cuda \
  --gtest_filter="${LOOM_GPU_TESTS:-DeviceSampling.*:DummyWeightsOnGpu.*}" >"$LOGS/gpu_tests.log" 2>&1
grep -q "^\[==========\] .* ran\." "$LOGS/gpu_tests.log" ||
  echo "test_cuda did not finish (time limit ${LOOM_TEST_TIMEOUT:-300} s?); last started: $(grep '^\[ RUN' "$LOGS/gpu_tests.log" | tail -1)"
gpu_tests="$(grep -E '^\[  (PASSED|FAILED) ' "$LOGS/gpu_tests.log" | tr '\n' ' ')"
grep -E "FAILED|Failure|Expected|Which is|of [0-9]+$" "$LOGS/gpu_tests.log" | head -20

if [ "${LOOM_SKIP_LATENCY:-0}" != 1 ]; then
  ./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size "${LOOM_LATENCY_BS:-1,64}" --input-len 1024 \
    --output-len 32 --prefill-len 8192 --mem-fraction-static 0.88 >"$LOGS/latency.log" 2>&1 ||
    tail -5 "$LOGS/latency.log"
fi

PORT=30777
steps() { curl -s http://127.0.0.1:$PORT/metrics | awk '/^loom_engine_steps_total/ {print $2}'; }
overlapped() { curl -s http://127.0.0.1:$PORT/metrics | awk '/^loom_engine_overlapped_steps_total/ {print $2}'; }
rows=()
startups=()
IFS=';' read -r -a variants <<<";${LOOM_SERVE_AB:-}"
[ -z "${LOOM_SERVE_AB:-}" ] && variants=("")
for v in "${!variants[@]}"; do
  flags=(${LOOM_SERVE_FLAGS:-})
  envs=()
  for word in ${variants[$v]}; do
    if [[ $word != --* && $word == *=* ]]; then envs+=("$word"); else flags+=("$word"); fi
  done
  for kv in "${envs[@]}"; do export "$kv"; done
  t0=$(date +%s.%N)
  loom_device_serve "$LOGS" $PORT "${flags[@]}" || exit 1
  for kv in "${envs[@]}"; do unset "${kv%%=*}"; done
  startups+=("$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))") s (${variants[$v]:-default})")
  for load in ${LOOM_SERVING_LOADS:-1:8 64:256 256:512 1:3:8192:1}; do
    IFS=: read -r c n in out <<<"$load"
    in=${in:-1024} out=${out:-256}
    tag="v${v}_c${c}_n${n}_in${in}"
    s0=$(steps); o0=$(overlapped); w0=$SECONDS
    ./build-gpu/loom bench serving --base-url http://127.0.0.1:$PORT --num-prompts "$n" --max-concurrency "$c" \
      --random-input-len "$in" --random-output-len "$out" --random-range-ratio 1 --random-vocab-size 150000 \
      ${LOOM_SERVING_BODY:+--extra-request-body "$LOOM_SERVING_BODY"} --output-file "$LOGS/serving_$tag.json" >"$LOGS/serving_$tag.log" 2>&1 || tail -5 "$LOGS/serving_$tag.log"
    s1=$(steps); o1=$(overlapped)
    grep -m3 "request failed" "$LOGS/serving_$tag.log"
    rows+=("$(python3 -c "
import json; j=json.load(open('$LOGS/serving_$tag.json'))
steps = ($s1 or 0) - ($s0 or 0); wall = $SECONDS - $w0; ov = (${o1:-0} or 0) - (${o0:-0} or 0)
print('%5d %5d %6d %5d %9.0f %9.0f %9.0f %9.1f %9.1f %6d %6d %7.1f  %s' % ($c, $n, $in, j['completed'], j['output_throughput'],
  j['ttft_ms']['p50'], j['ttft_ms']['p99'], j['itl_ms']['p50'], j['tpot_ms']['p50'], steps, ov, 1000.0 * wall / max(steps, 1),
  '${variants[$v]:-default}'))")")
  done
  kill -TERM $serve_pid; wait $serve_pid
done

echo
echo "GPU tests: $gpu_tests"
echo "startup to the first answered request: ${startups[*]}"
[ -n "${LOOM_SERVING_BODY:-}" ] && echo "every request carried: $LOOM_SERVING_BODY"
[ -f "$LOGS/latency.log" ] && grep -E "^model|^ +(bs|[0-9]+) |^prefill 1x" "$LOGS/latency.log"
printf '%5s %5s %6s %5s %9s %9s %9s %9s %9s %6s %6s %7s  %s\n' conc reqs in done "out tok/s" "TTFT p50" "TTFT p99" \
  "ITL p50" "TPOT p50" steps overlap "ms/step" flags
printf '%s\n' "${rows[@]}"
