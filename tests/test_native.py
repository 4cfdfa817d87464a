"""How the package loads OpenBLAS: the kernel set it forces on CPUs OpenBLAS does not know yet."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from onnxplain import _native

AVX512 = frozenset({"fpu", "avx2", "fma", "avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl"})
_PROBE = "import os, onnxplain._native as n; print(n.blas_core(), 'OPENBLAS_CORETYPE' in os.environ)"


def test_override_only_for_avx512_and_never_over_the_user():
    assert _native.blas_core_override({}, AVX512) == "SkylakeX"
    assert _native.blas_core_override({}, AVX512 - {"avx512bw"}) is None
    assert _native.blas_core_override({}, frozenset({"avx2", "fma"})) is None
    assert _native.blas_core_override({"OPENBLAS_CORETYPE": "Haswell"}, AVX512) is None


def _probe(**env: str) -> tuple[str, bool]:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True,
                         env={**base, **env}).stdout.split()
    return out[0], out[1] == "True"


@pytest.mark.skipif(not _native._AVX512_FLAGS <= _native._cpu_flags(), reason="CPU without AVX-512")
def test_avx512_cpu_runs_512_bit_blas_kernels_without_leaking_the_setting():
    """OpenBLAS 0.3.34 takes Zen 5 for Haswell; the package makes it load its SkylakeX kernels,
    and the variable it sets for that is gone afterwards (child processes and other libraries see
    the user's environment)."""
    core, leaked = _probe()
    assert core == "SkylakeX"
    assert not leaked


def test_users_coretype_wins():
    core, leaked = _probe(OPENBLAS_CORETYPE="Haswell")
    assert core == "Haswell"
    assert leaked  # the user's own variable stays
