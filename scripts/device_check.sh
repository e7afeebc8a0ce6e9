#!/usr/bin/env bash
# The checks CI cannot run, on the GPU machine: builds into build-gpu with the carried .debs
# (scripts/device_env.sh), runs the NCCL and CUDA tests, `loom logits/generate --device cuda` on a
# fixture (against the CPU), `loom bench latency` on Qwen3-30B-A3B (dummy weights) and, unless
# LOOM_SKIP_HF=1, the HF transformers baseline; a summary table comes last.
# Logs go to $OUT (the device tool's folder) or /tmp/loom-device.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader || true

declare -a SUMMARY  # step() (scripts/device_lib.sh) appends to it

step configure 300 cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $LOOM_CMAKE_ARGS || exit 1
step build 900 cmake --build build-gpu -j16 --target loom test_cuda test_parallel_nccl || exit 1

step nccl 120 ./build-gpu/tests/test_parallel_nccl
parallel_filter='DeviceCopy.*:*SharedGpuParity.*:*NcclParity.*:ParallelCuda.*'
TAIL_LINES=25 step cuda_tests 400 ./build-gpu/tests/test_cuda --gtest_filter="-$parallel_filter"
# Parallel layouts on CUDA ranks (issue 10): every rank on this GPU over device copies, against one GPU.
TAIL_LINES=12 step parallel 600 ./build-gpu/tests/test_cuda --gtest_filter="$parallel_filter"
step parallel_cli 180 bash scripts/device_parallel_cli.sh build-gpu

fixture=tests/data/models/tiny-qwen3-moe
step logits 120 bash -c "./build-gpu/loom logits --model-path $fixture --prompt-ids 1,2,3,4,5 --device cuda --dtype bf16 \
  | python3 -c 'import json,sys; l=json.load(sys.stdin)[\"logits\"]; print(\"cuda top-5\", sorted(range(len(l)), key=lambda i:-l[i])[:5])';
  ./build-gpu/loom logits --model-path $fixture --prompt-ids 1,2,3,4,5 \
  | python3 -c 'import json,sys; l=json.load(sys.stdin)[\"logits\"]; print(\"cpu  top-5\", sorted(range(len(l)), key=lambda i:-l[i])[:5])'"
step generate 120 bash -c "./build-gpu/loom generate --model-path $fixture --prompt-ids 1,2,3,4,5 --max-new-tokens 12 --device cuda --dtype bf16; \
  ./build-gpu/loom generate --model-path $fixture --prompt-ids 1,2,3,4,5 --max-new-tokens 12 --device cuda --disable-cuda-graph; \
  ./build-gpu/loom generate --model-path $fixture --prompt-ids 1,2,3,4,5 --max-new-tokens 12"

step serve 180 bash scripts/device_serve_check.sh build-gpu cuda
step serve_tp2 180 env LOOM_SERVE_FLAGS="--tp 2 --ep-size 2 --dist-backend device-copy" \
  bash scripts/device_serve_check.sh build-gpu cuda

[ "${LOOM_SKIP_BENCH:-0}" = 1 ] || TAIL_LINES=5 step bench 420 ./build-gpu/loom bench latency --model-path bench/models/qwen3-30b-a3b --load-format dummy \
  --batch-size ${LOOM_BENCH_BS:-1,32,128} --input-len 1024 --output-len 128 --prefill-len 2048,8192 \
  --cuda-graph-max-bs 128 --mem-fraction-static 0.88 --profile-ops
# The benchmark through the parallel runner (function, not speed: ranks share this GPU).
TAIL_LINES=6 step bench_tp2 120 ./build-gpu/loom bench latency --model-path tests/data/models/tiny-qwen3-moe \
  --batch-size 1,4 --input-len 64 --output-len 8 --prefill-len 256 --tp 2 --ep-size 2 --dist-backend device-copy
if [ "${LOOM_SKIP_HF:-0}" != 1 ]; then
  PYTHONUNBUFFERED=1 TAIL_LINES=12 step hf_baseline 400 python3 scripts/hf_baseline_qwen3_moe.py
fi

echo
echo "=== summary"
printf '%s\n' "${SUMMARY[@]}"
grep -E "^ *(bs|[0-9]+) " "$LOGS/bench.log" 2>/dev/null | head -8
grep -E "^prefill 1x|^op profile|^  [a-z]" "$LOGS/bench.log" 2>/dev/null | head -50
grep -E "^prefill|^generate|^RESULT" "$LOGS/hf_baseline.log" 2>/dev/null
grep -E "^\[  (PASSED|FAILED)|tests? ran" "$LOGS/cuda_tests.log" "$LOGS/parallel.log" 2>/dev/null | head -20
# One row per parallel configuration over the fixtures: the worst logits error of the rows within
# the bf16 bound; rows beyond it (routing flips) against one GPU and against fp32, beside one GPU's
# own count against fp32; greedy runs identical to one GPU's; fixtures that rule the layout out.
awk '/^parity /{c=$2; if (!(c in w)) {w[c]=0; o[c]=0; b[c]=0; f[c]=0; r[c]=0; g[c]=0; n[c]=0; x[c]=0; order[++k]=c}
  if ($0 ~ /ruled out/) {x[c]++; next}
  for (i=1;i<=NF;i++) {if ($i=="inlier") e=$(i+2)+0; if ($i=="outliers") {o[c]+=$(i+1); b[c]+=$(i+3)+0; r[c]+=$(i+5)}
    if ($i=="fp32") f[c]+=$(i+1); if ($i=="identical") {split($(i+1),a,"/"); g[c]+=a[1]; n[c]+=a[2]}}
  if (e>w[c]) w[c]=e}
  END {printf "%-20s %10s %8s %8s %9s %6s %9s %8s\n", "config", "inlier err", "out/1GPU", "out/fp32", "1GPU/fp32",
         "rows", "greedy id", "ruled out";
       for (i=1;i<=k;i++) {c=order[i]; printf "%-20s %10.2e %8d %8d %9d %6d %5d/%-3d %8d\n", c, w[c], o[c], f[c], b[c], r[c],
         g[c], n[c], x[c]}}' \
  "$LOGS/parallel.log" 2>/dev/null
grep -E "^comm |^parallel cli" "$LOGS/parallel.log" "$LOGS/parallel_cli.log" 2>/dev/null | sed 's/^[^:]*://'
grep -hE "^serve on|equal|^streamed" "$LOGS/serve_tp2.log" 2>/dev/null
