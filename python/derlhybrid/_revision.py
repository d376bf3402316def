"""The source revision a result was made with: the git commit of the checkout this package
is imported from (an editable install, a clone, a worktree), and whether the package's
code differed from it. ``None`` for an installed wheel (no git checkout around it) or
where git is not on the PATH: the version string is then all there is."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

__all__ = ["source_revision"]

_ROOT = Path(__file__).resolve().parents[2]  # <checkout>/python/derlhybrid/_revision.py


@functools.cache
def source_revision() -> dict | None:
    """``{"commit": <40 hex>, "dirty": bool}`` (``dirty``: tracked files under ``python/``
    or ``pyproject.toml`` differ from the commit), or ``None``."""
    git = shutil.which("git")
    if git is None or not (_ROOT / ".git").exists() or not (_ROOT / "pyproject.toml").exists():
        return None

    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(
                [git, "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    if not commit:
        return None
    status = run("status", "--porcelain", "--untracked-files=no", "--", "python", "pyproject.toml")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
