"""The one place that imports Ray: a clear line when it is missing, and connecting."""

from __future__ import annotations

from typing import Any

INSTALL = 'pip install "derlhybrid[ray]"'


class RayUnavailable(ValueError):
    """Ray (or Ray Tune, or the searcher) is not installed; the message says what to run."""


def require(what: str = "ray"):
    """Import ``ray`` (``what="tune"``: ``ray.tune`` too) or raise :class:`RayUnavailable`."""
    try:
        import ray

        if what == "tune":
            import ray.tune
    except ImportError as exc:
        missing = "Ray Tune" if what == "tune" else "Ray"
        raise RayUnavailable(
            f"--engine ray needs {missing}, which is not installed ({exc.name or exc}); "
            f"install it with: {INSTALL}"
        ) from None
    return ray


def connect(address: str | None, *, num_cpus: int | None = None) -> bool:
    """Join the cluster at ``address`` (``"auto"``: the one ``ray start`` runs here; None:
    ``$RAY_ADDRESS`` or a new local instance with ``num_cpus``). A process already connected
    (e.g. a test's local instance) stays on it. Returns whether this call connected (and so
    should disconnect when done)."""
    ray = require()
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if address is None:
        import os

        if os.environ.get("RAY_ADDRESS"):
            ray.init(**kw)
        else:
            ray.init(num_cpus=num_cpus, **kw)
    else:
        try:
            ray.init(address=address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ValueError(
                f"cannot connect to the Ray cluster at --address {address} ({first}); start "
                "one with `ray start --head` or drop --address for a local instance"
            ) from None
    return True
