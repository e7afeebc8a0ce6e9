#!/usr/bin/env bash
# The engine and server tests (the threads loom runs: engine loop, HTTP workers, request channels,
# aborts) under ThreadSanitizer, in build-tsan (issue 15). A report fails the run; the only
# suppressions are in tests/sanitizers/tsan.supp, each with the proof that its report is false.
#   bash scripts/test_sanitizers.sh
# Not in CI yet: it reports races inside Debian's compiled cpp-httplib 0.11 (its chunked writer,
# a buffer in the library's data segment written by one worker while another sends it; the
# library is not instrumented, so whether they are real is not settled), and four concurrency
# tests fail under it. Issue 15 moves the HTTP layer off cpp-httplib 0.11.
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=thread -fno-omit-frame-pointer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j"${LOOM_JOBS:-2}" --target loom test_engine test_server
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/sanitizers/tsan.supp"
ctest --test-dir build-tsan --output-on-failure -j"${LOOM_JOBS:-2}" -L "engine|server"
