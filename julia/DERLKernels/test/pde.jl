# The PDE solvers against closed forms: the exact KdV soliton, ETDRK4's temporal order and
# the invariants, the exactly rotated density, the finite volumes' mass and first order.
# Same problems and bounds as tests/test_pde.py.

using DERLKernels: kdv_soliton, rigid_rotation

const KDV_NU = 0.0025

# n points lo + (hi - lo) k / n, k = 0..n-1 (Python's periodic_grid)
kdv_grid(n; lo = -1.0, hi = 1.0) = [lo + (hi - lo) * k / n for k in 0:(n - 1)]

# fitted slope of log(err) against log(h)
function slope(h, err)
    lh, le = log.(h), log.(err)
    mh, me = sum(lh) / length(lh), sum(le) / length(le)
    return sum((lh .- mh) .* (le .- me)) / sum((lh .- mh).^2)
end

# the paper's four Gaussians and their exact rotation by angle t, on Julia's (n_y, n_x) layout
const CENTRES = ((-0.3, -0.6), (-0.1, 0.2), (0.5, -0.5), (0.5, 0.4))
four_gaussians(x, y) = sum(exp(-((x - cx)^2 + (y - cy)^2) / 0.05) for (cx, cy) in CENTRES)
rotated_density(t, x, y) = four_gaussians(cos(t) * x + sin(t) * y, -sin(t) * x + cos(t) * y)
field(f, x, y) = [f(x[i], y[j]) for j in eachindex(y), i in eachindex(x)] # (n_y, n_x)
exact_frames(t, x, y) = cat(
    (field((a, b) -> rotated_density(tk, a, b), x, y) for tk in t)...;
    dims = 3,
)
box(n) = collect(range(-1.5, 1.5; length = n))

# ------------------------------------------------------------------------------------------
# KdV
# ------------------------------------------------------------------------------------------
@testset "KdV soliton is exact" begin
    # amplitude 3: tails 1e-16 at the period's edge, spectrum resolved on 400 points
    nu, c = KDV_NU / 4, 1.0
    x = kdv_grid(400)
    t = collect(range(0.0, 0.25; length = 11))
    exact = [
        kdv_soliton(tk, xi; nu = nu, speed = c, x0 = -0.5, period = 2.0)
        for xi in x, tk in t
    ]
    out = fill(NaN, length(x), length(t))
    @test solve_kdv!(out, nu, x, t, exact[:, 1]) === out
    @test maximum(abs.(out .- exact)) <= 1.0e-10 # Python: 5.1e-11
    @test maximum(abs.(out[:, 1] .- exact[:, 1])) <=
        1.0e-14 # frame 1 is u0 (FFT round trip)
    # the soliton moves at speed c: the peak is at x0 + c t
    @test x[argmax(out[:, end])] ≈ -0.5 + 0.25 atol = x[2] - x[1]
end

@testset "ETDRK4 temporal order 4" begin
    nu, c = KDV_NU / 4, 1.0
    x = kdv_grid(400)
    t = collect(range(0.0, 0.25; length = 11))
    exact = [
        kdv_soliton(tk, xi; nu = nu, speed = c, x0 = -0.5, period = 2.0)
        for xi in x, tk in t
    ]
    subs = [16, 32, 64]
    errs = map(subs) do s
        out = zeros(length(x), length(t))
        solve_kdv!(out, nu, x, t, exact[:, 1]; dt = 0.025 / s)
        maximum(abs.(out .- exact))
    end
    p = slope(1.0 ./ subs, errs)
    @test abs(p - 4) < 0.4 # Python: 4.2 (9.6e-5, 5.0e-6, 2.7e-7)
    @test errs[end] <= 1.0e-6
end

@testset "KdV paper problem: invariants, steps, layout" begin
    x = kdv_grid(400)
    t = collect(range(0.0, 1.0; length = 201))
    u0 = cos.(pi .* x)
    u = zeros(length(x), length(t))
    solve_kdv!(u, KDV_NU, x, t, u0)
    dx = x[2] - x[1]
    mass = vec(sum(u; dims = 1)) .* dx
    momentum = vec(sum(u.^2; dims = 1)) .* dx
    @test maximum(abs.(mass .- mass[1])) <= 1.0e-14 # the mean mode is never forced
    @test maximum(abs.(momentum ./ momentum[1] .- 1)) <= 1.0e-10 # Python: 2.3e-12
    # the tolerance-driven step agrees with a much finer fixed step
    fine = zeros(length(x), length(t))
    solve_kdv!(fine, KDV_NU, x, t, u0; dt = 0.005 / 128)
    @test maximum(abs.(u .- fine)) <= 1.0e-10 # Python: 4e-11 against its reference
    # an odd grid (the other FFT path) gives the same soliton
    nu, c = KDV_NU / 4, 1.0
    xo = kdv_grid(255)
    to = collect(range(0.0, 0.3; length = 7))
    exo = [
        kdv_soliton(tk, xi; nu = nu, speed = c, x0 = -0.5, period = 2.0)
        for xi in xo, tk in to
    ]
    uo = zeros(length(xo), length(to))
    solve_kdv!(uo, nu, xo, to, exo[:, 1])
    @test maximum(abs.(uo .- exo)) <= 2.0e-10 # Python: 5.8e-11
    # one output time: the initial condition only
    one_frame = zeros(length(x), 1)
    solve_kdv!(one_frame, KDV_NU, x, [0.0], u0)
    @test maximum(abs.(one_frame[:, 1] .- u0)) <= 1.0e-14
end

@testset "KdV bad input" begin
    x, t, u0 = kdv_grid(16), [0.0, 0.1], zeros(16)
    out = zeros(16, 2)
    @test_throws ArgumentError solve_kdv!(out, -1.0, x, t, u0)
    @test_throws ArgumentError solve_kdv!(out, KDV_NU, x, [0.1, 0.0], u0)
    @test_throws ArgumentError solve_kdv!(out, KDV_NU, x, t, zeros(15))
    @test_throws ArgumentError solve_kdv!(out, KDV_NU, x, t, u0; dt = 0.0)
    @test_throws ArgumentError solve_kdv!(out, KDV_NU, x, t, u0; tol = -1.0)
    @test_throws ArgumentError solve_kdv!(zeros(2, 16), KDV_NU, x, t, u0)
    @test_throws ArgumentError solve_kdv!(out, KDV_NU, [0.0, 0.1, 0.3, 0.4], t, zeros(4))
end

# ------------------------------------------------------------------------------------------
# Continuity: method of lines
# ------------------------------------------------------------------------------------------
@testset "continuity MOL matches the exact rotation" begin
    x = box(151)
    t = [0.0, 0.5, 1.0]
    rho0 = field(four_gaussians, x, x)
    out = fill(NaN, 151, 151, 3)
    @test solve_continuity!(out, x, x, t, rho0) === out
    @test out[:, :, 1] == rho0
    @test maximum(abs.(out .- exact_frames(t, x, x))) <= 1.0e-5 # Python: 5.1e-6
    # periodic closure: skew-symmetric transport, mass conserved to rounding
    mass = vec(sum(out; dims = (1, 2)))
    @test maximum(abs.(mass ./ mass[1] .- 1)) <= 1.0e-13
end

@testset "continuity MOL layout: x along dimension 2 of Julia's buffers" begin
    # a blob off the diagonal on a non-square grid: a transposition would move it
    x = box(61)
    y = collect(range(-1.2, 1.2; length = 49))
    blob(a, b) = exp(-((a - 0.4)^2 + (b + 0.1)^2) / 0.05)
    t = [0.0, 0.3]
    out = zeros(length(y), length(x), 2)
    solve_continuity!(out, x, y, t, field(blob, x, y))
    c, s = cos(0.3), sin(0.3)
    exact = field((a, b) -> blob(c * a + s * b, -s * a + c * b), x, y)
    @test maximum(abs.(out[:, :, 2] .- exact)) <= 1.0e-3 # Python: 1.7e-4
end

@testset "continuity MOL spatial order 6" begin
    t = [0.0, 1.0]
    ns = [51, 76, 101]
    errs = map(ns) do n
        x = box(n)
        out = zeros(n, n, 2)
        solve_continuity!(out, x, x, t, field(four_gaussians, x, x); cfl = 0.25)
        maximum(abs.(out[:, :, 2] .- field((a, b) -> rotated_density(1.0, a, b), x, x)))
    end
    @test abs(slope(3.0 ./ (ns .- 1), errs) - 6) < 0.5 # Python: 5.8
end

# ------------------------------------------------------------------------------------------
# Continuity: the paper's upwind finite volumes
# ------------------------------------------------------------------------------------------
@testset "upwind FV conserves mass and sign" begin
    x = box(101)
    t = collect(range(0.0, 1.0; length = 11))
    rho0 = field(four_gaussians, x, x)
    out = fill(NaN, 101, 101, length(t))
    solve_continuity!(out, x, x, t, rho0; method = "upwind-fv", dt = 0.003)
    mass = vec(sum(out; dims = (1, 2)))
    @test maximum(abs.(mass ./ mass[1] .- 1)) <= 1.0e-12
    @test minimum(out) >= 0.0
    @test maximum(abs.(out[:, :, end] .- exact_frames([1.0], x, x)[:, :, 1])) <= 0.4 # 0.33
    # paper_edges: the outermost ring is 0 after t_eval[1], mass still conserved
    paper = zeros(101, 101, length(t))
    solve_continuity!(
        paper,
        x,
        x,
        t,
        rho0;
        method = "upwind-fv",
        dt = 0.003,
        paper_edges = true,
    )
    @test paper[:, :, 1] == rho0
    ring = trues(101, 101)
    ring[2:(end - 1), 2:(end - 1)] .= false
    @test all(paper[ring, 2:end] .== 0.0)
    pmass = vec(sum(paper[:, :, 2:end]; dims = (1, 2)))
    @test maximum(abs.(pmass ./ pmass[1] .- 1)) <= 1.0e-13
    inner = [hypot(x[i], x[j]) < 1.2 for j in 1:101, i in 1:101]
    @test maximum(abs.(paper[inner, :] .- out[inner, :])) <= 1.0e-6 # Python: 1.3e-8
end

@testset "upwind FV first order" begin
    t = [0.0, 0.25]
    ns = [101, 201, 401]
    err_max, err_l1 = Float64[], Float64[]
    for n in ns
        x = box(n)
        h = x[2] - x[1]
        out = zeros(n, n, 2)
        solve_continuity!(
            out,
            x,
            x,
            t,
            field(four_gaussians, x, x);
            method = "upwind-fv",
            dt = 0.1 * h,
        )
        e = abs.(out[:, :, 2] .- field((a, b) -> rotated_density(0.25, a, b), x, x))
        push!(err_max, maximum(e))
        push!(err_l1, sum(e) * h * h)
    end
    h = 3.0 ./ (ns .- 1)
    @test abs(slope(h, err_max) - 1) < 0.15 # Python: 0.93
    @test abs(slope(h, err_l1) - 1) < 0.15  # Python: 0.96
end

@testset "continuity steps hit unequal output intervals" begin
    x = box(41)
    rho0 = field(four_gaussians, x, x)
    t = [0.0, 0.1, 0.35, 0.4]
    a, b = zeros(41, 41, 4), zeros(41, 41, 2)
    solve_continuity!(a, x, x, t, rho0; method = "upwind-fv", dt = 0.01)
    solve_continuity!(b, x, x, t[1:2], rho0; method = "upwind-fv", dt = 0.01)
    @test a[:, :, 1:2] == b
    @test rigid_rotation(0.3, -0.2) == (0.2, 0.3)
end

@testset "continuity bad input" begin
    x, t = box(21), [0.0, 0.1]
    rho0, out = zeros(21, 21), zeros(21, 21, 2)
    @test_throws ArgumentError solve_continuity!(out, x, x, t, rho0; method = "spectral")
    @test_throws ArgumentError solve_continuity!(out, x, x, t, zeros(20, 21))
    @test_throws ArgumentError solve_continuity!(out, x, x, t, rho0; cfl = 1.5)
    @test_throws ArgumentError solve_continuity!(out, x, x, t, rho0; accuracy = 5)
    @test_throws ArgumentError solve_continuity!(out, x, x, t, rho0; paper_edges = true)
    @test_throws ArgumentError solve_continuity!(out, x, x, t, rho0; dt = 1.0)
    @test_throws ArgumentError solve_continuity!(
        out,
        x,
        x,
        t,
        rho0;
        method = "upwind-fv",
        dt = 1.0,
    )
    @test_throws ArgumentError solve_continuity!(zeros(21, 21, 3), x, x, t, rho0)
end
