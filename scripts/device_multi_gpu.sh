#!/usr/bin/env bash
# The multi-GPU runs (issues 11 and 12) in one device call on a machine of 2, 4 or 8 GPUs (kinds
# nvidia-h200-x2/-x4/-x8), one rank per GPU over NCCL; prints a table last. By the GPU count:
#   every count: test_parallel_nccl (every collective at the machine's world size) and test_cuda's
#     NcclParity cases that fit (tp <= GPUs: tiny-qwen3-moe against one GPU, graphs on and off);
#   2 GPUs (issue 11): `loom bench latency` on the Qwen3-30B-A3B shape (dummy weights) at tp 2 and
#     tp 2 ep 2 (decode step at bs 1/32/128, the first with --profile-ops for the all-reduce's share),
#     `loom bench serving` against `loom serve` for both with a gsm8k-shaped load (1,319 requests,
#     short prompts, up to 512 output tokens), and a 32K-token prefill at tp 2 with attn-cp 1 and 2;
#   4+ GPUs (issue 12): the seeds' configuration (tp 4, moe-dp 2, ep 2, attn-cp 2, prefill CP, decode
#     graphs up to 32) served a burst of 256 requests, the 32K and the longest prefill the config
#     allows (40,960 for Qwen3-30B-A3B: no rope scaling) at tp 4 with attn-cp 1/2/4, and serving
#     (random 1024 in / 256 out, concurrency 64) at tp 4 and tp 4 ep 4.
# Carry debs/ and .third_party.tar.gz (scripts/device_env.sh). Each step has a time limit.
#   bash scripts/device_multi_gpu.sh
# LOOM_MULTI_DRYRUN=cpu checks the script itself on a CPU machine: CPU ranks over Gloo, the tiny
# fixture instead of the benchmark model, no CUDA steps (bench latency, the NCCL tests) and 2 ranks.
set -uo pipefail
cd "$(dirname "$0")/.."
dry=${LOOM_MULTI_DRYRUN:-}
source scripts/device_lib.sh  # step, serve_until_ready
if [ -n "$dry" ]; then
  LOGS=${OUT:-/tmp/loom-multi-dry}
  mkdir -p "$LOGS"
  BUILD=${LOOM_BUILD:-build}
  MODEL=tests/data/models/tiny-qwen3-moe
  DEVICE=cpu
  GPUS=2
else
  source scripts/device_env.sh  # sets LOGS and MODEL
  BUILD=build-gpu
  DEVICE=cuda
  GPUS=$(nvidia-smi -L | wc -l)
  nvidia-smi topo -m >"$LOGS/topology.txt" 2>&1
  loom_device_build "$LOGS" loom test_cuda test_parallel_nccl || exit 1
fi
TP=$((GPUS >= 4 ? 4 : 2))
declare -a SUMMARY TABLE  # step() rows; other rows
TAIL_LINES=0

# ---- collectives and parity ----
if [ -z "$dry" ]; then
  step nccl_world$GPUS 300 ./$BUILD/tests/test_parallel_nccl
  step nccl_parity 1200 ./$BUILD/tests/test_cuda --gtest_filter='Matrix/NcclParity.*'
else
  # The CLI's parity on CPU ranks: greedy tokens of each layout equal one rank's.
  one=$(./$BUILD/loom generate --model-path $MODEL --prompt-ids 1,2,3,4,5,6,7,8 --max-new-tokens 8)
  for flags in "--tp 2" "--tp 2 --ep-size 2"; do
    got=$(./$BUILD/loom generate --model-path $MODEL --prompt-ids 1,2,3,4,5,6,7,8 --max-new-tokens 8 $flags)
    [ "$got" = "$one" ] && TABLE+=("cpu parity $flags: greedy equal") || TABLE+=("cpu parity $flags: MISMATCH")
  done
fi

# ---- bench latency: decode steps and long prefills ----
latency() {  # latency NAME LIMIT FLAGS...: bs 1/32/128 at context 1024 (plus --prefill-len etc. in FLAGS)
  local name=$1 limit=$2
  shift 2
  [ -n "$dry" ] && return 0  # CUDA only
  step "$name" "$limit" ./$BUILD/loom bench latency --model-path $MODEL --load-format dummy --input-len 1024 \
    --output-len 32 --mem-fraction-static 0.85 "$@"
}
if [ "$TP" = 2 ]; then
  latency latency_tp2 500 --batch-size 1,32,128 --cuda-graph-max-bs 128 --tp 2 --profile-ops
  latency latency_tp2_ep2 500 --batch-size 1,32,128 --cuda-graph-max-bs 128 --tp 2 --ep-size 2
  latency prefill32k_tp2 500 --batch-size 1 --prefill-len 32768 --tp 2
  latency prefill32k_tp2_cp2 500 --batch-size 1 --prefill-len 32768 --tp 2 --attn-cp-size 2 \
    --enable-prefill-context-parallel
else
  for cp in 1 2 4; do
    latency prefill_tp4_cp$cp 600 --batch-size 1 --prefill-len 32768,40960 --tp 4 --attn-cp-size $cp \
      $([ $cp -gt 1 ] && echo --enable-prefill-context-parallel)
  done
fi

# ---- serving ----
PORT=30779
serve_pid=
serve() {  # serve FLAGS...: starts loom serve on $PORT; returns once it answered a request
  serve_until_ready "$LOGS/serve_current.log" $PORT ./$BUILD/loom serve --device $DEVICE --model-path $MODEL \
    $([ -z "$dry" ] && echo --load-format dummy) --tokenizer tests/data/tokenizers/qwen3 "$@"
}
stop_serving() { [ -n "$serve_pid" ] && { kill -TERM $serve_pid; wait $serve_pid; serve_pid=; }; }
trap 'kill -9 $serve_pid 2>/dev/null' EXIT
declare -a SERVING
# load NAME SERVE_FLAGS -- BENCH_FLAGS: one server, one load, a row with its figures.
load() {
  local name=$1 serve_flags=() bench_flags=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do serve_flags+=("$1"); shift; done
  shift
  bench_flags=("$@")
  local t0=$SECONDS
  if ! serve "${serve_flags[@]}"; then
    SERVING+=("$(printf '%-22s server did not start (serve_%s.log)' "$name" "$name")")
    cp "$LOGS/serve_current.log" "$LOGS/serve_$name.log"
    return
  fi
  local up=$((SECONDS - t0))
  step "serving_$name" 1500 ./$BUILD/loom bench serving --base-url http://127.0.0.1:$PORT \
    --output-file "$LOGS/serving_$name.json" "${bench_flags[@]}"
  stop_serving
  cp "$LOGS/serve_current.log" "$LOGS/serve_$name.log"
  SERVING+=("$(python3 -c "
import json
try:
    j = json.load(open('$LOGS/serving_$name.json'))
    print('%-22s %5d %6d %9.0f %9.0f %9.0f %8.1f %8.1f %6d s' % ('$name', j['completed'], j['failed'],
          j['output_throughput'], j['ttft_ms']['p50'], j['ttft_ms']['p99'], j['itl_ms']['p50'], j['tpot_ms']['p50'], $up))
except Exception as e:
    print('%-22s no result (%s)' % ('$name', e))")")
}
gsm8k=(--num-prompts 1319 --max-concurrency 1319 --random-input-len 256 --random-output-len 512 --random-range-ratio 0.5
       --random-vocab-size 150000 --seed 1)
random64=(--num-prompts 256 --max-concurrency 64 --random-input-len 1024 --random-output-len 256 --random-range-ratio 1
          --random-vocab-size 150000)
if [ -n "$dry" ]; then
  small=(--num-prompts 16 --max-concurrency 8 --random-input-len 32 --random-output-len 8 --random-vocab-size 100)
  load cpu_tp2 --tp 2 -- "${small[@]}"
  load cpu_tp2_ep2 --tp 2 --ep-size 2 -- "${small[@]}"
elif [ "$TP" = 2 ]; then
  load gsm8k_tp2 --tp 2 -- "${gsm8k[@]}"
  load gsm8k_tp2_ep2 --tp 2 --ep-size 2 -- "${gsm8k[@]}"
else
  load seeds_config_burst256 --tp 4 --moe-dp-size 2 --ep-size 2 --attn-cp-size 2 --enable-prefill-context-parallel \
    --cuda-graph-max-bs 32 --max-running-requests 32 -- --num-prompts 256 --max-concurrency 256 \
    --random-input-len 1024 --random-output-len 256 --random-range-ratio 0.5 --random-vocab-size 150000
  load random64_tp4 --tp 4 -- "${random64[@]}"
  load random64_tp4_ep4 --tp 4 --ep-size 4 -- "${random64[@]}"
fi

# ---- the table ----
echo
echo "$GPUS GPU(s)${dry:+ (dry run on $dry)}; logs in $LOGS"
printf '%s\n' "${TABLE[@]}" "${SUMMARY[@]}"
[ -s "$LOGS/nccl_parity.log" ] && grep -E "^parity " "$LOGS/nccl_parity.log" &&
  grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$LOGS/nccl_parity.log"
for f in "$LOGS"/latency_*.log "$LOGS"/prefill*.log; do
  [ -s "$f" ] || continue
  echo "-- $(basename "$f" .log)"
  grep -E "^model|^ +(bs|[0-9]+) |^prefill 1x|all_reduce|all-reduce" "$f" | head -20
done
printf '%-22s %5s %6s %9s %9s %9s %8s %8s %8s\n' load done failed "out tok/s" "TTFT p50" "TTFT p99" "ITL p50" \
  "TPOT p50" "start"
printf '%s\n' "${SERVING[@]}"
