"""Checkpoints are safe to read and to write: a crafted file runs nothing, a damaged file is
one line (exit 2 through ``derl``), a save is atomic under a name of its own."""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from derlhybrid.cli import main
from derlhybrid.data.generate import GenerateRequest, generate
from derlhybrid.learn.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from derlhybrid.learn.config import TrainConfig
from derlhybrid.learn.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A dataset, a one-epoch run of it and its config file."""
    d = tmp_path_factory.mktemp("ckpt")
    data = generate(
        GenerateRequest(
            system="allen-cahn", out=str(d / "a.h5"), n_points=200, n_boundary=11, seed=2
        ),
        progress=False,
    )
    toml = d / "c.toml"
    toml.write_text(
        f'[data]\npath = "{data}"\n[model]\nwidth = 4\ndepth = 1\ndtype = "float64"\n'
        '[objective]\nmode = "derl"\n[train]\nepochs = 1\nbatch_size = 64\n'
        "progress = false\n"
    )
    train(TrainConfig.from_toml(toml), d / "run")
    return {"data": str(data), "config": str(toml), "checkpoint": d / "run" / "checkpoint.pt"}


_MARKER_CODE = "open({path!r}, 'w').write('the payload ran')"


class _Payload:
    """Unpickling it runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (_MARKER_CODE.format(path=str(self.marker)),))


def _crafted(tmp_path, how: str) -> tuple[Path, Path]:
    marker = tmp_path / f"{how}.marker"
    bad = tmp_path / f"{how}.pt"
    header = {"format": FORMAT, "version": VERSION}
    if how == "torch.save":  # a valid zip archive, CRCs and all, around a malicious pickle
        torch.save({"payload": _Payload(marker), **header}, bad)
    else:  # a bare pickle (torch.load's legacy format)
        bad.write_bytes(pickle.dumps({"payload": _Payload(marker), **header}))
    return bad, marker


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_crafted_checkpoint_runs_nothing(run, tmp_path, capsys, how):
    bad, marker = _crafted(tmp_path, how)
    # the file is genuinely malicious: an unrestricted load runs its payload
    with contextlib.suppress(RuntimeError):  # the bare pickle: after running it
        torch.load(bad, weights_only=False)
    assert marker.read_text() == "the payload ran"
    marker.unlink()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert main(["evaluate", str(bad), run["data"]]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("derl: error: ") and out.err.count("\n") == 1, out.err
    assert "Traceback" not in out.err and out.out == ""
    assert not marker.exists()


def _member_data(path: Path, name_end: str) -> tuple[int, int]:
    """(offset, size) of the bytes of the archive member whose name ends with
    ``name_end``."""
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(name_end))
    n_name, n_extra = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + n_name + n_extra, info.file_size


def _largest_tensor(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        tensors = [i for i in zf.infolist() if "/data/" in i.filename]
    return max(tensors, key=lambda i: i.file_size).filename


def _damage(src: Path, dst: Path, how: str) -> Path:
    raw = bytearray(src.read_bytes())
    if how == "truncated":
        raw = raw[: len(raw) // 2]
    elif how == "flipped-weight":  # one bit of a float64 in the largest tensor
        start, size = _member_data(src, _largest_tensor(src))
        raw[start + size // 2] ^= 0x04
    elif how == "flipped-pickle":  # one bit of the pickled structure
        start, size = _member_data(src, "data.pkl")
        raw[start + size // 2] ^= 0x01
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(raw))
    return dst


DAMAGES = ["truncated", "flipped-weight", "flipped-pickle"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_checkpoint_is_one_line(run, tmp_path, capsys, how):
    bad = _damage(run["checkpoint"], tmp_path / "bad.pt", how)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad)
    assert "\n" not in str(err.value) and str(bad) in str(err.value)
    # derl evaluate
    assert main(["evaluate", str(bad), run["data"]]) == 2
    out = capsys.readouterr()
    assert out.err.startswith("derl: error: ") and out.err.count("\n") == 1, out.err
    assert "Traceback" not in out.err
    # derl train resuming it: refused, and the damaged file is left as it was
    folder = tmp_path / "resume"
    ckpt = _damage(run["checkpoint"], folder / "checkpoint.pt", how)
    before = ckpt.read_bytes()
    argv = ["train", run["config"], "--out", str(folder), "--epochs", "2", "--no-progress"]
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.err.startswith("derl: error: ") and out.err.count("\n") == 1, out.err
    assert "Traceback" not in out.err
    assert ckpt.read_bytes() == before


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    return type(a) is type(b) and (a == b or (a != a and b != b))


def test_no_flipped_bit_loads_other_values(run, tmp_path):
    # a sample of single-bit flips all over the file: each is refused with one line or
    # (in padding, timestamps, unused fields) changes nothing that is loaded
    src = run["checkpoint"]
    ref = load_checkpoint(src)
    raw = src.read_bytes()
    bad = tmp_path / "flip.pt"
    outcomes = {"refused": 0, "unchanged": 0}
    for pos in range(0, len(raw), max(1, len(raw) // 400)):
        flipped = bytearray(raw)
        flipped[pos] ^= 1 << (pos % 8)
        bad.write_bytes(bytes(flipped))
        try:
            got = load_checkpoint(bad)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            outcomes["refused"] += 1
            continue
        assert _same(ref, got), f"a flipped bit at byte {pos} loaded other values"
        outcomes["unchanged"] += 1
    assert outcomes["refused"] > 0.5 * sum(outcomes.values()), outcomes


def test_no_flipped_bit_of_a_members_attributes_loads_other_values(run, tmp_path):
    # every bit of every central-directory entry's external attributes (bytes 38–41 of the
    # entry): Python's zipfile reads the member alike, so its CRC-32 matches, but torch's
    # reader (miniz) takes the DOS folder bit 0x10 for a folder and loads other bytes
    # (found by a bit-flip scan: a step counter of 2 loaded as 1.8e33)
    src = run["checkpoint"]
    ref = load_checkpoint(src)
    raw = src.read_bytes()
    entries = [i for i in range(len(raw)) if raw.startswith(b"PK\x01\x02", i)]
    assert len(entries) == len(zipfile.ZipFile(src).infolist())
    bad = tmp_path / "flip.pt"
    refused = 0
    for entry in entries:
        for pos in range(entry + 38, entry + 42):
            for bit in range(8):
                flipped = bytearray(raw)
                flipped[pos] ^= 1 << bit
                bad.write_bytes(bytes(flipped))
                try:
                    got = load_checkpoint(bad)
                except CheckpointError as exc:
                    assert "\n" not in str(exc)
                    refused += 1
                    continue
                assert _same(ref, got), f"bit {bit} of byte {pos} loaded other values"
    assert refused >= len(entries)  # at least the folder bit of every entry


def test_save_uses_a_temporary_file_of_its_own(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    # another writer's temporary file under the old fixed name is not touched
    other = tmp_path / "checkpoint.pt.tmp"
    other.write_text("another run's half-written checkpoint")
    synced, replaced = [], []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])

    def replace(src, dst):
        replaced.append((Path(src), Path(dst), bool(synced)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint(target, {"epoch": 1, "w": torch.arange(3.0)})
    save_checkpoint(target, {"epoch": 2, "w": torch.arange(4.0)})
    assert other.read_text() == "another run's half-written checkpoint"
    assert len(replaced) == 2 and all(flushed for *_, flushed in replaced)
    (a, _, _), (b, _, _) = replaced
    assert a != b and a.parent == b.parent == tmp_path and a.name.endswith(".tmp")
    assert load_checkpoint(target)["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "checkpoint.pt.tmp"]


def test_a_failed_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, {"epoch": 1})
    real_save = torch.save

    def dies(obj, f, *a, **k):  # half a file, then the process is interrupted
        real_save(obj, f, *a, **k)
        f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(target)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_numpy_values_and_paths_are_stored_as_plain_values(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(
        path,
        {
            "history": [{"loss": np.float64(0.5), "epoch": np.int64(3), "ok": np.bool_(True)}],
            "rng": np.random.default_rng(1).bit_generator.state,
            "array": np.arange(4.0),
            "names": np.array(["a", "b"]),
            "where": tmp_path,
        },
    )
    ckpt = load_checkpoint(path)
    h = ckpt["history"][0]
    assert (type(h["loss"]), type(h["epoch"]), type(h["ok"])) == (float, int, bool)
    assert torch.equal(ckpt["array"], torch.arange(4.0, dtype=torch.float64))
    assert ckpt["names"] == ["a", "b"] and ckpt["where"] == str(tmp_path)
    state = np.random.default_rng(1).bit_generator.state
    assert ckpt["rng"] == state  # the PCG64 state: plain ints and strings
    restored = np.random.default_rng()
    restored.bit_generator.state = ckpt["rng"]
    assert restored.random() == np.random.default_rng(1).random()


def test_an_object_is_refused_when_saved_not_when_loaded(tmp_path):
    class Opaque:
        pass

    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]\[0\] is a .*Opaque"):
        save_checkpoint(tmp_path / "c.pt", {"extra": [Opaque()]})
    assert not list(tmp_path.iterdir())


def test_a_foreign_archive_or_folder_is_one_line(tmp_path):
    for path in (tmp_path / "z.pt", tmp_path / "folder.pt", tmp_path / "empty.pt"):
        if path.name == "z.pt":
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("data.pkl", b"x" * 1000)
        elif path.name == "empty.pt":
            path.write_bytes(b"")
        else:
            path.mkdir()
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(path)
        assert "\n" not in str(err.value)
