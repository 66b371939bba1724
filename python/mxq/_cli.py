"""The `mxq` command-line tool, the C++ executable, as part of the package.

The wheel (and `pip install .`) installs the CLI of the same CMake build as the extension at
mxq/_bin/mxq; in a CMake build's package (<build>/python/mxq) _bin/mxq links to that build's
CLI. `python -m mxq` (here) and the `mxq` script that pip puts on PATH (python/scripts/mxq,
which finds the package without importing it) run it by exec: the process becomes the CLI, with
its exit codes (0 ok, 1 error, 3 out of memory, CLI11's >= 100 for a bad command line), output
and signals; `mxq --version` is the package's version and commit.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence


def path() -> Optional[str]:
    """The path of the CLI that came with this package, or None if it has none."""
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_bin", "mxq")
    return exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the CLI with argv (default sys.argv[1:]) in place of this process."""
    exe = path()
    if exe is None:
        sys.stderr.write("mxq: this mxq package has no CLI (mxq/_bin/mxq is missing; the wheel, "
                         "`pip install .` and a CMake build's package have it)\n")
        return 1
    args = list(sys.argv[1:] if argv is None else argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, ["mxq", *args])
    return 1  # not reached
