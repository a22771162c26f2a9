#!/usr/bin/env bash
# Build (once, cached under build/arm/) an emulated aarch64 Python environment for onnxprune's core:
# Debian's arm64 python3.11 extracted into a sysroot, aarch64 wheels of the core dependencies, run
# with qemu-aarch64-static. Recipe measured in docs/edge.md ("Emulated aarch64"). Idempotent: each
# step leaves a stamp; delete build/arm to start over.
#
#   benchmarks/arm/env.sh [PIP]      # PIP: a host pip to fetch wheels with (default: python3 -m pip)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ARM=${ARM_DIR:-$ROOT/build/arm}
SYSROOT=$ARM/sysroot
SITE=$ARM/site
DEBS=$ARM/debs
PIP=${1:-python3 -m pip}
# 1.29+ dies with SIGSEGV at import under bookworm's qemu 7.2; 1.26 imports and runs.
ORT_ARM=onnxruntime==1.26.0
PACKAGES="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libexpat1 zlib1g libffi8 libssl3
libbz2-1.0 liblzma5 libgcc-s1 libstdc++6 libsqlite3-0 libuuid1 libncursesw6 libtinfo6"
mkdir -p "$ARM"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

if ! command -v qemu-aarch64-static >/dev/null; then
    echo "arm-env: installing qemu-user-static"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user-static >/dev/null
fi

if [ ! -f "$ARM/.debs" ]; then
    echo "arm-env: downloading Debian arm64 python3.11 packages"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        $SUDO dpkg --add-architecture arm64
    fi
    $SUDO apt-get update -qq
    rm -rf "$DEBS"; mkdir -p "$DEBS"
    # apt-get download writes into the current folder; _apt must be able to write there when root
    (cd "$DEBS" && chmod 777 . && apt-get download -qq $(for p in $PACKAGES; do printf '%s:arm64 ' "$p"; done))
    touch "$ARM/.debs"
fi

if [ ! -f "$ARM/.sysroot" ]; then
    echo "arm-env: extracting the sysroot"
    rm -rf "$SYSROOT"; mkdir -p "$SYSROOT"
    for deb in "$DEBS"/*.deb; do dpkg -x "$deb" "$SYSROOT"; done
    touch "$ARM/.sysroot"
fi

if [ ! -f "$ARM/.site" ]; then
    echo "arm-env: fetching aarch64 wheels ($ORT_ARM)"
    rm -rf "$SITE"; mkdir -p "$SITE"
    $PIP install -q --target "$SITE" --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
        --python-version 3.11 --only-binary=:all: "$ORT_ARM" "numpy<2.3" onnx onnx-graphsurgeon typer rich
    touch "$ARM/.site"
fi
# The interpreter as a host shell script: run directly it starts qemu, and since its argv[0] (-0)
# is this script, sys.executable is too, so a child that re-executes sys.executable (bench's
# fresh process per model, multiprocessing "spawn") starts under qemu as well. No binfmt_misc
# registration needed (that would change the whole host kernel's behaviour, and needs root).
mkdir -p "$ARM/bin"
cat > "$ARM/bin/python3.11" <<WRAPPER
#!/bin/sh
ARM=\$(cd "\$(dirname "\$0")/.." && pwd)
exec qemu-aarch64-static -L "\$ARM/sysroot" -0 "\$ARM/bin/python3.11" "\$ARM/sysroot/usr/bin/python3.11" "\$@"
WRAPPER
chmod +x "$ARM/bin/python3.11"
echo "arm-env: ready: PYTHONPATH=$ROOT:$SITE $ARM/bin/python3.11 -m onnxprune ..."
