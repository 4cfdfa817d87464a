"""The example HTTP service, built against the installed package, under a short bounded load test:
only correct answers, 4xx with a JSON error for malformed requests, flat memory. Needs cpp-httplib
and nlohmann-json (Debian: libcpp-httplib-dev nlohmann-json3-dev; .ci/run installs them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import onnxplain as ox

ROOT = Path(__file__).resolve().parents[2]
CMAKE_DIR = Path(ox.__file__).resolve().parent / "lib" / "cmake" / "onnxplain"
_HEADERS = Path("/usr/include/httplib.h").exists() and Path("/usr/include/nlohmann/json.hpp").exists()
_SOURCE_TREE = "onnxplain runs from a source tree: the C/C++ files come with the installed package"
_NEEDS = "needs cpp-httplib and nlohmann-json (apt-get install libcpp-httplib-dev nlohmann-json3-dev)"


@pytest.mark.skipif(not (CMAKE_DIR / "onnxplainConfig.cmake").exists(), reason=_SOURCE_TREE)
@pytest.mark.skipif(not _HEADERS, reason=_NEEDS)
def test_service_under_load(tmp_path: Path) -> None:
    build = tmp_path / "service"
    for cmd in (["cmake", "-S", str(ROOT / "examples" / "service"), "-B", str(build), f"-Donnxplain_DIR={CMAKE_DIR}"],
                ["cmake", "--build", str(build)]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "service" / "loadtest.py"),
                        str(build / "onnxplain_service"), "--requests", "600", "--clients", "8"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "wrong answers: 0; memory flat" in r.stdout
