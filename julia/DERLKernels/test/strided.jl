# Every kernel on a stand-in for PythonCall's `PyArray`: an `AbstractArray` over a flat
# buffer with arbitrary strides and Cartesian indexing only. It is neither a `DenseArray`
# nor a `StridedArray`, so `reshape` gives a `Base.ReshapedArray` and `view` a `SubArray`
# over it, the paths a `PyArray` takes through the kernels (derivative!'s (pre, n, post)
# reshape, the views of solve_ensemble!'s rows and of the PDE frames). Python sends
# column-major views of C-ordered buffers (`a.T`); the tests also use a buffer with gaps
# (stride 2, offset 3) and row-major strides. Results must equal those on `Array`s (the same
# operations in the same order: exactly, or to rounding where a vectorised loop may fuse a
# `muladd` that a scalar one does not), and the gaps must stay untouched.

struct StridedStandIn{T, N} <: AbstractArray{T, N}
    data::Vector{T}
    offset::Int
    dims::NTuple{N, Int}
    strides::NTuple{N, Int}
end

Base.size(A::StridedStandIn) = A.dims
Base.IndexStyle(::Type{<:StridedStandIn}) = IndexCartesian()
Base.dataids(A::StridedStandIn) = Base.dataids(A.data)

function _linear(A::StridedStandIn{T, N}, I::NTuple{N, Int}) where {T, N}
    k = A.offset + 1
    for d in 1:N
        checkindex(Bool, 1:A.dims[d], I[d]) || throw(BoundsError(A, I))
        k += (I[d] - 1) * A.strides[d]
    end
    return k
end

Base.getindex(A::StridedStandIn{T, N}, I::Vararg{Int, N}) where {T, N} = A.data[_linear(
    A,
    I,
)]

function Base.setindex!(A::StridedStandIn{T, N}, v, I::Vararg{Int, N}) where {T, N}
    A.data[_linear(A, I)] = v
    return A
end

const GAP = -999.0 # what the unused slots of a gapped buffer hold
const LAYOUTS = (:python, :gaps, :rowmajor)

"""A stand-in holding the values of `a` in `layout`: `:python` (column-major, contiguous:
`a.T` of a C-ordered buffer), `:gaps` (stride 2, offset 3) or `:rowmajor`."""
function stand_in(a::AbstractArray{T, N}, layout::Symbol) where {T, N}
    dims = size(a)
    colmajor = Base.size_to_strides(1, dims...)
    strides, offset, len = if layout === :python
        (colmajor, 0, length(a))
    elseif layout === :gaps
        (2 .* colmajor, 3, 2 * length(a) + 3)
    else
        (reverse(Base.size_to_strides(1, reverse(dims)...)), 0, length(a))
    end
    fill_value = T <: AbstractFloat ? T(GAP) : zero(T)
    A = StridedStandIn{T, N}(fill(fill_value, max(len, 1)), offset, dims, strides)
    for I in CartesianIndices(a)
        A[Tuple(I)...] = a[I]
    end
    return A
end

"""The slots of `A`'s buffer that no element uses still hold their fill value."""
function gaps_untouched(A::StridedStandIn{T}) where {T}
    used = falses(length(A.data))
    for I in CartesianIndices(A)
        used[_linear(A, Tuple(I))] = true
    end
    fill_value = T <: AbstractFloat ? T(GAP) : zero(T)
    return all(A.data[i] == fill_value for i in eachindex(A.data) if !used[i])
end

@testset "stand-in array: indexing, reshape, view" begin
    a = reshape(collect(1.0:24.0), 2, 3, 4)
    for layout in LAYOUTS
        A = stand_in(a, layout)
        @test !(A isa DenseArray) && !(A isa StridedArray)
        @test collect(A) == a && gaps_untouched(A)
        R = reshape(A, 6, 4)
        @test R isa Base.ReshapedArray && collect(R) == reshape(a, 6, 4)
        @test collect(view(A, :, 2, :)) == a[:, 2, :]
    end
end

@testset "derivative! through every reshape path, layout $layout" for layout in LAYOUTS
    xs = collect(range(0.0, 1.0; length = 12)) .+ 0.01 .* sin.(range(0.0, 2pi; length = 12))
    for T in (Float64, Float32), shape in ((12,), (12, 3), (3, 12), (2, 12, 3), (12, 1, 2))
        u = T.(reshape(sin.(1:prod(shape)) .+ 0.1 .* (1:prod(shape)), shape))
        for dim in 1:length(shape)
            size(u, dim) == 12 || continue
            for (spacing, kw) in (
                    (0.1, (boundary = "periodic",)),
                    (0.1, (boundary = "one-sided", order = 2, accuracy = 4)),
                    (0.1, (scheme = "forward", accuracy = 1)),
                    (0.1, (order = 3, accuracy = 2)),
                    (xs, (boundary = "one-sided",)),
                    (stand_in(xs, layout), (boundary = "periodic", period = 1.2)),
                )
                ref = derivative!(
                    similar(u),
                    u,
                    spacing isa StridedStandIn ? xs : spacing;
                    dim = dim,
                    kw...,
                )
                U = stand_in(u, layout)
                out = stand_in(fill(T(NaN), shape), layout)
                @test derivative!(out, U, spacing; dim = dim, kw...) === out
                @test isapprox(collect(out), ref; rtol = 8eps(T))
                @test gaps_untouched(out) && collect(U) == u
            end
        end
    end
    # one buffer must not be both input and output, also through two stand-ins of one buffer
    U = stand_in(rand(12), layout)
    alias = StridedStandIn(U.data, U.offset, U.dims, U.strides)
    @test_throws ArgumentError derivative!(alias, U, 0.1; dim = 1)
end

@testset "fornberg_weights! on stand-ins, layout $layout" for layout in LAYOUTS
    nodes = [-2.0, -0.5, 0.0, 1.0, 2.5]
    w = stand_in(fill(NaN, 5), layout)
    @test fornberg_weights!(w, 0.3, stand_in(nodes, layout), 2) === w
    @test collect(w) == fornberg_weights(0.3, nodes, 2) && gaps_untouched(w)
    grid = [-2.0 0.0 1.0; -0.5 0.7 2.5] # N-d nodes: w[I] is xs[I]'s weight
    W = stand_in(fill(NaN, 2, 3), layout)
    fornberg_weights!(W, 0.3, stand_in(grid, layout), 1)
    @test collect(W) == reshape(fornberg_weights(0.3, vec(grid), 1), 2, 3)
end

@testset "solve_ensemble! on stand-ins, layout $layout" for layout in LAYOUTS
    n_traj, t = 5, collect(range(0.0, 2.0; length = 9))
    y0 = [0.1 -0.3 0.2 0.7 -0.7; 0.0 0.5 -1.0 0.1 0.3]
    for p in (
            reshape([0.5, 9.81, 10.0, 1.0], 4, 1),
            [
                0.5 0.0 1.0 0.2 0.4
                9.81 9.81 3.7 9.81 9.81
                10.0 10.0 2.0 1.0 10.0
                1.0 1.0 2.0 0.5 1.0
            ],
        )
        s, d = fill(NaN, 2, length(t), n_traj), fill(NaN, 2, length(t), n_traj)
        ns, st, nr = zeros(Int, n_traj), zeros(Int, n_traj), zeros(Int, n_traj)
        solve_ensemble!(
            s,
            d,
            ns,
            st,
            "pendulum",
            y0,
            t,
            p;
            rtol = [1.0e-9, 1.0e-10],
            atol = 1.0e-10,
            n_rejected = nr,
        )
        S, D = stand_in(fill(NaN, size(s)), layout), stand_in(fill(NaN, size(d)), layout)
        NS, ST, NR = (stand_in(fill(-7, n_traj), layout) for _ in 1:3)
        solve_ensemble!(
            S,
            D,
            NS,
            ST,
            "pendulum",
            stand_in(y0, layout),
            stand_in(t, layout),
            stand_in(p, layout);
            rtol = stand_in([1.0e-9, 1.0e-10], layout),
            atol = 1.0e-10,
            n_rejected = NR,
        )
        @test collect(S) == s && collect(D) == d
        @test collect(NS) == ns && collect(ST) == st && collect(NR) == nr
        @test gaps_untouched(S) && gaps_untouched(D)
        @test all(==(0), st) && all(>(0), ns)
    end
end

@testset "PDE solvers on stand-ins, layout $layout" for layout in LAYOUTS
    x = [-1.0 + 2.0 * k / 32 for k in 0:31]
    t = [0.0, 0.01, 0.03]
    u0 = 0.5 .* cos.(pi .* x)
    ref = solve_kdv!(zeros(32, 3), 0.0025, x, t, u0; dt = 0.0025)
    out = stand_in(fill(NaN, 32, 3), layout)
    @test solve_kdv!(
        out,
        0.0025,
        stand_in(x, layout),
        stand_in(t, layout),
        stand_in(u0, layout);
        tol = 1.0e-8,
        dt = 0.0025,
    ) ===
        out
    @test isapprox(
        collect(out),
        ref;
        rtol = 1.0e-13,
        atol = 1.0e-15,
    ) # FFTW may pick other codelets
    @test gaps_untouched(out)
    xc = collect(range(-1.5, 1.5; length = 11))
    yc = collect(range(-1.5, 1.5; length = 9))
    rho0 = [exp(-((xi - 0.3)^2 + yj^2) / 0.2) for yj in yc, xi in xc] # (n_y, n_x)
    for (method, edges) in (("mol", false), ("upwind-fv", false), ("upwind-fv", true))
        ref = solve_continuity!(
            zeros(9, 11, 3),
            xc,
            yc,
            t,
            rho0;
            method = method,
            accuracy = 4,
            paper_edges = edges,
        )
        out = stand_in(fill(NaN, 9, 11, 3), layout)
        solve_continuity!(
            out,
            stand_in(xc, layout),
            stand_in(yc, layout),
            stand_in(t, layout),
            stand_in(rho0, layout);
            method = method,
            accuracy = 4,
            cfl = 0.5,
            dt = nothing,
            paper_edges = edges,
        )
        @test collect(out) == ref && gaps_untouched(out)
    end
end
