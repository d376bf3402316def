"""Whether a backend can run here, without importing juliacall: the bottom of the backends.

* ``python`` — the embedded default (NumPy + Numba), always available.
* ``julia`` — DERLKernels.jl through juliacall (``kernels/_julia.py``), available only when
  juliacall is installed *and* a Julia executable is already on this machine.

Both ``backends.py`` (selection) and ``_julia.py`` (the julia backend) import from here;
this module imports neither, so the dependency points one way. Checking availability never
imports juliacall and never downloads anything. ``backends`` re-exports every name.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

from . import _julia_state

__all__ = [
    "BACKENDS",
    "CHOICES",
    "JULIA_INSTALL_HINT",
    "BackendStatus",
    "BackendUnavailable",
    "julia_executable",
    "status",
]

BACKENDS = ("python", "julia")
CHOICES = ("auto", *BACKENDS)

JULIA_INSTALL_HINT = (
    "install Julia >= 1.10 (e.g. with juliaup) so that `julia` is on PATH or "
    "PYTHON_JULIAPKG_EXE points to it, and `pip install 'derlhybrid[julia]'`"
)


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here; the message says what is missing."""


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    detail: str  # where it lives, or why it is unavailable


def julia_executable() -> str | None:
    """The Julia executable already on this machine, or None (never downloads)."""
    exe = os.environ.get("PYTHON_JULIAPKG_EXE")
    if exe:
        return exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None
    return shutil.which("julia")


def status(name: str) -> BackendStatus:
    """Whether backend ``name`` can run here, without importing juliacall."""
    if name == "python":
        try:
            import numba

            detail = f"NumPy + Numba {numba.__version__} (embedded default)"
        except ImportError:
            detail = "NumPy only (Numba not installed: `pip install numba` for full speed)"
        return BackendStatus("python", True, detail)
    if name == "julia":
        if _julia_state.load_error is not None:
            return BackendStatus("julia", False, _julia_state.load_error)
        if importlib.util.find_spec("juliacall") is None:
            return BackendStatus(
                "julia", False, "juliacall is not installed: pip install 'derlhybrid[julia]'"
            )
        exe = julia_executable()
        if exe is None:
            where = os.environ.get("PYTHON_JULIAPKG_EXE")
            missing = (
                f"PYTHON_JULIAPKG_EXE={where} is not an executable file"
                if where
                else "no Julia executable on PATH"
            )
            return BackendStatus(
                "julia",
                False,
                f"{missing} (derlhybrid never downloads Julia): {JULIA_INSTALL_HINT}",
            )
        loaded = " (loaded)" if _julia_state.module is not None else ""
        return BackendStatus("julia", True, f"DERLKernels.jl via juliacall, julia at {exe}{loaded}")
    raise ValueError(f"unknown backend {name!r}; choose one of {CHOICES}")
