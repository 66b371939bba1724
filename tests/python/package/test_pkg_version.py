"""Version from one place (issue 20): project(mxq VERSION ...) in CMakeLists.txt is the source;
mxq.__version__, the wheel's metadata (pyproject's regex over CMakeLists.txt) and
`mxq --version` read it."""

import os
import re
import subprocess
import sys

import mxq
import pytest

from conftest import REPO_ROOT, _cli, _package_cli

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


def _version_line():
    """What `mxq --version` of this package's build prints."""
    return f"mxq {mxq.__version__}" + (f" (commit {mxq.__commit__})" if mxq.__commit__ else "")


def test_cli_version_agrees():
    path = _cli()
    if path is None:
        pytest.skip("mxq CLI not found (set MXQ_CLI)")
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    m = re.fullmatch(r"mxq ([0-9.]+)(?: \(commit ([0-9a-f]+(?:-dirty)?)\))?", out)
    assert m, f"mxq --version printed {out!r}"
    assert m.group(1) == mxq.__version__ == _cmake_version()
    # The same build (ctest sets MXQ_CLI to the CLI built with this package; a wheel's CLI is
    # the package's own mxq/_bin/mxq): the same commit. A CLI found elsewhere (build/release
    # next to an installed wheel) may be another build.
    if os.environ.get("MXQ_CLI") or path == _package_cli():
        assert out == _version_line(), (out, mxq.__commit__)


def _package_cli_or_skip():
    path = _package_cli()
    if path is None:
        pytest.skip(f"this mxq package ({mxq.__file__}) has no CLI (mxq/_bin/mxq)")
    return path


def test_python_m_mxq_runs_the_package_cli(tmp_path):
    """`python -m mxq` execs the package's CLI: its --version (this build's version and commit),
    its output and its exit codes."""
    _package_cli_or_skip()
    # This package first on the child's path (PYTHONPATH may be relative to another cwd).
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(mxq.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [pkg_parent, *filter(None, [os.environ.get("PYTHONPATH")])]))

    def run(*args):
        return subprocess.run([sys.executable, "-m", "mxq", *map(str, args)], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path, env=env)

    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == _version_line(), (p.stdout, p.stderr)
    p = run("codes", "decode", "e2m1")
    assert p.returncode == 0 and len(p.stdout.split()) == 2 * 16, (p.stdout, p.stderr)
    # A bad command line is CLI11's exit code (>= 100), an error in a command 1.
    assert run("no-such-command").returncode >= 100
    p = run("inspect", tmp_path / "missing")
    assert p.returncode == 1 and p.stderr.startswith("mxq: "), (p.returncode, p.stderr)


def test_cli_main_without_a_cli(monkeypatch, capsys):
    """A package without _bin/mxq: `python -m mxq` says so and exits 1 (no traceback)."""
    from mxq import _cli as cli_module

    monkeypatch.setattr(cli_module, "path", lambda: None)
    assert cli_module.main(["--version"]) == 1
    assert "has no CLI" in capsys.readouterr().err
