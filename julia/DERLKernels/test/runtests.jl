using DERLKernels, Test

@testset "DERLKernels" begin
    include("stencils.jl")
    include("systems.jl")
    include("ode.jl")
    include("pde.jl")
    include("strided.jl")
    include("threads.jl")
end
