# Sourced on the GPU machine (Ubuntu, no registry): unpacks the Debian packages carried in
# debs/ into /tmp/debroot and points CMake, the linker and the loader at them. Never into /.
set -e
LOOM_DEBROOT=/tmp/debroot
if [ ! -d "$LOOM_DEBROOT/usr" ]; then
  mkdir -p "$LOOM_DEBROOT"
  for f in debs/*.deb; do dpkg -x "$f" "$LOOM_DEBROOT"; done
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
# FlashInfer's headers (scripts/setup.sh) travel packed, the unpacked tree being over the device
# tool's size limit: here `tar czf .flashinfer.tar.gz -C third_party flashinfer`, carried; unpacked once.
if [ -f .flashinfer.tar.gz ] && [ ! -d third_party/flashinfer ]; then
  mkdir -p third_party && tar xzf .flashinfer.tar.gz -C third_party
fi
libdirs="$LOOM_DEBROOT/usr/lib:$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu:$LOOM_DEBROOT/usr/lib/x86_64-linux-gnu/openblas-pthread"
export LD_LIBRARY_PATH="$libdirs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
export LOOM_CMAKE_ARGS="-DCMAKE_PREFIX_PATH=$LOOM_DEBROOT/usr -DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$libdirs -DCMAKE_CXX_FLAGS=-idirafter$LOOM_DEBROOT/usr/include -DCMAKE_CUDA_ARCHITECTURES=90a-real;80-virtual -DLOOM_HEAVY_JOBS=4"
set +e
