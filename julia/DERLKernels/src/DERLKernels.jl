"""
    DERLKernels

Finite-difference kernels of `derlhybrid`, called from Python through juliacall.

Contract: *Python allocates, Julia fills.* Every kernel is an in-place `name!` method that
fills a caller's buffer (`fornberg_weights!`, `derivative!`); the non-bang methods allocate
and call them. The algorithms mirror `python/derlhybrid/kernels/stencils.py` rule for rule.
"""
module DERLKernels

using PrecompileTools: @setup_workload, @compile_workload

include("stencils.jl")
include("precompile.jl")

export fornberg_weights!, fornberg_weights,
    derivative!, derivative

end # module DERLKernels
