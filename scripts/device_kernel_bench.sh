#!/usr/bin/env bash
# Issue 14's measurement in one device call: builds loom and test_cuda into build-gpu, runs every
# CUDA test (kernels against the CPU reference, the 7 checkpoints' bf16 parity, graphs), then
# `loom bench latency --profile-ops` twice on the Qwen3-30B-A3B shape with dummy weights: loom's own
# kernels (LOOM_ATTENTION=native LOOM_MOE_GEMM=native) and the default dispatch (FlashInfer prefill
# attention, CUTLASS grouped expert GEMMs), then the bs-128 decode step, and prints a before/after
# table last with issue 14's done-means checked (they are the H200's figures).
# Carry debs/ and .third_party.tar.gz (scripts/device_env.sh unpacks both).
#   bash scripts/device_kernel_bench.sh          # LOOM_SKIP_TESTS=1 skips test_cuda, LOOM_GPU_TESTS filters it,
#                                                # LOOM_SKIP_NATIVE=1 the run on loom's own kernels,
#                                                # LOOM_HF=1 adds HF transformers' two prefills (the
#                                                # issue's baseline, measured on this call's GPU)
# A before/after on one machine: `git archive --format=tar.gz -o .baseline.tar.gz REF
# ':(exclude)tests/data'` here (the test data is this tree's, linked), carried too; the script builds that tree's loom beside this one's and adds its default dispatch as a row,
# with the prefill op profiles side by side. LOOM_BENCH_VARIANTS="name:ENV=V,ENV2=V2 ..." adds rows
# (and profile columns) of this tree under other settings.
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
  timeout "${LOOM_TEST_TIMEOUT:-300}" ./build-gpu/tests/test_cuda --gtest_filter="${LOOM_GPU_TESTS:-*}" \
    >"$LOGS/test_cuda.log" 2>&1
  grep -q "^\[==========\] .* ran\." "$LOGS/test_cuda.log" ||
    echo "test_cuda did not finish (time limit ${LOOM_TEST_TIMEOUT:-300} s?); last started: $(grep '^\[ RUN' "$LOGS/test_cuda.log" | tail -1)"
  grep -E "^\[  FAILED  \]|Failure$" "$LOGS/test_cuda.log" | head -20
  tests="$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$LOGS/test_cuda.log" | tr '\n' ' ')"
fi
if [ -f .baseline.tar.gz ]; then  # the baseline tree, rebuilt only when the archive changes
  base=/tmp/loom-base
  sum=$(sha256sum .baseline.tar.gz | cut -c1-16)
  if [ "$(cat $base/.archive 2>/dev/null)" != "$sum" ]; then
    rm -rf $base && mkdir -p $base && tar xzf .baseline.tar.gz -C $base && ln -s "$PWD/third_party" $base/third_party &&
      ln -s "$PWD/tests/data" $base/tests/data
    echo "$sum" >$base/.archive
  fi
  t1=$SECONDS
  (cd $base && cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $LOOM_CMAKE_ARGS &&
    cmake --build build-gpu -j16 --target loom) >"$LOGS/build_baseline.log" 2>&1 || tail -20 "$LOGS/build_baseline.log"
  echo "baseline build: $((SECONDS - t1)) s"
fi
bench() {  # bench NAME [ENV=VALUE ...]: prefill 2K / 8K with --profile-ops and the bs-1 decode step
  local name=$1
  shift
  env "$@" ${LOOM_BIN:-./build-gpu/loom} bench latency --model-path $MODEL --load-format dummy --batch-size 1 --input-len 1024 \
    --output-len 32 --prefill-len 2048,8192 --mem-fraction-static 0.88 --profile-ops >"$LOGS/latency_$name.log" 2>&1 ||
    tail -5 "$LOGS/latency_$name.log"
}
[ "${LOOM_SKIP_NATIVE:-0}" = 1 ] || bench native LOOM_ATTENTION=native LOOM_MOE_GEMM=native
[ -x /tmp/loom-base/build-gpu/loom ] && [ -f .baseline.tar.gz ] && LOOM_BIN=/tmp/loom-base/build-gpu/loom bench baseline
bench default
for variant in ${LOOM_BENCH_VARIANTS:-}; do
  IFS=, read -ra envs <<<"${variant#*:}"
  bench "${variant%%:*}" "${envs[@]}"
done
# The bs-128 decode step on its own run: on an 80 GB card its KV pool does not fit, and that error
# must not take the other figures with it.
# 0.93: an H100's 80 GB holds the weights and this KV pool only above 0.88.
./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size 128 --input-len 1024 \
  --output-len 32 --mem-fraction-static 0.93 >"$LOGS/latency_bs128.log" 2>&1 || tail -2 "$LOGS/latency_bs128.log"
if [ "${LOOM_HF:-0}" = 1 ]; then  # HF transformers on the same GPU: the baseline of the 2x target
  HF_PREFILL_ONLY=1 PYTHONUNBUFFERED=1 timeout 300 python3 scripts/hf_baseline_qwen3_moe.py >"$LOGS/hf.log" 2>&1 ||
    tail -3 "$LOGS/hf.log"
fi
summary() {  # prefill times, decode steps, and the prefill profile's attention / expert-GEMM lines
  python3 - "$LOGS/latency_$1.log" "$1" "$LOGS/latency_bs128.log" "$LOGS/hf.log" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
hf = dict(re.findall(r"prefill 1x(\d+): ([\d.]+) ms", open(sys.argv[4]).read())) if os.path.exists(sys.argv[4]) else {}
pre = dict(re.findall(r"prefill 1x(\d+): ([\d.]+) ms", text))
row = re.compile(r"^\s+(\d+)\s+[\d.]+\s+([\d.]+)\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+)%", re.M)
dec = {bs: (ms, pct) for bs, ms, pct in row.findall(text)}
if sys.argv[2] == "default" and os.path.exists(sys.argv[3]):
    dec.update({bs: (ms, pct) for bs, ms, pct in row.findall(open(sys.argv[3]).read())})
prof = text.split("op profile, prefill of")[1].split("op profile,")[0] if "op profile, prefill of" in text else ""
ms = lambda pat: sum(float(m) for m in re.findall(r"^\s+(?:%s)[^\n]*?\s([\d.]+) ms" % pat, prof, re.M))
att, moe = ms(r"attention(?! plan)"), ms(r"moe (?:gate_up|down)[^\n]*?GEMM|moe experts")
# FLOPs of the profiled 8,192-token prefill (Qwen3-30B-A3B: 48 layers, 32 q heads x 128, top-8 of
# 128 experts, hidden 2048, expert intermediate 768): causal attention 4*hq*d*T^2/2, experts 2*MACs.
T, L = 8192, 48
att_flop = 4 * 32 * 128 * T * T / 2 * L
moe_flop = 2 * T * 8 * (2048 * 1536 + 768 * 2048) * L
att_tf = att_flop / att / 1e9 if att else None
moe_tf = moe_flop / moe / 1e9 if moe else None
step = lambda bs: "%s (%s%%)" % dec[bs] if bs in dec else "-"
print("%-8s %10s %10s %16s %18s %9s %9s %9s %9s" % (sys.argv[2], pre.get("2048", "-"), pre.get("8192", "-"),
      step("1"), step("128"), "%.1f" % att, "%.0f" % att_tf if att_tf else "-", "%.1f" % moe,
      "%.0f" % moe_tf if moe_tf else "-"))
if sys.argv[2] == "default":  # issue 14's done-means (H200 figures)
    def check(name, ok):
        print("  %-48s %s" % (name, "-" if ok is None else "met" if ok else "NOT met"))
    f = lambda k: float(pre[k]) if k in pre else None
    check("prefill 8,192 <= 154 ms", None if f("8192") is None else f("8192") <= 154)
    if "8192" in hf:  # the target's own terms: twice as fast as HF on the same GPU
        print("  (HF transformers here: 2K %s ms, 8K %s ms)" % (hf.get("2048", "-"), hf["8192"]))
        check("prefill 8,192 <= half of HF's on this GPU", None if f("8192") is None else f("8192") <= float(hf["8192"]) / 2)
    check("prefill 2,048 <= 45 ms", None if f("2048") is None else f("2048") <= 45)
    check("attention >= 450 TFLOP/s", None if att_tf is None else att_tf >= 450)
    check("expert GEMMs >= 400 TFLOP/s", None if moe_tf is None else moe_tf >= 400)
    # The roofline share holds on any card; 2.8 ms is that share on the issue's H200 (1.55 ms floor).
    check("decode bs 1 >= 55 % of this GPU's roofline", None if "1" not in dec else float(dec["1"][1]) >= 55)
    check("decode bs 1 <= 2.8 ms (the H200's figure)", None if "1" not in dec else float(dec["1"][0]) <= 2.8)
    check("decode bs 128 >= 70 % of the roofline", None if "128" not in dec else float(dec["128"][1]) >= 70)
PY
}
echo
echo "test_cuda: ${tests:-skipped}"
nvidia-smi --query-gpu=name --format=csv,noheader | head -1
printf "%-8s %10s %10s %16s %18s %9s %9s %9s %9s\n" kernels "pre 2K ms" "pre 8K ms" "bs1 ms (roof)" "bs128 ms (roof)" \
  "attn ms" "attn TF/s" "moe ms" "moe TF/s"
[ -f "$LOGS/latency_native.log" ] && summary native
[ -f "$LOGS/latency_baseline.log" ] && summary baseline
summary default
for variant in ${LOOM_BENCH_VARIANTS:-}; do summary "${variant%%:*}"; done
names=()
[ -f "$LOGS/latency_baseline.log" ] && names+=(baseline)
names+=(default)
for variant in ${LOOM_BENCH_VARIANTS:-}; do names+=("${variant%%:*}"); done
if [ ${#names[@]} -gt 1 ]; then  # the 8K prefill's ops side by side
  python3 - "$LOGS" "${names[@]}" <<'PY'
import re, sys
def ops(path):
    text = open(path).read()
    prof = text.split("op profile, prefill of")[1].split("op profile,")[0] if "op profile, prefill of" in text else ""
    return {m[0].strip(): float(m[1]) for m in re.findall(r"^  (\S.*?)\s+([\d.]+) ms\s+[\d.]+%", prof, re.M)}
names = sys.argv[2:]
runs = [ops("%s/latency_%s.log" % (sys.argv[1], n)) for n in names]
print("\n8K prefill ops, ms (eager, events)  " + "".join("%11s" % n[:10] for n in names))
for op in sorted(set().union(*runs), key=lambda o: -max(r.get(o, 0) for r in runs)):
    print("  %-34s" % op[:34] + "".join("%11s" % ("%.3f" % r[op] if op in r else "-") for r in runs))
print("  %-34s" % "all ops" + "".join("%11.3f" % sum(r.values()) for r in runs))
PY
fi
