#!/usr/bin/env bash
# Builds the core and the C API test (tests/c_api/c_api_test.c) with AddressSanitizer and
# UndefinedBehaviorSanitizer into build/asan and runs it on the bundled digits CNN. Exits non-zero
# on a failed check or any sanitizer report. Not part of CI (the instrumented build takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
if [ ! -f build/asan/build.ninja ]; then
  cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DONNXPLAIN_BUILD_PYTHON=OFF \
    -DONNXPLAIN_BUILD_TESTS=OFF -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" >/dev/null
fi
ninja -C build/asan onnxplain_core
cc -std=c99 -g $flags tests/c_api/c_api_test.c -Icpp/include -Lbuild/asan/cpp -lonnxplain_core \
  -Wl,-rpath,"$PWD/build/asan/cpp" -o build/asan/c_api_test
# OpenMP's and OpenBLAS's own allocations are not ours; leaks inside them would need suppressions.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  build/asan/c_api_test python/onnxplain/data/digits_cnn.onnx
