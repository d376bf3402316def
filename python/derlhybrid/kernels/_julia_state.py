"""State of the julia backend, kept apart from ``_julia.py`` so that asking about it never
imports juliacall."""

module = None  # the loaded DERLKernels module (a juliacall object) once loaded
load_error: str | None = None  # why loading failed in this process, if it did
pid: int | None = None  # the process that started Julia (a fork inherits a dead runtime)
