# Sourced on the GPU machine (Ubuntu, no registry): unpacks the Debian packages carried in
# debs/ into /tmp/debroot and points CMake, the linker and the loader at them. Never into /.
set -e
LOOM_DEBROOT=/tmp/debroot
if [ ! -d "$LOOM_DEBROOT/usr" ]; then
  mkdir -p "$LOOM_DEBROOT"
  for f in debs/*.deb; do dpkg -x "$f" "$LOOM_DEBROOT"; done
fi
libdirs="$LOOM_DEBROOT/usr/lib:$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$libdirs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LOOM_CMAKE_ARGS="-DCMAKE_PREFIX_PATH=$LOOM_DEBROOT/usr -DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$LOOM_DEBROOT/usr/lib:$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu -DCMAKE_CUDA_ARCHITECTURES=90a-real;80-virtual"
set +e
