#!/usr/bin/env bash
# Runs every CPU test through CTest (the CUDA tests run on a GPU machine: scripts/device_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build -j"${LOOM_JOBS:-2}"
ctest --test-dir build --output-on-failure -j"${LOOM_JOBS:-2}" "$@"
