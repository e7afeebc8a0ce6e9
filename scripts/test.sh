#!/usr/bin/env bash
# Runs every CPU test through CTest (the CUDA tests run on a GPU machine: scripts/device_check.sh),
# then every fuzz harness for a bounded time (scripts/fuzz.sh; LOOM_SKIP_FUZZ=1 skips it), then the
# two sanitizer jobs of scripts/test_sanitizers.sh: the CPU suite under AddressSanitizer +
# UndefinedBehaviorSanitizer (build-asan; LOOM_ASAN=0 leaves it out) and the engine, server and
# parallel tests under ThreadSanitizer (build-tsan); LOOM_SKIP_SANITIZERS=1 skips both. Each step's
# time is printed; docs/design.md (Numerics and tests) lists them as measured on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."
took() { echo "test.sh: $1 in $(((SECONDS - $2) / 60)) min $(((SECONDS - $2) % 60)) s"; }
t=$SECONDS
cmake --build build -j"${LOOM_JOBS:-2}"
took build $t; t=$SECONDS
ctest --test-dir build --output-on-failure -j"${LOOM_JOBS:-2}" "$@"
took CTest $t; t=$SECONDS
if [ "${LOOM_SKIP_FUZZ:-0}" != 1 ]; then
  bash scripts/fuzz.sh
  took fuzz.sh $t; t=$SECONDS
fi
if [ "${LOOM_SKIP_SANITIZERS:-0}" != 1 ]; then
  if [ "${LOOM_ASAN:-1}" = 1 ]; then bash scripts/test_sanitizers.sh asan tsan; else bash scripts/test_sanitizers.sh tsan; fi
  took test_sanitizers.sh $t
fi
