# The systems of derlhybrid: names, parameters and defaults, and the right-hand sides of the
# systems whose ground truth Julia computes.
#
# `SYSTEMS` mirrors Python's registry (`derlhybrid.systems.SYSTEMS`, each class's
# `parameter_specs()`): one `name => (parameter = default, ...)` entry per system, parameters
# in Python's declaration order, which is the order of the parameter vectors Python sends
# (`System.param_vector()`). tools/check_julia.py reads these tables from the syntax tree and
# compares them with Python's, so every default stays a plain Float64 literal.

const SYSTEMS = (
    "pendulum" => (b = 0.5, g = 9.81, l = 10.0, m = 1.0),
    "continuity" => (width = 0.05, half_size = 1.5, t_end = 10.0),
    "kdv" => (nu = 0.0025, t_end = 1.0),
    "allen-cahn" => (lam = 0.01,),
    "allen-cahn-exp" => (shift = 0.7, lam_low = 0.0, lam_high = 3.141592653589793), # π
    "allen-cahn-multi" => (diffusion_coef = 0.1,),
    "kovasznay" => (Re = 50.0,),
    "euler-ball" => (t_end = 0.5, radius = 1.0),
)

"""Names of every system of `SYSTEMS`, in table order."""
system_names() = map(first, SYSTEMS)

"""
    default_parameters(name) -> NamedTuple

Parameters of system `name` with their defaults, in Python's declaration order.
"""
function default_parameters(name::AbstractString)
    for (n, defaults) in SYSTEMS
        n == name && return defaults
    end
    throw(ArgumentError(
        "unknown system $(repr(name)); systems: $(join(system_names(), ", "))",
    ))
end

# ------------------------------------------------------------------------------------------
# Right-hand sides (same argument order as OrdinaryDiffEq: dy, y, p, t)
# ------------------------------------------------------------------------------------------
"""
    pendulum_rhs!(dy, y, p, t)

Damped pendulum θ'' = −(g/l) sin θ − (b/m) θ' as a first-order system in y = (θ, ω), with
`p = (b, g, l, m)` (Python's `_pendulum_rhs(t, y, p, dy)`, same operations in the same order).
"""
@inline function pendulum_rhs!(dy, y, p, t)
    dy[1] = y[2]
    dy[2] = -(p[2] / p[3]) * sin(y[1]) - (p[1] / p[4]) * y[2]
    return nothing
end

# ------------------------------------------------------------------------------------------
# Systems Julia solves: `name => (rhs = f!, n_state = n)`; every name is a Python ODE system
# (checked by tools/check_julia.py).
# ------------------------------------------------------------------------------------------
const ODE_SYSTEMS = ("pendulum" => (rhs = pendulum_rhs!, n_state = 2),)

# PDE systems Julia solves: `name => generator`, the in-place solver of pde.jl that fills
# the system's frames (Python calls it through kernels/_julia.py); every name is a Python
# PDE system (checked by tools/check_julia.py).
const PDE_SYSTEMS = ("kdv" => "solve_kdv!", "continuity" => "solve_continuity!")

"""
    ode_system(name) -> (rhs = f!, n_state = n)

The right-hand side `f!(dy, y, p, t)` and state size of the ODE system `name`.
"""
function ode_system(name::AbstractString)
    for (n, spec) in ODE_SYSTEMS
        n == name && return spec
    end
    default_parameters(name) # an unknown name gets the list of all systems
    solved = join(map(first, ODE_SYSTEMS), ", ")
    throw(ArgumentError(
        "system $(repr(name)) has no Julia ODE solver; ODE systems solved " *
            "here: $solved",
    ))
end
