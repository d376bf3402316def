# Ground-truth PDE solvers: KdV (Fourier pseudo-spectral + ETDRK4) and the 2-D continuity
# equation under the rigid rotation (-y, x) ("mol": central stencils + RK4; "upwind-fv": the
# paper's first-order upwind finite volumes + explicit Euler).
#
# Mirrors python/derlhybrid/kernels/pde.py algorithm for algorithm (same coefficients, step
# rules and loops; see that module and docs/pde.md). Indices are 1-based: Python's point `i`
# is point `i + 1` here. Internally a 2-D field is an (n_x, n_y) matrix `r[i, j]`, x first, as
# Python's `rho[i, j]`; the caller's buffers arrive in Python's transposed layout (below).

# ------------------------------------------------------------------------------------------
# Validation helpers (Python's _positive, _uniform_axis, _times, _substeps)
# ------------------------------------------------------------------------------------------
function _positive(name, value)
    v = value isa Real && !(value isa Bool) ? Float64(value) : NaN
    (isfinite(v) && v > 0) ||
        throw(ArgumentError("$name must be a positive finite number, got $(repr(value))"))
    return v
end

"""A 1-D, finite, strictly increasing, uniform coordinate vector (copied) and its step."""
function _uniform_axis(name, xs::AbstractVector, minimum_points::Int)
    x = collect(Float64, xs)
    n = length(x)
    n >= minimum_points ||
        throw(ArgumentError(
            "$name must be a 1-D array of at least $minimum_points points, got $n",
        ))
    all(isfinite, x) || throw(ArgumentError("$name must be finite"))
    d = diff(x)
    all(>(0), d) || throw(ArgumentError("$name must be strictly increasing"))
    h = (x[end] - x[1]) / (n - 1)
    spread = maximum(d) - minimum(d)
    spread <= 1.0e-9 * h ||
        throw(ArgumentError("$name must be uniformly spaced (steps differ by $spread)"))
    return x, h
end

function _times(t_eval::AbstractVector)
    t = collect(Float64, t_eval)
    isempty(t) && throw(ArgumentError("t_eval must be a non-empty 1-D array"))
    all(isfinite, t) || throw(ArgumentError("t_eval must be finite"))
    all(>(0), diff(t)) ||
        throw(ArgumentError(
            "t_eval must be strictly increasing (t_eval[1] is the initial time)",
        ))
    return t
end

_optional_step(name, dt) = dt === nothing ? nothing : _positive(name, dt)

"""Equal substeps per output interval, each at most `h_max` (1e-9 slack so that an interval
that is a whole multiple of `h_max` is not split once more by rounding)."""
_substeps(dts::AbstractVector{Float64}, h_max::Float64) = [
    max(1, ceil(Int, d / h_max * (1 - 1.0e-9)))
    for d in dts
]

function _check_buffer(name, buf, expected::Tuple)
    size(buf) == expected ||
        throw(ArgumentError("$name has size $(size(buf)), expected $expected"))
    return buf
end

# ------------------------------------------------------------------------------------------
# KdV: u_t + u u_x + nu u_xxx = 0, periodic
# ------------------------------------------------------------------------------------------
"""Points on the contour of the ETDRK4 coefficient integrals (Python's default)."""
const CONTOUR_POINTS = 64

"""
`E, E2, Q, f1, f2, f3` of ETDRK4 (Cox & Matthews 2002) for the diagonal linear operator
`lin`, by the mean over a circle of radius 1 around each `h * lin` (Kassam & Trefethen 2005).
`lin` is imaginary for KdV, so the whole circle is used and no real part is taken.
"""
function _etdrk4_coefficients(lin::Vector{ComplexF64}, h::Float64, contour_points::Int)
    M = contour_points
    r = [
        cis(2pi * (j - 0.5) / M)
        for j in 1:M
    ] # Python's exp(2i pi (j + 0.5) / M), j = 0..M-1
    m = length(lin)
    Q, f1, f2, f3 = (Vector{ComplexF64}(undef, m) for _ in 1:4)
    for i in 1:m
        sq = sf1 = sf2 = sf3 = zero(ComplexF64)
        for rj in r
            z = h * lin[i] + rj
            ez = exp(z)
            z3 = z^3
            sq += (exp(z / 2) - 1) / z
            sf1 += (-4 - z + ez * (4 - 3z + z^2)) / z3
            sf2 += (2 + z + ez * (z - 2)) / z3
            sf3 += (-4 - 3z - z^2 + ez * (4 - z)) / z3
        end
        Q[i] = h * (sq / M)
        f1[i] = h * (sf1 / M)
        f2[i] = h * (sf2 / M)
        f3[i] = h * (sf3 / M)
    end
    return exp.(h .* lin), exp.(h .* lin ./ 2), Q, f1, f2, f3
end

"""ETDRK4 for KdV on one periodic grid of `n` points (Python's `_KdVETDRK4`)."""
struct KdVETDRK4{PF, PB}
    n::Int
    lin::Vector{ComplexF64} # i nu k^3
    g::Vector{ComplexF64}   # -i k / 2 (the nonlinear term's factor)
    cache::Dict{Float64, NTuple{6, Vector{ComplexF64}}}
    u::Vector{Float64}    # physical-space work array (the plans' real array)
    s::Vector{ComplexF64} # copy of the spectrum fed to the inverse transform
    fwd::PF               # rfft plan on u (unnormalised, as numpy.fft.rfft)
    bwd::PB               # irfft plan on s (normalised by 1/n, as numpy.fft.irfft)
end

function KdVETDRK4(n::Int, period::Float64, nu::Float64)
    k = [(2pi / period) * m for m in 0:(n ÷ 2)]
    iseven(n) && (k[end] = 0.0)        # odd derivatives have no Nyquist component
    lin = [im * nu * kk^3 for kk in k] # u_t = -nu u_xxx  ->  (i nu k^3) u_hat
    g = [-0.5im * kk for kk in k]      # -(u^2 / 2)_x  ->  -(i k / 2) FFT(u^2)
    u = zeros(Float64, n)
    s = zeros(ComplexF64, n ÷ 2 + 1)
    return KdVETDRK4(
        n,
        lin,
        g,
        Dict{Float64, NTuple{6, Vector{ComplexF64}}}(),
        u,
        s,
        plan_rfft(u),
        plan_irfft(s, n),
    )
end

"""`out = rfft(u0)`."""
function _rfft!(out::Vector{ComplexF64}, S::KdVETDRK4, u0)
    copyto!(S.u, u0)
    return mul!(out, S.fwd, S.u)
end

"""`S.u = irfft(v)` (v is left untouched: the transform reads a copy)."""
function _irfft!(S::KdVETDRK4, v::Vector{ComplexF64})
    copyto!(S.s, v)
    return mul!(S.u, S.bwd, S.s)
end

"""`out = FFT(IFFT(v)^2)` (the factor `-ik/2` is folded into the coefficients)."""
function _nonlinear!(out::Vector{ComplexF64}, S::KdVETDRK4, v::Vector{ComplexF64})
    _irfft!(S, v)
    S.u .*= S.u
    return mul!(out, S.fwd, S.u)
end

"""`E, E2, Q g, f1 g, 2 f2 g, f3 g` for the step `h` (cached per step)."""
function _coefficients!(S::KdVETDRK4, h::Float64)
    return get!(S.cache, h) do
        e, e2, q, f1, f2, f3 = _etdrk4_coefficients(S.lin, h, CONTOUR_POINTS)
        g = S.g
        (e, e2, q .* g, f1 .* g, (2 .* f2) .* g, f3 .* g)
    end
end

"""
Fill `frames[:, k]` with the solution at `t[k]` from the spectrum `v0`, taking `steps[k]`
equal ETDRK4 steps in interval `k` (Python's `_KdVETDRK4.run` + `_etdrk4_run`).
"""
function _run!(
    frames::AbstractMatrix,
    S::KdVETDRK4,
    v0::Vector{ComplexF64},
    t::Vector{Float64},
    steps::Vector{Int},
)
    dts = diff(t)
    hs = dts ./ steps
    # intervals whose step agrees to 1e-12 share one coefficient set (that of the first)
    hkey = isempty(hs) ? hs : round.(hs ./ maximum(hs); digits = 12)
    first_h = Dict{Float64, Float64}()
    for (key, h) in zip(hkey, hs)
        get!(first_h, key, h)
    end
    m = length(v0)
    v = copy(v0)
    fv, fa, fb, fc, a, b, c = (Vector{ComplexF64}(undef, m) for _ in 1:7)
    copyto!(view(frames, :, 1), _irfft!(S, v))
    for k in eachindex(steps)
        e, e2, qg, f1, f2, f3 = _coefficients!(S, first_h[hkey[k]])
        for _ in 1:steps[k]
            _nonlinear!(fv, S, v)
            @. a = e2 * v + qg * fv
            _nonlinear!(fa, S, a)
            @. b = e2 * v + qg * fa
            _nonlinear!(fb, S, b)
            @. c = e2 * a + qg * (2.0 * fb - fv)
            _nonlinear!(fc, S, c)
            @. v = e * v + f1 * fv + f2 * (fa + fb) + f3 * fc
        end
        copyto!(view(frames, :, k + 1), _irfft!(S, v))
    end
    return frames
end

"""
Steps per output interval for a max-norm time-integration error of about `tol` (Python's
`_choose_steps`): pilot runs over the whole horizon at steps `h, h/2, h/4, ...`; Richardson's
estimate of a run's error is `max|u_h - u_{h/2}| / 15`; the pilot stops at the first
estimate within `1e4 tol` and takes `h_final = h (tol / estimate)^(1/4) / 1.1`.
"""
function _choose_steps(
    S::KdVETDRK4,
    v0::Vector{ComplexF64},
    t::Vector{Float64},
    tol::Float64,
)
    dts = diff(t)
    h = min(maximum(dts), (t[end] - t[1]) / 64)
    cur = Matrix{Float64}(undef, S.n, length(t))
    prev = similar(cur)
    have_prev = false
    while true
        steps = _substeps(dts, h)
        sum(steps) > 4_000_000 &&
            throw(ArgumentError(
                "solve_kdv: tol=$tol is not reachable with the pilot's steps (rounding); raise " *
                    "tol or pass dt",
            ))
        _run!(cur, S, v0, t, steps)
        if !all(isfinite, cur)
            have_prev = false
        elseif have_prev
            est = maximum(abs(c - p) for (c, p) in zip(cur, prev)) / 15
            est <= tol && return steps
            if est <= 1.0e4 * tol && est <= 1.0e-3 * max(1.0, maximum(abs, cur))
                return _substeps(dts, h * (tol / est)^0.25 / 1.1)
            end
            cur, prev = prev, cur
        else
            cur, prev = prev, cur
            have_prev = true
        end
        h /= 2
    end
end

"""
    solve_kdv!(out, nu, x, t_eval, u0; tol=1e-10, dt=nothing) -> out

Solve `u_t + u u_x + nu u_xxx = 0` with periodic boundary conditions and fill
`out[:, k]` (size `(length(x), length(t_eval))`: Python's `(n_t, n_x)` array, transposed)
with the solution at `t_eval[k]`; `out[:, 1]` is `u0` seen through the FFT round trip.

`x` is the uniform periodic grid *without* the duplicated endpoint (period
`length(x) * (x[2] - x[1])`). Fourier pseudo-spectral in space, ETDRK4 in time with
contour-integral coefficients; each output interval is split into equal steps of at most
`dt`, or, with `dt=nothing`, steps chosen by pilot runs for a max-norm time error of about
`tol`. Mirrors Python's `kernels.pde.solve_kdv` (`dealias=False`, 64 contour points).
"""
function solve_kdv!(
    out::AbstractMatrix,
    nu::Real,
    x::AbstractVector,
    t_eval::AbstractVector,
    u0::AbstractVector;
    tol::Real = 1.0e-10,
    dt = nothing,
)
    nuf = _positive("solve_kdv: nu", nu)
    xs, hx = _uniform_axis("solve_kdv: x", x, 4)
    t = _times(t_eval)
    n = length(xs)
    length(u0) == n && all(isfinite, u0) ||
        throw(ArgumentError(
            "solve_kdv: u0 must be finite with x's length $n, got length $(length(u0))",
        ))
    dtf = _optional_step("solve_kdv: dt", dt)
    tolf = _positive("solve_kdv: tol", tol)
    _check_buffer("solve_kdv!: out", out, (n, length(t)))
    S = KdVETDRK4(n, n * hx, nuf)
    v0 = _rfft!(Vector{ComplexF64}(undef, n ÷ 2 + 1), S, u0)
    if length(t) == 1
        copyto!(view(out, :, 1), _irfft!(S, v0))
        return out
    end
    steps = dtf === nothing ? _choose_steps(S, v0, t, tolf) : _substeps(diff(t), dtf)
    _run!(out, S, v0, t, steps)
    return out
end

"""
    kdv_soliton(t, x; nu, speed, x0=0.0, period=nothing)

The KdV soliton `3c sech²(√(c/nu)/2 (x - x0 - c t))` (`c = speed > 0`); with `period`, the
nearest periodic image (Python's `kernels.pde.kdv_soliton`).
"""
function kdv_soliton(
    t::Real,
    x::Real;
    nu::Real,
    speed::Real,
    x0::Real = 0.0,
    period = nothing,
)
    nuf = _positive("kdv_soliton: nu", nu)
    c = _positive("kdv_soliton: speed", speed)
    xi = x - x0 - c * t
    if period !== nothing
        p = _positive("kdv_soliton: period", period)
        xi = mod(xi + p / 2, p) - p / 2
    end
    return 3c / cosh(0.5 * sqrt(c / nuf) * xi)^2
end

# ------------------------------------------------------------------------------------------
# Continuity: rho_t + div(rho u) = 0 with the rigid rotation u = (-y, x)
# ------------------------------------------------------------------------------------------
const CONTINUITY_METHODS = ("mol", "upwind-fv")

"""The rigid rotation `(-y, x)`: counter-clockwise at unit angular speed, div u = 0."""
rigid_rotation(x::Real, y::Real) = (-y, x)

# out[j, i, k] = r[i, j]: `out` is Python's (n_t, n_x, n_y) buffer seen as (n_y, n_x, n_t)
function _write_frame!(out::AbstractArray{<:Any, 3}, k::Int, r::Matrix{Float64})
    nx, ny = size(r)
    @inbounds for i in 1:nx, j in 1:ny
        out[j, i, k] = r[i, j]
    end
    return out
end

function _read_field(rho0::AbstractMatrix, nx::Int, ny::Int)
    r = Matrix{Float64}(undef, nx, ny)
    for i in 1:nx, j in 1:ny
        r[i, j] = rho0[j, i]
    end
    return r
end

"""max over θ ∈ [0, π] of |Σ_s w_s exp(i s θ)| for a centred stencil (times h)."""
function _max_symbol(w::AbstractVector{Float64})
    W = length(w)
    s = (0:(W - 1)) .- (W - 1) / 2
    return maximum(
        abs(sum(w[q] * cis(s[q] * th) for q in 1:W))
        for th in range(0.0, pi; length = 2049)
    )
end

# d = D r along dimension `dim` (1: x, 2: y) of an (n_x, n_y) matrix, with a prebuilt operator
function _along!(d::Matrix{T}, r::Matrix{T}, op::StencilOperator{T}, dim::Int) where {T}
    nx, ny = size(r)
    if dim == 1
        _apply!(reshape(d, 1, nx, ny), reshape(r, 1, nx, ny), op)
    else
        _apply!(reshape(d, nx, ny, 1), reshape(r, nx, ny, 1), op)
    end
    return d
end

"""
The semi-discrete right-hand side of Python's `_mol_operator` (periodic closure), applied
without assembling it: `-(1/2)[Dx(u r) + u Dx r + Dy(v r) + v Dy r + (Dx u + Dy v) r]`.
"""
struct MOLOperator
    opx::StencilOperator{Float64}
    opy::StencilOperator{Float64}
    u::Matrix{Float64}
    v::Matrix{Float64}
    div::Matrix{Float64}
    w1::Matrix{Float64}
    w2::Matrix{Float64}
    w3::Matrix{Float64}
end

function MOLOperator(opx, opy, u::Matrix{Float64}, v::Matrix{Float64})
    w1, w2 = similar(u), similar(u)
    div = _along!(w1, u, opx, 1) .+ _along!(w2, v, opy, 2)
    return MOLOperator(opx, opy, u, v, div, w1, w2, similar(u))
end

function _mol_rhs!(dr::Matrix{Float64}, A::MOLOperator, r::Matrix{Float64})
    u, v, div, w1, w2, w3 = A.u, A.v, A.div, A.w1, A.w2, A.w3
    @. w1 = u * r
    _along!(w2, w1, A.opx, 1) # Dx(u r)
    _along!(w3, r, A.opx, 1)  # Dx r
    @. dr = w2 + u * w3
    @. w1 = v * r
    _along!(w2, w1, A.opy, 2) # Dy(v r)
    _along!(w3, r, A.opy, 2)  # Dy r
    @. dr = -0.5 * (dr + w2 + v * w3 + div * r)
    return dr
end

function _solve_mol!(out, x, y, hx, hy, t, rho0, accuracy, cfl, dt)
    nx, ny = length(x), length(y)
    opx = build_operator(Float64, nx, hx, 1, accuracy, "periodic", "central", nothing)
    opy = build_operator(Float64, ny, hy, 1, accuracy, "periodic", "central", nothing)
    u = [rigid_rotation(x[i], y[j])[1] for i in 1:nx, j in 1:ny]
    v = [rigid_rotation(x[i], y[j])[2] for i in 1:nx, j in 1:ny]
    A = MOLOperator(opx, opy, u, v)
    sx = _max_symbol(opx.w_int .* hx)
    sy = _max_symbol(opy.w_int .* hy)
    rate = maximum(abs(u[i, j]) * sx / hx + abs(v[i, j]) * sy / hy for i in 1:nx, j in 1:ny)
    dt_stable = rate > 0 ? 2 * sqrt(2) / rate : Inf # RK4 on the imaginary axis
    dt === nothing ||
        dt <= dt_stable ||
        throw(ArgumentError(
            "solve_continuity: dt=$dt exceeds the RK4 stability limit " *
                "$dt_stable of this grid and velocity; lower dt",
        ))
    h_max = dt === nothing ? cfl * dt_stable : dt
    r = _read_field(rho0, nx, ny)
    _write_frame!(out, 1, r)
    dts = diff(t)
    steps = _substeps(dts, h_max)
    k1, k2, k3, k4, w = (similar(r) for _ in 1:5)
    for k in eachindex(steps)
        h = dts[k] / steps[k]
        for _ in 1:steps[k]
            # classical RK4
            _mol_rhs!(k1, A, r)
            @. w = r + k1 * (h / 2)
            _mol_rhs!(k2, A, w)
            @. w = r + k2 * (h / 2)
            _mol_rhs!(k3, A, w)
            @. w = r + k3 * h
            _mol_rhs!(k4, A, w)
            @. r += (k1 + 2 * (k2 + k3) + k4) * (h / 6)
        end
        _write_frame!(out, k + 1, r)
    end
    return out
end

function _solve_upwind!(out, x, y, hx, hy, t, rho0, cfl, dt, paper_edges::Bool)
    nx, ny = length(x), length(y)
    # face velocities at face midpoints (paper.md §6.2): x-face i lies between cells i, i+1
    uf = [rigid_rotation(x[i] + hx / 2, y[j])[1] for i in 1:(nx - 1), j in 1:ny]
    vf = [rigid_rotation(x[i], y[j] + hy / 2)[2] for i in 1:nx, j in 1:(ny - 1)]
    if paper_edges
        # the paper's outermost ring of cells takes no part (held at 0)
        uf[[1, end], :] .= 0.0
        uf[:, [1, end]] .= 0.0
        vf[:, [1, end]] .= 0.0
        vf[[1, end], :] .= 0.0
    end
    # outflow rate of each cell (per unit time): explicit Euler keeps rho >= 0 (and is
    # stable) while dt * rate <= 1
    outflow = zeros(nx, ny)
    outflow[1:(end - 1), :] .+= max.(uf, 0.0) ./ hx
    outflow[2:end, :] .+= max.(-uf, 0.0) ./ hx
    outflow[:, 1:(end - 1)] .+= max.(vf, 0.0) ./ hy
    outflow[:, 2:end] .+= max.(-vf, 0.0) ./ hy
    rate = maximum(outflow)
    dt_stable = rate > 0 ? 1 / rate : Inf
    dt === nothing ||
        dt <= dt_stable * (1 + 1.0e-12) ||
        throw(ArgumentError(
            "solve_continuity: dt=$dt breaks the upwind CFL limit " *
                "$dt_stable (dt * max cell outflow rate must be <= 1); lower dt",
        ))
    h_max = dt === nothing ? cfl * dt_stable : dt
    dts = diff(t)
    steps = _substeps(dts, h_max)
    hs = dts ./ steps
    copyto!(view(out, :, :, 1), rho0) # frame 1 is rho0 as given, even with paper_edges
    rho = _read_field(rho0, nx, ny)
    if paper_edges && length(t) > 1
        rho[[1, end], :] .= 0.0
        rho[:, [1, end]] .= 0.0
    end
    tmp = similar(rho)
    cxp, cxm = similar(uf), similar(uf)
    cyp, cym = similar(vf), similar(vf)
    h_coef = NaN
    for k in eachindex(steps)
        h = hs[k]
        # face coefficients change with the step (consecutive equal steps share them)
        if !(abs(h - h_coef) <= 1.0e-12 * h_coef)
            h_coef = h
            @. cxp = h / hx * max(uf, 0.0)
            @. cxm = h / hx * min(uf, 0.0)
            @. cyp = h / hy * max(vf, 0.0)
            @. cym = h / hy * min(vf, 0.0)
        end
        for _ in 1:steps[k]
            _upwind_step!(tmp, rho, cxp, cxm, cyp, cym)
            rho, tmp = tmp, rho
        end
        _write_frame!(out, k + 1, rho)
    end
    return out
end

"""
One explicit Euler step with first-order upwind fluxes (Python's `_upwind_run` body).
`cxp`/`cxm` hold `dt/dx * max(u, 0)` / `dt/dx * min(u, 0)` on the `nx - 1` interior x-faces
(`cyp`, `cym`: y-faces); boundary faces carry no flux. Every face flux is one expression
wherever it is used, so the total mass changes only by rounding.
"""
function _upwind_step!(new, rho, cxp, cxm, cyp, cym)
    nx, ny = size(rho)
    @inbounds for j in 1:ny, i in 1:nx
        r = rho[i, j]
        d = 0.0
        if i < nx
            # face i+1/2
            d -= cxp[i, j] * r + cxm[i, j] * rho[i + 1, j]
        end
        if i > 1
            # face i-1/2
            d += cxp[i - 1, j] * rho[i - 1, j] + cxm[i - 1, j] * r
        end
        if j < ny
            d -= cyp[i, j] * r + cym[i, j] * rho[i, j + 1]
        end
        if j > 1
            d += cyp[i, j - 1] * rho[i, j - 1] + cym[i, j - 1] * r
        end
        new[i, j] = r + d
    end
    return new
end

"""
    solve_continuity!(out, x, y, t_eval, rho0; method="mol", accuracy=6, cfl=0.5,
                      dt=nothing, paper_edges=false) -> out

Solve `rho_t + div(rho u) = 0` on the box `x × y` for the rigid rotation `u = (-y, x)`.

Layout (Python's arrays seen column-major): `rho0` has size `(length(y), length(x))` with
`rho0[j, i] = rho(x[i], y[j])`, and `out` has size `(length(y), length(x), length(t_eval))`
with `out[j, i, k] = rho(x[i], y[j], t_eval[k])`.

`method="mol"`: central stencils of `accuracy` (DERLKernels' periodic operators) in the
skew-symmetric split form and classical RK4, `dt = cfl * 2√2 / max(|u| σx/dx + |v| σy/dy)`.
`method="upwind-fv"`: the paper's first-order upwind finite volumes (cell centres `x`, `y`,
face velocities at face midpoints, no flux through the outer faces) with explicit Euler at
`dt = cfl / max cell outflow rate`; `paper_edges=true` freezes the outermost ring of cells
at 0 after `t_eval[1]`. A given `dt` is the largest step (output intervals are split into
equal steps) and is refused beyond the stability limit. Mirrors Python's
`kernels.pde.solve_continuity` (`velocity=rigid_rotation`, `boundary="periodic"`).
"""
function solve_continuity!(
    out::AbstractArray{<:Any, 3},
    x::AbstractVector,
    y::AbstractVector,
    t_eval::AbstractVector,
    rho0::AbstractMatrix;
    method::AbstractString = "mol",
    accuracy::Integer = 6,
    cfl::Real = 0.5,
    dt = nothing,
    paper_edges::Bool = false,
)
    method in CONTINUITY_METHODS ||
        throw(ArgumentError(
            "solve_continuity: method must be one of $CONTINUITY_METHODS, got $(repr(method))",
        ))
    xs, hx = _uniform_axis("solve_continuity: x", x, 3)
    ys, hy = _uniform_axis("solve_continuity: y", y, 3)
    t = _times(t_eval)
    nx, ny = length(xs), length(ys)
    (size(rho0) == (ny, nx) && all(isfinite, rho0)) ||
        throw(ArgumentError(
            "solve_continuity: rho0 must be finite with size $((ny, nx)) (length(y), length(x)), " *
                "got size $(size(rho0))",
        ))
    cflf = _positive("solve_continuity: cfl", cfl)
    cflf <= 1 || throw(ArgumentError("solve_continuity: cfl must be in (0, 1], got $cflf"))
    dtf = _optional_step("solve_continuity: dt", dt)
    _check_buffer("solve_continuity!: out", out, (ny, nx, length(t)))
    if method == "upwind-fv"
        return _solve_upwind!(out, xs, ys, hx, hy, t, rho0, cflf, dtf, paper_edges)
    end
    paper_edges &&
        throw(ArgumentError(
            "solve_continuity: paper_edges applies to method='upwind-fv' only",
        ))
    p = _check_int("solve_continuity: accuracy", accuracy, 2)
    iseven(p) ||
        throw(ArgumentError("solve_continuity: accuracy must be even (central), got $p"))
    return _solve_mol!(out, xs, ys, hx, hy, t, rho0, p, cflf, dtf)
end
