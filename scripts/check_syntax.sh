#!/usr/bin/env bash
# Compiles one C++ file of the core (anywhere on disk) with the core's flags, syntax only:
# lets a change be checked before it goes into cpp/src, where a broken file stops every build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
inc="$(python -c 'import scipy_openblas32 as s; print(s.get_include_dir())')"
for f in "$@"; do
  g++ -std=c++17 -fsyntax-only -Wall -Wextra -fopenmp -I"$root/cpp/src" -I"$root/cpp/include" -I"$inc" "$f"
done
