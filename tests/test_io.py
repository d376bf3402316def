"""The package's one atomic text writer (``derlhybrid._io.write_text_atomic``)."""

import os
import stat

import pytest

from derlhybrid import _io
from derlhybrid._io import write_text_atomic


def test_writes_creates_parents_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a" / "b" / "record.json"
    assert write_text_atomic(path, "ü 1\n") == path
    assert path.read_text(encoding="utf-8") == "ü 1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["record.json"]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    write_text_atomic(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_text_atomic(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["record.json"]  # the temporary file is gone


def test_a_write_that_fails_midway_keeps_the_old_file(tmp_path):
    path = tmp_path / "record.json"
    write_text_atomic(path, "old")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(path, "bad \udcff surrogate")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["record.json"]
