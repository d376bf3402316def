# Threaded runs: the stencil loops and the ODE ensemble on several threads give the numbers
# of the serial runs, bit for bit (every output element is computed by one task in a fixed
# order; every trajectory is one independent solve). Run with `julia -t 4` (CI's workflow
# does, and sets DERL_EXPECT_THREADS=4 so that a run without threads fails here).

using DERLKernels: THREAD_MIN_LENGTH

@testset "threads: Julia runs with the threads asked for" begin
    @info "DERLKernels tests run on $(Threads.nthreads()) thread(s)"
    expected = get(ENV, "DERL_EXPECT_THREADS", "")
    if !isempty(expected)
        @test Threads.nthreads() == parse(Int, expected)
    end
end

"""`f()` with the threading threshold of the stencil loops set to `min_length`."""
function with_threshold(f, min_length::Int)
    old = THREAD_MIN_LENGTH[]
    THREAD_MIN_LENGTH[] = min_length
    try
        return f()
    finally
        THREAD_MIN_LENGTH[] = old
    end
end

@testset "threads: derivative! threaded == serial" begin
    xs = collect(range(0.0, 1.0; length = 40)) .+ 0.01 .* sin.(range(0.0, 2pi; length = 40))
    for shape in ((40,), (40, 7), (7, 40), (3, 40, 5), (40, 1, 9)), dim in 1:length(shape)
        shape[dim] == 40 || continue
        u = reshape(cos.(0.37 .* (1:prod(shape))), shape)
        for (spacing, kw) in (
                (0.025, (boundary = "periodic", accuracy = 4)),
                (0.025, (boundary = "one-sided", order = 2, accuracy = 6)),
                (xs, (boundary = "one-sided", order = 1, accuracy = 3, scheme = "forward")),
                (xs, (boundary = "periodic", period = 1.05, order = 3)),
            )
            serial = with_threshold(typemax(Int)) do
                derivative(u, spacing; dim = dim, kw...)
            end
            threaded = with_threshold(0) do
                derivative(u, spacing; dim = dim, kw...)
            end
            @test threaded == serial
            # the stand-in for PyArray (strided.jl), threaded
            U = stand_in(u, :gaps)
            out = stand_in(zeros(shape), :gaps)
            with_threshold(0) do
                derivative!(out, U, spacing; dim = dim, kw...)
            end
            @test isapprox(collect(out), serial; rtol = 8eps()) && gaps_untouched(out)
        end
    end
    # above the default threshold: threaded whenever Julia has several threads
    a = [sin(0.01 * i) * j + k for i in 1:64, j in 1:32, k in 1:24]
    @test length(a) >= THREAD_MIN_LENGTH[]
    for dim in 1:3
        @test derivative(a, 0.1; dim = dim) ==
            with_threshold(() -> derivative(a, 0.1; dim = dim), typemax(Int))
    end
end

@testset "threads: the ensemble == trajectory by trajectory" begin
    n_traj, t = 48, collect(range(0.0, 3.0; length = 31))
    s = range(-1.0, 1.0; length = n_traj)
    y0 = permutedims(hcat((pi / 4) .* s, -1.5 .* reverse(s) .* cos.(3 .* s))) # (2, n)
    P = vcat(
        0.5 .+ 0.1 .* s',
        fill(9.81, 1, n_traj),
        fill(10.0, 1, n_traj),
        ones(1, n_traj),
    )
    states, derivs = fill(NaN, 2, length(t), n_traj), fill(NaN, 2, length(t), n_traj)
    n_steps, status, n_rejected = zeros(Int, n_traj), zeros(Int, n_traj), zeros(Int, n_traj)
    solve_ensemble!(
        states,
        derivs,
        n_steps,
        status,
        "pendulum",
        y0,
        t,
        P;
        rtol = 1.0e-10,
        atol = 1.0e-10,
        n_rejected = n_rejected,
    )
    @test all(==(0), status)
    for i in 1:n_traj
        s1, d1 = fill(NaN, 2, length(t), 1), fill(NaN, 2, length(t), 1)
        ns, st, nr = zeros(Int, 1), zeros(Int, 1), zeros(Int, 1)
        solve_ensemble!(
            s1,
            d1,
            ns,
            st,
            "pendulum",
            y0[:, i:i],
            t,
            P[:, i:i];
            rtol = 1.0e-10,
            atol = 1.0e-10,
            n_rejected = nr,
        )
        @test s1[:, :, 1] == states[:, :, i] && d1[:, :, 1] == derivs[:, :, i]
        @test (ns[1], st[1], nr[1]) == (n_steps[i], status[i], n_rejected[i])
    end
    # the stand-in buffers, threaded
    S, D = stand_in(fill(NaN, size(states)), :python),
        stand_in(fill(NaN, size(derivs)), :gaps)
    NS, ST = stand_in(zeros(Int, n_traj), :gaps), stand_in(zeros(Int, n_traj), :python)
    solve_ensemble!(
        S,
        D,
        NS,
        ST,
        "pendulum",
        stand_in(y0, :rowmajor),
        t,
        stand_in(P, :gaps);
        rtol = 1.0e-10,
        atol = 1.0e-10,
    )
    @test collect(S) == states && collect(D) == derivs && gaps_untouched(D)
    @test collect(NS) == n_steps && collect(ST) == status
end

@testset "threads: the continuity MOL loops threaded == serial" begin
    x = collect(range(-1.5, 1.5; length = 31))
    t = [0.0, 0.05, 0.1]
    rho0 = [exp(-((xi - 0.3)^2 + yj^2) / 0.2) for yj in x, xi in x]
    serial = with_threshold(typemax(Int)) do
        solve_continuity!(zeros(31, 31, 3), x, x, t, rho0; method = "mol", accuracy = 6)
    end
    threaded = with_threshold(0) do
        solve_continuity!(zeros(31, 31, 3), x, x, t, rho0; method = "mol", accuracy = 6)
    end
    @test threaded == serial
end
