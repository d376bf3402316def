"""The check every kernel applies to a caller's output buffer (Python allocates, the
kernel fills): the right shape, float64, C-contiguous and writeable."""

from __future__ import annotations

import numpy as np


def check_out_buffer(buf, name: str, shape: tuple[int, ...], what: str = "") -> np.ndarray:
    """Return ``buf`` if a kernel can fill it in place, else raise one ``ValueError`` line
    naming the buffer (``name``), the expected ``shape`` and what its axes are (``what``)."""
    if (
        not isinstance(buf, np.ndarray)
        or buf.shape != shape
        or buf.dtype != np.float64
        or not buf.flags.c_contiguous
        or not buf.flags.writeable
    ):
        axes = f" {what}" if what else ""
        raise ValueError(
            f"{name} must be a writeable C-contiguous float64 array of shape {shape}{axes}"
        )
    return buf
