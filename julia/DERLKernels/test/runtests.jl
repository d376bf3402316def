using DERLKernels, Test

@testset "DERLKernels" begin
    include("stencils.jl")
end
