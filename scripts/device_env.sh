# Sourced on the GPU machine (Ubuntu, no registry): unpacks the Debian packages carried in
# debs/ (fetched here by scripts/fetch_device_debs.sh) into /tmp/debroot and points CMake, the linker
# and the loader at them. Never into /.
set -e
LOOM_DEBROOT=/tmp/debroot
if [ ! -d "$LOOM_DEBROOT/usr" ]; then
  mkdir -p "$LOOM_DEBROOT"
  for f in debs/*.deb; do
    # A Google Benchmark of the machine's own comes first on the include path: its library too.
    case $f in */libbenchmark*) [ -e /usr/include/benchmark/benchmark.h ] && continue ;; esac
    dpkg -x "$f" "$LOOM_DEBROOT"
  done
  # What Debian's update-alternatives would link: OpenBLAS's library and cblas.h at the usual names.
  ob="$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu"
  if [ -e "$ob/openblas-pthread/libopenblas.so" ]; then
    ln -sf openblas-pthread/libopenblas.so "$ob/libopenblas.so"
    ln -sf openblas-pthread/libopenblas.so.0 "$ob/libopenblas.so.0"
  fi
  for h in cblas.h f77blas.h openblas_config.h; do
    [ -e "$LOOM_DEBROOT/usr/include/x86_64-linux-gnu/openblas-pthread/$h" ] &&
      ln -sf "x86_64-linux-gnu/openblas-pthread/$h" "$LOOM_DEBROOT/usr/include/$h"
  done
fi
# What scripts/setup.sh fetches into third_party (FlashInfer's headers, xgrammar's sources) travels
# packed, the unpacked trees being over the device tool's size limit: here
# `tar czf .third_party.tar.gz -C third_party flashinfer xgrammar`, carried; unpacked once.
if [ -f .third_party.tar.gz ] && { [ ! -d third_party/flashinfer ] || [ ! -d third_party/xgrammar ]; }; then
  mkdir -p third_party && tar xzf .third_party.tar.gz -C third_party
fi
# Where a device script writes what comes back ($OUT on the device tool), and the benchmark model.
LOGS=${OUT:-/tmp/loom-device}
mkdir -p "$LOGS"
MODEL=bench/models/qwen3-30b-a3b
libdirs="$LOOM_DEBROOT/usr/lib:$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu:$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu/openblas-pthread"
export LD_LIBRARY_PATH="$libdirs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LOOM_CMAKE_ARGS="-DCMAKE_PREFIX_PATH=$LOOM_DEBROOT/usr -DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$libdirs -DCMAKE_CXX_FLAGS=-idirafter$LOOM_DEBROOT/usr/include -DCMAKE_CUDA_ARCHITECTURES=90a-real;80-virtual -DLOOM_HEAVY_JOBS=4"
# Builds the targets named after $1 (default: loom and test_cuda) into build-gpu, logs into $1
# (configure.log, build.log); prints the build's tail and fails when it does.
loom_device_build() {
  local logs=$1
  shift
  local targets=("$@")
  [ ${#targets[@]} -gt 0 ] || targets=(loom test_cuda)
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release $LOOM_CMAKE_ARGS >"$logs/configure.log" 2>&1 &&
    cmake --build build-gpu -j16 --target "${targets[@]}" >"$logs/build.log" 2>&1 || { tail -30 "$logs/build.log"; return 1; }
}
source scripts/device_lib.sh
# Starts `loom serve` on the Qwen3-30B-A3B shape (dummy weights) on port $2, logging to $1/serve.log,
# with any further flags; sets serve_pid and returns once the server has answered a request.
loom_device_serve() {
  local logs=$1 port=$2
  shift 2
  serve_until_ready "$logs/serve.log" "$port" ./build-gpu/loom serve --device cuda --model-path bench/models/qwen3-30b-a3b \
    --load-format dummy --tokenizer tests/data/tokenizers/qwen3 "$@"
  local rc=$?
  trap 'kill -9 $serve_pid 2>/dev/null' EXIT
  return $rc
}
set +e
