# Ensembles of small ODE systems: ground truth at speed. Mirrors
# python/derlhybrid/kernels/ode.py (`solve_ensemble`).
#
# Python integrates every trajectory with Hairer's DOP853 (Dormand–Prince 8(5,3)) and its
# 7th-order dense output; here OrdinaryDiffEq's `DP8()` (OrdinaryDiffEqHighOrderRK), the same
# method with OrdinaryDiffEq's own step-size controller, runs over an `EnsembleProblem` on
# `EnsembleThreads()`. Both save the dense output at `t_eval` and the vector field at every
# saved state. The steps differ, so results agree to the tolerances, not to rounding.
#
# Layout (Python allocates, Julia fills; python/derlhybrid/kernels/_julia.py): Python's
# C-ordered buffers arrive transposed, as column-major arrays with reversed dimensions:
#   states, derivatives  (n_traj, n_t, n_state)  ->  (n_state, n_t, n_traj)
#   y0                   (n_traj, n_state)       ->  (n_state, n_traj)
#   params               (m, n_par)              ->  (n_par, m), m = 1 or n_traj
#   n_steps, status      (n_traj,)               ->  (n_traj,)

# Per-trajectory status codes, the values of kernels/ode.py (tools/check_julia.py checks).
const STATUS_OK = 0
const STATUS_STEP_UNDERFLOW = 1
const STATUS_MAX_STEPS = 2
const STATUS_NON_FINITE = 3

const ODE_METHODS = ("DP8", "dop853")

"""
    solve_ensemble!(states, derivatives, n_steps, status, system, y0, t_eval, params;
                    rtol=1e-10, atol=1e-10, alg="DP8", max_steps=100_000) -> states

Integrate `n_traj` initial value problems `y' = f(y, p, t)` of `system` (a name of
[`ODE_SYSTEMS`](@ref), or a right-hand side `f!(dy, y, p, t)`) from `t_eval[1]` to
`t_eval[end]` with `DP8()`, trajectories in parallel (`EnsembleThreads()`), and fill the
caller's buffers:

- `states[:, j, i]`, `derivatives[:, j, i]`: state of trajectory `i` at `t_eval[j]` and the
  vector field there (`states`, `derivatives`: `(n_state, n_t, n_traj)`);
- `n_steps[i]`: accepted steps; `status[i]`: `STATUS_OK` (0), `STATUS_STEP_UNDERFLOW` (1),
  `STATUS_MAX_STEPS` (2) or `STATUS_NON_FINITE` (3), as in Python. A failed trajectory's
  rows are NaN;
- `n_rejected[i]` (a keyword, `nothing` by default): rejected steps, when a buffer is given.

The step-size controller is OrdinaryDiffEq's default for `DP8()` (`PIController` with
`beta1 = 1/8`, `beta2 = 0`, `gamma = 0.9`, factors in `[1/3, 6]`, its own initial step), not
the SciPy-style controller of Python's DOP853: the steps differ, results agree to the
tolerances. Python records this in a dataset's provenance (`_julia.ENSEMBLE_PROVENANCE`).

`y0` is `(n_state, n_traj)`; `params` is `(n_par, n_traj)`, or one vector `(n_par,)` (or
`(n_par, 1)`) for all; `rtol`, `atol` are numbers or `n_state` vectors; `max_steps` bounds
the step attempts (accepted + rejected) per trajectory. Throws `ArgumentError` for bad input.
"""
function solve_ensemble!(
    states::AbstractArray{<:Real, 3},
    derivatives::AbstractArray{<:Real, 3},
    n_steps::AbstractVector{<:Integer},
    status::AbstractVector{<:Integer},
    system::AbstractString,
    y0::AbstractMatrix{<:Real},
    t_eval::AbstractVector{<:Real},
    params::AbstractVecOrMat{<:Real};
    kwargs...,
)
    spec = ode_system(system)
    names = keys(default_parameters(system))
    size(params, 1) == length(names) ||
        throw(ArgumentError(
            "solve_ensemble!: $system takes $(length(names)) parameters $names, got " *
                "$(size(params, 1)) per trajectory",
        ))
    size(y0, 1) == spec.n_state ||
        throw(ArgumentError(
            "solve_ensemble!: $system has $(spec.n_state) state variables, y0 has $(size(y0, 1))",
        ))
    return solve_ensemble!(
        states,
        derivatives,
        n_steps,
        status,
        spec.rhs,
        y0,
        t_eval,
        params;
        kwargs...,
    )
end

function solve_ensemble!(
    states::AbstractArray{<:Real, 3},
    derivatives::AbstractArray{<:Real, 3},
    n_steps::AbstractVector{<:Integer},
    status::AbstractVector{<:Integer},
    rhs!::F,
    y0::AbstractMatrix{<:Real},
    t_eval::AbstractVector{<:Real},
    params::AbstractVecOrMat{<:Real};
    rtol = 1.0e-10,
    atol = 1.0e-10,
    alg::AbstractString = "DP8",
    max_steps::Integer = 100_000,
    n_rejected::Union{Nothing, AbstractVector{<:Integer}} = nothing,
) where {F <: Function}
    solver = _ode_algorithm(alg)
    n_state, n_traj = size(y0)
    n_t = length(t_eval)
    n_state >= 1 ||
        throw(ArgumentError(
            "solve_ensemble!: y0 must have at least one state " *
                "variable (one row per variable)",
        ))
    T = collect(Float64, t_eval)
    (n_t >= 1 && all(isfinite, T) && all(>(0), diff(T))) ||
        throw(ArgumentError(
            "solve_ensemble!: t_eval must be non-empty, finite and strictly increasing",
        ))
    shape = (n_state, n_t, n_traj)
    for (name, buf) in (("states", states), ("derivatives", derivatives))
        size(buf) == shape ||
            throw(ArgumentError(
                "solve_ensemble!: $name has size $(size(buf)), expected $shape " *
                    "(n_state, n_t, n_traj)",
            ))
    end
    (length(n_steps) == n_traj && length(status) == n_traj) ||
        throw(ArgumentError(
            "solve_ensemble!: n_steps and status must have length n_traj = $n_traj",
        ))
    n_rejected === nothing ||
        length(n_rejected) == n_traj ||
        throw(ArgumentError(
            "solve_ensemble!: n_rejected must have length n_traj = $n_traj",
        ))
    size(params, 2) in (1, n_traj) ||
        throw(ArgumentError(
            "solve_ensemble!: params must have one column per trajectory ($n_traj) or one for " *
                "all, got $(size(params, 2))",
        ))
    reltol = _tolerance("rtol", rtol, n_state)
    abstol = _tolerance("atol", atol, n_state)
    max_steps >= 1 ||
        throw(ArgumentError(
            "solve_ensemble!: max_steps must be a positive integer, got $max_steps",
        ))
    # Native copies of the inputs for the worker threads.
    Y0 = Matrix{Float64}(y0)
    P = params isa AbstractVector ?
        reshape(collect(Float64, params), :, 1) :
        Matrix{Float64}(params)
    n_rejected === nothing || fill!(n_rejected, 0)
    todo = _initial_states!(states, derivatives, n_steps, status, rhs!, Y0, P, T[1], n_t)
    isempty(todo) && return states
    _run_ensemble!(
        states,
        derivatives,
        n_steps,
        n_rejected,
        status,
        rhs!,
        Y0,
        P,
        T,
        todo,
        solver,
        reltol,
        abstol,
        Int(max_steps),
    )
    return states
end

function _ode_algorithm(alg::AbstractString)
    a = lowercase(alg)
    (a == "dp8" || a == "dop853") && return DP8()
    throw(ArgumentError(
        "solve_ensemble!: alg must be one of $ODE_METHODS, got $(repr(alg))",
    ))
end

function _tolerance(name::AbstractString, v::Real, n_state::Int)
    x = Float64(v)
    (isfinite(x) && x > 0) ||
        throw(ArgumentError("solve_ensemble!: $name must be positive and finite, got $v"))
    return x
end

function _tolerance(name::AbstractString, v::AbstractVector{<:Real}, n_state::Int)
    length(v) == n_state ||
        throw(ArgumentError(
            "solve_ensemble!: $name must be a number or a vector of n_state = $n_state numbers",
        ))
    x = collect(Float64, v)
    all(t -> isfinite(t) && t > 0, x) ||
        throw(ArgumentError("solve_ensemble!: $name must be positive and finite, got $v"))
    return x
end

# Parameters of trajectory i: its own column, or the only one (a fresh vector per problem).
_params(P::Matrix{Float64}, i::Int) = P[:, size(P, 2) == 1 ? 1 : i]

"""
Write row 1 (`y0` and `f(y0)`) of every trajectory, as Python does before integrating. A
trajectory with a non-finite `y0` or `f(y0)` gets `STATUS_NON_FINITE` and NaN rows; with one
output time every finite one is done (`STATUS_OK`). Returns the trajectories left to solve.
"""
function _initial_states!(
    states,
    derivatives,
    n_steps,
    status,
    rhs!::F,
    Y0::Matrix{Float64},
    P::Matrix{Float64},
    t0::Float64,
    n_t::Int,
) where {F}
    n_state, n_traj = size(Y0)
    todo = Int[]
    y = Vector{Float64}(undef, n_state)
    dy = Vector{Float64}(undef, n_state)
    for i in 1:n_traj
        copyto!(y, view(Y0, :, i))
        rhs!(dy, y, _params(P, i), t0)
        n_steps[i] = 0
        if all(isfinite, y) && all(isfinite, dy)
            for k in 1:n_state
                states[k, 1, i] = y[k]
                derivatives[k, 1, i] = dy[k]
            end
            status[i] = STATUS_OK
            n_t > 1 && push!(todo, i)
        else
            status[i] = STATUS_NON_FINITE
            _fill_nan!(states, derivatives, i)
        end
    end
    return todo
end

"""
Index of an ensemble member in the callbacks of an `EnsembleProblem`: SciMLBase 2 passes it
as an integer (`prob_func(prob, i, repeat)`, `output_func(sol, i)`), SciMLBase 3 as the
`sim_id` of an `EnsembleContext` (`prob_func(prob, ctx)`, `output_func(sol, ctx)`).
"""
_member(i::Integer) = Int(i)
_member(ctx) = Int(ctx.sim_id)

function _run_ensemble!(
    states,
    derivatives,
    n_steps,
    n_rejected,
    status,
    rhs!::F,
    Y0::Matrix{Float64},
    P::Matrix{Float64},
    T::Vector{Float64},
    todo::Vector{Int},
    solver,
    reltol,
    abstol,
    max_steps::Int,
) where {F}
    first_i = todo[1]
    prob = ODEProblem(rhs!, Y0[:, first_i], (T[1], T[end]), _params(P, first_i))
    # ensemble member k is trajectory todo[k]; each gets its own u0 and p vectors. The
    # callbacks take either SciMLBase major's arguments (see `_member`).
    prob_func = function (base, id, _...)
        i = todo[_member(id)]
        return remake(base; u0 = Y0[:, i], p = _params(P, i))
    end
    output_func = function (sol, id)
        i = todo[_member(id)]
        st = _store!(states, derivatives, n_steps, n_rejected, status, rhs!, sol, i, T)
        return (st, false)
    end
    eprob = EnsembleProblem(
        prob;
        prob_func = prob_func,
        output_func = output_func,
        safetycopy = false,
    )
    # A failed trajectory is reported by its status; keep the solver's warnings quiet.
    with_logger(NullLogger()) do
        solve(
            eprob,
            solver,
            EnsembleThreads();
            trajectories = length(todo),
            saveat = T,
            reltol = reltol,
            abstol = abstol,
            maxiters = max_steps,
        )
    end
    return nothing
end

"""Python's status code for an OrdinaryDiffEq return code."""
function retcode_status(retcode)::Int
    SciMLBase.successful_retcode(retcode) && return STATUS_OK
    retcode == ReturnCode.MaxIters && return STATUS_MAX_STEPS
    retcode == ReturnCode.DtLessThanMin && return STATUS_STEP_UNDERFLOW
    # Unstable (NaN in the state), DtNaN, InitialFailure (NaN at the first call), others
    return STATUS_NON_FINITE
end

# Rows 2..n_t of trajectory i from its solution (row 1 holds y0 and f(y0) already), its
# status and accepted steps. Runs on the worker threads; writes only trajectory i's slices.
function _store!(
    states,
    derivatives,
    n_steps,
    n_rejected,
    status,
    rhs!::F,
    sol,
    i::Int,
    T::Vector{Float64},
) where {F}
    st = retcode_status(sol.retcode)
    n_steps[i] = sol.stats === nothing ? 0 : sol.stats.naccept
    if n_rejected !== nothing
        n_rejected[i] = sol.stats === nothing ? 0 : sol.stats.nreject
    end
    if st == STATUS_OK
        n_t = length(T)
        length(sol.u) == n_t ||
            error(
                "DERLKernels.solve_ensemble!: the solver saved " *
                    "$(length(sol.u)) states, expected $n_t (t_eval)",
            )
        n_state = size(states, 1)
        p = sol.prob.p
        finite = true
        for j in 2:n_t
            u = sol.u[j]
            for k in 1:n_state
                states[k, j, i] = u[k]
            end
            rhs!(view(derivatives, :, j, i), u, p, T[j])
            for k in 1:n_state
                finite &= isfinite(states[k, j, i]) & isfinite(derivatives[k, j, i])
            end
        end
        finite || (st = STATUS_NON_FINITE)
    end
    status[i] = st
    st == STATUS_OK || _fill_nan!(states, derivatives, i)
    return st
end

function _fill_nan!(states, derivatives, i::Int)
    for j in axes(states, 2), k in axes(states, 1)
        states[k, j, i] = NaN
        derivatives[k, j, i] = NaN
    end
    return nothing
end
