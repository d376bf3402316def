# Finite-difference stencils: Fornberg weights and derivative operators.
#
# Mirrors python/derlhybrid/kernels/stencils.py function for function (same stencil widths,
# boundary rules and Fornberg recursion); see that module's docstring for the rules. Indices
# here are 1-based: Python's 0-based point `j` is point `j + 1` here.

const BOUNDARIES = ("periodic", "one-sided")
const SCHEMES = ("central", "forward", "backward")

# ------------------------------------------------------------------------------------------
# Fornberg weights
# ------------------------------------------------------------------------------------------
"""
    fornberg_weights!(w, x0, xs, order) -> w

Fill `w` with the weights of the `order`-th derivative at `x0` on the distinct nodes `xs`,
`f⁽ᵒʳᵈᵉʳ⁾(x0) ≈ sum(w .* f.(xs))` (Fornberg 1988, Math. Comp. 51). Computed in the
promoted type of `w`, `x0` and `xs`, so a `Rational` buffer on rational nodes gives exact
weights. `xs` may be an array of any shape (`w` then has its size; `w[I]` is the weight of
`xs[I]`), as Python's `fornberg_weights` flattens any node array. Throws `ArgumentError` for
bad input.
"""
function fornberg_weights!(w::AbstractArray, x0::Real, xs::AbstractArray, order::Integer)
    d = _check_int("order", order, 0)
    P = promote_type(eltype(w), typeof(x0), eltype(xs))
    R = typeof(one(P) / one(P)) # Int inputs compute in Float64, Rational stays exact
    x = vec(collect(R, xs))     # nodes in the iteration order of xs (and of w)
    z = convert(R, x0)
    N = length(x)
    (all(isfinite, x) && isfinite(z)) ||
        throw(ArgumentError("fornberg_weights: nodes and x0 must be finite numbers"))
    N >= d + 1 ||
        throw(ArgumentError(
            "fornberg_weights: a derivative of order $d needs " *
                "at least $(d + 1) nodes, got $N; pass more nodes",
        ))
    s = sort(x)
    any(i -> s[i] == s[i + 1], 1:(N - 1)) &&
        throw(ArgumentError(
            "fornberg_weights: nodes must be distinct; remove repeated nodes",
        ))
    size(w) == size(xs) ||
        throw(ArgumentError(
            "fornberg_weights!: w has size $(size(w)), expected " *
                "$(size(xs)) (one weight per node, the size of xs)",
        ))
    c = zeros(R, N, d + 1) # c[i, k + 1]: weight of node i for the k-th derivative
    c[1, 1] = one(R)
    c1 = one(R)
    c4 = x[1] - z
    for i in 2:N
        mn = min(i - 1, d)
        c2 = one(R)
        c5 = c4
        c4 = x[i] - z
        for j in 1:(i - 1)
            c3 = x[i] - x[j]
            c2 *= c3
            if j == i - 1
                for k in mn:-1:1
                    c[i, k + 1] = c1 * (k * c[i - 1, k] - c5 * c[i - 1, k + 1]) / c2
                end
                c[i, 1] = -c1 * c5 * c[i - 1, 1] / c2
            end
            for k in mn:-1:1
                c[j, k + 1] = (c4 * c[j, k + 1] - k * c[j, k]) / c3
            end
            c[j, 1] = c4 * c[j, 1] / c3
        end
        c1 = c2
    end
    return copyto!(w, view(c, :, d + 1))
end

"""
    fornberg_weights(x0, xs, order) -> Array

Allocating form of [`fornberg_weights!`](@ref) (weights of the size of `xs`); exact for
`Rational` inputs.
"""
function fornberg_weights(x0::Real, xs::AbstractArray, order::Integer)
    R = promote_type(typeof(x0), eltype(xs))
    W = typeof(one(R) / one(R))
    return fornberg_weights!(Array{W}(undef, size(xs)), x0, xs, order)
end

# ------------------------------------------------------------------------------------------
# Stencil operators
# ------------------------------------------------------------------------------------------
"""
One stencil per grid point along an axis of `n` points (Python's `StencilOperator`, 1-based).

Points `lo <= j <= hi` use the interior stencil `sum(w_int[s] * u[j + offset + s - 1])`,
applied as the python backend applies it: only the terms of non-zero weight,
`sum(int_weights[q] * u[j + int_shifts[q]])` (the zero centre weight of an odd-order central
stencil is skipped, so an Inf or NaN there does not spread to its own derivative).
Point `j = b_index[k]` uses `sum(b_weights[s, k] * u[b_nodes[s, k]])`, every term, where
`b_nodes` holds Python's `(b_start[k] + s) mod n`, already wrapped. Weights include the grid
spacing.
"""
struct StencilOperator{T}
    n::Int
    w_int::Vector{T}
    int_weights::Vector{T}  # the non-zero entries of w_int
    int_shifts::Vector{Int} # their node offsets from the evaluation point
    offset::Int
    lo::Int
    hi::Int
    b_index::Vector{Int}
    b_nodes::Matrix{Int} # (Wb, nb)
    b_weights::Matrix{T} # (Wb, nb)
end

function _check_int(name, value::Integer, minimum::Integer)
    value isa Bool && throw(ArgumentError("$name must be an integer, got $value"))
    value < minimum && throw(ArgumentError("$name must be >= $minimum, got $value"))
    return Int(value)
end

"""Validate the stencil options shared by every backend; returns `(order, accuracy)`."""
function check_options(
    order::Integer,
    accuracy::Integer,
    boundary::AbstractString,
    scheme::AbstractString,
)
    d = _check_int("order", order, 1)
    p = _check_int("accuracy", accuracy, 1)
    boundary in BOUNDARIES ||
        throw(ArgumentError("boundary must be one of $BOUNDARIES, got $(repr(boundary))"))
    scheme in SCHEMES ||
        throw(ArgumentError("scheme must be one of $SCHEMES, got $(repr(scheme))"))
    scheme == "central" &&
        isodd(p) &&
        throw(ArgumentError(
            "central stencils have even accuracy, got accuracy=$p; " *
                "use an even accuracy or scheme='forward'/'backward'",
        ))
    return d, p
end

"""Number of points of the interior stencil (see the Python module docstring)."""
function stencil_width(
    order::Integer,
    accuracy::Integer,
    scheme::AbstractString;
    uniform::Bool = true,
)
    scheme == "central" && uniform && return 2 * ((order + 1) ÷ 2) - 1 + accuracy
    return order + accuracy
end

function _first_offset(width::Int, scheme::AbstractString)
    scheme == "forward" && return 0
    scheme == "backward" && return -(width - 1)
    return -((width - 1) ÷ 2)
end

"""Operator on `n` points with uniform step `h`, weights stored as `T`."""
function uniform_operator(
    ::Type{T},
    n::Int,
    h::Float64,
    order::Int,
    accuracy::Int,
    boundary::AbstractString,
    scheme::AbstractString,
) where {T}
    width = stencil_width(order, accuracy, scheme)
    offset = _first_offset(width, scheme)
    w64 = fornberg_weights(0.0, offset:(offset + width - 1), order) ./ h^order
    w_int = T.(w64)
    nz = findall(!iszero, w64) # decided in Float64, as Python decides (kernels/_python.py)
    lo = 1 - offset # first interior point
    hi = max(lo - 1, n - (width - 1 + offset)) # last interior point (lo - 1: none)
    b_index = [j for j in 1:n if !(lo <= j <= hi)]
    nb = length(b_index)
    if boundary == "periodic"
        n < width &&
            throw(ArgumentError(
                "a periodic stencil of $width points needs at least $width grid points along " *
                    "the axis, got $n; lower the accuracy or refine the grid",
            ))
        b_nodes = [mod1(b_index[k] + offset + s - 1, n) for s in 1:width, k in 1:nb]
        b_weights = repeat(w_int, 1, nb)
    else
        wb = order + accuracy
        n < wb &&
            throw(ArgumentError(
                "one-sided boundary stencils of $wb points need at least $wb grid points along " *
                    "the axis, got $n; lower the accuracy or refine the grid",
            ))
        b_start = [j < lo ? 1 : n - wb + 1 for j in b_index]
        b_nodes = [b_start[k] + s - 1 for s in 1:wb, k in 1:nb]
        b_weights = Matrix{T}(undef, wb, nb)
        for k in 1:nb
            rel = b_index[k] - b_start[k]
            b_weights[:, k] .= fornberg_weights(Float64(rel), 0:(wb - 1), order) ./ h^order
        end
    end
    return StencilOperator{T}(
        n,
        w_int,
        w_int[nz],
        offset .+ nz .- 1,
        offset,
        lo,
        hi,
        b_index,
        b_nodes,
        b_weights,
    )
end

"""Operator on the increasing coordinates `x` (one Fornberg stencil per point)."""
function nonuniform_operator(
    ::Type{T},
    x::Vector{Float64},
    order::Int,
    accuracy::Int,
    boundary::AbstractString,
    scheme::AbstractString,
    period::Float64,
) where {T}
    n = length(x)
    width = stencil_width(order, accuracy, scheme; uniform = false)
    n < width &&
        throw(ArgumentError(
            "a stencil of $width points needs at least $width grid points along the axis, " *
                "got $n; lower the accuracy or refine the grid",
        ))
    offset = _first_offset(width, scheme)
    periodic = boundary == "periodic"
    b_nodes = Matrix{Int}(undef, width, n)
    b_weights = Matrix{T}(undef, width, n)
    nodes = Vector{Float64}(undef, width)
    w = Vector{Float64}(undef, width)
    for j in 1:n
        start = periodic ? j + offset : clamp(j + offset, 1, n - width + 1)
        for s in 1:width
            i = start + s - 1 # may leave 1:n only when periodic
            m = mod1(i, n)
            b_nodes[s, j] = m
            # shift to the evaluation point before the recursion: better conditioning
            nodes[s] = x[m] + (periodic ? period * fld(i - 1, n) : 0.0) - x[j]
        end
        fornberg_weights!(w, 0.0, nodes, order)
        b_weights[:, j] .= w
    end
    return StencilOperator{T}(n, T[], T[], Int[], 0, 1, 0, collect(1:n), b_nodes, b_weights)
end

"""
    build_operator(T, n, spacing, order, accuracy, boundary, scheme, period)

Resolve `spacing` (a step, or `n` coordinates; steps equal to 1e-12 relative count as
uniform) and build the `StencilOperator{T}` for an axis of `n` points.
"""
function build_operator(
    ::Type{T},
    n::Int,
    h::Real,
    order::Int,
    accuracy::Int,
    boundary::AbstractString,
    scheme::AbstractString,
    period,
) where {T}
    hf = Float64(h)
    (isfinite(hf) && hf > 0) ||
        throw(ArgumentError("spacing must be a positive finite step, got $h"))
    return uniform_operator(T, n, hf, order, accuracy, boundary, scheme)
end

function build_operator(
    ::Type{T},
    n::Int,
    xs::AbstractVector{<:Real},
    order::Int,
    accuracy::Int,
    boundary::AbstractString,
    scheme::AbstractString,
    period,
) where {T}
    length(xs) == n ||
        throw(ArgumentError(
            "spacing must be a step or a 1-D coordinate array of length $n (the axis length), " *
                "got length $(length(xs))",
        ))
    x = collect(Float64, xs)
    all(isfinite, x) || throw(ArgumentError("spacing coordinates must be finite"))
    steps = diff(x)
    all(>(0), steps) ||
        throw(ArgumentError("spacing coordinates must be strictly increasing"))
    L = 0.0
    if boundary == "periodic" && n > 0
        period === nothing &&
            throw(ArgumentError(
                "periodic derivative on a coordinate array needs period=L (the domain length, " *
                    "so that node j+n sits at x[j] + L)",
            ))
        L = Float64(period)
        span = x[end] - x[1]
        (isfinite(L) && L > span) ||
            throw(ArgumentError("period=$L must exceed the coordinate span $span"))
        push!(steps, x[1] + L - x[end])
    end
    if !isempty(steps)
        mean = sum(steps) / length(steps)
        if maximum(steps) - minimum(steps) <= 1.0e-12 * mean
            return uniform_operator(T, n, mean, order, accuracy, boundary, scheme)
        end
    end
    return nonuniform_operator(T, x, order, accuracy, boundary, scheme, L)
end

function build_operator(::Type, n::Int, spacing, args...)
    throw(ArgumentError(
        "spacing must be a step or a 1-D coordinate array of length $n " *
            "(the axis length), got $(typeof(spacing))",
    ))
end

# ------------------------------------------------------------------------------------------
# Applying an operator along one dimension
# ------------------------------------------------------------------------------------------
"""
    derivative!(out, u, spacing; dim, order=1, accuracy=2, boundary="periodic",
                scheme="central", period=nothing) -> out

Fill `out` with the `order`-th finite-difference derivative of `u` along dimension `dim`.
`spacing` is the grid step or the coordinates of the `size(u, dim)` points (strictly
increasing; a periodic coordinate grid needs `period`). `out` must not share memory with `u`.
"""
function derivative!(
    out::AbstractArray{T},
    u::AbstractArray{T},
    spacing;
    dim::Integer,
    order::Integer = 1,
    accuracy::Integer = 2,
    boundary::AbstractString = "periodic",
    scheme::AbstractString = "central",
    period = nothing,
) where {T <: AbstractFloat}
    N = ndims(u)
    (!(dim isa Bool) && 1 <= dim <= N) ||
        throw(ArgumentError("derivative!: dim=$dim is out of range for a $N-d array"))
    size(out) == size(u) ||
        throw(ArgumentError(
            "derivative!: out has size $(size(out)), " *
                "expected $(size(u)) (the size of u)",
        ))
    Base.mightalias(out, u) &&
        throw(ArgumentError("derivative!: out must not share memory with u"))
    d, p = check_options(order, accuracy, boundary, scheme)
    n = size(u, dim)
    op = build_operator(T, n, spacing, d, p, boundary, scheme, period)
    pre = prod(a -> size(u, a), 1:(dim - 1); init = 1)
    post = prod(a -> size(u, a), (dim + 1):N; init = 1)
    _apply!(reshape(out, pre, n, post), reshape(u, pre, n, post), op)
    return out
end

"""
    derivative(u, spacing; dim, kw...) -> Array

Allocating form of [`derivative!`](@ref) (integer arrays are converted to floats).
"""
function derivative(u::AbstractArray{<:Real}, spacing; kw...)
    v = float(u)
    return derivative!(similar(v), v, spacing; kw...)
end

"""
Arrays of at least `THREAD_MIN_LENGTH[]` elements are differentiated on all of Julia's
threads (when it has more than one). Tests lower it to run small arrays threaded.
"""
const THREAD_MIN_LENGTH = Ref(1 << 15)

_threaded(u::AbstractArray) = Threads.nthreads() > 1 && length(u) >= THREAD_MIN_LENGTH[]

# Task t <= nint is interior point lo + t - 1; task nint + k is boundary point b_index[k].
# Threads over the trailing (post) dimension, or over the n points when post == 1. Every
# output element is one task's sum in a fixed order: threaded or not, the same numbers.
function _apply!(
    out::AbstractArray{T, 3},
    u::AbstractArray{T, 3},
    op::StencilOperator{T},
    threaded::Bool = _threaded(u),
) where {T}
    post = size(u, 3)
    nint = max(op.hi - op.lo + 1, 0)
    ntask = nint + length(op.b_index)
    if post == 1
        _foreach(t -> _task!(out, u, op, nint, t, 1), 1:ntask, threaded)
    else
        _foreach(1:post, threaded) do k
            for t in 1:ntask
                _task!(out, u, op, nint, t, k)
            end
        end
    end
    return out
end

function _foreach(f::F, r::UnitRange{Int}, threaded::Bool) where {F}
    if threaded
        Threads.@threads for t in r
            f(t)
        end
    else
        for t in r
            f(t)
        end
    end
    return nothing
end

@inline function _task!(out, u, op::StencilOperator, nint::Int, t::Int, k::Int)
    if t <= nint
        j = op.lo + t - 1 # interior: the non-zero terms, at j + shift
        _stencil!(out, u, j, k, op.int_weights, op.int_shifts, j)
    else
        b = t - nint
        _stencil!(
            out,
            u,
            op.b_index[b],
            k,
            view(op.b_weights, :, b),
            view(op.b_nodes, :, b),
            0,
        )
    end
    return nothing
end

# out[:, j, k] = sum over s of w[s] * u[:, base + idx[s], k]; the first index is the
# contiguous one.
@inline function _stencil!(out, u, j::Int, k::Int, w, idx, base::Int)
    pre = size(u, 1)
    @inbounds if pre == 1
        acc = zero(eltype(out))
        for s in eachindex(w, idx)
            acc = muladd(w[s], u[1, base + idx[s], k], acc)
        end
        out[1, j, k] = acc
    elseif isempty(w)
        for i in 1:pre
            out[i, j, k] = zero(eltype(out))
        end
    else
        c = w[1]
        m = base + idx[1]
        @simd for i in 1:pre
            out[i, j, k] = c * u[i, m, k]
        end
        for s in 2:length(w)
            c = w[s]
            m = base + idx[s]
            @simd for i in 1:pre
                out[i, j, k] = muladd(c, u[i, m, k], out[i, j, k])
            end
        end
    end
    return nothing
end
