"""
    DERLKernels

Numerical kernels of `derlhybrid`, called from Python through juliacall: finite-difference
stencils and the ground-truth ODE ensemble solver.

Contract: *Python allocates, Julia fills.* Every kernel is an in-place `name!` method that
fills a caller's buffers (`fornberg_weights!`, `derivative!`, `solve_ensemble!`); the
non-bang methods allocate and call them. The algorithms mirror the Python modules of
`python/derlhybrid/kernels/` (`stencils.py`, `ode.py`) rule for rule, and `SYSTEMS` mirrors
Python's system registry.
"""
module DERLKernels

using Logging: NullLogger, with_logger
using OrdinaryDiffEqHighOrderRK: DP8
using PrecompileTools: @setup_workload, @compile_workload
using SciMLBase: SciMLBase, EnsembleProblem, EnsembleThreads, ODEProblem, ReturnCode, remake,
    solve

include("stencils.jl")
include("systems.jl")
include("ode.jl")
include("precompile.jl")

export fornberg_weights!, fornberg_weights,
    derivative!, derivative,
    solve_ensemble!

end # module DERLKernels
