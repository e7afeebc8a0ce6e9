#!/usr/bin/env bash
# Piecewise CUDA graphs for prefill (issue 13) in one device call: builds loom and test_cuda into
# build-gpu, runs the piecewise, reference and graph GPU tests, then `loom bench latency` on the
# Qwen3-30B-A3B shape (dummy weights) with single-sequence prefills of LOOM_PREFILL_LENS tokens,
# with the graphs and with --disable-piecewise-cuda-graph, and prints a table last (prefill ms
# both ways, the ratio, and each run's start-up, graph capture included).
#   bash scripts/device_piecewise.sh
# LOOM_PIECEWISE_MAX (default: loom's own) sets --piecewise-cuda-graph-max-tokens;
# LOOM_GPU_TESTS overrides the test filter ("-" skips the tests); LOOM_VARIANTS (default
# "graphs eager") lists the runs, each "graphs" or "eager" with an optional ":NAME=VALUE" of
# environment, e.g. "eager:LOOM_MOE_GEMM=native eager:LOOM_MOE_GEMM=cutlass"; LOOM_LATENCY_BS (default 1)
# and LOOM_INPUT_LEN (default 16) are the decode batch sizes and context of each run.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
loom_device_build "$LOGS" || exit 1

tests="skipped"
filter=${LOOM_GPU_TESTS:-PiecewiseGraphs.*:*PiecewiseFamilyTest.*:*CudaReferenceTest.*:CudaGraphs.*}
if [ "$filter" != "-" ]; then
  timeout 900 ./build-gpu/tests/test_cuda --gtest_filter="$filter" >"$LOGS/gpu_tests.log" 2>&1
  tests="$(grep -E '^\[  (PASSED|FAILED) ' "$LOGS/gpu_tests.log" | tr '\n' ' ')"
  grep -E "FAILED|Failure|Expected|Which is|worst scaled error of padded|KV tokens at" "$LOGS/gpu_tests.log" | head -40
fi

LENS=${LOOM_PREFILL_LENS:-16,64,100,256,512,1024,2048}
# Variants: graphs | eager, each optionally with ":NAME=VALUE" of environment (an A/B of a switch).
read -r -a variants <<<"${LOOM_VARIANTS:-graphs eager}"
max=()
[ -n "${LOOM_PIECEWISE_MAX:-}" ] && max=(--piecewise-cuda-graph-max-tokens "$LOOM_PIECEWISE_MAX")
for v in "${variants[@]}"; do
  mode=${v%%:*} env=()
  [ "$mode" != "$v" ] && env=("${v#*:}")
  extra=("${max[@]}")
  [ "$mode" = eager ] && extra=(--disable-piecewise-cuda-graph)
  timeout 600 env "${env[@]}" ./build-gpu/loom bench latency --model-path "$MODEL" --load-format dummy \
    --batch-size "${LOOM_LATENCY_BS:-1}" --input-len "${LOOM_INPUT_LEN:-16}" --output-len 8 --mem-fraction-static 0.88 \
    --prefill-len "$LENS" "${extra[@]}" >"$LOGS/latency_${v//[:=]/_}.log" 2>&1 ||
    tail -5 "$LOGS/latency_${v//[:=]/_}.log"
done

echo
echo "GPU tests: $tests"
for v in "${variants[@]}"; do
  echo "$v: $(grep -o 'start [0-9.]* s[^,]*' "$LOGS/latency_${v//[:=]/_}.log")"
  sed -n '/^    bs /,/^$/p' "$LOGS/latency_${v//[:=]/_}.log" | grep -v '^$'
done
printf '%8s' tokens
for v in "${variants[@]}"; do printf ' %24s' "$v ms"; done
echo "   (ratio: first / second)"
IFS=',' read -r -a lens <<<"$LENS"
for n in "${lens[@]}"; do
  printf '%8s' "$n"
  vals=()
  for v in "${variants[@]}"; do
    x=$(grep -o "prefill 1x$n: [0-9.]* ms" "$LOGS/latency_${v//[:=]/_}.log" | awk '{print $3}')
    vals+=("${x:-0}")
    printf ' %24s' "${x:--}"
  done
  awk -v a="${vals[0]}" -v b="${vals[1]:-0}" 'BEGIN { if (b > 0) printf "   %.2f\n", a / b; else print "" }'
done
