#!/usr/bin/env bash
# Where a decode step's time goes (issue 14), in one device call: builds loom, test_cuda, the
# decode-kernel benchmark and the CUPTI tracer into build-gpu, runs the CUDA tests named by
# LOOM_GPU_TESTS (default: the decode kernels and the checkpoints' parity), then on the
# Qwen3-30B-A3B shape with dummy weights:
#   - `loom bench latency` decode steps as CUDA graphs at bs 1/8/32/128 (the figure that counts),
#     again with each NAME=VALUE of LOOM_AB_ENV set (A/B switches, space-separated, one run each:
#     e.g. LOOM_AB_ENV="LOOM_PDL=0 LOOM_DECODE_ATTENTION=general"; a run with several set joins them
#     with commas: "A=1,B=2"; LOOM_LATENCY_BS=1:128 among them sets that run's batch sizes);
#   - bench_decode_kernels: each decode kernel in a graph of 48 launches on cold weights
#     (LOOM_KERNELS_FILTER: a --benchmark_filter regex; LOOM_KERNELS_AB_ENV="NAME=VALUE,... ...": once
#     more with each space-separated set, e.g. LOOM_MOE_DOWN_ROWS=2 for BM_MoeDecode);
#   - a CUPTI trace (bench/kernel_trace.cc) of `bench latency` at each batch size of LOOM_TRACE_BS
#     (default "1 128"), one graph replay summed by kernel (bench/trace_summary.py), with
#     programmatic dependent launch off (LOOM_TRACE_PDL=1 keeps it: kernels then overlap, each one's
#     time includes its wait on the one before, and tracing took minutes instead of seconds): the kernels'
#     times inside the graph. (Until December 2026 this script timed each kernel alone with Nsight
#     Compute, which overstated the decode GEMVs twofold: bench/NOTES.md.)
# LOOM_TEST_ENV="NAME=VALUE ..." runs the tests with those set (an A/B switch's path through the
# parity and graph tests, e.g. LOOM_TEST_ENV=LOOM_PDL=0); LOOM_GPU_TESTS2 with LOOM_TEST_ENV2 runs a
# second set with other switches.
# Prints the tables last. Carry debs/ and .third_party.tar.gz (scripts/device_env.sh unpacks both).
#   bash scripts/device_decode_profile.sh       # LOOM_SKIP_TESTS=1, LOOM_SKIP_TRACE=1, LOOM_SKIP_KERNELS=1
#                                                # skip those parts; LOOM_LATENCY_BS="1,8,..." the batch sizes
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # sets LOGS and MODEL
t0=$SECONDS
loom_device_build "$LOGS" loom test_cuda loom_kernel_trace || exit 1
# The kernel benchmark is optional: its Google Benchmark must match the headers the compiler finds.
[ "${LOOM_SKIP_KERNELS:-0}" = 1 ] ||
  { mkdir -p "$LOGS/bench_build" && loom_device_build "$LOGS/bench_build" bench_decode_kernels || echo "bench_decode_kernels not built"; }
echo "build: $((SECONDS - t0)) s"
run_tests() {  # run_tests LOG "ENV=VALUE ..." FILTER LIMIT_S: test_cuda under a time limit
  # (a test that runs away must not take the call's whole time)
  timeout "$4" env $2 ./build-gpu/tests/test_cuda --gtest_filter="$3" >"$1" 2>&1
  grep -E "^\[  FAILED  \]|Failure$" "$1" | head -20
  grep -q "^\[==========\] .* ran\." "$1" ||
    echo "test_cuda did not finish (time limit $4 s?); last started: $(grep '^\[ RUN' "$1" | tail -1)"
  tests="${tests:-}$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$1" | tr '\n' ' ')"
  echo "tests: $((SECONDS - t0)) s; slowest:"
  grep -E '^\[       OK \] .* \([0-9]+ ms\)$' "$1" | sed -E 's/.*\] (.*) \(([0-9]+) ms\)$/\2 ms \1/' | sort -rn | head -5
}
if [ "${LOOM_SKIP_TESTS:-0}" != 1 ]; then
  run_tests "$LOGS/test_cuda.log" "${LOOM_TEST_ENV:-}" \
    "${LOOM_GPU_TESTS:-*Gemv*:*Decode*:*Moe*:*Route*:*Norm*:*Rope*:*Attention*:*Parity*:*Graph*}" "${LOOM_TEST_TIMEOUT:-300}"
  # A second pass with other switches (LOOM_TEST_ENV2, LOOM_GPU_TESTS2, LOOM_TEST_TIMEOUT2, default 120 s).
  [ -n "${LOOM_GPU_TESTS2:-}" ] && tests="$tests| with ${LOOM_TEST_ENV2:-}: " &&
    run_tests "$LOGS/test_cuda2.log" "${LOOM_TEST_ENV2:-}" "$LOOM_GPU_TESTS2" "${LOOM_TEST_TIMEOUT2:-120}"
fi
latency() {  # latency LOG [ENV=VALUE]: bench latency at bs 1/8/32/128 (or LOOM_LATENCY_BS; an A/B run's
  # own LOOM_LATENCY_BS=1:128 overrides it, colons for commas)
  local bs="${LOOM_LATENCY_BS:-1,8,32,128}" kv
  for kv in ${2:+${2//,/ }}; do [[ $kv == LOOM_LATENCY_BS=* ]] && bs="${kv#*=}" && bs="${bs//:/,}"; done
  env ${2:+${2//,/ }} ./build-gpu/loom bench latency --model-path $MODEL --load-format dummy \
    --batch-size "$bs" --input-len 1024 --output-len 32 --cuda-graph-max-bs 128 --mem-fraction-static 0.88 \
    >"$1" 2>&1 || tail -5 "$1"
}
latency "$LOGS/latency.log"
ab_runs=(${LOOM_AB_ENV:-})
for i in "${!ab_runs[@]}"; do latency "$LOGS/latency_ab$i.log" "${ab_runs[$i]}"; done
echo "latency: $((SECONDS - t0)) s"
kernels() {  # kernels LOG [ENV=VALUE,...]
  env ${2:+${2//,/ }} ./build-gpu/bench/bench_decode_kernels --benchmark_filter="${LOOM_KERNELS_FILTER:-.}" >"$1" 2>&1 ||
    tail -5 "$1"
}
if [ -x build-gpu/bench/bench_decode_kernels ]; then
  kernels "$LOGS/decode_kernels.txt"
  kernel_ab=(${LOOM_KERNELS_AB_ENV:-})
  for i in "${!kernel_ab[@]}"; do kernels "$LOGS/decode_kernels_ab$i.txt" "${kernel_ab[$i]}"; done
fi
if [ "${LOOM_SKIP_TRACE:-0}" != 1 ]; then
  for bs in ${LOOM_TRACE_BS:-1 128}; do
    LOOM_PDL=${LOOM_TRACE_PDL:-0} CUDA_INJECTION64_PATH=$PWD/build-gpu/bench/libloom_kernel_trace.so LOOM_TRACE_OUT=/tmp/trace_$bs.csv \
      ./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size "$bs" --input-len 1024 \
      --output-len 8 --cuda-graph-max-bs 128 --mem-fraction-static 0.88 >"$LOGS/trace_run_$bs.log" 2>&1 ||
      tail -5 "$LOGS/trace_run_$bs.log"
    python3 bench/trace_summary.py /tmp/trace_$bs.csv >"$LOGS/trace_$bs.txt" 2>&1
  done
  echo "trace: $((SECONDS - t0)) s"
fi
echo
echo "test_cuda: ${tests:-skipped}"
sed -n '/^loom bench latency:/,$p' "$LOGS/latency.log"
for i in "${!ab_runs[@]}"; do
  echo "with ${ab_runs[$i]}:" && sed -n '/^loom bench latency:/,$p' "$LOGS/latency_ab$i.log"
done
echo
[ -s "$LOGS/decode_kernels.txt" ] && grep -E "^BM_|^Benchmark" "$LOGS/decode_kernels.txt"
kernel_ab=(${LOOM_KERNELS_AB_ENV:-})
for i in "${!kernel_ab[@]}"; do
  [ -s "$LOGS/decode_kernels_ab$i.txt" ] && echo "with ${kernel_ab[$i]}:" && grep -E "^BM_" "$LOGS/decode_kernels_ab$i.txt"
done
for bs in ${LOOM_TRACE_BS:-1 128}; do
  [ -s "$LOGS/trace_$bs.txt" ] && echo && echo "bs $bs, inside one graph replay:" && head -24 "$LOGS/trace_$bs.txt"
done
exit 0  # the parts skipped above are not failures (a failing build exits 1 at its step)
