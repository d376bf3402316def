# Precompile the kernels on small arrays so the first call from Python is not a long JIT
# pause. The workload makes the calls of python/derlhybrid/kernels/_julia.py: the same
# positional arguments in Python's transposed layouts (a C-ordered (d0, ..., dk) buffer is
# seen as (dk, ..., d0)), the same keywords with the types juliacall gives them (`Int`,
# `String`, `Float64`, `Bool`, `nothing`, tolerance vectors), and the threaded branches
# (forced here: precompilation runs on one thread). Arrays from Python arrive as
# PythonCall `PyArray`s, whose own methods (and the loops specialised on them) compile on
# first use: building a `PyArray` needs a live Python, which precompilation does not have.
# Everything not specialised on the caller's array type is reused: the keyword handling,
# the operator construction, the ODE solver (on `Vector{Float64}` states, whatever the
# buffers), the FFT plans and PDE time loops (on Julia-owned work arrays).
@setup_workload begin
    nodes = [-2.0, -1.0, 0.0, 1.0, 2.0]
    xs = collect(range(0.0, 1.0; length = 12)) .+ 0.01 .* sin.(range(0.0, 2pi; length = 12))
    n_traj, n_t = 3, 5
    y0 = [0.1 -0.3 0.2; 0.0 0.5 -1.0] # Python (n_traj, n_state), transposed
    t_eval = collect(range(0.0, 1.0; length = n_t))
    p_one = reshape([0.5, 9.81, 10.0, 1.0], 4, 1) # Python (1, n_par), transposed
    p_each = repeat(p_one, 1, n_traj)             # Python (n_traj, n_par), transposed
    @compile_workload begin
        # fornberg_weights: Python sends a flat float64 vector and a float64 buffer
        fornberg_weights!(zeros(5), 0.0, nodes, 1)
        fornberg_weights!(zeros(2, 2), 0.0, [0.0 1.0; 2.0 3.0], 1)
        fornberg_weights(0.0, nodes, 2)
        for T in (Float64, Float32)
            # Python's (d0, ..., dk) arrays seen as (dk, ..., d0); axis a is dim ndim - a
            for shape in ((12,), (12, 3), (3, 12), (2, 12, 3))
                u = ones(T, shape)
                out = similar(u)
                for dim in 1:length(shape)
                    size(u, dim) == 12 || continue
                    for (order, accuracy, scheme) in (
                            (1, 2, "central"),
                            (2, 4, "central"),
                            (1, 1, "forward"),
                            (3, 2, "backward"),
                        )
                        for boundary in BOUNDARIES
                            derivative!(
                                out,
                                u,
                                0.1;
                                dim = dim,
                                order = order,
                                accuracy = accuracy,
                                boundary = boundary,
                                scheme = scheme,
                                period = nothing,
                            )
                        end
                        derivative!(
                            out,
                            u,
                            xs;
                            dim = dim,
                            order = order,
                            accuracy = accuracy,
                            boundary = "one-sided",
                            scheme = scheme,
                            period = nothing,
                        )
                        derivative!(
                            out,
                            u,
                            xs;
                            dim = dim,
                            order = order,
                            accuracy = accuracy,
                            boundary = "periodic",
                            scheme = scheme,
                            period = 1.2,
                        )
                    end
                    derivative(u, 0.1; dim = dim)
                    # the threaded branch of the loops, on the shapes derivative! makes
                    pre = prod(size(u)[1:(dim - 1)]; init = 1)
                    post = prod(size(u)[(dim + 1):end]; init = 1)
                    op = build_operator(T, 12, 0.1, 1, 2, "periodic", "central", nothing)
                    _apply!(
                        reshape(out, pre, 12, post),
                        reshape(u, pre, 12, post),
                        op,
                        true,
                    )
                end
            end
        end
        states = zeros(2, n_t, n_traj) # Python (n_traj, n_t, n_state)
        derivs = similar(states)
        n_steps = zeros(Int, n_traj)
        status = zeros(Int, n_traj)
        n_rejected = zeros(Int, n_traj)
        for p in (p_one, p_each), rejected in (nothing, n_rejected)
            solve_ensemble!(
                states,
                derivs,
                n_steps,
                status,
                "pendulum",
                y0,
                t_eval,
                p;
                rtol = 1.0e-8,
                atol = 1.0e-8,
                n_rejected = rejected,
            )
        end
        solve_ensemble!(
            states,
            derivs,
            n_steps,
            status,
            "pendulum",
            y0,
            t_eval,
            p_one;
            rtol = [1.0e-8, 1.0e-8],
            atol = [1.0e-8, 1.0e-8],
            n_rejected = nothing,
        )
        # PDE solvers on tiny grids: both step rules of KdV, both continuity methods, with
        # every keyword Python passes
        xk = collect(range(-1.0, 1.0; length = 17))[1:16] # periodic, no duplicated end
        tk = [0.0, 0.01, 0.02]
        u0 = cos.(pi .* xk)
        solve_kdv!(zeros(16, 3), 0.0025, xk, tk, u0; tol = 1.0e-6, dt = 0.005)
        solve_kdv!(zeros(16, 3), 0.0025, xk, tk, u0; tol = 1.0e-6, dt = nothing)
        xc = collect(range(-1.5, 1.5; length = 9))
        rho0 = exp.(-(xc'.^2 .+ xc.^2) ./ 0.5) # Python (n_x, n_y), transposed
        for (method, paper_edges) in (
                ("mol", false),
                ("upwind-fv", false),
                ("upwind-fv", true),
            ), dt in (nothing, 1.0e-3)
            solve_continuity!(
                zeros(9, 9, 3),
                xc,
                xc,
                tk,
                rho0;
                method = method,
                accuracy = 6,
                cfl = 0.5,
                dt = dt,
                paper_edges = paper_edges,
            )
        end
    end
end
