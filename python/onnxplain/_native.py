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


def _preload_openblas() -> None:
    """Loads OpenBLAS from wherever pip put the scipy-openblas32 wheel.

    The core's RPATH finds it beside onnxplain in the same site-packages; when the dependency was
    satisfied elsewhere (a venv with system site-packages, a user install) it is not there, and
    loading the library by its path first lets the dynamic linker reuse it.
    """
    try:
        import scipy_openblas32
    except ImportError:
        return
    lib_dir = scipy_openblas32.get_lib_dir()
    for name in sorted(os.listdir(lib_dir)) if os.path.isdir(lib_dir) else []:
        if name.startswith("libscipy_openblas") and ".so" in name:
            ctypes.CDLL(os.path.join(lib_dir, name), mode=ctypes.RTLD_GLOBAL)
            return


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
