#!/usr/bin/env bash
# Where a decode step's time goes (issue 14), in one device call: builds loom and test_cuda into
# build-gpu, runs the CUDA tests named by LOOM_GPU_TESTS (default: the decode kernels and the
# checkpoints' parity), then on the Qwen3-30B-A3B shape with dummy weights:
#   - `loom bench latency` decode steps as CUDA graphs at bs 1/8/32/128 (the figure that counts);
#   - Nsight Compute's per-kernel durations of eager decode steps at bs 1 and 128 (each kernel alone,
#     caches and clocks left as they are), summed by kernel: their total against the graph step is
#     the time between kernels.
# Prints the tables last. Carry debs/ and .third_party.tar.gz (scripts/device_env.sh unpacks both).
#   bash scripts/device_decode_profile.sh       # LOOM_SKIP_TESTS=1, LOOM_SKIP_NCU=1 skip those parts
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # sets LOGS and MODEL
t0=$SECONDS
# test_cuda first: its results come back even when the loom binary does not build.
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $LOOM_CMAKE_ARGS >"$LOGS/configure.log" 2>&1 ||
  { tail -20 "$LOGS/configure.log"; exit 1; }
cmake --build build-gpu -j16 --target test_cuda >"$LOGS/build.log" 2>&1 || { tail -30 "$LOGS/build.log"; exit 1; }
cmake --build build-gpu -j16 --target loom >>"$LOGS/build.log" 2>&1 || tail -30 "$LOGS/build.log"
echo "build: $((SECONDS - t0)) s"
if [ "${LOOM_SKIP_TESTS:-0}" != 1 ]; then
  ./build-gpu/tests/test_cuda --gtest_filter="${LOOM_GPU_TESTS:-*Gemv*:*Decode*:*Moe*:*Route*:*Norm*:*Rope*:*Attention*:*Parity*:*Graph*}" \
    >"$LOGS/test_cuda.log" 2>&1
  grep -E "^\[  FAILED  \]|Failure$" "$LOGS/test_cuda.log" | head -20
  tests="$(grep -E '^\[  (PASSED|FAILED) |tests ran' "$LOGS/test_cuda.log" | tr '\n' ' ')"
  echo "tests: $((SECONDS - t0)) s"
fi
./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size 1,8,32,128 --input-len 1024 \
  --output-len 32 --cuda-graph-max-bs 128 --mem-fraction-static 0.88 >"$LOGS/latency.log" 2>&1 ||
  tail -5 "$LOGS/latency.log"
if [ -n "${LOOM_AB_ENV:-}" ]; then  # the same with an A/B switch set, e.g. LOOM_AB_ENV=LOOM_ATTENTION_MIN_BLOCKS=3
  env "$LOOM_AB_ENV" ./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size 1,8,32,128 \
    --input-len 1024 --output-len 32 --cuda-graph-max-bs 128 --mem-fraction-static 0.88 >"$LOGS/latency_ab.log" 2>&1 ||
    tail -5 "$LOGS/latency_ab.log"
fi
echo "latency: $((SECONDS - t0)) s"
# Eager prefill, one warm-up and one measured decode step; only loom's own kernels are timed (the
# weights' fill kernels and cuBLAS/FlashInfer prefill kernels are not), each alone.
ncu_decode() {  # $1 = batch size
  ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
    --kernel-name-base function \
    --kernel-name "regex:attention_kernel|merge_splits|gemv_kernel|router_topk|route_topk|rms_norm|qk_norm_rope|moe_|silu|grouped_gemm|select_tokens|write_kv" \
    ./build-gpu/loom bench latency --model-path $MODEL --load-format dummy --batch-size "$1" --input-len 1024 \
    --output-len 2 --disable-cuda-graph --mem-fraction-static 0.88 >"$LOGS/ncu_bs$1.csv" 2>"$LOGS/ncu_bs$1.err" ||
    tail -5 "$LOGS/ncu_bs$1.err"
}
if [ "${LOOM_SKIP_NCU:-0}" != 1 ] && command -v ncu >/dev/null; then
  for bs in ${LOOM_NCU_BS:-1 128}; do ncu_decode "$bs"; done
  echo "ncu: $((SECONDS - t0)) s"
fi
echo
echo "test_cuda: ${tests:-skipped}"
sed -n '/^loom bench latency:/,$p' "$LOGS/latency.log"
[ -s "$LOGS/latency_ab.log" ] && echo "with $LOOM_AB_ENV:" && sed -n '/^loom bench latency:/,$p' "$LOGS/latency_ab.log"
for bs in ${LOOM_NCU_BS:-1 128}; do
  [ -s "$LOGS/ncu_bs$bs.csv" ] || continue
  python3 - "$LOGS/ncu_bs$bs.csv" "$bs" <<'PY'
import csv, collections, re, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]
ki, vi, ui, gi = (head.index(c) for c in ("Kernel Name", "Metric Value", "Metric Unit", "Grid Size"))
scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}
kernels = [(r[ki], float(r[vi].replace(",", "")) * scale[r[ui]], r[gi]) for r in rows[1:]]
def short(n):
    n = re.sub(r"^void ", "", n.replace("(anonymous namespace)", "").replace("<unnamed>", "").replace("unnamed>::", "")).split("(")[0]
    depth, out = 0, ""
    for ch in n:
        depth += ch == "<"
        if depth == 0 and ch != ">": out += ch
        depth -= ch == ">"
    return out.split("::")[-1][:40]
# The measured decode step: what follows the measured prefill's last norm (a block per token).
bs = int(sys.argv[2])
last = max(i for i, (n, _, g) in enumerate(kernels) if "rms_norm" in n and int(g.strip("()").split(",")[0]) > bs)
by = collections.defaultdict(lambda: [0.0, 0])
for n, us, _ in kernels[last + 1:]:
    by[short(n)][0] += us
    by[short(n)][1] += 1
total = sum(v[0] for v in by.values())
print(f"\nbs {bs}: one decode step, {total:.0f} us in loom's kernels (each timed alone by ncu)")
for name, (us, n) in sorted(by.items(), key=lambda kv: -kv[1][0]):
    print(f"  {name:40s} {us:9.1f} us {n:5d} calls {us / n:8.2f} us each")
PY
done
