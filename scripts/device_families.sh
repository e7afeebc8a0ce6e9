#!/usr/bin/env bash
# Issue 16's GPU checks in one device call: builds loom, test_cuda and test_server into build-gpu,
# runs the CUDA kernel tests (sliding windows, sinks, biases, gpt-oss's experts among them) and the
# bf16 parity of every GPU fixture (Qwen3, Mixtral, gpt-oss, DeepSeek-V2), the parallel layouts on
# ranks sharing this GPU for the Mixtral, gpt-oss and DeepSeek-V2 fixtures, `loom serve` on each family's fixture on the GPU,
# and `loom bench latency` on Qwen3-30B-A3B (the attention kernel changed: decode must not regress).
# Carry debs/ and .third_party.tar.gz. LOOM_PARALLEL_FILTER overrides the parallel tests' filter.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
t0=$SECONDS
loom_device_build "$LOGS" || exit 1
cmake --build build-gpu -j16 --target test_server >>"$LOGS/build.log" 2>&1 || { tail -30 "$LOGS/build.log"; exit 1; }
echo "build: $((SECONDS - t0)) s"
count() { grep -E '^\[  (PASSED|FAILED) |tests? ran' "$1" | tr '\n' ' '; }
left() { echo $((${LOOM_DEVICE_BUDGET_S:-580} - SECONDS)); }  # each step gets what the call has left

parallel='DeviceCopy.*:*SharedGpuParity.*:*NcclParity.*:ParallelCuda.*'
t=$SECONDS
timeout "$(left)" ./build-gpu/tests/test_cuda --gtest_filter="-$parallel" >"$LOGS/test_cuda.log" 2>&1
grep -E "^\[  FAILED  \]|Failure$" "$LOGS/test_cuda.log" | head -20
unit="$(count "$LOGS/test_cuda.log") ($((SECONDS - t)) s)"
LOOM_TEST_DEVICE=cuda timeout 200 ./build-gpu/tests/test_server --gtest_filter='*FamilyServing*' >"$LOGS/serve.log" 2>&1
grep -E "^\[  FAILED  \]|Failure$" -A5 "$LOGS/serve.log" | head -20
serve="$(count "$LOGS/serve.log")"
for m in tiny-gpt-oss tiny-mixtral tiny-deepseek-v2; do
  for flags in "--device cuda --dtype bf16" "--device cuda --dtype bf16 --disable-cuda-graph" ""; do
    echo "$m ${flags:-cpu}: $(./build-gpu/loom generate --model-path tests/data/models/$m --prompt-ids 1,2,3,4,5 \
      --max-new-tokens 12 $flags 2>&1 | tail -1)"
  done
done | tee "$LOGS/generate.log"
t=$SECONDS
timeout "$(($(left) - 100))" ./build-gpu/tests/test_cuda --gtest_filter="${LOOM_PARALLEL_FILTER:-*SharedGpuParity*mixtral*:*SharedGpuParity*gpt_oss*:*SharedGpuParity*deepseek*}" \
  >"$LOGS/parallel.log" 2>&1
grep -E "^\[  FAILED  \]|Failure$" "$LOGS/parallel.log" | head -20
par="$(count "$LOGS/parallel.log") ($((SECONDS - t)) s)"
timeout "$(left)" ./build-gpu/loom bench latency --model-path bench/models/qwen3-30b-a3b --load-format dummy \
  --batch-size 1,128 --input-len 1024 --output-len 32 --prefill-len 8192 --cuda-graph-max-bs 128 \
  --mem-fraction-static 0.88 >"$LOGS/bench.log" 2>&1 || tail -5 "$LOGS/bench.log"

echo
echo "test_cuda (kernels, parity, graphs): $unit"
echo "test_cuda (parallel, shared GPU):    $par"
echo "serve on the GPU (FamilyServing):    $serve"
grep -h "worst scaled logits error" "$LOGS/test_cuda.log" | sed 's/^/parity: /'
grep -E "prefill 1x|^\s+(1|128)\s" "$LOGS/bench.log"
