"""The per-rhs ODE drivers are compiled once per machine: generated modules cached on disk.

A first process compiles the scalar and the lane driver for a module-level rhs and Numba
writes them next to the generated module; a second process loads them (Numba's cache hits,
no compile) and computes the same bits. Closures and unwritable cache folders fall back to
an in-memory compile without an error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np

from derlhybrid.kernels import _jitcache
from derlhybrid.systems import Pendulum

_MODULE = """
import numba


@numba.njit
def decay(t, y, p, dy):
    dy[0] = -p[0] * y[0]


@numba.njit(error_model="numpy")
def decay_lanes(t, y, p, dy):
    for c in range(y.shape[1]):
        dy[0, c] = -p[0, c] * y[0, c]
"""

_SCRIPT = """
import json, sys
import numpy as np
from decaymod import decay, decay_lanes
from derlhybrid.kernels import ode, ode_lanes, ode_scalar

y0 = np.linspace(0.5, 1.5, 37)[:, None]
t = np.linspace(0.0, 2.0, 21)
p = np.linspace(0.1, 2.0, 37)[:, None]
a = ode.solve_ensemble(decay, y0, t, p)
b = ode.solve_ensemble(decay, y0, t, p, rhs_lanes=decay_lanes)
np.savez(sys.argv[1], a=a.states, da=a.derivatives, b=b.states, db=b.derivatives,
         na=a.n_steps, nb=b.n_steps)
stats = {}
for name, d in (("scalar", ode_scalar.kernels(decay)["_drive_range"]),
                ("lanes", ode_lanes.kernels(decay_lanes, 1, 1)["drive"])):
    stats[name] = [sum(d.stats.cache_hits.values()), sum(d.stats.cache_misses.values())]
print(json.dumps(stats))
"""


def _run(tmp_path, out):
    env = {**os.environ, "DERLHYBRID_CACHE": str(tmp_path / "cache")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "NumbaWarning" not in proc.stderr, proc.stderr  # e.g. "Cannot cache"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_second_process_loads_both_drivers_from_the_cache(tmp_path):
    (tmp_path / "decaymod.py").write_text(textwrap.dedent(_MODULE))
    cold = _run(tmp_path, "cold.npz")
    folder = tmp_path / "cache" / "ode"
    modules = sorted(f.name for f in folder.glob("_derl_*.py"))
    assert len(modules) == 2 and modules[0].startswith("_derl_ode_")
    assert modules[1].startswith("_derl_ode_lanes_1_1_")
    index = [f.name for f in (folder / "__pycache__").glob("*.nbi")]
    assert any("._drive_range-" in f for f in index) and any(".drive-" in f for f in index)
    assert cold == {"scalar": [0, 1], "lanes": [0, 1]}  # compiled
    warm = _run(tmp_path, "warm.npz")
    assert warm == {"scalar": [1, 0], "lanes": [1, 0]}  # loaded, nothing compiled
    assert sorted(f.name for f in folder.glob("_derl_*.py")) == modules
    with np.load(tmp_path / "cold.npz") as a, np.load(tmp_path / "warm.npz") as b:
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
        t = np.linspace(0.0, 2.0, 21)
        exact = np.linspace(0.5, 1.5, 37)[:, None] * np.exp(-np.linspace(0.1, 2.0, 37)[:, None] * t)
        assert np.abs(a["a"][:, :, 0] - exact).max() < 1e-8
        assert np.abs(a["b"][:, :, 0] - exact).max() < 1e-8


# The mechanism itself, on a trivial body (compiles in well under a second).
_BODY = """
@numba.njit(cache=_CACHE)
def twice_plus_one(x):
    return 2.0 * _rhs(x) + 1.0
"""


@numba.njit
def _ident(x):
    return x


def test_module_level_rhs_is_cached_in_a_generated_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DERLHYBRID_CACHE", str(tmp_path / "c"))
    ns = _jitcache.load("test_trivial", "import numba\n", _BODY, _ident)
    assert ns["twice_plus_one"](3.0) == 7.0
    assert ns["_CACHE"] is True
    files = list((tmp_path / "c" / "ode").glob("_derl_test_trivial_*.py"))
    assert len(files) == 1 and f"from {__name__} import _ident as _rhs" in files[0].read_text()
    assert list((tmp_path / "c" / "ode" / "__pycache__").glob("*twice_plus_one*.nbi"))
    # the same request again: the same module object, no second file
    assert _jitcache.load("test_trivial", "import numba\n", _BODY, _ident) is ns
    assert len(list((tmp_path / "c" / "ode").glob("*.py"))) == 1


def test_closures_and_unwritable_cache_compile_in_memory(tmp_path, monkeypatch):
    @numba.njit
    def local(x):  # a closure: not importable by module and name
        return -x

    monkeypatch.setenv("DERLHYBRID_CACHE", str(tmp_path / "c"))
    ns = _jitcache.load("test_trivial", "import numba\n", _BODY, local)
    assert ns["twice_plus_one"](3.0) == -5.0 and ns["_CACHE"] is False
    assert not (tmp_path / "c").exists()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("DERLHYBRID_CACHE", str(blocker / "below"))  # mkdir fails
    ns = _jitcache.load("test_trivial_2", "import numba\n", _BODY, _ident)
    assert ns["twice_plus_one"](3.0) == 7.0 and ns["_CACHE"] is False


def test_cache_key_covers_the_sources_the_rhs_reaches():
    files = {os.path.basename(f) for f in _jitcache._reached_files(Pendulum.rhs_lanes_kernel)}
    assert {"pendulum.py", "vmath.py"} <= files
    assert _jitcache.importable_name(Pendulum.rhs_lanes_kernel) == (
        "derlhybrid.systems.pendulum",
        "_pendulum_rhs_lanes",
    )
