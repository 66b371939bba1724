"""What a benchmark JSON records about what was measured (issue 18): the commit (MXQ_COMMIT
when set, since a tree copied to the GPU host may carry stale git metadata; else git, with
"+dirty" for uncommitted changes to tracked files) and the sha256 of the binary that ran."""
import hashlib
import os
import subprocess


def git_commit(here):
    try:
        commit = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001  (a copied tree without .git)
        return "unknown"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def provenance(shim_path):
    """{"commit", "shim_sha256"} for the shim at shim_path."""
    commit = os.environ.get("MXQ_COMMIT") or git_commit(os.path.dirname(os.path.abspath(__file__)))
    return {"commit": commit, "shim_sha256": sha256(shim_path)}
