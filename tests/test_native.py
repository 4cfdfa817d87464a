"""How the package loads OpenBLAS: the kernel set it forces on CPUs OpenBLAS does not know yet."""

from __future__ import annotations

import os
import subprocess
import sys

from onnxplain import _native

AVX512 = frozenset({"fpu", "avx2", "fma", "avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl"})
_PROBE = "import os, onnxplain._native as n; print(n.blas_core(), 'OPENBLAS_CORETYPE' in os.environ)"


def test_override_only_for_avx512_and_never_over_the_user():
    assert _native.blas_core_override({}, AVX512) == "SkylakeX"
    assert _native.blas_core_override({}, AVX512 - {"avx512bw"}) is None
    assert _native.blas_core_override({}, frozenset({"avx2", "fma"})) is None
    assert _native.blas_core_override({"OPENBLAS_CORETYPE": "Haswell"}, AVX512) is None


def test_loaded_blas_runs_the_chosen_kernels_without_leaking_the_setting():
    """In a fresh process, in the environment as it is (tests never change OPENBLAS_CORETYPE):
    a user's OPENBLAS_CORETYPE is what OpenBLAS runs; without one, a CPU with AVX-512 runs the
    SkylakeX kernels (OpenBLAS 0.3.34 would take Zen 5 for Haswell). The variable the package sets
    while loading is gone afterwards, so child processes and other libraries see the user's
    environment."""
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True).stdout.split()
    core, has_var = out[0], out[1] == "True"
    user = os.environ.get("OPENBLAS_CORETYPE")
    assert has_var == (user is not None)
    if user is not None:
        assert core.lower() == user.lower()
    elif _native._AVX512_FLAGS <= _native._cpu_flags():
        assert core == "SkylakeX"
    else:
        assert core not in ("SkylakeX", "unknown")
