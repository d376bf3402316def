"""The one atomic file writer and the one output lock of the package: nothing
half-written is ever left at a path, and two runs never share one output.

Every small text file the package writes (JSON records, markers, TOML, generated modules)
goes through :func:`write_text_atomic`: the text goes to a unique temporary file in the
target's folder, is flushed to disk, and is renamed over the target (``os.replace``, atomic
on POSIX and Windows). A reader sees the old file or the new one, never a part; concurrent
writers each use their own temporary file, and the last rename wins.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb") -> Iterator:
    """Open a unique temporary file beside ``path`` for writing (``mode`` "wb" or "w"), yield
    it, then flush, fsync and rename it over ``path`` (mode 0o644; missing parent folders are
    created). On any failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        encoding = "utf-8" if "b" not in mode else None
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp would leave 0o600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) at ``path`` atomically (:func:`atomic_file`). Returns the
    path. On any failure the temporary file is removed and the target is untouched."""
    with atomic_file(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """:func:`write_text_atomic` of ``obj`` as JSON: indent 2, sorted keys, ``str`` of what
    JSON cannot hold (paths, dates) — the format of the trainer's and the stages' records."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))


class OutputLocked(ValueError):
    """Another process holds the lock of this output (a one-line user error)."""


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``<name>.lock`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


@contextlib.contextmanager
def exclusive_lock(
    path: str | os.PathLike, *, error: type[Exception] = OutputLocked
) -> Iterator[Path]:
    """Hold an exclusive lock on the output ``path`` (a file or a folder) while the block
    runs: ``fcntl.flock`` on ``<name>.lock``, which the kernel releases if the process dies,
    so a lock is never stale. A second process (or a second lock in this one) raises
    ``error`` at once with one line naming the holder's pid. The lock file is removed on
    release; a waiter that opened it just before re-checks that it locked the live name."""
    import fcntl

    lock = lock_path(path)
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise error(
                f"cannot lock {path}: cannot create {lock} ({exc.strerror}); choose a writable "
                "output folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = ""
            with contextlib.suppress(OSError, ValueError, IndexError):
                holder = f" (pid {int(lock.read_text().split()[0])})"
            raise error(
                f"another run is writing {path}{holder}; wait for it to finish, or choose "
                "another output"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the name was removed between our open and our flock: take it again
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still held
        os.close(fd)
