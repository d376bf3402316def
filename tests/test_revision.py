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


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: another processor
stepping\t: 6
"""


def test_cpu_identity_reads_the_first_processor():
    assert _revision.cpu_identity(CPUINFO) == {
        "model_name": "Intel(R) Xeon(R) Platinum 8480+",
        "id": "cpu family 6, model 143, stepping 8",
    }
    assert _revision.cpu_identity("") == {}
    # an ARM cpuinfo has none of these keys: nothing is made up
    assert (
        _revision.cpu_identity("processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n") == {}
    )


def test_numerics_platform_records_the_kernel_settings(monkeypatch):
    for k in _revision.NUMERICS_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    got = _revision.numerics_platform()
    assert got["env"] == {"MKL_CBWR": "AVX2"}
    assert got["torch_cpu_capability"] in {
        "DEFAULT",
        "NO AVX",
        "AVX",
        "AVX2",
        "AVX512",
        "ZVECTOR",
        "VSX",
        "SVE256",
    } or got["torch_cpu_capability"].startswith(("AVX", "SVE"))
    assert got["blas"] in {"mkl", None}
