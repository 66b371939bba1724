"""Version from one place (issue 20): project(mxq VERSION ...) in CMakeLists.txt is the source;
mxq.__version__, the wheel's metadata (pyproject's regex over CMakeLists.txt) and
`mxq --version` read it."""

import os
import re
import subprocess

import mxq
import pytest

from conftest import REPO_ROOT, _cli

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None


def _cmake_version():
    text = (REPO_ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(mxq VERSION ([0-9]+\.[0-9]+\.[0-9]+)", text)
    assert m, "CMakeLists.txt has no project(mxq VERSION x.y.z)"
    return m.group(1)


def test_version_is_the_cmake_project_version():
    assert mxq.__version__ == _cmake_version()


def test_commit_is_a_short_hash_or_empty():
    assert isinstance(mxq.__commit__, str)
    assert mxq.__commit__ == "" or re.fullmatch(r"[0-9a-f]{7,}(-dirty)?", mxq.__commit__), \
        mxq.__commit__


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
def test_pyproject_takes_the_version_from_cmake():
    cfg = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert "version" not in cfg["project"], "a second version in pyproject.toml"
    assert "version" in cfg["project"]["dynamic"]
    v = cfg["tool"]["scikit-build"]["metadata"]["version"]
    assert v["provider"] == "scikit_build_core.metadata.regex"
    assert v["input"] == "CMakeLists.txt"
    m = re.search(v["regex"], (REPO_ROOT / v["input"]).read_text())
    assert m and m.group("value") == mxq.__version__


def test_cli_version_agrees():
    path = _cli()
    if path is None:
        pytest.skip("mxq CLI not found (set MXQ_CLI)")
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    m = re.fullmatch(r"mxq ([0-9.]+)(?: \(commit ([0-9a-f]+(?:-dirty)?)\))?", out)
    assert m, f"mxq --version printed {out!r}"
    assert m.group(1) == mxq.__version__
    # The same build (ctest sets MXQ_CLI to the CLI built with this package): the same commit.
    # A CLI found elsewhere (build/release next to an installed wheel) may be another build.
    if os.environ.get("MXQ_CLI"):
        assert (m.group(2) or "") == mxq.__commit__, (out, mxq.__commit__)
