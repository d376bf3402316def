"""Shared fixtures: the backends this machine can run, with reasons for the others."""

from __future__ import annotations

import pytest

from derlhybrid.kernels import backends


def _backend_params():
    params = []
    for name in backends.BACKENDS:
        st = backends.status(name)
        marks = [] if st.available else [pytest.mark.skip(reason=f"{name}: {st.detail}")]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_backend_params())
def backend(request):
    """Each backend; unavailable ones (julia where Julia is absent) skip with the reason."""
    name = request.param
    if name == "julia":
        try:
            backends.module("julia")
        except backends.BackendUnavailable as exc:
            pytest.skip(str(exc))
    return name
