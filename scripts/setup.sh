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
    libpcre2-dev libutf8proc-dev libgloo-dev libboost1.74-dev libcpp-httplib-dev libssl-dev python3-pip python3-venv \
    clang-14 libclang-rt-14-dev >/dev/null
fi

# FlashInfer's C++ headers (Hopper attention kernels) with the CUTLASS and CCCL trees it ships, from
# one pinned flashinfer-python wheel (pure Python, headers only: no PyTorch, nothing compiled).
# `pip download --no-deps` only fetches the file, so Debian's externally-managed Python is fine.
# Unpacked once into third_party/flashinfer/<version>/ (git-ignored); CMake looks there.
# LOOM_FLASHINFER_WHEEL=path/to/the.whl uses a wheel fetched beforehand (offline machines).
FLASHINFER_VERSION=0.7.4
FLASHINFER_SHA256=a051a62e09a2738e8b0de47a1944fd2f0f3eff01b728b662141ea660cb09dd32
fi_dir=third_party/flashinfer/$FLASHINFER_VERSION
if [ ! -f "$fi_dir/.complete" ]; then
  fi_tmp=$(mktemp -d)
  trap 'rm -rf "$fi_tmp"' EXIT
  whl=${LOOM_FLASHINFER_WHEEL:-}
  if [ -z "$whl" ]; then
    python3 -m pip --version >/dev/null 2>&1 ||
      { echo "setup.sh: fetching FlashInfer's headers needs python3 -m pip (apt-get install python3-pip)" >&2; exit 1; }
    python3 -m pip download --quiet --no-deps --only-binary=:all: --no-cache-dir -d "$fi_tmp" \
      "flashinfer-python==$FLASHINFER_VERSION"
    whl=$fi_tmp/flashinfer_python-$FLASHINFER_VERSION-py3-none-any.whl
  fi
  echo "$FLASHINFER_SHA256  $whl" | sha256sum --check --quiet -
  rm -rf "$fi_dir" "$fi_dir.partial"
  python3 - "$whl" "$fi_dir.partial" <<'PY'
import os, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
keep = ("include/", "cutlass/include/", "cutlass/tools/util/include/", "cccl/")
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        name = info.filename
        if name.endswith("/"):
            continue
        if name.startswith("flashinfer/data/"):
            rel = name[len("flashinfer/data/"):]
            if not rel.startswith(keep):
                continue
        elif name.endswith(".dist-info/licenses/LICENSE"):
            rel = "LICENSE"
        else:
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
PY
  mv "$fi_dir.partial" "$fi_dir"
  touch "$fi_dir/.complete"
fi
# xgrammar's C++ core (grammar-constrained decoding: JSON schema, regex, EBNF) from its pinned PyPI
# sdist, which carries the C++ sources; only those (no Python bindings, no TVM-FFI) are unpacked into
# third_party/xgrammar/<version>/ (git-ignored) and CMake builds them as one static library.
# LOOM_XGRAMMAR_SDIST=path/to/the.tar.gz uses an sdist fetched beforehand (offline machines).
XGRAMMAR_VERSION=0.2.9
XGRAMMAR_SHA256=87b466bca2475e29bb0323abc62c6c33cbcbcff47e5fb800a3e2099ac9620b90
XGRAMMAR_URL=https://files.pythonhosted.org/packages/3a/2f/5bf8e8fa6619cff534932f79b0abc81a417d354bc5093252c1a6081d0a93/xgrammar-$XGRAMMAR_VERSION.tar.gz
xg_dir=third_party/xgrammar/$XGRAMMAR_VERSION
if [ ! -f "$xg_dir/.complete" ]; then
  xg_tmp=$(mktemp -d)
  sdist=${LOOM_XGRAMMAR_SDIST:-}
  if [ -z "$sdist" ]; then
    sdist=$xg_tmp/xgrammar-$XGRAMMAR_VERSION.tar.gz
    curl -fsSL --retry 3 -o "$sdist" "$XGRAMMAR_URL"
  fi
  echo "$XGRAMMAR_SHA256  $sdist" | sha256sum --check --quiet -
  rm -rf "$xg_dir" "$xg_dir.partial"
  mkdir -p "$xg_dir.partial"
  top=xgrammar-$XGRAMMAR_VERSION
  tar xzf "$sdist" -C "$xg_dir.partial" --strip-components=1 --exclude="$top/cpp/tvm_ffi" \
    "$top/LICENSE" "$top/NOTICE" "$top/cpp" "$top/include" "$top/3rdparty/picojson" "$top/3rdparty/dlpack/include"
  rm -rf "$xg_tmp"
  mv "$xg_dir.partial" "$xg_dir"
  touch "$xg_dir/.complete"
fi
# The official OpenAI Python client, a JSON-schema validator and schemathesis, pinned, in a virtual
# environment of their own: CTest drives `loom serve` with them (tests/server/openai_client_test.py,
# schemathesis_test.py). Made once; kept when the pins match.
OPENAI_VERSION=3.57.0
JSONSCHEMA_VERSION=4.23.0
SCHEMATHESIS_VERSION=4.32.5
venv=third_party/venv
if ! "$venv/bin/python" -c "import openai, sys, importlib.metadata as m; sys.exit(openai.__version__ != '$OPENAI_VERSION' or m.version('jsonschema') != '$JSONSCHEMA_VERSION' or m.version('schemathesis') != '$SCHEMATHESIS_VERSION')" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" ||
    { echo "setup.sh: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openai==$OPENAI_VERSION" \
    "jsonschema==$JSONSCHEMA_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"${LOOM_JOBS:-2}"
