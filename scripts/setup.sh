#!/usr/bin/env bash
# Installs loom's build dependencies (Debian 12) and builds it into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
if [ "${LOOM_SKIP_APT:-0}" != 1 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    build-essential cmake ninja-build ccache pkg-config curl \
    libgtest-dev libbenchmark-dev libopenblas-dev nlohmann-json3-dev \
    libpcre2-dev libutf8proc-dev libgloo-dev libcpp-httplib-dev libssl-dev >/dev/null
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${LOOM_JOBS:-2}"
