"""The source revision recorded in results (derlhybrid._revision): the checkout's commit
as git reports it, and None where there is no checkout."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from derlhybrid import _revision


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not on the PATH")
def test_the_commit_of_this_checkout(monkeypatch):
    root = _revision._ROOT
    if not (root / ".git").exists():
        pytest.skip("the package is not imported from a git checkout")
    _revision.source_revision.cache_clear()
    got = _revision.source_revision()
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert got is not None and got["commit"] == head and len(head) == 40
    assert isinstance(got["dirty"], bool)


def test_none_outside_a_checkout(monkeypatch, tmp_path):
    monkeypatch.setattr(_revision, "_ROOT", tmp_path)
    _revision.source_revision.cache_clear()
    try:
        assert _revision.source_revision() is None
    finally:
        _revision.source_revision.cache_clear()
