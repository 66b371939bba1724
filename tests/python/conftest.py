"""Fixtures for the Python cross-checks: locating and driving the `mxq` CLI.

The CLI binary comes from the MXQ_CLI environment variable (ctest sets it to the built target);
without it, build/release/mxq under the repository root is used.
"""

import os
import pathlib
import subprocess

import numpy as np
import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_CLI = REPO_ROOT / "build" / "release" / "mxq"


def _find_cli() -> pathlib.Path:
    env = os.environ.get("MXQ_CLI")
    path = pathlib.Path(env) if env else DEFAULT_CLI
    if not (path.is_file() and os.access(path, os.X_OK)):
        source = f"MXQ_CLI={env!r}" if env else f"the default {DEFAULT_CLI} (MXQ_CLI is unset)"
        pytest.fail(
            f"mxq CLI not found or not executable: {source}. Build it with "
            "`cmake --preset release && cmake --build build/release`, or point MXQ_CLI at "
            "the `mxq` binary.",
            pytrace=False,
        )
    return path


class Mxq:
    """Thin wrapper over `mxq codes ...`."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.path), *args], input=stdin, capture_output=True, text=True, timeout=300
        )

    def decode(self, type_name: str) -> tuple[np.ndarray, np.ndarray]:
        """Every code of a type and the FP32 bit pattern mxq decodes it to."""
        p = self.run("codes", "decode", type_name)
        assert p.returncode == 0, f"mxq codes decode {type_name} failed: {p.stderr}"
        rows = [line.split() for line in p.stdout.splitlines() if line.strip()]
        assert all(len(r) == 2 for r in rows), f"unexpected decode output: {p.stdout[:200]!r}"
        codes = np.array([int(r[0]) for r in rows], dtype=np.int64)
        bits = np.array([int(r[1], 16) for r in rows], dtype=np.uint32)
        return codes, bits

    def encode(self, type_name: str, x: np.ndarray, *, rounding: str = "rne",
               saturation: str = "saturate", scale: int = 127) -> np.ndarray:
        """Element codes of x / 2^(scale-127) for finite float32 values x."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        stdin = "\n".join(f"{b:08x}" for b in x.view(np.uint32).tolist())
        args = ["codes", "encode", type_name, "--rounding", rounding, "--saturation", saturation,
                "--scale", str(scale)]
        p = self.run(*args, stdin=stdin + "\n")
        assert p.returncode == 0, f"mxq {' '.join(args)} failed: {p.stderr}"
        out = np.array(p.stdout.split(), dtype=np.int64)
        assert out.shape == x.shape, f"{out.size} codes for {x.size} inputs"
        assert ((out >= 0) & (out <= 255)).all()
        return out.astype(np.uint8)


@pytest.fixture(scope="session")
def mxq() -> Mxq:
    return Mxq(_find_cli())
