#!/usr/bin/env bash
# Issue 14's measurement in one device call: builds loom and test_cuda into build-gpu, runs every
# CUDA test (kernels against the CPU reference, the 7 checkpoints' bf16 parity, graphs), then
# `loom bench latency --profile-ops` twice on the Qwen3-30B-A3B shape with dummy weights: loom's own
# kernels (LOOM_ATTENTION=native LOOM_MOE_GEMM=native) and the default dispatch (FlashInfer prefill
# attention, CUTLASS grouped expert GEMMs), and prints a before/after table last.
# Carry debs/ and .third_party.tar.gz (scripts/device_env.sh unpacks both).
#   bash scripts/device_kernel_bench.sh          # LOOM_SKIP_TESTS=1 skips test_cuda
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
MODEL=bench/models/qwen3-30b-a3b
t0=$SECONDS
loom_device_build "$LOGS" || exit 1
grep -E "FlashInfer|CUTLASS" "$LOGS/configure.log"
echo "build: $((SECONDS - t0)) s"
if [ "${LOOM_SKIP_TESTS:-0}" != 1 ]; then
  ./build-gpu/tests/test_cuda --gtest_filter="${LOOM_GPU_TESTS:-*}" >"$LOGS/test_cuda.log" 2>&1
  grep -E "^\[  FAILED  \]|Failure$" "$LOGS/test_cuda.log" | head -20
  tests="$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$LOGS/test_cuda.log" | tr '\n' ' ')"
fi
bench() {
  ./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size 1,64 --input-len 1024 \
    --output-len 32 --prefill-len 2048,8192 --mem-fraction-static 0.88 --profile-ops >"$LOGS/latency_$1.log" 2>&1 ||
    tail -5 "$LOGS/latency_$1.log"
}
LOOM_ATTENTION=native LOOM_MOE_GEMM=native bench native
bench default
summary() {  # prefill times, decode steps, and the prefill profile's attention / expert-GEMM lines
  python3 - "$LOGS/latency_$1.log" "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
pre = dict(re.findall(r"prefill 1x(\d+): ([\d.]+) ms", text))
dec = dict(re.findall(r"^\s+(\d+)\s+[\d.]+\s+([\d.]+)", text, re.M))
prof = text.split("op profile, prefill of")[1].split("op profile,")[0] if "op profile, prefill of" in text else ""
ms = lambda pat: sum(float(m) for m in re.findall(r"^\s+(?:%s)[^\n]*?\s([\d.]+) ms" % pat, prof, re.M))
att, moe = ms(r"attention(?! plan)"), ms(r"moe (?:gate_up|down)[^\n]*?GEMM|moe experts")
# FLOPs of the profiled 8,192-token prefill (Qwen3-30B-A3B: 48 layers, 32 q heads x 128, top-8 of
# 128 experts, hidden 2048, expert intermediate 768): causal attention 4*hq*d*T^2/2, experts 2*MACs.
T, L = 8192, 48
att_flop = 4 * 32 * 128 * T * T / 2 * L
moe_flop = 2 * T * 8 * (2048 * 1536 + 768 * 2048) * L
print("%-8s %10s %10s %9s %9s %9s %11s %9s %11s" % (sys.argv[2], pre.get("2048", "-"), pre.get("8192", "-"),
      dec.get("1", "-"), dec.get("64", "-"), "%.1f" % att, "%.0f" % (att_flop / att / 1e9) if att else "-",
      "%.1f" % moe, "%.0f" % (moe_flop / moe / 1e9) if moe else "-"))
PY
}
echo
echo "test_cuda: ${tests:-skipped}"
printf "%-8s %10s %10s %9s %9s %9s %11s %9s %11s\n" kernels "pre 2K ms" "pre 8K ms" "bs1 ms" "bs64 ms" \
  "attn ms" "attn TF/s" "moe ms" "moe TF/s"
summary native
summary default
