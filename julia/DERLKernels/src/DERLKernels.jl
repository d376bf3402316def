"""
    DERLKernels

Numerical kernels of `derlhybrid`, called from Python through juliacall: finite-difference
stencils, the ground-truth ODE ensemble solver and the PDE solvers (KdV, continuity).

Contract: *Python allocates, Julia fills.* Every kernel is an in-place `name!` method that
fills a caller's buffers (`fornberg_weights!`, `derivative!`, `solve_ensemble!`,
`solve_kdv!`, `solve_continuity!`); the non-bang methods allocate and call them. The
algorithms mirror the Python modules of `python/derlhybrid/kernels/` (`stencils.py`, `ode.py`,
`pde.py`) rule for rule, and `SYSTEMS` mirrors Python's system registry.
"""
module DERLKernels

using FFTW: plan_irfft, plan_rfft
using LinearAlgebra: mul!
using Logging: NullLogger, with_logger
using OrdinaryDiffEqHighOrderRK: DP8
using PrecompileTools: @setup_workload, @compile_workload
using SciMLBase:
    SciMLBase,
    EnsembleProblem,
    EnsembleThreads,
    ODEProblem,
    ReturnCode,
    remake,
    solve

include("stencils.jl")
include("systems.jl")
include("ode.jl")
include("pde.jl")
include("precompile.jl")

export fornberg_weights!,
    fornberg_weights,
    derivative!,
    derivative,
    solve_ensemble!,
    solve_kdv!,
    solve_continuity!

end # module DERLKernels
