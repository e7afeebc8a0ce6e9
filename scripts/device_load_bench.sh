#!/usr/bin/env bash
# Loading a real checkpoint onto the GPU (issue 13's start-up): writes a Qwen3-30B-A3B-shaped
# checkpoint of LOOM_LOAD_LAYERS layers (default 16, about 21 GB) with
# scripts/make_qwen3_moe_checkpoint.py, measures the disk's cold sequential read, then times
# `loom bench latency`'s start (weights loaded, no CUDA graphs) cold (page cache emptied for the
# shards) and warm, with the staged pinned path off and on (LOOM_PINNED_LOAD). Runs test_cuda's
# CudaLoad tests first. Prints a table last. Carry debs/ and .third_party.tar.gz.
#   bash scripts/device_load_bench.sh
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device_env.sh  # LOGS, MODEL, loom_device_build
loom_device_build "$LOGS" loom test_cuda || exit 1
./build-gpu/tests/test_cuda --gtest_filter='CudaLoad.*' >"$LOGS/load_tests.log" 2>&1
tests="$(grep -E '^\[  (PASSED|FAILED) ' "$LOGS/load_tests.log" | tr '\n' ' ')"
CKPT=${LOOM_LOAD_CKPT:-/tmp/loom-ckpt}
rm -rf "$CKPT"
t0=$SECONDS
python3 scripts/make_qwen3_moe_checkpoint.py --config $MODEL --layers "${LOOM_LOAD_LAYERS:-16}" --out "$CKPT" \
  >"$LOGS/make_checkpoint.log" 2>&1 || { cat "$LOGS/make_checkpoint.log"; exit 1; }
echo "$(cat "$LOGS/make_checkpoint.log"), written in $((SECONDS - t0)) s; disk: $(df -h "$CKPT" | tail -1)"

evict() {  # drops the shards' pages from the page cache (clean pages: no root needed)
  python3 - "$CKPT" <<'EOF'
import os, sys
for f in os.listdir(sys.argv[1]):
    fd = os.open(os.path.join(sys.argv[1], f), os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
EOF
}
evict
read_rate=$(python3 - "$CKPT" <<'EOF'
import os, sys, time
total, t = 0, time.time()
for f in sorted(os.listdir(sys.argv[1])):
    with open(os.path.join(sys.argv[1], f), "rb", buffering=0) as fh:
        while True:
            b = fh.read(64 << 20)
            if not b:
                break
            total += len(b)
print("%.2f GB in %.1f s: %.2f GB/s" % (total / 1e9, time.time() - t, total / 1e9 / (time.time() - t)))
EOF
)
rows=()
for pinned in 0 1; do
  for cache in cold warm; do
    [ $cache = cold ] && evict
    log="$LOGS/start_pinned${pinned}_$cache.log"
    LOOM_PINNED_LOAD=$pinned timeout 600 ./build-gpu/loom bench latency --model-path "$CKPT" --batch-size 1 \
      --input-len 16 --output-len 2 --disable-cuda-graph >"$log" 2>&1 || tail -5 "$log"
    rows+=("$(printf 'pinned %s  %-5s  %s' $pinned $cache "$(grep -o 'start [0-9.]* s' "$log")")")
  done
done
echo
echo "CudaLoad tests: $tests"
echo "checkpoint: $(cat "$LOGS/make_checkpoint.log")"
echo "cold sequential read (python, 64 MB reads): $read_rate"
printf '%s\n' "${rows[@]}"
rm -rf "$CKPT"
