"""Backend selection and the conformance suite every backend must pass."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from derlhybrid.kernels import (
    BackendUnavailable,
    available_backends,
    backends,
    derivative,
    fornberg_weights,
)

# --------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------


def test_python_is_always_available():
    st = {s.name: s for s in available_backends()}
    assert st["python"].available
    assert set(st) == {"python", "julia"}
    assert st["julia"].detail  # a reason or a location, never empty


def test_env_var_and_argument(monkeypatch):
    monkeypatch.setenv("DERL_BACKEND", "python")
    assert backends.resolve(None) == "python"
    monkeypatch.setenv("DERL_BACKEND", "numpy")
    with pytest.raises(ValueError, match="DERL_BACKEND='numpy' is not a backend"):
        backends.resolve(None)
    assert backends.resolve("python") == "python"  # the argument wins over the variable


def test_julia_unavailable_is_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no julia on PATH
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    st = backends.status("julia")
    if st.available:  # pragma: no cover - only where juliacall + julia exist
        pytest.skip("julia is available here")
    with pytest.raises(BackendUnavailable, match="julia backend unavailable") as info:
        derivative(np.zeros(8), 0.1, backend="julia")
    msg = str(info.value)
    assert "\n" not in msg and ("pip install" in msg or "Julia" in msg)


def test_missing_julia_executable_is_named(monkeypatch, tmp_path):
    """With juliacall importable but no executable, the reason names the executable."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "juliacall" else real(name, *a),
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    st = backends.status("julia")
    assert not st.available
    assert "no Julia executable on PATH" in st.detail and "never downloads" in st.detail
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(tmp_path / "nope"))
    assert "is not an executable file" in backends.status("julia").detail


def test_auto_never_imports_juliacall_without_julia(tmp_path):
    """`auto` on a machine without Julia picks python and never imports juliacall (which
    would try to download Julia)."""
    code = (
        "import sys, numpy as np, derlhybrid\n"
        "from derlhybrid.kernels import backends\n"
        "assert backends.resolve('auto') == 'python'\n"
        "derlhybrid.derivative(np.sin(np.arange(16.0)), 1.0)\n"
        "assert 'juliacall' not in sys.modules, 'juliacall imported'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PATH": f"{tmp_path}:/usr/bin:/bin", "DERL_BACKEND": "auto"}
    env.pop("PYTHON_JULIAPKG_EXE", None)
    if backends.julia_executable() and backends.status("julia").available:
        pytest.skip("a julia executable is present here")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_is_light():
    """`import derlhybrid` starts no Julia, imports no torch or numba, prints nothing."""
    code = (
        "import sys, derlhybrid\n"
        "heavy = [m for m in ('juliacall', 'torch', 'numba', 'h5py') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""


# --------------------------------------------------------------------------------------
# conformance: every available backend, same answers (julia rows skip with the reason)
# --------------------------------------------------------------------------------------


def test_conformance_fornberg(backend):
    w = fornberg_weights(0.0, [-2.0, -1.0, 0.0, 1.0, 2.0], 1, backend=backend)
    np.testing.assert_allclose(w, [1 / 12, -2 / 3, 0, 2 / 3, -1 / 12], atol=1e-15)
    xs = np.array([0.0, 0.3, 0.7, 1.6, 2.0])
    np.testing.assert_allclose(
        fornberg_weights(0.5, xs, 2, backend=backend),
        fornberg_weights(0.5, xs, 2, backend="python"),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("boundary", ["periodic", "one-sided"])
@pytest.mark.parametrize("scheme", ["central", "forward", "backward"])
def test_conformance_derivative(backend, dtype, boundary, scheme):
    rng = np.random.default_rng(2)
    u = rng.standard_normal((6, 17, 9)).astype(dtype)
    coords = np.cumsum(rng.uniform(0.5, 1.5, 17))
    for axis in range(3):
        for order, acc in [(1, 2), (2, 4), (3, 2)]:
            kw = dict(axis=axis, order=order, accuracy=acc, boundary=boundary, scheme=scheme)
            if scheme == "central" or acc % 2 == 0:
                ours = derivative(u, 0.25, backend=backend, **kw)
                ref = derivative(u, 0.25, backend="python", **kw)
                tol = 1e-12 if dtype == np.float64 else 1e-4
                np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * np.abs(ref).max())
            if axis == 1:
                per = coords[-1] - coords[0] + 1.0
                ours = derivative(u, coords, backend=backend, period=per, **kw)
                ref = derivative(u, coords, backend="python", period=per, **kw)
                tol = 1e-11 if dtype == np.float64 else 1e-4
                np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol * np.abs(ref).max())


def test_conformance_analytic(backend):
    n = 64
    x = np.arange(n) * 2 * np.pi / n
    du = derivative(np.sin(x), x[1], accuracy=8, backend=backend)
    np.testing.assert_allclose(du, np.cos(x), atol=1e-9)
    out = np.empty(n)
    assert derivative(np.sin(x), x[1], order=2, accuracy=8, out=out, backend=backend) is out
    np.testing.assert_allclose(out, -np.sin(x), atol=1e-8)
