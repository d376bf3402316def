"""kernels/_julia.py without Julia: how it loads (offline state, cached failures) and what it
passes across the boundary (issue 18, defects 3, 4 and 6). juliapkg and juliacall are
replaced by stand-ins through ``_julia._import_module``; nothing here starts Julia."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from derlhybrid.kernels import _julia, _julia_state, availability, backends

JULIACALL_ENV = (
    "PYTHON_JULIAPKG_EXE",
    "PYTHON_JULIAPKG_OFFLINE",
    "PYTHON_JULIACALL_HANDLE_SIGNALS",
    "PYTHON_JULIACALL_THREADS",
    "PYTHON_JULIACALL_AUTOLOAD_IPYTHON_EXTENSION",
)


class FakeJuliapkg:
    """juliapkg's ``offline``/``resolve`` API (``offline(None)`` reads the state)."""

    def __init__(self, offline=False):
        self.state = offline
        self.resolved = []

    def offline(self, value=True):
        if value is not None:
            self.state = value
        return self.state

    def resolve(self, force=False):
        self.resolved.append((force, self.state))


class FakeJulia:
    """What juliacall would do: resolving happens at import, ``using`` may fail."""

    def __init__(self, juliapkg, import_fails=False, using_fails=False):
        self.juliapkg = juliapkg
        self.import_fails = import_fails
        self.using_fails = using_fails
        self.imports = []  # juliapkg's offline state at each import of juliacall
        self.kernels = types.SimpleNamespace(name="DERLKernels")

    def import_module(self, name):
        if name == "juliapkg":
            return self.juliapkg
        assert name == "juliacall", name
        self.imports.append(self.juliapkg.state)
        if self.import_fails:
            raise RuntimeError("juliapkg: offline and DERLKernels is not installed")
        sys.modules.setdefault("juliacall", types.ModuleType("juliacall"))  # as a real import
        return types.SimpleNamespace(newmodule=self.newmodule)

    def newmodule(self, name):
        assert name == _julia.JULIA_MODULE
        fake = self

        class Module:
            def seval(self, code):
                assert code == "using DERLKernels"
                if fake.using_fails:
                    raise RuntimeError("ArgumentError: Package DERLKernels not found")
                self.DERLKernels = fake.kernels

        return Module()


@pytest.fixture
def julia_env(monkeypatch):
    """A clean julia backend state, a 'julia' executable (this Python), juliacall's
    environment variables restored afterwards, and juliacall's spec found."""
    for name in JULIACALL_ENV:
        monkeypatch.setenv(name, "x")  # recorded, so that teardown removes what load() sets
        monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", sys.executable)
    monkeypatch.setenv(backends.ENV_VAR, "auto")
    monkeypatch.setattr(_julia_state, "module", None)
    monkeypatch.setattr(_julia_state, "load_error", None)
    monkeypatch.setattr(_julia_state, "pid", None)
    monkeypatch.setattr(_julia, "_auto_error", None)
    monkeypatch.setattr(_julia, "_started_offline", False)
    real_find_spec = availability.importlib.util.find_spec
    monkeypatch.setattr(
        availability.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "juliacall" else real_find_spec(name, *a),
    )
    # the stand-in juliacall a test imports must not outlive it: later tests (any module
    # that asks importlib for juliacall's spec) would meet a module without a __spec__
    saved = sys.modules.pop("juliacall", None)
    yield monkeypatch
    sys.modules.pop("juliacall", None)
    if saved is not None:
        sys.modules["juliacall"] = saved


def _install(monkeypatch, **kw) -> FakeJulia:
    fake = FakeJulia(FakeJuliapkg(), **kw)
    monkeypatch.setattr(_julia, "_import_module", fake.import_module)
    return fake


def test_auto_loads_offline_without_touching_the_environment(julia_env):
    fake = _install(julia_env)
    assert backends.resolve("auto") == "julia"
    assert fake.imports == [True]  # juliapkg was offline while juliacall resolved
    assert fake.juliapkg.state is False  # and is back to the user's setting afterwards
    assert "PYTHON_JULIAPKG_OFFLINE" not in os.environ
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.environ.get('PYTHON_JULIAPKG_OFFLINE'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == "None"  # a worker process is not made offline
    assert os.environ["PYTHON_JULIAPKG_EXE"] == sys.executable  # the safe defaults stay
    assert os.environ["PYTHON_JULIACALL_HANDLE_SIGNALS"] == "yes"
    assert _julia.load() is fake.kernels


def test_explicit_load_keeps_the_users_offline_setting(julia_env):
    fake = _install(julia_env)
    fake.juliapkg.state = True  # as PYTHON_JULIAPKG_OFFLINE=yes would set it
    assert _julia.load() is fake.kernels
    assert fake.imports == [True] and fake.juliapkg.state is True
    assert "PYTHON_JULIAPKG_OFFLINE" not in os.environ


@pytest.mark.parametrize("failure", ["import_fails", "using_fails"])
def test_auto_failure_does_not_refuse_an_explicit_julia(julia_env, failure):
    """Auto falls back to python and does not retry; backend='julia' retries online."""
    fake = _install(julia_env, **{failure: True})
    assert backends.resolve("auto") == "python"
    assert backends.resolve("auto") == "python"
    assert fake.imports == [True]  # the cached offline failure: no second attempt
    assert _julia_state.load_error is None
    assert backends.status("julia").available
    setattr(fake, failure, False)  # online, the load can succeed
    assert backends.resolve("julia") == "julia"
    assert backends.module("julia") is _julia
    assert _julia_state.module is fake.kernels
    if failure == "using_fails":
        # Julia had started offline: the retry resolves again (installs) before `using`
        assert fake.juliapkg.resolved == [(True, False)]
        assert fake.imports == [True, False]
    else:
        assert fake.juliapkg.resolved == []  # the import itself resolves, online
        assert fake.imports == [True, False]


def test_explicit_failure_is_cached_with_its_reason(julia_env):
    fake = _install(julia_env, import_fails=True)
    with pytest.raises(backends.BackendUnavailable, match="loading DERLKernels failed"):
        _julia.load()
    st = backends.status("julia")
    assert not st.available and "RuntimeError: juliapkg: offline" in st.detail
    with pytest.raises(backends.BackendUnavailable, match="loading DERLKernels failed"):
        backends.resolve("julia")
    assert backends.resolve("auto") == "python"
    assert fake.imports == [False]


class _FakeStencils:
    def __init__(self):
        self.calls = []

    def fornberg_weights_b(self, w, x0, xs, order):
        self.calls.append((w, x0, xs, order))
        w[:] = np.arange(w.size)


def test_fornberg_weights_flattens_nodes_like_python(monkeypatch):
    """An N-d node array reaches Julia as one C-ordered vector (defect 4): the weights have
    python's shape and order."""
    from derlhybrid.kernels import fornberg_weights

    fake = _FakeStencils()
    monkeypatch.setattr(_julia, "load", lambda offline=False: fake)
    monkeypatch.setattr(backends, "module", lambda name: _julia)
    monkeypatch.setattr(backends, "resolve", lambda backend=None: backend or "python")
    nodes = np.array([[-2.0, -1.0, 0.0], [1.0, 2.0, 3.0]])
    w = fornberg_weights(0.0, nodes, 1, backend="julia")
    (wj, x0, xs, order) = fake.calls[0]
    assert xs.ndim == 1 and np.array_equal(xs, nodes.ravel()) and xs.flags.c_contiguous
    assert wj.shape == (6,) and x0 == 0.0 and order == 1
    assert w.shape == fornberg_weights(0.0, nodes, 1, backend="python").shape
    fornberg_weights(0.5, np.asfortranarray(nodes), 2, backend="julia")
    assert np.array_equal(fake.calls[1][2], nodes.ravel())  # C order whatever the layout
    with pytest.raises(ValueError, match="distinct"):  # python validates before Julia
        fornberg_weights(0.0, np.zeros((2, 2)), 1, backend="julia")
    assert len(fake.calls) == 2


class _FakeODE:
    def __init__(self):
        self.kw = None

    def solve_ensemble_b(self, states, derivs, n_steps, status, system, y0, t, p, **kw):
        self.kw = kw
        if kw["n_rejected"] is not None:
            kw["n_rejected"][:] = 5


def test_rejected_steps_and_provenance(monkeypatch):
    """Julia fills a caller's n_rejected buffer; the provenance names the controller."""
    fake = _FakeODE()
    monkeypatch.setattr(_julia, "load", lambda offline=False: fake)
    y0, t, p = np.zeros((3, 2)), np.linspace(0.0, 1.0, 4), np.ones(4)
    states, derivs = np.empty((3, 4, 2)), np.empty((3, 4, 2))
    _julia.solve_ensemble("pendulum", y0, t, p, 1e-9, 1e-9, states, derivs)
    assert fake.kw["n_rejected"] is None
    rejected = np.full(3, -1, dtype=np.int64)
    _julia.solve_ensemble("pendulum", y0, t, p, 1e-9, 1e-9, states, derivs, rejected)
    assert fake.kw["n_rejected"] is rejected and rejected.tolist() == [5, 5, 5]
    for bad in (np.zeros(3), np.zeros(2, np.int64), np.zeros(6, np.int64)[::2]):
        with pytest.raises(ValueError, match="out_rejected"):
            _julia.solve_ensemble("pendulum", y0, t, p, 1e-9, 1e-9, states, derivs, bad)
    prov = _julia.ENSEMBLE_PROVENANCE
    assert "DP8" in prov["method"] and "DOP853" in prov["method"]
    assert "beta1 = 1/8" in prov["step_controller"] and "[0.2, 10]" in prov["step_controller"]
    assert "nreject" in prov["n_rejected"]


def test_a_julia_generation_records_dp8_and_its_step_controller():
    # issue 18, defect 6: the file says which solver and controller made it (no Julia is
    # started: planning only builds the provenance)
    from derlhybrid.data.generate import GenerateRequest, plan_trajectories
    from derlhybrid.kernels._julia import ENSEMBLE_PROVENANCE
    from derlhybrid.systems import get_system

    req = GenerateRequest(system="pendulum", out="x.h5", n_trajectories=2, n_times=3, seed=0)
    system = get_system("pendulum", {})
    julia = plan_trajectories(req, system, backend="julia").attrs["generator"]
    python = plan_trajectories(req, system, backend="python").attrs["generator"]
    for key, text in ENSEMBLE_PROVENANCE.items():
        assert julia[key] == text
    assert julia["method"].startswith("DP8") and "PIController" in julia["step_controller"]
    assert python["method"].startswith("DOP853") and "step_controller" not in python
