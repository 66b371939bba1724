"""Fixtures for the `mxq` Python package tests.

The package comes from PYTHONPATH (ctest points it at <build>/python, see python/CMakeLists.txt)
or from an installed wheel (`pip install .`). With MXQ_REQUIRE_PACKAGE=1 (ctest) a missing
package is a failure; otherwise these tests skip with the reason.
"""

import os
import pathlib
import subprocess

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]

try:
    import mxq  # noqa: F401

    _IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the environment
    _IMPORT_ERROR = e


def pytest_collection_modifyitems(config, items):
    if _IMPORT_ERROR is None:
        return
    msg = (f"the mxq package is not importable ({_IMPORT_ERROR}); build it with "
           "`pip install .` or -DMXQ_BUILD_PYTHON=ON and PYTHONPATH=<build>/python")
    if os.environ.get("MXQ_REQUIRE_PACKAGE") == "1":
        raise pytest.UsageError(msg)
    for item in items:
        item.add_marker(pytest.mark.skip(reason=msg))


def _package_cli():
    """The CLI that came with the imported package (mxq/_bin/mxq: the wheel's, or in a CMake
    build's package a link to that build's CLI), or None."""
    try:
        from mxq import _cli
    except ImportError:
        return None
    path = _cli.path()
    return pathlib.Path(path) if path else None


def _cli():
    """The CLI for the cross-checks: MXQ_CLI, else the package's own (tests run from an installed
    wheel use the wheel's CLI), else build/release/mxq; None if none is an executable."""
    env = os.environ.get("MXQ_CLI")
    path = pathlib.Path(env) if env else _package_cli() or REPO_ROOT / "build" / "release" / "mxq"
    return path if path.is_file() and os.access(path, os.X_OK) else None


@pytest.fixture(scope="session")
def cli():
    """Runs the mxq CLI (MXQ_CLI, else the package's mxq/_bin/mxq, else build/release/mxq);
    skips the test if there is none."""
    path = _cli()
    if path is None:
        pytest.skip("mxq CLI not found (set MXQ_CLI): needed for this cross-check")

    def run(*args, stdin=None):
        p = subprocess.run([str(path), *map(str, args)], input=stdin, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, f"mxq {' '.join(map(str, args))} failed: {p.stderr}"
        return p.stdout

    return run


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """The embedded sample model: dense BF16 and its MXFP4 compressed-tensors quantization."""
    import mxq

    d = tmp_path_factory.mktemp("sample")
    mxq.write_sample_model(d / "dense")
    mxq.quantize_model(d / "dense", d / "mxfp4")
    return d
