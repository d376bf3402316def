# Precompile the kernels on small arrays so the first call from Python is not a long JIT
# pause. Arrays from Python arrive as PythonCall `PyArray`s, whose methods still compile on
# first use; the operator construction and the shared helpers compiled here are reused.
@setup_workload begin
    nodes = [-2.0, -1.0, 0.0, 1.0, 2.0]
    xs = collect(range(0.0, 1.0; length=12)) .+ 0.01 .* sin.(range(0.0, 2pi; length=12))
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
    end
end
