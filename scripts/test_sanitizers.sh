#!/usr/bin/env bash
# The engine and server tests (the threads loom runs: engine loop, the HTTP server's I/O threads,
# request channels waking connections, aborts) under ThreadSanitizer, in build-tsan (issue 15). A
# report fails the run; the only suppressions are in tests/sanitizers/tsan.supp, each with the
# proof that its report is false. Part of scripts/test.sh (so of CI) since the HTTP layer moved
# from Debian's uninstrumented, compiled cpp-httplib 0.11 (whose internals TSan could not see) to
# header-only Boost.Beast, which is compiled, and instrumented, with loom.
#   bash scripts/test_sanitizers.sh
# CPU only (-DLOOM_ENABLE_CUDA=OFF: the GPU code adds no host threads to check, and CI's 2 cores
# would spend most of the time in nvcc). Left out of CTest's set, as they add no threads that the
# rest does not run, or measure the sanitizer: the 2,000-stream load test (label server_load),
# schemathesis and the OpenAI-client test (one request at a time; 15+ and 5+ minutes under TSan),
# Heap.LargeBlocks* (glibc malloc's mmap accounting, which TSan's allocator replaces) and the CTest
# soak (2,000 requests, ~20 minutes under TSan): a 200-request soak of the TSan-built `loom serve`
# runs instead (every request kind: answered, streamed, abandoned, disconnected, malformed; a
# report ends the server with status 66, which fails the soak).
# Measured on this 2-core machine, fresh (no ccache): build 11 minutes, CTest 12, soak 3 (25 in all).
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=thread -fno-omit-frame-pointer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_ENABLE_CUDA=OFF -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j"${LOOM_JOBS:-2}" --target loom test_engine test_server
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/sanitizers/tsan.supp"
ctest --test-dir build-tsan --output-on-failure -j"${LOOM_JOBS:-2}" -L "engine|server" -LE server_load \
  -E "^(OpenAPI\.SchemathesisOnTheCpuFixture|OpenAIClient\.ServeOnTheCpuFixture|Soak\.MixedRequestsLeakNothing|Heap\.LargeBlocksStayInTheirOwnMappingsAfterALargerOneIsFreed)$"
python3 scripts/soak.py --loom build-tsan/loom --model-path tests/data/models/tiny-qwen3-moe-realvocab \
  --tokenizer tests/data/tokenizers/qwen3 --num-requests 200 --rounds 2 --concurrency 16 --max-tokens 8 \
  --rss-tolerance-pct 50  # RSS under TSan is its shadow memory; the normal build checks it
