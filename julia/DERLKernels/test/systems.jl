# The systems table and the right-hand sides: the table's shape (Python's registry is
# compared with it by tools/check_julia.py) and the pendulum's vector field.

using DERLKernels:
    SYSTEMS,
    ODE_SYSTEMS,
    default_parameters,
    ode_system,
    pendulum_rhs!,
    system_names

@testset "SYSTEMS table" begin
    names = system_names()
    @test names ==
        (
            "pendulum",
            "continuity",
            "kdv",
            "allen-cahn",
            "allen-cahn-exp",
            "allen-cahn-multi",
            "kovasznay",
            "euler-ball",
        )
    @test allunique(names)
    for (name, defaults) in SYSTEMS
        @test defaults isa NamedTuple
        @test all(v -> v isa Float64 && isfinite(v), values(defaults))
        @test default_parameters(name) === defaults
    end
    @test default_parameters("pendulum") === (b = 0.5, g = 9.81, l = 10.0, m = 1.0)
    @test keys(default_parameters("allen-cahn-exp")) == (:shift, :lam_low, :lam_high)
    @test default_parameters("allen-cahn-exp").lam_high == Float64(pi)
    @test_throws ArgumentError default_parameters("lorenz")
end

@testset "ODE_SYSTEMS: solved systems are in the table" begin
    for (name, spec) in ODE_SYSTEMS
        @test name in system_names()
        @test spec.n_state >= 1
        @test ode_system(name) === spec
    end
    @test_throws ArgumentError ode_system("kdv")    # in the table, not an ODE solved here
    @test_throws ArgumentError ode_system("lorenz") # unknown
end

@testset "pendulum_rhs!: vector field and its conserved energy" begin
    b, g, l, m = 0.5, 9.81, 10.0, 1.0
    dy = zeros(2)
    for (θ, ω) in ((0.3, -0.7), (-pi / 4, 1.5), (0.0, 0.0), (2.0, 0.1))
        @test pendulum_rhs!(dy, [θ, ω], [b, g, l, m], 0.0) === nothing
        @test dy[1] == ω
        @test dy[2] ≈ -(g / l) * sin(θ) - (b / m) * ω rtol = 1.0e-15
        # b = 0: dE/dt = ω ω' + (g/l) sin θ θ' = 0 for E = ω²/2 − (g/l) cos θ
        pendulum_rhs!(dy, (θ, ω), (0.0, g, l, m), 1.0) # tuples work too
        @test abs(ω * dy[2] + (g / l) * sin(θ) * dy[1]) <= 1.0e-15
    end
    # p = (b, g, l, m) in Python's order: only b/m and g/l matter
    pendulum_rhs!(dy, [0.3, -0.7], [1.0, 19.62, 20.0, 2.0], 0.0)
    ref = zeros(2)
    pendulum_rhs!(ref, [0.3, -0.7], [b, g, l, m], 0.0)
    @test dy ≈ ref rtol = 1.0e-15
end
