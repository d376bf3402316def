"""What a result was made with. :func:`source_revision`: the git commit of the checkout this
package is imported from (an editable install, a clone, a worktree), and whether the
package's code differed from it; ``None`` for an installed wheel (no git checkout around
it) or where git is not on the PATH: the version string is then all there is.
:func:`numerics_platform`: the processor and the instruction sets the numerical libraries
dispatch to. The same code, data and seed give bit-identical runs on one machine, but
MKL and torch choose their kernels by CPU, and the rounding differences they make can grow
in training (an L-BFGS run ended 2× apart with MKL held to AVX2 on the same machine:
docs/results.md, Allen–Cahn extended in space); so results record where they were made."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from pathlib import Path

__all__ = ["numerics_platform", "source_revision"]

_ROOT = Path(__file__).resolve().parents[2]  # <checkout>/python/derlhybrid/_revision.py

# settings that change which kernels the numerical libraries run (and so the rounding)
NUMERICS_ENV = (
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    "NPY_DISABLE_CPU_FEATURES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


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


def cpu_identity(cpuinfo: str) -> dict:
    """The first processor's ``model name`` and x86 ``cpu family`` / ``model`` / ``stepping``
    (which name the microarchitecture where the model name does not) from the text of
    ``/proc/cpuinfo``; keys absent from it are left out."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    out: dict = {}
    if fields.get("model name"):
        out["model_name"] = fields["model name"]
    ident = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if fields.get(k)]
    if ident:
        out["id"] = ", ".join(ident)
    return out


def numerics_platform() -> dict:
    """``{"cpu": {...}, "torch_cpu_capability": "AVX512" | "AVX2" | ..., "blas": "mkl" |
    None, "env": {the NUMERICS_ENV variables that are set}}``."""
    import torch

    try:
        cpu = cpu_identity(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        cpu = {}
    if not cpu.get("model_name") and platform.processor():
        cpu["model_name"] = platform.processor()
    return {
        "cpu": cpu,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": "mkl" if torch.backends.mkl.is_available() else None,
        "env": {k: os.environ[k] for k in NUMERICS_ENV if k in os.environ},
    }
