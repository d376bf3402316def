# Stencil tests: exact coefficients, fitted convergence slopes, polynomial exactness, N-d
# layout and error paths. Same analytic checks as the Python suite; grids are chosen so the
# truncation error dominates rounding over the whole fit.

# exp(sin x) on [0, 2π) (periodic) and its derivatives
function f_periodic(x, d)
    s, c, f = sin(x), cos(x), exp(sin(x))
    d == 0 && return f
    d == 1 && return c * f
    d == 2 && return (c^2 - s) * f
    return c * f * (c^2 - 3s - 1)
end

# sin(2x) + exp(x/2) on [0, 1] (one-sided) and its derivatives
function f_onesided(x, d)
    d == 0 && return sin(2x) + exp(x / 2)
    d == 1 && return 2cos(2x) + exp(x / 2) / 2
    d == 2 && return -4sin(2x) + exp(x / 2) / 4
    return -8cos(2x) + exp(x / 2) / 8
end

# ((1 + x) / 2)^m and its d-th derivative
poly(x, m) = ((1 + x) / 2)^m
dpoly(x, m, d) = m < d ? zero(x) : prod(m - d + 1:m; init = 1) * ((1 + x) / 2)^(m - d) / 2^d

# five grids whose steps span a factor 2
grids(n0) = [round(Int, n0 * 2^(k / 4)) for k in 0:4]

# least-squares slope of log(err) against log(h)
function fitted_slope(hs, errs)
    a, b = log.(hs), log.(errs)
    am, bm = sum(a) / length(a), sum(b) / length(b)
    return sum((a .- am) .* (b .- bm)) / sum((a .- am).^2)
end

# n points on [0, L): uniform, or the smooth map x = ξ + 0.1 sin(2πξ/L) L/(2π) (L = 2π)
function periodic_grid(n, nonuniform)
    ξ = collect(2pi .* (0:(n - 1)) ./ n)
    return nonuniform ? ξ .+ 0.1 .* sin.(ξ) : ξ
end

# n points on [0, 1]: uniform, or the smooth map x = ξ + 0.1 sin(2πξ)/(2π)
function unit_grid(n, nonuniform)
    ξ = collect((0:(n - 1)) ./ (n - 1))
    return nonuniform ? ξ .+ 0.1 .* sin.(2pi .* ξ) ./ 2pi : ξ
end

maxerr(a, b) = maximum(abs, a .- b)

@testset "Fornberg weights: exact coefficients" begin
    @test fornberg_weights(0 // 1, -2:2, 1) == [1 // 12, -2 // 3, 0, 2 // 3, -1 // 12]
    @test fornberg_weights(0 // 1, -1:1, 2) == [1, -2, 1]
    sixth = [-1 // 60, 3 // 20, -3 // 4, 0, 3 // 4, -3 // 20, 1 // 60]
    @test fornberg_weights(0 // 1, -3:3, 1) == sixth
    @test fornberg_weights(0 // 1, 0:1, 1) == [-1, 1]
    @test fornberg_weights(1 // 2, 0:1, 0) == [1 // 2, 1 // 2]
    w = zeros(5)
    @test fornberg_weights!(w, 0.0, [-2.0, -1.0, 0.0, 1.0, 2.0], 1) === w
    @test w ≈ [1 / 12, -2 / 3, 0, 2 / 3, -1 / 12] atol = 1.0e-14
    wr = zeros(Rational{Int}, 7)
    fornberg_weights!(wr, 0, -3:3, 1)
    @test wr == sixth
    # arbitrary nodes: the weights differentiate polynomials of degree < length(xs) exactly
    xs = [0.0, 0.1, 0.35, 0.5, 0.9]
    w2 = fornberg_weights(0.3, xs, 2)
    for k in 0:4
        exact = k < 2 ? 0.0 : k * (k - 1) * 0.3^(k - 2)
        @test sum(w2 .* xs.^k) ≈ exact atol = 1.0e-10
    end
end

@testset "Fornberg weights of N-d node arrays (Python flattens them)" begin
    grid = [-2.0 0.0 1.0; -0.5 0.7 2.5]
    w = fornberg_weights(0.3, grid, 1)
    @test size(w) == size(grid) # w[I] is the weight of grid[I]
    @test vec(w) == fornberg_weights(0.3, vec(grid), 1)
    @test sum(w .* grid) ≈ 1 atol = 1.0e-12
    @test abs(sum(w)) <= 1.0e-12
    W = zeros(2, 3)
    @test fornberg_weights!(W, 0.3, grid, 1) === W && W == w
    @test_throws ArgumentError fornberg_weights!(zeros(6), 0.3, grid, 1) # sizes differ
    @test_throws ArgumentError fornberg_weights!(zeros(3, 2), 0.3, grid, 1)
end

@testset "zero interior weights are skipped, as in Python (Inf/NaN input)" begin
    # d = 1 and d = 3 central stencils have a zero centre weight: Python's python backend
    # applies only the non-zero interior terms, so an Inf at point j leaves u'(j) finite
    n = 16
    for (order, accuracy) in ((1, 2), (1, 4), (3, 2))
        for bad in (Inf, -Inf, NaN)
            u = collect(sin.(0.3 .* (1:n)))
            u[8] = bad
            d = derivative(u, 0.1; dim = 1, order = order, accuracy = accuracy)
            clean = copy(u)
            clean[8] = 0.0 # its weight is zero at point 8
            @test d[8] ==
                derivative(clean, 0.1; dim = 1, order = order, accuracy = accuracy)[8]
            @test isfinite(d[8])
            @test !isfinite(d[7]) && !isfinite(d[9]) # the neighbours do see it
        end
    end
    # boundary points of a periodic stencil use every weight (as Python does): an Inf at
    # point 1 makes u'(1) NaN there, in both backends
    u = collect(sin.(0.3 .* (1:n)))
    u[1] = Inf
    @test isnan(derivative(u, 0.1; dim = 1)[1])
    # the Float64 weights decide which terms are dropped, for every element type
    op = DERLKernels.uniform_operator(Float32, n, 0.1, 1, 2, "periodic", "central")
    @test op.int_shifts == [-1, 1] && op.int_weights ≈ Float32[-5, 5]
    @test op.w_int ≈ Float32[-5, 0, 5]
    op6 = DERLKernels.uniform_operator(Float64, n, 0.1, 1, 6, "periodic", "central")
    @test length(op6.int_weights) == count(!iszero, op6.w_int)
end

@testset "operator rows are the Fornberg weights" begin
    n = 12
    e = zeros(n)
    e[6] = 1.0
    # out[j] = sum_s w[s] u[j - 3 + s]: an impulse at 6 returns the reversed weights
    rows = derivative(e, 1.0; dim = 1, accuracy = 4)
    @test rows[4:8] ≈ [-1 / 12, 2 / 3, 0, -2 / 3, 1 / 12] atol = 1.0e-14
    @test all(iszero, rows[[1:3; 9:12]])
    @test derivative(e, 0.5; dim = 1, order = 2)[5:7] ≈ [4, -8, 4] atol = 1.0e-12
    # plain forward and backward differences with wrap-around
    u = f_periodic.(periodic_grid(n, false), 0)
    h = 2pi / n
    @test derivative(u, h; dim = 1, scheme = "forward", accuracy = 1) ≈
        (circshift(u, -1) .- u) ./ h
    @test derivative(u, h; dim = 1, scheme = "backward", accuracy = 1) ≈
        (u .- circshift(u, 1)) ./ h
    # uniform coordinates give the operator of the step
    x = unit_grid(20, false)
    v = f_onesided.(x, 0)
    for kw in ((boundary = "one-sided",), (boundary = "periodic", period = 20 / 19))
        from_coords = derivative(v, x; dim = 1, accuracy = 4, kw...)
        @test from_coords ≈
            derivative(v, 1 / 19; dim = 1, accuracy = 4, kw...) rtol = 1.0e-10
    end
end

@testset "convergence: periodic, order $d, accuracy $p" for p in (2, 4, 6, 8), d in 1:3
    for nonuniform in (false, true)
        hs, errs = Float64[], Float64[]
        for n in grids(p == 2 ? 128 : 64)
            x = periodic_grid(n, nonuniform)
            spacing = nonuniform ? x : 2pi / n
            out = derivative(
                f_periodic.(x, 0),
                spacing;
                dim = 1,
                order = d,
                accuracy = p,
                boundary = "periodic",
                period = 2pi,
            )
            push!(hs, 2pi / n)
            push!(errs, maxerr(out, f_periodic.(x, d)))
        end
        @test 1.0e-12 < minimum(errs) && maximum(errs) < 2.0e-2
        @test abs(fitted_slope(hs, errs) - p) <= 0.3
    end
end

@testset "convergence: one-sided, order $d, accuracy $p" for p in (2, 4), d in 1:3
    for nonuniform in (false, true)
        hs, errs = Float64[], Float64[]
        for n in grids(p == 2 ? 64 : 32)
            x = unit_grid(n, nonuniform)
            spacing = nonuniform ? x : 1 / (n - 1)
            out = derivative(
                f_onesided.(x, 0),
                spacing;
                dim = 1,
                order = d,
                accuracy = p,
                boundary = "one-sided",
            )
            push!(hs, 1 / (n - 1))
            push!(errs, maxerr(out, f_onesided.(x, d)))
        end
        @test 1.0e-12 < minimum(errs) && maximum(errs) < 2.0e-2
        @test abs(fitted_slope(hs, errs) - p) <= 0.3
    end
end

# For accuracies 6 and 8 the one-sided edge stencils reach rounding before their asymptotic
# range on smooth functions, so the rate is measured on a polynomial of degree d + p, whose
# error is exactly the leading truncation term (the rate holds from the coarsest grid).
const ALL_SCHEMES = ("central", "forward", "backward")

@testset "convergence: one-sided leading term, order $d, accuracy $p, $s" for p in (
        2,
        4,
        6,
        8,
    ), d in 1:3, s in ALL_SCHEMES
    hs, errs = Float64[], Float64[]
    for n in grids(12)
        x = unit_grid(n, false)
        out = derivative(
            poly.(x, d + p),
            1 / (n - 1);
            dim = 1,
            order = d,
            accuracy = p,
            boundary = "one-sided",
            scheme = s,
        )
        push!(hs, 1 / (n - 1))
        push!(errs, maxerr(out, dpoly.(x, d + p, d)))
    end
    @test minimum(errs) > 1.0e-12
    @test abs(fitted_slope(hs, errs) - p) <= 0.3
end

@testset "polynomials of degree order + accuracy - 1 are differentiated exactly" begin
    for p in 1:8, d in 1:3, scheme in ALL_SCHEMES, nonuniform in (false, true)
        scheme == "central" && isodd(p) && continue
        x = unit_grid(24, nonuniform)
        m = d + p - 1
        exact = dpoly.(x, m, d)
        out = derivative(
            poly.(x, m),
            nonuniform ? x : 1 / 23;
            dim = 1,
            order = d,
            accuracy = p,
            boundary = "one-sided",
            scheme = scheme,
        )
        @test maxerr(out, exact) <= 1.0e-9 * max(1.0, maximum(abs.(exact)))
    end
end

@testset "N-d arrays: every dim agrees with the 1-d result" begin
    for (n, spacing, kw) in (
            (16, 2pi / 16, (boundary = "periodic",)),
            (16, periodic_grid(16, true), (boundary = "periodic", period = 2pi)),
            (15, unit_grid(15, true), (boundary = "one-sided",)),
        )
        x = spacing isa Real ? periodic_grid(n, false) : spacing
        u1 = f_periodic.(x, 0)
        d1 = derivative(u1, spacing; dim = 1, order = 2, accuracy = 4, kw...)
        for dim in 1:3
            shape = ntuple(a -> a == dim ? n : a + 2, 3)
            scale = I -> prod(I[a] for a in 1:3 if a != dim)
            u3 = [u1[I[dim]] * scale(I) for I in CartesianIndices(shape)]
            out = similar(u3)
            @test derivative!(
                out,
                u3,
                spacing;
                dim = dim,
                order = 2,
                accuracy = 4,
                kw...,
            ) ===
                out
            @test out ≈
                [d1[I[dim]] * scale(I) for I in CartesianIndices(shape)] rtol = 1.0e-12
        end
    end
    # large enough to take the threaded path (when Julia runs with several threads)
    a3 = [f_periodic(2pi * (j - 1) / 64, 0) * (i + k) for i in 1:24, j in 1:64, k in 1:30]
    ref = derivative(f_periodic.(periodic_grid(64, false), 0), 2pi / 64; dim = 1)
    d3 = derivative(a3, 2pi / 64; dim = 2)
    @test d3 ≈ [ref[j] * (i + k) for i in 1:24, j in 1:64, k in 1:30]
    @test derivative(permutedims(a3, (2, 1, 3)), 2pi / 64; dim = 1) ≈
        permutedims(d3, (2, 1, 3))
    @test derivative(permutedims(a3, (1, 3, 2)), 2pi / 64; dim = 3) ≈
        permutedims(d3, (1, 3, 2))
    # views and integer input
    @test derivative(view(a3, 2, :, 3), 2pi / 64; dim = 1) ≈ ref .* 5
    @test derivative(collect(1:10), 1.0; dim = 1, boundary = "one-sided") ≈ ones(10)
end

@testset "Float32" begin
    x = periodic_grid(64, false)
    u32 = Float32.(f_periodic.(x, 0))
    d32 = derivative(u32, 2pi / 64; dim = 1, accuracy = 4)
    @test eltype(d32) == Float32
    @test maxerr(d32, f_periodic.(x, 1)) < 1.0e-3
    @test maxerr(d32, derivative(Float64.(u32), 2pi / 64; dim = 1, accuracy = 4)) < 1.0e-4
    xs = unit_grid(32, true)
    v32 = Float32.(f_onesided.(xs, 0))
    out = similar(v32)
    derivative!(out, v32, xs; dim = 1, boundary = "one-sided", accuracy = 4)
    @test maxerr(out, f_onesided.(xs, 1)) < 1.0e-3
end

@testset "error paths throw ArgumentError" begin
    @test_throws ArgumentError fornberg_weights!(zeros(2), 0.0, [0.0, 1.0], 2)
    @test_throws ArgumentError fornberg_weights!(zeros(3), 0.0, [0.0, 1.0, 1.0], 1)
    @test_throws ArgumentError fornberg_weights!(zeros(2), 0.0, [0.0, NaN], 1)
    @test_throws ArgumentError fornberg_weights!(zeros(2), Inf, [0.0, 1.0], 1)
    @test_throws ArgumentError fornberg_weights!(zeros(3), 0.0, [0.0, 1.0], 1)
    @test_throws ArgumentError fornberg_weights(0.0, [0.0, 1.0], -1)
    u = rand(10)
    out = similar(u)
    bad = [
        (; boundary = "reflect"),
        (; scheme = "centred"),
        (; accuracy = 3),
        (; accuracy = 0),
        (; order = 0),
        (; order = true),
        (; dim = 0),
        (; dim = 2),
        (; accuracy = 10),
        (; boundary = "one-sided", accuracy = 10),
        (; boundary = "one-sided", order = 3, accuracy = 8),
    ]
    for kw in bad
        @test_throws ArgumentError derivative!(out, u, 0.1; merge((dim = 1,), kw)...)
    end
    repeated = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    not_finite = [0.0, 1.0, NaN, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    for spacing in (
            0.0,
            -0.1,
            Inf,
            NaN,
            collect(1.0:9.0),
            repeated,
            not_finite,
            "0.1",
            ones(10, 1),
        )
        @test_throws ArgumentError derivative!(out, u, spacing; dim = 1)
    end
    x = collect(range(0.0, 1.0; length = 10)).^2
    @test_throws ArgumentError derivative!(out, u, x; dim = 1) # no period
    @test_throws ArgumentError derivative!(
        out,
        u,
        x;
        dim = 1,
        period = 0.5,
    ) # period <= span
    @test_throws ArgumentError derivative!(
        out,
        u,
        x;
        dim = 1,
        boundary = "one-sided",
        accuracy = 10,
    )
    @test_throws ArgumentError derivative!(zeros(9), u, 0.1; dim = 1)
    @test_throws ArgumentError derivative!(u, u, 0.1; dim = 1)
end
