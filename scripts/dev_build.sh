#!/usr/bin/env bash
# Developer build: incremental CMake/Ninja build into build/${1:-dev}. Use the result with
#   ONNXPLAIN_CORE_DIR=build/<name>/cpp PYTHONPATH=python pytest ...
# (the package loads the extension from ONNXPLAIN_CORE_DIR instead of its own folder).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:-dev}
if [ ! -f "build/$name/build.ninja" ]; then
  cmake -S . -B "build/$name" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" >/dev/null
fi
ninja -C "build/$name"
