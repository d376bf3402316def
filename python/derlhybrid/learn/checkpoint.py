"""Checkpoints that carry what rebuilds and resumes a run (style rule 12).

A checkpoint is one ``torch.save`` file holding: format name and version, package version,
the whole training config, the model config (``MLP(MLPConfig(**model_config))`` rebuilds
the network), the system and its parameters, the data provenance, weights, optimizer and
scheduler state, random-generator states, the epoch reached and the history. It is written
to ``<name>.tmp`` and renamed into place, so a kill never leaves a torn checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "derlhybrid-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def save_checkpoint(path, payload: dict[str, Any]) -> None:
    from .. import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {"format": FORMAT, "version": VERSION, "package_version": __version__, **payload}, tmp
    )
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu") -> dict[str, Any]:
    """Load and validate a checkpoint (one-line :class:`CheckpointError`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for foreign or torn files
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(exc).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a derlhybrid checkpoint")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is a version-{ckpt.get('version')} checkpoint; this derlhybrid reads "
            f"version {VERSION} (retrain with this version, or use the derlhybrid "
            f"{ckpt.get('package_version')} that wrote it)"
        )
    return ckpt
