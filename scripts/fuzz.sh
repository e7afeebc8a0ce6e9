#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz for a bounded time (issue 15), built with clang 14
# under AddressSanitizer and UndefinedBehaviorSanitizer into build-fuzz. Each starts from a copy of
# its checked-in seed corpus and of its past crashes (tests/fuzz/regressions/<target>/); a crash,
# leak, sanitizer report or timeout fails the run, and the input that caused it is left in
# build-fuzz/artifacts/ — add it to regressions/<target>/ once fixed, so CTest replays it for good.
#   bash scripts/fuzz.sh                 # LOOM_FUZZ_SECONDS per target (default 60)
#   bash scripts/fuzz.sh tokenizer       # only the named targets
# The seed is fixed (LOOM_FUZZ_SEED, default 1) so that CI repeats the search that was run before a
# change landed; LOOM_FUZZ_SEED=0 lets libFuzzer pick one (longer exploratory runs).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang++-14 >/dev/null || { echo "fuzz.sh: clang++-14 is missing (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(tokenizer chat_template safetensors model_config openai_request http_request)
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_FUZZ=ON -DLOOM_ENABLE_CUDA=OFF \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $san" -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build build-fuzz -j"${LOOM_JOBS:-2}" --target "${targets[@]/#/fuzz_}"
mkdir -p build-fuzz/artifacts
export UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1
failed=()
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t
  rm -rf "$work" && mkdir -p "$work"
  cp tests/fuzz/corpus/"$t"/* "$work"/
  find tests/fuzz/regressions/"$t" -type f ! -name .keep -exec cp {} "$work"/ \;
  echo "fuzz_$t: ${LOOM_FUZZ_SECONDS:-60} s"
  if ! build-fuzz/tests/fuzz/fuzz_"$t" "$work" -seed="${LOOM_FUZZ_SEED:-1}" -max_total_time="${LOOM_FUZZ_SECONDS:-60}" -timeout=10 \
      -rss_limit_mb=3072 -max_len=8192 -artifact_prefix=build-fuzz/artifacts/"$t"- -print_final_stats=1 \
      >build-fuzz/fuzz_"$t".log 2>&1; then
    failed+=("$t")
    grep -E "ERROR|SUMMARY|runtime error|Test unit written" build-fuzz/fuzz_"$t".log | head -20
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" build-fuzz/fuzz_"$t".log | tr '\n' ' '; echo
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz.sh: failed: ${failed[*]} (inputs in build-fuzz/artifacts/)" >&2; exit 1; }
echo "fuzz.sh: every target ran clean"
