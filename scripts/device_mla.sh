#!/usr/bin/env bash
# Issue 16's DeepSeek-V2 at its released latent (512 + 64) on the GPU, in one device call:
# makes the variants/deepseek-v2-latent512 checkpoint and its HF reference when it is missing
# (torch + transformers are on the GPU machine; the files come back under $OUT/variant), builds,
# runs FlashInfer's MLA kernel tests, the bf16 parity and graph-vs-eager tests on that checkpoint
# (and the other DeepSeek fixture), its parallel layouts on ranks sharing this GPU, `loom generate`
# on it, then `loom bench latency` on the DeepSeek-V2-Lite shape (bench/models/deepseek-v2-lite,
# dummy weights) and prints a table last. Carry debs/ and .third_party.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
left() { echo $((${LOOM_DEVICE_BUDGET_S:-580} - SECONDS)); }
count() { grep -E '^\[  (PASSED|FAILED) |tests? ran' "$1" | tr '\n' ' '; }
variant=tests/data/models/variants/deepseek-v2-latent512
if [ ! -f "$variant/reference.json" ]; then
  python3 scripts/make_shape_variants.py tests/data/models/variants deepseek-v2-latent512 >"$LOGS/variant.log" 2>&1 ||
    { tail -20 "$LOGS/variant.log"; exit 1; }
  tar czf "$LOGS/variant.tar.gz" -C tests/data/models/variants deepseek-v2-latent512  # one file back
fi
t0=$SECONDS
loom_device_build "$LOGS" || exit 1
echo "build: $((SECONDS - t0)) s"

t=$SECONDS
timeout "$(left)" ./build-gpu/tests/test_cuda \
  --gtest_filter="${LOOM_GPU_TESTS:-FlashInferMla.*:FlashInferPrefill.*:*CudaReferenceTest*deepseek*:CudaGraphs.*}" \
  >"$LOGS/test_cuda.log" 2>&1
grep -E "^\[  FAILED  \]|Failure$" -A6 "$LOGS/test_cuda.log" | head -40
unit="$(count "$LOGS/test_cuda.log") ($((SECONDS - t)) s)"
for flags in "--device cuda --dtype bf16" "--device cuda --dtype bf16 --disable-cuda-graph" ""; do
  echo "latent512 ${flags:-cpu}: $(./build-gpu/loom generate --model-path $variant --prompt-ids 1,2,3,4,5 \
    --max-new-tokens 12 $flags 2>&1 | tail -1)"
done | tee "$LOGS/generate.log"
t=$SECONDS
timeout "$(($(left) - 150))" ./build-gpu/tests/test_cuda \
  --gtest_filter="${LOOM_PARALLEL_FILTER:-*SharedGpuParity*deepseek_v2_latent512*}" >"$LOGS/parallel.log" 2>&1
grep -E "^\[  FAILED  \]|Failure$" -A6 "$LOGS/parallel.log" | head -30
par="$(count "$LOGS/parallel.log") ($((SECONDS - t)) s)"
timeout "$(left)" ./build-gpu/loom bench latency --model-path bench/models/deepseek-v2-lite --load-format dummy \
  --batch-size ${LOOM_MLA_BS:-1,8,32,128} --input-len 1024 --output-len 32 --prefill-len 8192 \
  --cuda-graph-max-bs 128 --mem-fraction-static 0.85 >"$LOGS/bench.log" 2>&1 || tail -8 "$LOGS/bench.log"

echo
echo "test_cuda (MLA kernel, parity, graphs): $unit"
echo "test_cuda (parallel, shared GPU):       $par"
grep -h "^parity" "$LOGS/parallel.log" | head -40
grep -h "worst scaled logits error" "$LOGS/test_cuda.log" | sed 's/^/parity: /'
cat "$LOGS/bench.log" | tail -14
