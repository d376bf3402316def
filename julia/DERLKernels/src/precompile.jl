# Precompile the kernels on small arrays so the first call from Python is not a long JIT
# pause. Arrays from Python arrive as PythonCall `PyArray`s, whose methods still compile on
# first use; the operator construction, the ODE solver (specialised on the right-hand side
# and `Vector{Float64}` states, whatever the buffers), the FFT plans and PDE time loops (on
# Julia-owned work arrays) and the shared helpers compiled here are reused.
@setup_workload begin
    nodes = [-2.0, -1.0, 0.0, 1.0, 2.0]
    xs = collect(range(0.0, 1.0; length=12)) .+ 0.01 .* sin.(range(0.0, 2pi; length=12))
    y0 = [0.1 -0.3 0.2; 0.0 0.5 -1.0]                  # (n_state, n_traj)
    t_eval = collect(range(0.0, 1.0; length=5))
    p_one = [0.5, 9.81, 10.0, 1.0]                      # (n_par,): one for all
    p_each = repeat(p_one, 1, 3)                        # (n_par, n_traj)
    @compile_workload begin
        fornberg_weights!(zeros(5), 0.0, nodes, 1)
        fornberg_weights(0.0, nodes, 2)
        for T in (Float64, Float32)
            for shape in ((12,), (12, 3), (3, 12, 2))
                u = ones(T, shape)
                out = similar(u)
                for dim in 1:length(shape)
                    size(u, dim) == 12 || continue
                    derivative!(out, u, 0.1; dim=dim)
                    derivative!(out, u, 0.1; dim=dim, order=2, accuracy=4, boundary="one-sided")
                    derivative!(out, u, 0.1; dim=dim, accuracy=1, scheme="forward")
                    derivative!(out, u, xs; dim=dim, boundary="one-sided")
                    derivative!(out, u, xs; dim=dim, boundary="periodic", period=1.2)
                    derivative(u, 0.1; dim=dim)
                end
            end
        end
        states = zeros(2, length(t_eval), 3)
        derivs = similar(states)
        n_steps = zeros(Int, 3)
        status = zeros(Int, 3)
        for p in (p_one, p_each)
            solve_ensemble!(states, derivs, n_steps, status, "pendulum", y0, t_eval, p;
                            rtol=1e-8, atol=1e-8)
        end
        solve_ensemble!(states, derivs, n_steps, status, "pendulum", y0, t_eval, p_one;
                        rtol=[1e-8, 1e-8], atol=[1e-8, 1e-8])
        # PDE solvers on tiny grids: both step rules of KdV, both continuity methods
        xk = collect(range(-1.0, 1.0; length=17))[1:16]   # periodic, no duplicated end
        tk = [0.0, 0.01, 0.02]
        u0 = cos.(pi .* xk)
        solve_kdv!(zeros(16, 3), 0.0025, xk, tk, u0; dt=0.005)
        solve_kdv!(zeros(16, 3), 0.0025, xk, tk, u0; tol=1e-6)
        xc = collect(range(-1.5, 1.5; length=9))
        rho0 = exp.(-(xc' .^ 2 .+ xc .^ 2) ./ 0.5)         # (n_y, n_x)
        for method in CONTINUITY_METHODS
            solve_continuity!(zeros(9, 9, 3), xc, xc, tk, rho0; method=method)
        end
    end
end
