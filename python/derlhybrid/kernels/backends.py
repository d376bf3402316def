"""Backend registry and selection: ``backend=`` argument, ``DERL_BACKEND``, ``auto``.

* ``python`` — the embedded default (NumPy + Numba), always available.
* ``julia`` — DERLKernels.jl through juliacall (``kernels/_julia.py``), available only when
  juliacall is installed *and* a Julia executable is already on this machine.
* ``auto`` — ``julia`` when it is available and loads without downloading anything,
  otherwise ``python``. Checking availability (``availability.py``, whose names are
  re-exported here) never imports juliacall and never downloads.
"""

from __future__ import annotations

import os
from types import ModuleType

# what is available lives one level down (``_julia`` imports it too; neither imports this
# module back); re-exported here, where callers have always found it
from .availability import (
    BACKENDS,
    CHOICES,
    JULIA_INSTALL_HINT,
    BackendStatus,
    BackendUnavailable,
    julia_executable,
    status,
)

__all__ = [
    "BACKENDS",
    "CHOICES",
    "ENV_VAR",
    "JULIA_INSTALL_HINT",
    "BackendStatus",
    "BackendUnavailable",
    "julia_executable",
    "module",
    "resolve",
    "status",
]

ENV_VAR = "DERL_BACKEND"


def resolve(backend: str | None = None) -> str:
    """Turn ``backend`` (or ``$DERL_BACKEND``, default ``auto``) into a concrete backend."""
    source = "backend"
    if backend is None:
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        source = ENV_VAR
    if backend not in CHOICES:
        raise ValueError(f"{source}={backend!r} is not a backend; choose one of {CHOICES}")
    if backend == "python":
        return "python"
    st = status("julia")
    if backend == "julia":
        if not st.available:
            raise BackendUnavailable(f"julia backend unavailable: {st.detail}")
        return "julia"
    # auto: julia only if present and it loads offline; otherwise the embedded default
    if st.available:
        from . import _julia

        try:
            _julia.load(offline=True)
            return "julia"
        except BackendUnavailable:
            return "python"
    return "python"


def module(name: str) -> ModuleType:
    """The implementation module of a concrete backend."""
    if name == "python":
        from . import _python

        return _python
    from . import _julia

    _julia.load()
    return _julia
