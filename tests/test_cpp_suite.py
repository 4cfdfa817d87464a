"""Builds the C++ tests (tests/cpp/test_*.cpp, one CTest executable each) and runs them with ctest.

The build goes into a fresh temporary folder, so it checks the CMake setup too. Set
ONNXPLAIN_CPP_TEST_BUILD_DIR to a folder to reuse (incremental rebuilds during development).
cmake and ninja are test requirements (requirements-test.txt): their absence is a failure, not a
skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"'{name}' is not on PATH; install the test requirements (pip install -r requirements-test.txt)"
    return path


def _run(cmd: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _pybind11_dir() -> str:
    out = _run([sys.executable, "-c", "import pybind11; print(pybind11.get_cmake_dir())"], REPO, 60)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_cpp_suite(tmp_path_factory):
    cmake, ninja, ctest = _tool("cmake"), _tool("ninja"), _tool("ctest")
    sources = sorted((REPO / "tests" / "cpp").glob("test_*.cpp"))
    assert sources, "no C++ tests found in tests/cpp"

    build = Path(os.environ.get("ONNXPLAIN_CPP_TEST_BUILD_DIR") or tmp_path_factory.mktemp("cpp_build"))
    configure = [
        cmake,
        "-S",
        str(REPO),
        "-B",
        str(build),
        "-G",
        "Ninja",
        f"-DCMAKE_MAKE_PROGRAM={ninja}",
        "-DCMAKE_BUILD_TYPE=Release",
        "-DONNXPLAIN_BUILD_TESTS=ON",
        # The tests link the core library only; skipping the pybind11 module halves the build.
        "-DONNXPLAIN_BUILD_PYTHON=OFF",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]
    pybind11_dir = _pybind11_dir()
    if pybind11_dir:
        configure.append(f"-Dpybind11_DIR={pybind11_dir}")
    out = _run(configure, REPO, 300)
    assert out.returncode == 0, f"cmake configure failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"

    out = _run([cmake, "--build", str(build)], REPO, 900)
    assert out.returncode == 0, f"C++ build failed:\n{out.stdout[-8000:]}\n{out.stderr[-4000:]}"

    # enable_testing() is called in cpp/CMakeLists.txt, so the CTest files live in build/cpp.
    test_dir = build / "cpp"
    out = _run([ctest, "--test-dir", str(test_dir), "--output-on-failure", "--timeout", "120"], build, 600)
    report = f"{out.stdout[-8000:]}\n{out.stderr[-2000:]}"
    assert out.returncode == 0, f"ctest failed:\n{report}"
    for src in sources:
        assert src.stem in out.stdout, f"{src.stem} did not run under ctest:\n{report}"
    assert "100% tests passed" in out.stdout, report
