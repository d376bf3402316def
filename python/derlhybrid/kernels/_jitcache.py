"""Per-rhs Numba kernels compiled once per machine: generated modules in a cache folder.

The ODE drivers are specialised for one right-hand side. Passed as an argument, the rhs
makes Numba's specialisation impossible to cache on disk (a dispatcher value is lowered to
the address of a live Python object), so each process used to compile the driver again
(seconds). Here the driver's source is written into a module that imports the rhs by
module and name as a global (``_rhs``), with ``numba.njit(cache=True)``: Numba caches it
next to that module (``__pycache__/*.nbi``, ``*.nbc``) and later processes load it.

The module is ``<cache>/ode/<prefix>_<hash>.py`` with ``<cache>`` = ``$DERLHYBRID_CACHE``,
else ``$XDG_CACHE_HOME/derlhybrid``, else ``~/.cache/derlhybrid``. The hash covers the
generated source (which names the rhs's module and qualified name), the contents of the
source files of the rhs and of the Numba functions it reaches through its globals, of
``ode_scalar.py`` (the scalar templates), of ``dop853.py`` (the helpers the generated
modules import) and of this module, and the versions of derlhybrid, Numba, NumPy and Python:
Numba itself does not notice when a function called by a cached one changes, a new hash
does. It covers the files' names and contents, never their paths: the same code installed at
another path (another node of a cluster, another clone) gets the same module id. The file is
written atomically (temporary file, ``os.replace``), so processes that race write the same
bytes. Old files are never used again and may be deleted, as may the whole folder.

Falls back to compiling the same source in memory, without an error, when the rhs is not
importable by module and name (a closure, a function of ``__main__`` or of a module without
a source file) or when the cache folder cannot be written.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import types as pytypes
from pathlib import Path

import numba
import numba.core.dispatcher
import numpy as np

from .._io import write_text_atomic

_LOCK = threading.RLock()
_DEFAULT = Path("~") / ".cache" / "derlhybrid"


def cache_dir() -> Path:
    """The folder of the generated modules (not created here)."""
    root = os.environ.get("DERLHYBRID_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = Path(xdg) / "derlhybrid" if xdg else _DEFAULT.expanduser()
    return Path(root).expanduser() / "ode"


def importable_name(fn) -> tuple[str, str] | None:
    """``(module, name)`` through which ``fn`` (a Numba dispatcher) can be imported, or
    None: a module-level function of a module with a source file, not ``__main__``."""
    py = getattr(fn, "py_func", None)
    if py is None:
        return None
    mod_name, name = py.__module__, py.__qualname__
    mod = sys.modules.get(mod_name)
    if mod is None or mod_name == "__main__" or "." in name or not name.isidentifier():
        return None
    f = getattr(mod, "__file__", None)
    if not f or not f.endswith(".py") or not os.path.isfile(f):
        return None
    if getattr(mod, name, None) is not fn:
        return None
    return mod_name, name


def _reached_files(fn) -> set[str]:
    """Source files of ``fn`` and of the Numba functions it reaches through its globals
    (names it reads, and attributes of modules it reads), recursively."""
    files: set[str] = set()
    seen: set[int] = set()
    todo = [fn]
    while todo:
        d = todo.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        py = getattr(d, "py_func", None)
        if py is None:
            continue
        try:
            files.add(inspect.getfile(py))
        except TypeError:
            pass
        names: set[str] = set()
        codes = [py.__code__]
        while codes:
            c = codes.pop()
            names.update(c.co_names)
            codes += [k for k in c.co_consts if isinstance(k, pytypes.CodeType)]
        g = py.__globals__
        for nm in names:
            v = g.get(nm)
            if isinstance(v, numba.core.dispatcher.Dispatcher):
                todo.append(v)
            elif isinstance(v, pytypes.ModuleType):
                for attr in names:
                    w = getattr(v, attr, None)
                    if isinstance(w, numba.core.dispatcher.Dispatcher):
                        todo.append(w)
    return files


@functools.cache
def _file_digest(path: str, stamp: tuple[int, int]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digest(path: str) -> str:
    try:
        st = os.stat(path)
        return _file_digest(path, (st.st_mtime_ns, st.st_size))
    except OSError:
        return "missing"


def _key(source: str, rhs) -> str:
    from .. import __version__

    h = hashlib.sha256()
    versions = (__version__, numba.__version__, np.__version__, sys.version)
    h.update(repr(versions).encode())
    h.update(source.encode())
    here = Path(__file__)
    # ode_scalar.py (the scalar templates) and dop853.py (the Numba helpers that both
    # generated modules import): Numba does not notice when a cached caller's callee changes
    files = _reached_files(rhs) | {str(here.with_name(f)) for f in ("ode_scalar.py", "dop853.py")}
    files.add(__file__)
    # contents only, never where they are: the same code installed elsewhere (another node,
    # another clone) gets the same module id, and so the same generated module
    for entry in sorted(f"{os.path.basename(f)}:{_digest(f)}" for f in files):
        h.update(f"\n{entry}".encode())
    return h.hexdigest()[:24]


def _import_file(name: str, path: Path) -> pytypes.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # never for a .py file
        raise ImportError(f"cannot import {path} as module {name}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Numba's cache finds the module (and its file) by name
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def load(prefix: str, header: str, body: str, rhs) -> dict:
    """The namespace of ``header + body`` with ``_rhs`` bound to ``rhs``, Numba functions
    decorated with ``_njit(...)`` (``numba.njit`` with ``cache=_CACHE``).

    ``header`` holds imports (no rhs); the body refers to ``_rhs``. Compiled from a cached
    module where possible (``_CACHE = True``), otherwise in memory (``_CACHE = False``)."""
    with _LOCK:
        where = importable_name(rhs)
        if where is not None:
            mod_name, name = where
            text = (
                f"# Generated by derlhybrid ({prefix}); safe to delete.\n{header}\n"
                f"from {mod_name} import {name} as _rhs\n\n_CACHE = True\n\n{body}"
            )
            mod_id = f"_derl_{prefix}_{_key(text, rhs)}"
            if mod_id in sys.modules:
                return vars(sys.modules[mod_id])
            try:
                folder = cache_dir()
                path = folder / f"{mod_id}.py"
                if not (path.is_file() and path.read_text(encoding="utf-8") == text):
                    write_text_atomic(path, text)
            except OSError:
                pass  # not writable: in memory below
            else:
                return vars(_import_file(mod_id, path))
        ns = {"_rhs": rhs}
        code = compile(f"{header}\n_CACHE = False\n\n{body}", f"<derlhybrid {prefix}>", "exec")
        exec(code, ns)  # our own generated source
        return ns
