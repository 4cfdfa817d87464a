"""The C and C++ examples, built against the installed package with find_package (and with plain
compiler flags from `onnxplain config`), explain the digits CNN exactly as Python does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxplain as ox
from onnxplain.demo import MODEL_PATH, load_samples

ROOT = Path(__file__).resolve().parents[2]
PKG = Path(ox.__file__).resolve().parent
CMAKE_DIR = PKG / "lib" / "cmake" / "onnxplain"
METHODS = [("gradient", {}), ("lrp.epsilon_plus_flat", {}), ("integrated_gradients", {"steps": 16})]

pytestmark = pytest.mark.skipif(not (CMAKE_DIR / "onnxplainConfig.cmake").exists(),
                                reason="onnxplain runs from a source tree: the C/C++ files come with the installed "
                                       "package (pip install .)")


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout}\n{r.stderr}"
    return r


def _config(*flags: str) -> str:
    return _run([sys.executable, "-m", "onnxplain.cli", "config", *flags]).stdout.strip()


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    build = tmp_path_factory.mktemp("examples")
    exes = {}
    for lang, exe in [("c", "explain_c"), ("cpp", "explain_cpp")]:
        b = build / lang
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        _run(["cmake", "-S", str(ROOT / "examples" / lang), "-B", str(b), *gen, _config("--cmake")])
        _run(["cmake", "--build", str(b)])
        exes[lang] = b / exe
    # The C example once more with plain compiler flags, no CMake.
    plain = build / "explain_plain"
    _run(["cc", "-std=c99", "-O1", str(ROOT / "examples" / "c" / "explain.c"), "-o", str(plain),
          *_config("--cflags").split(), *_config("--libs").split()])
    exes["plain"] = plain
    return exes


@pytest.mark.parametrize("lang", ["c", "cpp", "plain"])
@pytest.mark.parametrize("method,params", METHODS)
def test_examples_equal_python_bit_for_bit(examples: dict[str, Path], lang: str, method: str, params: dict,
                                           tmp_path: Path) -> None:
    x, _ = load_samples()
    x = np.ascontiguousarray(x[:6])
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "r.npy"
    args = [f"{k}={v}" for k, v in params.items()]
    _run([str(examples[lang]), str(MODEL_PATH), str(tmp_path / "x.npy"), method, str(out), *args])
    want = ox.explainer(ox.load(MODEL_PATH), method, **params).explain(x)
    np.testing.assert_array_equal(np.load(out), want)
    _run([str(examples[lang]), str(MODEL_PATH), str(tmp_path / "x.npy"), method, str(out), *args, "target=3"])
    np.testing.assert_array_equal(np.load(out), ox.explainer(ox.load(MODEL_PATH), method, **params).explain(x, 3))


@pytest.mark.parametrize("lang", ["c", "cpp"])
def test_examples_report_the_librarys_errors(examples: dict[str, Path], lang: str, tmp_path: Path) -> None:
    x, _ = load_samples()
    np.save(tmp_path / "x.npy", np.ascontiguousarray(x[:2]))
    r = subprocess.run([str(examples[lang]), str(MODEL_PATH), str(tmp_path / "x.npy"), "lrp.nonsense",
                        str(tmp_path / "r.npy")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "unknown method 'lrp.nonsense'" in r.stderr
    assert "ONNXPLAIN_INVALID_ARGUMENT" in r.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    r = subprocess.run([str(examples[lang]), str(bad), str(tmp_path / "x.npy"), "gradient", str(tmp_path / "r.npy")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "ONNXPLAIN_MODEL_FORMAT" in r.stderr


def test_pkg_config_file_points_at_the_installed_files() -> None:
    pc_dir = Path(_config("--pkgconfig-path"))
    text = (pc_dir / "onnxplain.pc").read_text()
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and ":" not in line.split("=")[0])
    prefix = (pc_dir / fields["prefix"].replace("${pcfiledir}/", "")).resolve()
    assert (prefix / "include" / "onnxplain" / "onnxplain.h").exists()
    assert (prefix / "libonnxplain_core.so").exists()
    assert f"Version: {ox.__version__}" in text
    if shutil.which("pkg-config"):
        flags = _run(["pkg-config", "--cflags", "--libs", "onnxplain"], env={"PKG_CONFIG_PATH": str(pc_dir),
                                                                             "PATH": "/usr/bin:/bin"}).stdout
        assert "-lonnxplain_core" in flags
