"""The one atomic file writer of the package: nothing half-written is ever left at a path.

Every small text file the package writes (JSON records, markers, TOML, generated modules)
goes through :func:`write_text_atomic`: the text goes to a unique temporary file in the
target's folder, is flushed to disk, and is renamed over the target (``os.replace``, atomic
on POSIX and Windows). A reader sees the old file or the new one, never a part; concurrent
writers each use their own temporary file, and the last rename wins.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) at ``path`` atomically, creating missing parent folders; the
    file gets mode 0o644 (``mkstemp`` would leave 0o600). Returns the path. On any failure
    the temporary file is removed and the target is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    """:func:`write_text_atomic` of ``obj`` as JSON: indent 2, sorted keys, ``str`` of what
    JSON cannot hold (paths, dates) — the format of the trainer's and the stages' records."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str))
