"""The array backend: an array-API namespace ``xp`` (numpy, cupy, or array-api-strict).

Phasing and analysis are written once against ``xp`` (FFT plans: ``streamer/phasing/fft.py``). cupy is
imported only when asked for, so a machine without a GPU imports and tests everything.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

BACKENDS = ("auto", "numpy", "cupy", "strict")


def get_namespace(name: str = "numpy"):
    """Return the array-API namespace for ``name`` (``auto`` picks cupy when a GPU answers)."""
    import array_api_compat

    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name in ("cupy", "auto"):
        try:
            cupy = importlib.import_module("cupy")
            cupy.cuda.runtime.getDeviceCount()
            return array_api_compat.array_namespace(cupy.empty(1))
        except Exception as exc:  # no cupy, no driver, no device
            if name == "cupy":
                raise RuntimeError(f"backend 'cupy' requested but unusable: {exc}") from exc
            log.info("no usable GPU (%s); using numpy", exc)
    if name == "strict":
        return importlib.import_module("array_api_strict")
    import numpy

    if int(numpy.__version__.split(".")[0]) >= 2:  # numpy 2 is an array-API namespace itself (2023.12 and later)
        return numpy
    return array_api_compat.array_namespace(numpy.empty(1))


def is_numpy(xp) -> bool:
    import array_api_compat

    return array_api_compat.is_numpy_namespace(xp)


def to_numpy(x):
    """Copy an array of any backend to a host numpy array."""
    import numpy

    if hasattr(x, "get"):  # cupy
        return x.get()
    return numpy.asarray(x)
