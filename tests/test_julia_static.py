"""Static checks of the Julia package (Julia cannot run here): tools/check_julia.py."""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "julia" / "DERLKernels"

pytest.importorskip("tree_sitter")
pytest.importorskip("tree_sitter_julia")


def _load_check_julia():
    spec = importlib.util.spec_from_file_location("check_julia", ROOT / "tools" / "check_julia.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_julia = _load_check_julia()

MODULE_TEMPLATE = """module DERLKernels

include("stencils.jl")
include("systems.jl")

export {exports}

end
"""

STENCILS = """
fornberg_weights!(w, x0, xs, order) = w
fornberg_weights(x0, xs, order) = fornberg_weights!(zeros(length(xs)), x0, xs, order)
function derivative!(out::AbstractArray{{T}}, u::AbstractArray{{T}}, h; dim) where {{T}}
    return out
end
derivative(u, h; dim) = derivative!(similar(u), u, h; dim=dim)
"""

# Status codes and a generator stub; SYSTEMS is written from python's registry.
SYSTEMS_TAIL = """
const STATUS_OK = 0
const STATUS_STEP_UNDERFLOW = 1
const STATUS_MAX_STEPS = 2
const STATUS_NON_FINITE = 3

rhs!(dy, y, p, t) = nothing
const ODE_SYSTEMS = ("pendulum" => (rhs = rhs!, n_state = 2),)

function solve_ensemble!(states, derivatives, n_steps, status, system, y0, t_eval, params)
    return states
end

solve_kdv!(out, nu, x, t_eval, u0; tol=1e-10, dt=nothing) = out
solve_continuity!(out, x, y, t_eval, rho0; kw...) = out
"""

EXPORTS = (
    "fornberg_weights!, fornberg_weights, derivative!, derivative, solve_ensemble!, solve_kdv!, "
    "solve_continuity!"
)
GENERATOR_EXPORTS = "solve_ensemble!, solve_kdv!, solve_continuity!"


def _builtin_systems() -> dict:
    """Python's registry less the systems other modules (tests, users) registered."""
    from derlhybrid.systems import SYSTEMS

    return {n: c for n, c in SYSTEMS.items() if c.__module__.startswith("derlhybrid.systems.")}


def _systems_table(overrides=None) -> str:
    """A ``const SYSTEMS`` table written from python's registry (``overrides``: name ->
    replacement text of that entry's named tuple, or None to drop the entry)."""
    builtin = _builtin_systems()
    overrides = overrides or {}
    lines = ["const SYSTEMS = ("]
    for name, cls in builtin.items():
        if name in overrides:
            if overrides[name] is not None:
                lines.append(f'    "{name}" => {overrides[name]},')
            continue
        fields = ", ".join(f"{s.name} = {float(s.default)!r}" for s in cls.parameter_specs())
        lines.append(f'    "{name}" => ({fields},),')
    lines.extend(f'    "{n}" => {t},' for n, t in overrides.items() if n not in builtin)
    lines.append(")")
    return "\n".join(lines) + "\n"


def _fake_repo(tmp_path: Path, exports: str = EXPORTS, systems: str | None = None) -> Path:
    """A minimal repository layout with the given export list and SYSTEMS table."""
    src = tmp_path / "julia" / "DERLKernels" / "src"
    test = tmp_path / "julia" / "DERLKernels" / "test"
    src.mkdir(parents=True)
    test.mkdir(parents=True)
    (src / "DERLKernels.jl").write_text(MODULE_TEMPLATE.format(exports=exports))
    (src / "stencils.jl").write_text(STENCILS.format())
    (src / "systems.jl").write_text((systems or _systems_table()) + SYSTEMS_TAIL)
    (test / "runtests.jl").write_text('using DERLKernels, Test\ninclude("stencils.jl")\n')
    (test / "stencils.jl").write_text("@test true\n")
    return tmp_path


def test_repository_passes():
    assert check_julia.check(ROOT) == []
    assert check_julia.main([str(ROOT)]) == 0


def test_exports_match_python_kernels():
    from derlhybrid.kernels import KERNELS
    from derlhybrid.kernels._julia import JULIA_GENERATORS

    exported = check_julia.julia_exports(PACKAGE / "src" / "DERLKernels.jl")
    generators = {g.removesuffix("!") for g in JULIA_GENERATORS}
    assert {name.removesuffix("!") for name in exported} == set(KERNELS) | generators
    assert {f"{k}!" for k in KERNELS} | set(JULIA_GENERATORS) <= exported


def test_systems_table_is_read_from_the_syntax_tree():
    """The repository's table, read back, is python's registry (names, order, defaults)."""
    builtin = _builtin_systems()

    _, node = check_julia.julia_consts(PACKAGE / "src" / "systems.jl")["SYSTEMS"]
    table = dict(check_julia.julia_systems_table(node))
    assert list(table) == list(builtin)
    for name, cls in builtin.items():
        specs = cls.parameter_specs()
        assert [p for p, _ in table[name]] == [s.name for s in specs]
        assert [v for _, v in table[name]] == pytest.approx([s.default for s in specs], rel=1e-12)
    consts = check_julia.julia_consts(PACKAGE / "src" / "systems.jl")
    assert check_julia.julia_table_names(consts["ODE_SYSTEMS"][1]) == ["pendulum"]
    assert check_julia.julia_table_names(consts["PDE_SYSTEMS"][1]) == ["kdv", "continuity"]
    codes = check_julia.julia_consts(PACKAGE / "src" / "ode.jl")
    assert {k: check_julia._number_value(v[1]) for k, v in codes.items() if "STATUS_" in k} == {
        "STATUS_OK": 0,
        "STATUS_STEP_UNDERFLOW": 1,
        "STATUS_MAX_STEPS": 2,
        "STATUS_NON_FINITE": 3,
    }


def test_broken_julia_is_reported(tmp_path):
    bad = tmp_path / "broken.jl"
    bad.write_text("function f(x)\n    y = (x + 1\n    return y\nend\n")
    problems = check_julia.parse_errors(bad)
    assert problems
    assert all(p.startswith(f"{bad}:") for p in problems)
    good = tmp_path / "good.jl"
    good.write_text("f(x) = x + 1\n")
    assert check_julia.parse_errors(good) == []


def test_fake_repository_passes(tmp_path):
    root = _fake_repo(tmp_path)
    assert check_julia.check(root) == []


@pytest.mark.parametrize(
    ("exports", "expected"),
    [
        # no in-place form
        (f"fornberg_weights!, fornberg_weights, derivative, {GENERATOR_EXPORTS}", "derivative!"),
        # extra kernel
        (f"fornberg_weights!, derivative!, laplacian!, {GENERATOR_EXPORTS}", "do not match"),
        # missing kernel
        (f"fornberg_weights!, {GENERATOR_EXPORTS}", "do not match"),
        # generator not exported
        ("fornberg_weights!, derivative!", "'solve_ensemble!' (JULIA_GENERATORS) is not exported"),
        (
            "fornberg_weights!, derivative!, solve_ensemble!, solve_kdv!",
            "'solve_continuity!' (JULIA_GENERATORS) is not exported",
        ),
        # generator exported without '!'
        (
            "fornberg_weights!, derivative!, solve_ensemble, solve_kdv!, solve_continuity!",
            "is not exported",
        ),
    ],
)
def test_mismatched_exports_are_caught(tmp_path, exports, expected):
    root = _fake_repo(tmp_path, exports)
    problems = check_julia.check(root)
    assert any(expected in p for p in problems), problems
    assert check_julia.main([str(root)]) == 1


def test_exported_generator_must_be_defined(tmp_path):
    root = _fake_repo(tmp_path)
    systems = root / "julia" / "DERLKernels" / "src" / "systems.jl"
    systems.write_text(systems.read_text().replace("function solve_ensemble!", "function other!"))
    problems = check_julia.check(root)
    assert any("'solve_ensemble!' is not defined as a function" in p for p in problems), problems


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"pendulum": None}, "lacks python system 'pendulum'"),
        ({"lorenz": "(sigma = 10.0,)"}, "declares 'lorenz', which python's registry"),
        ({"kdv": "(t_end = 1.0, nu = 0.0025)"}, "kdv: parameters ['t_end', 'nu'] differ"),
        ({"kdv": "(nu = 0.0025,)"}, "kdv: parameters ['nu'] differ"),
        ({"kdv": "(nu = 0.0025, t_end = 1.0, c = 1.0)"}, "kdv: parameters"),
        ({"pendulum": "(b = 0.5, g = 9.8, l = 10.0, m = 1.0)"}, "pendulum.g: default 9.8"),
        ({"kovasznay": "(Re = 50.000001,)"}, "kovasznay.Re: default"),
        ({"kovasznay": "(Re = 50,)"}, "expected a Float64 number literal, got '50'"),
        ({"kovasznay": "(Re = 5.0e1f0,)"}, "expected a Float64 number literal"),
        ({"kovasznay": "(Re = pi,)"}, "expected a Float64 number literal, got 'pi'"),
        ({"kovasznay": "(Re = 50.0)"}, "expected a named tuple"),
        ({"allen-cahn": "(lam = -(-0.01),)"}, "expected a Float64 number literal"),
    ],
)
def test_systems_table_mismatches_are_caught(tmp_path, overrides, expected):
    root = _fake_repo(tmp_path, systems=_systems_table(overrides))
    problems = check_julia.check(root)
    assert any(expected in p for p in problems), problems
    assert check_julia.main([str(root)]) == 1


def test_equal_defaults_within_1e_12(tmp_path):
    root = _fake_repo(tmp_path, systems=_systems_table({"kovasznay": "(Re = 50.000000000005,)"}))
    assert check_julia.check(root) == []  # 50 (1 + 1e-13) is 50


def test_number_literals(tmp_path):
    f = tmp_path / "consts.jl"
    f.write_text("const A = -1.5e-3\nconst B = +2\nconst C = 1_000.5\nconst D = 0x10\n")
    consts = check_julia.julia_consts(f)
    assert check_julia._number_value(consts["A"][1]) == -1.5e-3
    assert check_julia._number_value(consts["B"][1]) == 2
    assert check_julia._number_value(consts["C"][1]) == 1000.5
    with pytest.raises(check_julia.TableError):
        check_julia._number_value(consts["B"][1], integer_ok=False)
    with pytest.raises(check_julia.TableError):
        check_julia._number_value(consts["D"][1])


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (None, "define one `const SYSTEMS"),
        ('const SYSTEMS = Dict("pendulum" => 1)\n', "cannot read SYSTEMS"),
        ('const SYSTEMS = ("pendulum" => (b = 0.5,))\n', "cannot read SYSTEMS"),  # no comma
    ],
)
def test_unreadable_or_missing_systems_table(tmp_path, table, expected):
    root = _fake_repo(tmp_path)
    systems = root / "julia" / "DERLKernels" / "src" / "systems.jl"
    text = systems.read_text()
    head = text[: text.index("\nconst STATUS_OK")]
    systems.write_text((table or "") + text[len(head) :])
    problems = check_julia.check(root)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('("lorenz" => 1,)', "ODE_SYSTEMS solves 'lorenz', which python's registry"),
        ('("kdv" => 1,)', "ODE_SYSTEMS solves 'kdv', a python 'pde' system, not 'ode'"),
        ("(pendulum = 1,)", "cannot read ODE_SYSTEMS"),
    ],
)
def test_solved_systems_must_be_python_systems_of_their_kind(tmp_path, table, expected):
    root = _fake_repo(tmp_path)
    systems = root / "julia" / "DERLKernels" / "src" / "systems.jl"
    text = systems.read_text()
    old = 'const ODE_SYSTEMS = ("pendulum" => (rhs = rhs!, n_state = 2),)'
    systems.write_text(text.replace(old, f"const ODE_SYSTEMS = {table}"))
    problems = check_julia.check(root)
    assert any(expected in p for p in problems), problems


def test_user_registered_systems_are_not_mirrored(tmp_path, monkeypatch):
    """A system registered from outside derlhybrid.systems is the user's: Julia need not
    declare it."""
    from derlhybrid.systems import SYSTEMS

    user = type("UserSystem", (SYSTEMS["pendulum"],), {"name": "user-pendulum"})
    user.__module__ = "my_lab.systems"
    monkeypatch.setitem(SYSTEMS, "user-pendulum", user)
    assert check_julia.check(_fake_repo(tmp_path)) == []
    builtin = type("Builtin", (SYSTEMS["pendulum"],), {"name": "new-builtin"})
    builtin.__module__ = "derlhybrid.systems.extra"
    monkeypatch.setitem(SYSTEMS, "new-builtin", builtin)
    problems = check_julia.check(tmp_path)
    assert any("lacks python system 'new-builtin'" in p for p in problems), problems


def test_ode_table_must_match_what_python_sends(tmp_path, monkeypatch):
    from derlhybrid.kernels import _julia

    monkeypatch.setattr(_julia, "JULIA_ODE_SYSTEMS", ("pendulum", "decay"))
    problems = check_julia.check(_fake_repo(tmp_path))
    assert any("differ from JULIA_ODE_SYSTEMS" in p for p in problems), problems


def test_pde_table_is_checked_too(tmp_path):
    root = _fake_repo(tmp_path)
    systems = root / "julia" / "DERLKernels" / "src" / "systems.jl"
    systems.write_text(systems.read_text() + 'const PDE_SYSTEMS = ("kdv" => 1, "pendulum" => 2)\n')
    problems = check_julia.check(root)
    assert problems == [p for p in problems if "PDE_SYSTEMS solves 'pendulum'" in p]
    assert len(problems) == 1


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "const STATUS_MAX_STEPS = 2",
            "const STATUS_MAX_STEPS = 4",
            "STATUS_MAX_STEPS = 4 differs",
        ),
        ("const STATUS_NON_FINITE = 3\n", "", "lack `const STATUS_NON_FINITE = 3`"),
        ("const STATUS_OK = 0", "const STATUS_OK = 0\nconst STATUS_LATE = 9", "STATUS_LATE is not"),
    ],
)
def test_status_codes_must_match_python(tmp_path, old, new, expected):
    root = _fake_repo(tmp_path)
    systems = root / "julia" / "DERLKernels" / "src" / "systems.jl"
    systems.write_text(systems.read_text().replace(old, new))
    problems = check_julia.check(root)
    assert any(expected in p for p in problems), problems


def test_missing_include_and_syntax_error_are_caught(tmp_path):
    root = _fake_repo(tmp_path, "fornberg_weights!, derivative!")
    (root / "julia" / "DERLKernels" / "src" / "stencils.jl").unlink()
    (root / "julia" / "DERLKernels" / "test" / "stencils.jl").write_text("@test (1 + \n")
    problems = check_julia.check(root)
    assert any("include('stencils.jl') names a missing file" in p for p in problems), problems
    assert any("test/stencils.jl:" in p and "syntax error" in p for p in problems), problems


def test_julia_uuids_agree():
    package = tomllib.loads((PACKAGE / "Project.toml").read_text())
    root_env = tomllib.loads((ROOT / "Project.toml").read_text())
    juliapkg = json.loads((ROOT / "python" / "derlhybrid" / "juliapkg.json").read_text())
    uuid = package["uuid"]
    assert package["name"] == "DERLKernels"
    assert juliapkg["packages"]["DERLKernels"]["uuid"] == uuid
    assert root_env["deps"]["DERLKernels"] == uuid
    assert root_env["sources"]["DERLKernels"]["path"] == "julia/DERLKernels"
    # every dependency of the package has a compat bound
    assert set(package["deps"]) | set(package.get("extras", {})) | {"julia"} <= set(
        package["compat"]
    )
    # juliapkg declares the package's registered dependencies with the same UUIDs and bounds
    for name, spec in juliapkg["packages"].items():
        if name == "DERLKernels":
            continue
        assert package["deps"].get(name) == spec["uuid"], name
        assert spec["version"] == package["compat"][name], name
    solver_deps = {"OrdinaryDiffEqHighOrderRK", "SciMLBase"}
    assert solver_deps <= set(package["deps"]) and solver_deps <= set(juliapkg["packages"])


# --------------------------------------------------------------------------------------
# The julia boundary's layout, checked without Julia: a stand-in for DERLKernels records
# what `solve_ensemble` passes and fills the buffers the way Julia indexes them.
# --------------------------------------------------------------------------------------


class _FakeDERLKernels:
    def __init__(self):
        self.calls = []

    def solve_ensemble_b(self, states, derivs, n_steps, status, system, y0, t, p, **kw):
        self.calls.append((states, derivs, n_steps, status, system, y0, t, p, kw))
        n_state, n_t, n_traj = states.shape  # column-major, reversed dimensions
        for i in range(n_traj):
            for j in range(n_t):
                for k in range(n_state):
                    states[k, j, i] = 100 * i + 10 * j + k
                    derivs[k, j, i] = -(100 * i + 10 * j + k)
            n_steps[i] = 7 + i
            status[i] = 0 if i else 3


def test_solve_ensemble_boundary_passes_transposed_buffers(monkeypatch):
    import numpy as np

    from derlhybrid.kernels import _julia

    fake = _FakeDERLKernels()
    monkeypatch.setattr(_julia, "load", lambda offline=False: fake)
    y0 = np.arange(6.0).reshape(3, 2)
    t = np.linspace(0.0, 1.0, 4)
    states, derivs = np.empty((3, 4, 2)), np.empty((3, 4, 2))
    n_steps, status = _julia.solve_ensemble(
        "pendulum", y0, t, [0.5, 9.81, 10.0, 1.0], 1e-9, [1e-9, 1e-8], states, derivs
    )
    (s, d, ns, st, system, y0_j, t_j, p_j, kw) = fake.calls[0]
    assert system == "pendulum" and ns is n_steps and st is status
    assert np.array_equal(t_j, t)
    assert s.shape == (2, 4, 3) and np.shares_memory(s, states) and s.flags.f_contiguous
    assert d.shape == (2, 4, 3) and np.shares_memory(d, derivs)
    assert y0_j.shape == (2, 3) and np.array_equal(y0_j, y0.T)
    assert p_j.shape == (4, 1) and np.array_equal(p_j[:, 0], [0.5, 9.81, 10.0, 1.0])
    assert kw["rtol"] == 1e-9 and isinstance(kw["rtol"], float)
    assert np.array_equal(kw["atol"], [1e-9, 1e-8])
    i, j, k = np.meshgrid(np.arange(3), np.arange(4), np.arange(2), indexing="ij")
    assert np.array_equal(states, 100 * i + 10 * j + k)  # Python's (n_traj, n_t, n_state)
    assert np.array_equal(derivs, -states)
    assert n_steps.tolist() == [7, 8, 9] and status.tolist() == [3, 0, 0]
    assert n_steps.dtype == status.dtype == np.int64
    # one parameter vector per trajectory
    _julia.solve_ensemble("pendulum", y0, t, np.ones((3, 4)), 1e-9, 1e-9, states, derivs)
    assert fake.calls[1][7].shape == (4, 3)


def test_solve_ensemble_boundary_refuses_bad_buffers_before_julia(monkeypatch):
    import numpy as np

    from derlhybrid.kernels import _julia

    def no_julia(offline=False):
        raise AssertionError("Julia must not start for bad input")

    monkeypatch.setattr(_julia, "load", no_julia)
    y0, t, p = np.zeros((3, 2)), np.linspace(0.0, 1.0, 4), np.ones(4)
    good = np.empty((3, 4, 2))
    bad = [
        (np.empty((3, 4, 2), order="F"), good, "C-contiguous"),
        (np.empty((3, 4, 2), np.float32), good, "float64"),
        (np.empty((3, 4, 3)), good, r"shape \(3, 4, 2\)"),
        (good, good, "must not overlap"),
    ]
    for states, derivs, match in bad:
        with pytest.raises(ValueError, match=match):
            _julia.solve_ensemble("pendulum", y0, t, p, 1e-9, 1e-9, states, derivs)
    with pytest.raises(ValueError, match="params must have shape"):
        _julia.solve_ensemble("pendulum", y0, t, np.ones((2, 4)), 1e-9, 1e-9, good, good.copy())
    with pytest.raises(ValueError, match="y0 must have shape"):
        _julia.solve_ensemble("pendulum", y0[0], t, p, 1e-9, 1e-9, good, good.copy())
    with pytest.raises(ValueError, match=r"no ODE solver for 'kdv'.*backend='python'"):
        _julia.solve_ensemble("kdv", y0, t, p, 1e-9, 1e-9, good, good.copy())


class _FakePDEKernels:
    """Records what the PDE boundary passes; fills frames the way Julia indexes them."""

    def __init__(self):
        self.calls = []

    def solve_kdv_b(self, out, nu, x, t, u0, **kw):
        self.calls.append(("kdv", out, nu, x, t, u0, kw))
        n_x, n_t = out.shape  # column-major, reversed dimensions
        for k in range(n_t):
            for i in range(n_x):
                out[i, k] = 10 * k + i

    def solve_continuity_b(self, out, x, y, t, rho0, **kw):
        self.calls.append(("continuity", out, x, y, t, rho0, kw))
        n_y, n_x, n_t = out.shape
        for k in range(n_t):
            for i in range(n_x):
                for j in range(n_y):
                    out[j, i, k] = 100 * k + 10 * i + j


def test_pde_boundaries_pass_transposed_buffers(monkeypatch):
    import numpy as np

    from derlhybrid.kernels import _julia

    fake = _FakePDEKernels()
    monkeypatch.setattr(_julia, "load", lambda offline=False: fake)
    x, t = np.linspace(-1.0, 0.5, 4), np.array([0.0, 0.1, 0.2])
    out = np.empty((3, 4))
    _julia.solve_kdv(0.0025, x, t, np.cos, 1e-9, None, out)
    _, o, nu, xj, tj, u0, kw = fake.calls[0]
    assert o.shape == (4, 3) and np.shares_memory(o, out) and nu == 0.0025
    assert np.array_equal(u0, np.cos(x)) and np.array_equal(xj, x) and np.array_equal(tj, t)
    assert kw == {"tol": 1e-9, "dt": None}
    k, i = np.meshgrid(np.arange(3), np.arange(4), indexing="ij")
    assert np.array_equal(out, 10 * k + i)  # Python's (n_t, n_x)
    _julia.solve_kdv(0.0025, x, t, np.zeros(4), 1e-9, 0.01, out)
    assert fake.calls[1][-1]["dt"] == 0.01

    y = np.linspace(0.0, 1.0, 5)
    rho = np.empty((3, 4, 5))
    _julia.solve_continuity(x, y, t, lambda a, b: a + 0 * b, "upwind-fv", 6, 0.5, 0.001, True, rho)
    _, o, xj, yj, tj, r0, kw = fake.calls[2]
    assert np.array_equal(xj, x) and np.array_equal(yj, y) and np.array_equal(tj, t)
    assert o.shape == (5, 4, 3) and np.shares_memory(o, rho) and o.flags.f_contiguous
    assert r0.shape == (5, 4) and np.array_equal(r0, np.broadcast_to(x, (5, 4)))  # r0[j, i] = x_i
    assert kw == {
        "method": "upwind-fv",
        "accuracy": 6,
        "cfl": 0.5,
        "dt": 0.001,
        "paper_edges": True,
    }
    k, i, j = np.meshgrid(np.arange(3), np.arange(4), np.arange(5), indexing="ij")
    assert np.array_equal(rho, 100 * k + 10 * i + j)  # Python's (n_t, n_x, n_y)


def test_pde_boundaries_refuse_bad_input_before_julia(monkeypatch):
    import numpy as np

    from derlhybrid.kernels import _julia

    def no_julia(offline=False):
        raise AssertionError("Julia must not start for bad input")

    monkeypatch.setattr(_julia, "load", no_julia)
    x, t = np.linspace(-1.0, 0.5, 4), np.array([0.0, 0.1])
    with pytest.raises(ValueError, match=r"shape \(2, 4\) \(n_t, n_x\)"):
        _julia.solve_kdv(0.0025, x, t, np.zeros(4), 1e-9, None, np.empty((4, 2)))
    with pytest.raises(ValueError, match="C-contiguous"):
        _julia.solve_kdv(0.0025, x, t, np.zeros(4), 1e-9, None, np.empty((2, 4), order="F"))
    good = np.empty((2, 4, 4))
    with pytest.raises(ValueError, match="method must be one of"):
        _julia.solve_continuity(x, x, t, np.zeros((4, 4)), "spectral", 6, 0.5, None, False, good)
    with pytest.raises(ValueError, match=r"rho0 must have shape \(4, 4\)"):
        _julia.solve_continuity(x, x, t, np.zeros((3, 4)), "mol", 6, 0.5, None, False, good)
    with pytest.raises(ValueError, match="float64"):
        _julia.solve_continuity(
            x, x, t, np.zeros((4, 4)), "mol", 6, 0.5, None, False, good.astype(np.float32)
        )
