#!/usr/bin/env bash
# Runs every CPU test through CTest (the CUDA tests run on a GPU machine: scripts/device_check.sh),
# then every fuzz harness for a bounded time (scripts/fuzz.sh; LOOM_SKIP_FUZZ=1 skips it). With
# LOOM_TSAN=1, then the engine and server tests under ThreadSanitizer (scripts/test_sanitizers.sh,
# about 25 minutes here): not yet in CI's run until a fresh clone has been timed with it.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j"${LOOM_JOBS:-2}"
ctest --test-dir build --output-on-failure -j"${LOOM_JOBS:-2}" "$@"
if [ "${LOOM_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh
fi
if [ "${LOOM_TSAN:-0}" = 1 ]; then
  bash scripts/test_sanitizers.sh
fi
