"""Batched 3D FFTs over the last three axes, with plans and buffers made once per shape.

Every backend offers the same two calls, both *unnormalised* (the projection folds in 1/N):

* ``forward(x)``: FFT of ``x``; returns the plan's spectrum buffer (FFTW) or a new array;
* ``inverse(y)``: inverse FFT times N.

FFTW plans only the forward problem and takes the inverse from it by conjugation
(``N ifft(y) = conj(fft(conj(y)))``): a new shape costs one measured plan instead of two (0.65 s
instead of 1.2 s at 128^3 on 2 cores), and the pair is no slower. Its ``inverse_conjugate(conj(y))``
returns ``conj(N ifft(y))`` with no extra pass; the kernels write and read the conjugates
(``conjugate_inverse`` says a plan offers it).

``x`` given to ``forward`` should be ``plan.input`` to avoid a copy (FFTW). Numpy uses pyFFTW when
it is installed (threads = cores, the planner set by ``configure_fft``, wisdom kept by
``streamer.phasing.wisdom``), else scipy.fft; cupy uses cuFFT through its plan cache; any other
array-API namespace (array-api-strict) uses its ``xp.fft``.

Plans and their buffers are shared by everything in the process that asks for the same shape, so
reconstructions in one process run one at a time (the service has one reconstruction worker; Dask
workers run with ``--nthreads 1``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from streamer.backend import is_numpy
from streamer.phasing.wisdom import import_pyfftw, set_wisdom_dir

AXES = (-3, -2, -1)
_PLANS: dict[tuple, object] = {}


def fft_friendly_size(n: int, *, even: bool = False) -> int:
    """Largest m <= n (even if asked) whose only prime factors are 2, 3 and 5."""
    for m in range(n, 0, -1):
        if even and m % 2:
            continue
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
    return 1


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def have_pyfftw() -> bool:
    try:
        import_pyfftw()
    except ImportError:
        return False
    return True


MEMBER_SWEEP_VOXELS = 1 << 20  # members this large are transformed one at a time (see FFTWPlan)


class FFTWPlan:
    """pyFFTW plans bound to aligned buffers: ``input`` -> ``spectrum`` forward, ``spectrum`` -> ``image`` for the
    inverse (the same forward problem on the conjugate, so one plan serves both).

    A batch of large members (each at least ``MEMBER_SWEEP_VOXELS``) runs one member at a time
    through one member's spectrum and image buffers, shared: that member's arrays stay in the CPU cache
    from one pass to the next, which a whole batch's do not (8 x 128^3: 0.97 ms per member-iteration less
    than one batched transform). Small members go as one batched transform, which is cheaper for them.
    """

    kind = "fftw"
    conjugate_inverse = True  # offers inverse_conjugate

    def __init__(self, shape: tuple[int, ...], threads: int, effort: str = "FFTW_MEASURE", *, wisdom_only: bool = False):
        """``wisdom_only``: only from remembered wisdom, at once (RuntimeError when there is none)."""
        pyfftw = import_pyfftw()

        shape = tuple(shape)
        sweep = _sweeps(shape)
        block = (1,) + shape[1:] if sweep else shape
        self.input = pyfftw.empty_aligned(shape, "complex64")
        self.spectrum = pyfftw.empty_aligned(block, "complex64")
        self.image = pyfftw.empty_aligned(block, "complex64")
        flags = (effort, "FFTW_WISDOM_ONLY") if wisdom_only else (effort,)
        # planning with MEASURE overwrites the arrays: plan first, fill later. Every transform here is the
        # same problem (out of place, same shape and alignment): FFTW plans the first and reuses it.
        sources = [self.input[k:k + 1] for k in range(shape[0])] if sweep else [self.input]
        self._fwd = [pyfftw.FFTW(x, self.spectrum, axes=AXES, direction="FFTW_FORWARD", flags=flags, threads=threads)
                     for x in sources]
        self._conj = pyfftw.FFTW(self.spectrum, self.image, axes=AXES, direction="FFTW_FORWARD", flags=flags,
                                 threads=threads)
        self.threads = threads
        self.blocks = list(range(shape[0])) if sweep else [None]  # members one at a time, or the whole batch
        self.input[...] = 0
        self.spectrum[...] = 0

    def forward(self, x):
        """The unnormalised spectrum of the whole batch ``x`` (batched plans only)."""
        if x is not self.input:
            self.input[...] = x
        self._fwd[0].execute()
        return self.spectrum

    def forward_member(self, k: int):
        """The unnormalised spectrum of member ``k`` of ``input``: (1, z, y, x), valid until the next call."""
        self._fwd[k].execute()
        return self.spectrum

    def inverse_conjugate(self, y_conj):
        """``conj(N ifft(y))`` from ``conj(y)``, in the ``image`` buffer: one forward transform, no extra pass."""
        if y_conj is not self.spectrum:
            self.spectrum[...] = y_conj
        self._conj.execute()
        return self.image

    def inverse(self, y):
        """``N ifft(y)`` in the ``image`` buffer (two conjugating passes more than ``inverse_conjugate``)."""
        import numpy as np

        np.conjugate(y, out=self.spectrum)
        self._conj.execute()
        return np.conjugate(self.image, out=self.image)


def inverse_once(x, threads: int | None = None, plan=None):
    """The ortho-normalised inverse FFT over the last three axes of complex ``x`` ((k,) z, y, x), as a new
    complex64 array: for one-off transforms such as a reconstruction's start.

    Through ``plan`` when it is the run's FFTW plan (its buffers and threads are warm and the members not loaded
    yet; a batched plan of small members lends its wisdom to a one-member FFTW_ESTIMATE plan instead), so the
    start neither measures nor imports scipy.fft (a seventh of a second of a command's start-up); else (no pyFFTW,
    the service's stand-in for a shape not planned yet, another namespace) scipy.fft."""
    import numpy as np

    x = np.asarray(x)
    one = (1,) + x.shape[-3:]
    if not isinstance(plan, FFTWPlan):
        import scipy.fft

        return scipy.fft.ifftn(x, axes=AXES, norm="ortho", workers=threads or cpu_count()).astype(np.complex64)
    if plan.spectrum.shape != one:
        plan = FFTWPlan(one, plan.threads, "FFTW_ESTIMATE")
    batch = x.reshape((-1,) + one[1:])
    out = np.empty(batch.shape, np.complex64)
    scale = np.float32(1 / math.sqrt(math.prod(one)))
    for member, o in zip(batch, out):
        np.multiply(plan.inverse(member[None].astype(np.complex64, copy=False))[0], scale, out=o)
    return out.reshape(x.shape)


class ScipyPlan:
    """scipy.fft (pocketfft) with all cores: the numpy fallback without pyFFTW."""

    kind = "scipy"

    def __init__(self, shape, threads: int):
        import numpy as np

        self.input = np.zeros(shape, np.complex64)
        self._workers = self.threads = threads
        self.blocks = [None]  # the whole batch at once

    def forward(self, x):
        import scipy.fft

        return scipy.fft.fftn(x, axes=AXES, workers=self._workers)

    def inverse(self, y):
        import scipy.fft

        return scipy.fft.ifftn(y, axes=AXES, norm="forward", workers=self._workers)


class NamespacePlan:
    """The namespace's own ``xp.fft`` (cupy: cuFFT with its plan cache; array-api-strict on the CPU)."""

    kind = "xp"

    def __init__(self, xp, shape):
        self.input = xp.zeros(shape, dtype=xp.complex64)
        self._xp = xp
        self.blocks = [None]  # the whole batch at once: what feeds a GPU

    def forward(self, x):
        return self._xp.fft.fftn(x, axes=AXES)

    def inverse(self, y):
        return self._xp.fft.ifftn(y, axes=AXES, norm="forward")


Planner = Literal["estimate", "measure", "patient", "exhaustive"]  # the [fft] planner setting
# a shape with no remembered plan: "plan" it now (FFTW_MEASURE of a 256x256x200 member: 2.3-3.9 s on 2 cores),
# or run it with scipy's pocketfft meanwhile ("scipy": no planning, 1.6-1.7x slower there; docs/phasing.md)
Unplanned = Literal["plan", "scipy"]
# ... but a problem this small is planned now even with "scipy": planning costs 50-110 pair times (0.67 s at
# 128^3 on 2 cores) and pocketfft ran those shapes 1.7-2.5x slower than the measured plan, so a couple of
# hundred iterations repay it
PLAN_NOW_VOXELS = 1 << 22
PLANNER_EFFORTS = {"estimate": "FFTW_ESTIMATE", "measure": "FFTW_MEASURE", "patient": "FFTW_PATIENT",
                   "exhaustive": "FFTW_EXHAUSTIVE"}
_planner: Planner = "measure"  # this process's planner; configure_fft sets it
_unplanned: Unplanned = "plan"  # what a shape with no remembered plan gets; configure_fft sets it
_PLANNING: set[tuple] = set()  # plans being made now (in another thread): not waited for


def configure_fft(*, planner: Planner = "measure", cache_dir: str | Path = "", unplanned: Unplanned = "plan") -> None:
    """Set this process's FFTW planner, wisdom folder ("": ~/.cache/bcdi-stream) and what a shape with no
    remembered plan gets (``unplanned``), from the ``[fft]`` settings.

    Called once by whoever owns the process (the command line, the service); never at import.
    MEASURE picks the fastest algorithm by timing, so two runs may round differently; ESTIMATE's
    choice is deterministic (the tests use it).
    """
    global _planner, _unplanned
    if planner not in PLANNER_EFFORTS:
        raise ValueError(f"fft planner must be one of {', '.join(PLANNER_EFFORTS)}, got {planner!r}")
    if unplanned not in ("plan", "scipy"):
        raise ValueError(f"unplanned must be 'plan' or 'scipy', got {unplanned!r}")
    _planner, _unplanned = planner, unplanned
    set_wisdom_dir(cache_dir)


def planner_effort() -> str:
    """The FFTW planner flag of this process (``configure_fft``; default FFTW_MEASURE)."""
    return PLANNER_EFFORTS[_planner]


def get_plan(xp, shape: tuple[int, ...], *, threads: int | None = None, effort: str | None = None,
             unplanned: Unplanned | None = None):
    """The plan for ``shape`` (batch, z, y, x) on ``xp``, made once and reused by later calls.

    With FFTW and a measuring planner, a shape whose plan is neither made in this process nor remembered
    in the wisdom is planned now, or, when it is larger than PLAN_NOW_VOXELS and ``unplanned="scipy"``
    (``configure_fft``'s default), run by scipy.fft until someone plans it (the service does, in the
    background, when a scan starts).
    """
    threads = threads or cpu_count()
    effort = effort or planner_effort()
    numpy_like = is_numpy(xp)
    kind = ("fftw" if have_pyfftw() else "scipy") if numpy_like else "xp"
    key = (kind, id(xp) if kind == "xp" else None, tuple(shape), threads, effort)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= 8:  # a service sees one or two shapes; do not hoard buffers
            _PLANS.pop(next(iter(_PLANS)))
        if kind == "fftw" and _stand_in_allowed(tuple(shape), effort, unplanned or _unplanned,
                                                being_planned=key in _PLANNING):
            try:
                if key in _PLANNING:  # another thread is planning it: do not wait for that
                    raise RuntimeError("being planned")
                plan = FFTWPlan(tuple(shape), threads, effort, wisdom_only=True)
            except RuntimeError:
                return _stand_in(tuple(shape), threads)
        elif kind == "fftw":
            _PLANNING.add(key)
            try:
                plan = FFTWPlan(tuple(shape), threads, effort)
            finally:
                _PLANNING.discard(key)
        elif kind == "scipy":
            plan = ScipyPlan(tuple(shape), threads)
        else:
            plan = NamespacePlan(xp, tuple(shape))
        _PLANS[key] = plan
    return plan


def runs_on_stand_in(xp, shape: tuple[int, ...], *, threads: int | None = None) -> bool:
    """Whether a reconstruction of ``shape`` (batch, z, y, x) would run on the scipy stand-in now (``get_plan``'s
    rule: too large to plan at once, and no plan made or remembered). Plans nothing: a shape small enough to be
    planned at once is FFTW's; a larger one asks ``get_plan``, which answers from the wisdom or with the stand-in."""
    if not is_numpy(xp) or not have_pyfftw() or not _stand_in_allowed(tuple(shape), planner_effort(), _unplanned):
        return False
    return get_plan(xp, tuple(shape), threads=threads).kind == "scipy"


def _stand_in_allowed(shape: tuple[int, ...], effort: str, unplanned: str, *, being_planned: bool = False) -> bool:
    """get_plan's rule: a shape with no FFTW plan runs on the scipy stand-in rather than being planned now (a
    measuring planner, ``unplanned="scipy"``, and too large to plan at once or being planned by another thread)."""
    return effort != "FFTW_ESTIMATE" and unplanned == "scipy" and (
        being_planned or _measured_voxels(shape) > PLAN_NOW_VOXELS)


def _sweeps(shape: tuple[int, ...]) -> bool:
    """Whether FFTWPlan transforms a batch of ``shape`` one member at a time (members of MEMBER_SWEEP_VOXELS or more)."""
    return len(shape) == 4 and shape[0] > 1 and math.prod(shape[1:]) >= MEMBER_SWEEP_VOXELS


def _measured_voxels(shape: tuple[int, ...]) -> int:
    """Voxels of the transform FFTW measures for a plan of ``shape``: one member when FFTWPlan sweeps them."""
    return math.prod(shape[1:] if _sweeps(shape) else shape)


def _stand_in(shape: tuple[int, ...], threads: int):
    """scipy.fft for a shape FFTW has no plan for yet (kept, so its buffers are made once)."""
    key = ("scipy", None, shape, threads, None)
    if key not in _PLANS:
        _PLANS[key] = ScipyPlan(shape, threads)
    return _PLANS[key]
