"""derlhybrid — learning and transferring physical models through their derivatives.

Importing this package starts no Julia, loads no data and prints nothing. The curated API:

>>> import numpy as np
>>> from derlhybrid import derivative
>>> x = np.linspace(0, 2 * np.pi, 64, endpoint=False)
>>> du = derivative(np.sin(x), x[1] - x[0], accuracy=6)   # ≈ cos(x)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from .kernels import available_backends as available_backends
from .kernels import derivative as derivative
from .kernels import fornberg_weights as fornberg_weights

try:
    __version__ = _version("derlhybrid")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "available_backends", "derivative", "fornberg_weights"]
