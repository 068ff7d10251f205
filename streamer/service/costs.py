"""What phasing costs on this host: planned FFT pairs timed per shape, and plans made ahead of need.

The time budget (streamer/phasing/budget.py) asks ``FftCosts(shape, batch)`` for the seconds of one
forward + inverse transform. One member of a shape is timed once (its plan made, or read from
remembered wisdom, the first time); other shapes and batches are scaled from the nearest timed one
by N log N and the batch size, which FFTW follows within about 20% over these sizes. ``plan_ahead``
makes a shape's plans in a background thread when a scan starts, so no scan's latency includes
planning.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from streamer.phasing.fft import get_plan
from streamer.phasing.wisdom import save_wisdom, wisdom_path

log = logging.getLogger(__name__)


def _n_log_n(shape) -> float:
    n = math.prod(shape)
    return n * math.log2(max(n, 2))


#: the pairs of a shape are timed for at least this long: in a process that has just prepared a detector scan,
#: the first four pairs of 64x128x128 took 13-18 ms and the next ones 4.4-5 ms (a least of five read 5-10 ms,
#: and the budget predicted the detector scans twice the iterations' cost of the same shape phased from an array)
WARM_UP_S = 0.2


class FftCosts:
    """Measured seconds of planned FFT pairs (``costs(shape, batch)``), and plans made in the background."""

    def __init__(self, xp, *, threads: int | None = None, repeats: int = 5):
        self.xp = xp
        self.threads = threads
        self.repeats = max(1, int(repeats))
        self._timed: dict[tuple[int, ...], float] = {}  # one member of a shape: seconds per pair
        self._lock = threading.Lock()
        self._planner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fft-plan-ahead")
        self._planned: dict[tuple[int, ...], Future] = {}

    def time_pair(self, shape: tuple[int, ...]) -> float:
        """Least seconds of forward + inverse transforms of one member of ``shape`` (plans made once), repeated
        ``repeats`` times and for at least ``WARM_UP_S``: the first pairs' warm-up, or another thread's moment on
        a core, only ever adds."""
        shape = tuple(int(n) for n in shape)
        with self._lock:
            if shape in self._timed:
                return self._timed[shape]
        plan = get_plan(self.xp, (1, *shape), threads=self.threads)
        times = []
        started = time.perf_counter()
        while len(times) < self.repeats or (time.perf_counter() - started < WARM_UP_S and len(times) < 100):
            t0 = time.perf_counter()
            spectrum = plan.forward(plan.input)  # the pair as an iteration runs it
            if getattr(plan, "conjugate_inverse", False):
                plan.inverse_conjugate(spectrum)
            else:
                plan.inverse(spectrum)
            times.append(time.perf_counter() - t0)
        seconds = float(min(times))
        with self._lock:
            self._timed[shape] = seconds
        log.info("FFT pair %s: %.1f ms on this host", "x".join(map(str, shape)), 1e3 * seconds)
        return seconds

    def timed(self, shape: tuple[int, ...]) -> bool:
        """Whether one member of ``shape`` has been timed (not scaled from another shape)."""
        with self._lock:
            return tuple(int(n) for n in shape) in self._timed

    def __call__(self, shape: tuple[int, ...], batch: int = 1) -> float:
        """Seconds of a pair of ``batch`` members of ``shape``: timed if it was, else scaled from the
        nearest timed shape (timing ``shape`` itself when none was)."""
        shape = tuple(int(n) for n in shape)
        with self._lock:
            timed = dict(self._timed)
        if shape in timed:
            return timed[shape] * batch
        if not timed:
            return self.time_pair(shape) * batch
        ref = min(timed, key=lambda s: abs(math.log(_n_log_n(s) / _n_log_n(shape))))
        return timed[ref] * _n_log_n(shape) / _n_log_n(ref) * batch

    def plan_ahead(self, shape: tuple[int, ...], batch: int) -> Future:
        """Make the plans of ``batch`` members of ``shape`` in the background (once per shape)."""
        key = (int(batch), *(int(n) for n in shape))
        with self._lock:
            future = self._planned.get(key)
            if future is None:
                future = self._planner.submit(self._plan, key)
                self._planned[key] = future
        return future

    def _plan(self, key: tuple[int, ...]):
        """Plan ``key`` (batch, z, y, x) now, remember it in the wisdom, and time its shape again with it."""
        plan = get_plan(self.xp, key, threads=self.threads, unplanned="plan")
        save_wisdom()
        with self._lock:
            self._timed.pop(tuple(key[1:]), None)  # timed before with the stand-in, perhaps
        return plan

    def submit(self, key, fn) -> Future | None:
        """Run ``fn`` in the planning thread once per ``key`` (a scan start's shape); its errors are logged."""
        with self._lock:
            if ("submitted", key) in self._planned:
                return None
            def guarded():
                try:
                    fn()
                except Exception:  # planning ahead is an optimisation: the scan plans for itself if it fails
                    log.exception("planning ahead for %s failed", key)
            future = self._planned[("submitted", key)] = self._planner.submit(guarded)
        return future

    def close(self) -> None:
        self._planner.shutdown(wait=True, cancel_futures=True)


SLOWNESS_FILE = "phasing-slowness.json"


def slowness_key(xp, stand_in: bool = False) -> str:
    """The array namespace, by name, and whether the FFTs ran on the scipy stand-in of an unplanned shape: each
    backend's model error is remembered apart, and so is the stand-in's (a slowness learned on planned FFTW
    runs made the budget choose a grid that then ran on pocketfft: 67 s where 36 were predicted)."""
    name = str(getattr(xp, "__name__", "numpy")).rsplit(".", 1)[-1]
    return f"{name}-stand-in" if stand_in else name


def remembered_slowness(backend: str, folder: Path | None = None) -> float:
    """Phasing seconds taken / predicted from the FFT costs, as the last budgeted runs on this host found it
    (1 when none is remembered, or the file cannot be read): a one-shot command's stand-in for the
    service's per-run learning."""
    path = (folder or wisdom_path().parent) / SLOWNESS_FILE
    try:
        value = float(json.loads(path.read_text())[backend])
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0
    return min(10.0, max(0.5, value)) if math.isfinite(value) else 1.0


def remember_slowness(backend: str, actual_s: float, predicted_s: float, used: float,
                      folder: Path | None = None) -> float:
    """Keep the model's error of this run (``predicted_s`` was made with slowness ``used``), averaged with the
    remembered one; returns what is kept. A cache that cannot be written only costs accuracy."""
    if not (predicted_s > 0 and actual_s > 0):
        return used
    found = min(10.0, max(0.5, actual_s / predicted_s * used))
    kept = round(math.sqrt(found * used) if used != 1.0 else found, 3)  # geometric mean with the last
    path = (folder or wisdom_path().parent) / SLOWNESS_FILE
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        known = known if isinstance(known, dict) else {}
        known[backend] = kept
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known))
    except (OSError, ValueError):
        log.warning("could not remember the phasing slowness in %s", path)
    return kept
