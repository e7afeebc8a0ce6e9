#!/usr/bin/env bash
# The checks the lead runs on the GPU machine (CUDA tests that CI cannot run). It receives the repo
# with its build dependencies (scripts/device_env.sh); the build into build-gpu is wired by the lead.
set -euo pipefail
cd "$(dirname "$0")/.."

# parallel (issue 4): NCCL collectives, world 1 and (with 2 GPUs) world 2
./build-gpu/tests/test_parallel_nccl
