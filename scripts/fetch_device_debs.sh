#!/usr/bin/env bash
# Downloads into debs/ (git-ignored) the Debian packages the GPU machine lacks for building loom;
# scripts/device_env.sh unpacks them there into /tmp/debroot (never into /). That machine already
# has OpenBLAS, GoogleTest, nlohmann-json and the CUDA toolkit. Carry debs/ (about 15 MB) with
# .third_party.tar.gz (`tar czf .third_party.tar.gz -C third_party flashinfer xgrammar`).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p debs
cd debs
apt-get download \
  libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 \
  libgloo-dev libgloo0 libhiredis0.14 libibverbs1 \
  libboost1.74-dev \
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev libssl3 zlib1g-dev \
  libbenchmark-dev libbenchmark1debian
ls
