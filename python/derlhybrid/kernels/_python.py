"""The python backend: applies :class:`StencilOperator` s with Numba (NumPy fallback).

The array is viewed as ``(pre, n, post)`` with the differentiated axis in the middle.
``post == 1`` (the last, contiguous axis) runs row by row with the stencil loop outside the
point loop, so every pass is a vectorised sweep over a row that sits in L1 cache; otherwise
each output line ``out[i, j, :]`` is a weighted sum of ``W`` contiguous input lines. Both
read the input once from memory and write the output once, which is why the measured time
is close to a plain ``numpy.copy`` (``bench/stencils.py``). Threads: Numba's (all cores by
default; ``NUMBA_NUM_THREADS`` limits them).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .stencils import StencilOperator

try:  # Numba is a dependency; the fallback keeps the package usable where it has no wheel.
    import numba
except ImportError:  # pragma: no cover - exercised only on platforms without numba
    numba = None

NAME = "python"


ROW_BLOCK = 256  # points per block along the last axis: accumulator and inputs stay in L1
LINE_BLOCK = 1024  # columns per block when the axis is not the last one
LINES = 64  # output lines per task when the axis is not the last one


def _kernels():
    """Compile (or load from Numba's on-disk cache) the two loops, once per process."""
    global _ROWS, _LINES
    if _ROWS is not None and _LINES is not None:
        return _ROWS, _LINES
    assert numba is not None  # apply() takes the NumPy fallback where Numba is missing
    njit = numba.njit(parallel=True, cache=True, nogil=True)
    prange = numba.prange

    @njit
    def rows(u, out, w, shift, lo, hi, bidx, bstart, bw):
        # Interior, in blocks: one vectorised pass per non-zero weight into a small
        # accumulator. Slices indexed from 0 let LLVM drop NumPy's negative-index handling.
        pre, n = u.shape
        nw = w.size
        m = hi - lo
        nb, wb = bw.shape
        for i in prange(pre):
            r = u[i]
            acc = np.empty(ROW_BLOCK, dtype=u.dtype)
            for b0 in range(0, m, ROW_BLOCK):
                mb = min(ROW_BLOCK, m - b0)
                a = r[shift[0] + b0 : shift[0] + b0 + mb]
                c = w[0]
                for j in range(mb):
                    acc[j] = c * a[j]
                for s in range(1, nw):
                    a = r[shift[s] + b0 : shift[s] + b0 + mb]
                    c = w[s]
                    for j in range(mb):
                        acc[j] += c * a[j]
                o = out[i, lo + b0 : lo + b0 + mb]
                for j in range(mb):
                    o[j] = acc[j]
            for k in range(nb):
                t = 0.0
                st = bstart[k]
                for s in range(wb):
                    t += bw[k, s] * r[(st + s) % n]
                out[i, bidx[k]] = t

    @njit
    def lines(u, out, w, shift, lo, hi, bidx, bstart, bw):
        # Task = (outer index i, chunk of LINES output lines, block of LINE_BLOCK columns). Each
        # output block is a weighted sum of the same block of W input lines; consecutive
        # lines of a chunk reuse W-1 of those input blocks from L1.
        pre, n, post = u.shape
        nw = w.size
        nint = hi - lo if hi > lo else 0
        nb, wb = bw.shape
        nl = nint + nb  # interior lines first, then the boundary lines
        nchunk = (nl + LINES - 1) // LINES
        nblk = (post + LINE_BLOCK - 1) // LINE_BLOCK
        per_i = nchunk * nblk
        for t in prange(pre * per_i):
            i = t // per_i
            q = t - i * per_i
            l0 = (q // nblk) * LINES
            p0 = (q % nblk) * LINE_BLOCK
            mb = min(LINE_BLOCK, post - p0)
            acc = np.empty(LINE_BLOCK, dtype=u.dtype)
            for line in range(l0, min(l0 + LINES, nl)):
                for p in range(mb):
                    acc[p] = 0.0
                if line < nint:
                    j = lo + line
                    for s in range(nw):
                        a = u[i, shift[s] + line, p0 : p0 + mb]
                        c = w[s]
                        for p in range(mb):
                            acc[p] += c * a[p]
                else:
                    k = line - nint
                    j = bidx[k]
                    st = bstart[k]
                    for s in range(wb):
                        a = u[i, (st + s) % n, p0 : p0 + mb]
                        c = bw[k, s]
                        for p in range(mb):
                            acc[p] += c * a[p]
                o = out[i, j, p0 : p0 + mb]
                for p in range(mb):
                    o[p] = acc[p]

    _ROWS, _LINES = rows, lines
    return rows, lines


_ROWS: Callable[..., None] | None = None
_LINES: Callable[..., None] | None = None


def _apply_numpy(u3, out3, op: StencilOperator) -> None:
    """Reference NumPy implementation (also the fallback without Numba)."""
    n = op.n
    if op.hi > op.lo:
        sl = out3[:, op.lo : op.hi]
        sl[...] = op.w_int[0] * u3[:, op.lo + op.offset : op.hi + op.offset]
        for s in range(1, op.w_int.size):
            a = op.lo + op.offset + s
            sl += op.w_int[s] * u3[:, a : a + op.hi - op.lo]
    if op.b_index.size:
        idx = (op.b_start[:, None] + np.arange(op.b_weights.shape[1])) % n
        gathered = u3[:, idx, :]  # (pre, nb, Wb, post)
        out3[:, op.b_index] = np.einsum("kw,ikwp->ikp", op.b_weights, gathered)


def apply(u: np.ndarray, out: np.ndarray, axis: int, op: StencilOperator) -> None:
    """``out[...] = op`` applied to ``u`` along ``axis``; both C-contiguous, same dtype."""
    shape = u.shape
    pre = int(np.prod(shape[:axis], dtype=np.int64))
    post = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    u3 = u.reshape(pre, op.n, post)
    out3 = out.reshape(pre, op.n, post)
    if u.size == 0:
        return
    if numba is None:
        _apply_numpy(u3, out3, op)
        return
    dt = u.dtype
    # interior terms with non-zero weight, as (weight, first input index of the pass)
    nz = np.flatnonzero(op.w_int) if op.hi > op.lo else np.zeros(0, dtype=np.int64)
    args = (
        op.w_int[nz].astype(dt),
        (op.lo + op.offset + nz).astype(np.int64),
        op.lo,
        op.hi,
        op.b_index,
        op.b_start,
        np.ascontiguousarray(op.b_weights, dtype=dt),
    )
    rows, lines = _kernels()
    if post == 1:
        rows(u3[:, :, 0], out3[:, :, 0], *args)
    else:
        lines(u3, out3, *args)
