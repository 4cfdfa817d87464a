"""Locates the compiled extension.

Installed packages load ``onnxplain._core`` from their own folder. Developers may point
``ONNXPLAIN_CORE_DIR`` at a CMake build folder (see ``scripts/dev_build.sh``) to test a build
without reinstalling.
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
from types import ModuleType

# What OpenBLAS's 512-bit single-precision kernels need (its SkylakeX target).
_AVX512_FLAGS = frozenset({"avx512f", "avx512cd", "avx512dq", "avx512bw", "avx512vl"})


def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere or when unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def blas_core_override(environ: dict[str, str] | None = None, flags: frozenset[str] | None = None) -> str | None:
    """The OpenBLAS core to force while loading it, or None to let OpenBLAS choose.

    OpenBLAS picks its kernels by CPU model, and a model it does not know yet falls back to the
    AVX2 (Haswell) kernels: on AMD Zen 5 (family 1Ah, OpenBLAS 0.3.34) that halves every GEMM
    (measured 110-224 against 315-454 GFLOPS on 2 cores). A CPU with AVX-512 runs the SkylakeX
    kernels; a user's own ``OPENBLAS_CORETYPE`` always wins.
    """
    env = os.environ if environ is None else environ
    if "OPENBLAS_CORETYPE" in env:
        return None
    return "SkylakeX" if _AVX512_FLAGS <= (_cpu_flags() if flags is None else flags) else None


_blas: ctypes.CDLL | None = None


def _preload_openblas() -> None:
    """Loads OpenBLAS from wherever pip put the scipy-openblas32 wheel.

    The core's RPATH finds it beside onnxplain in the same site-packages; when the dependency was
    satisfied elsewhere (a venv with system site-packages, a user install) it is not there, and
    loading the library by its path first lets the dynamic linker reuse it. OpenBLAS reads
    ``OPENBLAS_CORETYPE`` once, when it is loaded; it is set only for that moment so that other
    libraries and child processes see the environment unchanged.
    """
    global _blas
    try:
        import scipy_openblas32
    except ImportError:
        return
    lib_dir = scipy_openblas32.get_lib_dir()
    for name in sorted(os.listdir(lib_dir)) if os.path.isdir(lib_dir) else []:
        if name.startswith("libscipy_openblas") and ".so" in name:
            core = blas_core_override()
            if core is not None:
                os.environ["OPENBLAS_CORETYPE"] = core
            try:
                _blas = ctypes.CDLL(os.path.join(lib_dir, name), mode=ctypes.RTLD_GLOBAL)
            finally:
                if core is not None:
                    del os.environ["OPENBLAS_CORETYPE"]
            return


def blas_core() -> str:
    """The kernel set OpenBLAS runs (``"SkylakeX"``, ``"Haswell"``, ...), or ``"unknown"``."""
    fn = getattr(_blas, "scipy_openblas_get_corename", None)
    if fn is None:
        return "unknown"
    fn.restype = ctypes.c_char_p
    return (fn() or b"unknown").decode("ascii", "replace")


def _load() -> ModuleType:
    _preload_openblas()
    build_dir = os.environ.get("ONNXPLAIN_CORE_DIR")
    if build_dir:
        for name in sorted(os.listdir(build_dir)):
            if name.startswith("_core.") and name.endswith((".so", ".pyd")):
                spec = importlib.util.spec_from_file_location("onnxplain._core", os.path.join(build_dir, name))
                assert spec is not None and spec.loader is not None
                mod = importlib.util.module_from_spec(spec)
                sys.modules["onnxplain._core"] = mod
                spec.loader.exec_module(mod)
                return mod
        raise ImportError(f"ONNXPLAIN_CORE_DIR={build_dir!r} holds no _core extension")
    return importlib.import_module("onnxplain._core")


core = _load()
