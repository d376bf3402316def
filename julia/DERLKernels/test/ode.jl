# The ODE ensemble: analytic invariants, an independent tight-tolerance reference solver,
# buffers filled in place in Python's transposed layout, and the failure statuses.

using DERLKernels:
    STATUS_OK,
    STATUS_STEP_UNDERFLOW,
    STATUS_MAX_STEPS,
    STATUS_NON_FINITE,
    pendulum_rhs!
using OrdinaryDiffEqHighOrderRK: DP8, TsitPap8
using SciMLBase: ODEProblem, solve

const G_OVER_L = 9.81 / 10.0

pendulum_energy(θ, ω) = ω^2 / 2 - G_OVER_L * cos(θ)

# n_traj initial states in the paper's ranges θ0 ∈ [−π/4, π/4], ω0 ∈ [−1.5, 1.5]
function pendulum_y0(n)
    s = range(-1.0, 1.0; length = n)
    return permutedims(hcat((pi / 4) .* s, -1.5 .* reverse(s) .* cos.(3 .* s))) # (2, n)
end

# the buffers of the ensemble, zero-filled or NaN-poisoned
function ensemble_buffers(n_state, n_t, n_traj; fill_value = -1.0)
    return (
        fill(fill_value, n_state, n_t, n_traj),
        fill(fill_value, n_state, n_t, n_traj),
        fill(-7, n_traj),
        fill(-7, n_traj),
    )
end

# an independent reference: another 8th-order method at a much tighter tolerance
function reference_solution(rhs!, u0, t, p; tol = 1.0e-13)
    sol = solve(
        ODEProblem(rhs!, collect(u0), (t[1], t[end]), collect(p)),
        TsitPap8();
        reltol = tol,
        abstol = tol,
        saveat = t,
    )
    return reduce(hcat, sol.u) # (n_state, n_t)
end

@testset "conservative pendulum: energy, vector field, reference solver" begin
    n_traj, t = 6, collect(range(0.0, 10.0; length = 101))
    y0 = pendulum_y0(n_traj)
    states, derivs, n_steps, status = ensemble_buffers(2, length(t), n_traj)
    p = [0.0, 9.81, 10.0, 1.0]
    @test solve_ensemble!(
        states,
        derivs,
        n_steps,
        status,
        "pendulum",
        y0,
        t,
        p;
        rtol = 1.0e-10,
        atol = 1.0e-10,
    ) ===
        states
    @test all(==(STATUS_OK), status)
    @test all(>(10), n_steps)
    @test !any(==(-1.0), states) && !any(==(-1.0), derivs) # every entry written
    @test states[:, 1, :] == y0                            # row 1 is y0 exactly
    for i in 1:n_traj
        E0 = pendulum_energy(y0[1, i], y0[2, i])
        drift = maximum(
            abs(pendulum_energy(states[1, j, i], states[2, j, i]) - E0)
            for j in eachindex(t)
        )
        @test drift <= 1.0e-8
        # derivatives are the vector field at the saved states
        for j in eachindex(t)
            @test derivs[1, j, i] == states[2, j, i]
            @test derivs[2, j, i] ≈ -G_OVER_L * sin(states[1, j, i]) atol = 1.0e-15
        end
        ref = reference_solution(pendulum_rhs!, y0[:, i], t, p)
        @test maximum(abs.(states[:, :, i] .- ref)) <= 1.0e-7
    end
    # tighter tolerances get closer to the reference (the error is controlled by rtol/atol)
    errs = map((1.0e-6, 1.0e-9, 1.0e-12)) do tol
        s, d, ns, st = ensemble_buffers(2, length(t), 1)
        solve_ensemble!(s, d, ns, st, "pendulum", y0[:, 2:2], t, p; rtol = tol, atol = tol)
        maximum(abs.(s[:, :, 1] .- reference_solution(pendulum_rhs!, y0[:, 2], t, p)))
    end
    @test errs[1] > errs[2] > errs[3]
    @test errs[3] <= 1.0e-9
end

@testset "damped pendulum: one parameter vector per trajectory" begin
    n_traj, t = 4, collect(range(0.0, 5.0; length = 51))
    y0 = pendulum_y0(n_traj)
    P = [0.5 0.0 1.0 0.2; 9.81 9.81 3.7 9.81; 10.0 10.0 2.0 1.0; 1.0 1.0 2.0 0.5] # (4, n)
    states, derivs, n_steps, status = ensemble_buffers(2, length(t), n_traj)
    solve_ensemble!(states, derivs, n_steps, status, "pendulum", y0, t, P)
    @test all(==(STATUS_OK), status)
    dy = zeros(2)
    for i in 1:n_traj
        ref = reference_solution(pendulum_rhs!, y0[:, i], t, P[:, i])
        @test maximum(abs.(states[:, :, i] .- ref)) <= 1.0e-7
        pendulum_rhs!(dy, states[:, end, i], P[:, i], t[end])
        @test derivs[:, end, i] == dy
    end
    # one vector for all == the same column repeated
    s1, d1, n1, st1 = ensemble_buffers(2, length(t), n_traj)
    solve_ensemble!(s1, d1, n1, st1, "pendulum", y0, t, P[:, 1])
    s2, d2, n2, st2 = ensemble_buffers(2, length(t), n_traj)
    solve_ensemble!(s2, d2, n2, st2, "pendulum", y0, t, repeat(P[:, 1:1], 1, n_traj))
    @test s1 == s2 && d1 == d2 && n1 == n2 && st1 == st2
    # the energy of the damped pendulum decreases
    E = [pendulum_energy(states[1, j, 1], states[2, j, 1]) for j in eachindex(t)]
    @test E[end] < E[1]
end

@testset "Python's layout: C-ordered buffers seen transposed" begin
    n_traj, t = 3, collect(range(0.0, 2.0; length = 21))
    y0_c = permutedims(pendulum_y0(n_traj)) # Python's (n_traj, n_state)
    s_c = zeros(n_traj, length(t), 2)       # Python's (n_traj, n_t, n_state)
    d_c = zeros(n_traj, length(t), 2)
    n_steps, status = zeros(Int, n_traj), zeros(Int, n_traj)
    p = [0.5, 9.81, 10.0, 1.0]
    solve_ensemble!(
        PermutedDimsArray(s_c, (3, 2, 1)),
        PermutedDimsArray(d_c, (3, 2, 1)),
        n_steps,
        status,
        "pendulum",
        transpose(y0_c),
        t,
        p,
    )
    s, d, ns, st = ensemble_buffers(2, length(t), n_traj)
    solve_ensemble!(s, d, ns, st, "pendulum", permutedims(y0_c), t, p)
    @test s_c == permutedims(s, (3, 2, 1)) && d_c == permutedims(d, (3, 2, 1))
    @test n_steps == ns && status == st
end

@testset "one output time, no trajectories, views" begin
    y0 = pendulum_y0(3)
    p = [0.5, 9.81, 10.0, 1.0]
    states, derivs, n_steps, status = ensemble_buffers(2, 1, 3)
    solve_ensemble!(states, derivs, n_steps, status, "pendulum", y0, [0.25], p)
    @test states[:, 1, :] == y0 && all(==(STATUS_OK), status) && all(==(0), n_steps)
    dy = zeros(2)
    pendulum_rhs!(dy, y0[:, 2], p, 0.25)
    @test derivs[:, 1, 2] == dy
    e = ensemble_buffers(2, 4, 0)
    @test solve_ensemble!(e..., "pendulum", zeros(2, 0), [0.0, 1.0, 2.0, 3.0], p) === e[1]
    # strided views as buffers
    big = fill(-1.0, 2, 9, 3)
    dbig = fill(-1.0, 2, 9, 3)
    t = collect(range(0.0, 1.0; length = 5))
    solve_ensemble!(
        view(big, :, 1:2:9, :),
        view(dbig, :, 1:2:9, :),
        n_steps,
        status,
        "pendulum",
        y0,
        t,
        p,
    )
    s, d, _, _ = ensemble_buffers(2, 5, 3)
    solve_ensemble!(s, d, zeros(Int, 3), zeros(Int, 3), "pendulum", y0, t, p)
    @test big[:, 1:2:9, :] == s && all(==(-1.0), big[:, 2:2:8, :])
end

# y' = y², y(0) = y0: y = y0 / (1 − y0 t), singular at t = 1/y0
blowup_rhs!(dy, y, p, t) = (dy[1] = y[1]^2; nothing)

@testset "failures: blow-up, max_steps, non-finite initial state" begin
    t = [0.0, 0.5, 2.0]
    y0 = [1.0 0.1 NaN] # singular at t = 1; regular; NaN
    states, derivs, n_steps, status = ensemble_buffers(1, 3, 3)
    solve_ensemble!(states, derivs, n_steps, status, blowup_rhs!, y0, t, [0.0])
    @test status[1] in (STATUS_STEP_UNDERFLOW, STATUS_NON_FINITE)
    @test all(isnan, states[:, :, 1]) && all(isnan, derivs[:, :, 1])
    @test n_steps[1] > 0
    @test status[2] == STATUS_OK
    @test states[1, :, 2] ≈ 0.1 ./ (1 .- 0.1 .* t) rtol = 1.0e-9
    @test derivs[1, :, 2] == states[1, :, 2].^2
    @test status[3] == STATUS_NON_FINITE && n_steps[3] == 0
    @test all(isnan, states[:, :, 3]) && all(isnan, derivs[:, :, 3])
    # too few steps allowed
    s, d, ns, st = ensemble_buffers(2, 11, 2)
    solve_ensemble!(
        s,
        d,
        ns,
        st,
        "pendulum",
        pendulum_y0(2),
        collect(0.0:1.0:10.0),
        [0.5, 9.81, 10.0, 1.0];
        max_steps = 3,
    )
    @test all(==(STATUS_MAX_STEPS), st) && all(isnan, s) && all(isnan, d)
    # the status codes are Python's (kernels/ode.py)
    @test (STATUS_OK, STATUS_STEP_UNDERFLOW, STATUS_MAX_STEPS, STATUS_NON_FINITE) ==
        (0, 1, 2, 3)
end

@testset "rejected steps, and the callbacks of both SciMLBase majors" begin
    n_traj, t = 4, collect(range(0.0, 10.0; length = 6)) # few outputs: long steps
    y0 = pendulum_y0(n_traj)
    p = [0.5, 9.81, 10.0, 1.0]
    states, derivs, n_steps, status = ensemble_buffers(2, length(t), n_traj)
    n_rejected = fill(-1, n_traj)
    solve_ensemble!(
        states,
        derivs,
        n_steps,
        status,
        "pendulum",
        y0,
        t,
        p;
        rtol = 1.0e-6,
        atol = 1.0e-6,
        n_rejected = n_rejected,
    )
    @test all(==(STATUS_OK), status) && all(>=(0), n_rejected)
    # the counts are OrdinaryDiffEq's, trajectory by trajectory
    for i in 1:n_traj
        sol = solve(
            ODEProblem(pendulum_rhs!, y0[:, i], (t[1], t[end]), p),
            DP8();
            reltol = 1.0e-6,
            abstol = 1.0e-6,
            saveat = t,
        )
        @test (sol.stats.naccept, sol.stats.nreject) == (n_steps[i], n_rejected[i])
    end
    # without a buffer nothing else changes
    s2, d2, n2, st2 = ensemble_buffers(2, length(t), n_traj)
    solve_ensemble!(s2, d2, n2, st2, "pendulum", y0, t, p; rtol = 1.0e-6, atol = 1.0e-6)
    @test s2 == states && n2 == n_steps
    @test_throws ArgumentError solve_ensemble!(
        s2,
        d2,
        n2,
        st2,
        "pendulum",
        y0,
        t,
        p;
        n_rejected = zeros(Int, 3),
    )
    # SciMLBase 2 passes the member index, SciMLBase 3 an EnsembleContext with sim_id
    @test DERLKernels._member(3) == 3 && DERLKernels._member(Int32(2)) === 2
    @test DERLKernels._member((sim_id = 5, repeat = 1)) == 5
end

@testset "error paths throw ArgumentError" begin
    y0, t, p = pendulum_y0(2), [0.0, 1.0], [0.5, 9.81, 10.0, 1.0]
    bufs() = ensemble_buffers(2, 2, 2)
    @test_throws ArgumentError solve_ensemble!(bufs()..., "lorenz", y0, t, p)
    @test_throws ArgumentError solve_ensemble!(bufs()..., "kdv", y0, t, p)
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, t, p[1:3])
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, t, ones(4, 3))
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", ones(3, 2), t, p)
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, [1.0, 0.0], p)
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, [0.0, NaN], p)
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, Float64[], p)
    @test_throws ArgumentError solve_ensemble!(
        bufs()...,
        "pendulum",
        y0,
        [0.0, 1.0, 2.0],
        p,
    )
    @test_throws ArgumentError solve_ensemble!(
        bufs()...,
        "pendulum",
        y0,
        t,
        p;
        alg = "Tsit5",
    )
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, t, p; rtol = 0.0)
    @test_throws ArgumentError solve_ensemble!(
        bufs()...,
        "pendulum",
        y0,
        t,
        p;
        atol = [1.0e-8],
    )
    @test_throws ArgumentError solve_ensemble!(bufs()..., "pendulum", y0, t, p; atol = Inf)
    @test_throws ArgumentError solve_ensemble!(
        bufs()...,
        "pendulum",
        y0,
        t,
        p;
        max_steps = 0,
    )
    s, d, ns, st = bufs()
    @test_throws ArgumentError solve_ensemble!(s, d, ns[1:1], st, "pendulum", y0, t, p)
end
