"""Reconstructions on a Dask distributed cluster: the phasing engine's steps as tasks.

A scan's ``Problem`` (the data, its mask, the seed and the config) is scattered to every worker
once. The population is split into shards, one per worker; each shard starts, iterates and breeds
its own members where it lives, with its own backend (a dask-cuda worker: its own GPU). Every
generation the client gathers only the shards' scores, ranks them and names the best member, which
Dask copies to the other shards for breeding. The last generation is averaged on a worker and only
the averaged object and its metrics come back. Member k depends only on (seed, k), so the result
equals ``reconstruct()`` in one process. A lost worker's shards are recomputed by Dask from their
lineage; a cluster that cannot be reached falls back to the in-process engine with a loud warning.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from dataclasses import replace

import numpy as np
from dask.sizeof import sizeof
from distributed import Client, KilledWorker

from streamer.backend import get_namespace
from streamer.phasing import PhasingConfig, PhasingResult, reconstruct
from streamer.phasing.engine import (
    Generation,
    Problem,
    finish,
    join,
    make_problem,
    next_generation,
    plan_for,
    run_members,
    start_members,
)
from streamer.phasing.fft import get_plan
from streamer.phasing.genetic import breed, metric_values
from streamer.phasing.wisdom import save_wisdom
from streamer.service.costs import FftCosts

log = logging.getLogger(__name__)
CLUSTER_ERRORS = (OSError, TimeoutError, KilledWorker, CancelledError)  # the cluster failed, not the data
RECONNECT_PERIOD_S = 60.0  # after a failure, the next scans run in-process until this has passed
DEFAULT_CONFIG = PhasingConfig()


@sizeof.register(Problem)
def _sizeof_problem(p: Problem) -> int:
    return sum(a.nbytes for a in (p.amplitude, p.measured, p.start) if a is not None)


@sizeof.register(Generation)
def _sizeof_generation(g: Generation) -> int:
    return g.rho.nbytes + g.support.nbytes + g.chi_square.nbytes + g.errors.nbytes


@sizeof.register(PhasingResult)
def _sizeof_result(r: PhasingResult) -> int:
    arrays = (r.rho, r.support, r.chi_square, r.amplitude_error, r.phase_error, r.error_curve, r.members)
    return sum(a.nbytes for a in arrays if a is not None)


# -- tasks: run on the workers ------------------------------------------------------------------
def _run_shard(problem: Problem, indices: list[int], backend: str, parent: Generation | None = None,
               best: tuple[np.ndarray, np.ndarray] | None = None, best_index: int = -1) -> Generation:
    """Start (generation 0) or breed (later) members ``indices`` and run the recipe on them."""
    if parent is None:
        plan = plan_for(problem, len(indices), xp=get_namespace(backend))
        rho, support = start_members(problem, indices, plan, xp=get_namespace(backend))
    elif best_index in indices:  # the best stays as it is; breed() leaves its ranking[0] untouched
        rho, support = breed(parent.rho, parent.support, np.array([indices.index(best_index)]),
                             problem.config.breeding)
    else:  # the best goes first, its children with this shard's members follow
        rho, support = breed(np.concatenate([best[0][None], parent.rho]),
                             np.concatenate([best[1][None], parent.support]), np.array([0]), problem.config.breeding)
        rho, support = rho[1:], support[1:]
    return run_members(problem, rho, support, xp=get_namespace(backend))


def _summary(problem: Problem, gen: Generation) -> dict:
    """What the client needs to rank a shard: chi-square, metric scores and error curves (no volumes)."""
    scores = metric_values(problem.config.metric, gen.rho, gen.support, gen.chi_square)
    return {"chi_square": gen.chi_square, "scores": scores, "errors": gen.errors}


def _member(gen: Generation, local: int) -> tuple[np.ndarray, np.ndarray]:
    return gen.rho[local].copy(), gen.support[local].copy()


def _finish(problem: Problem, last: list[Generation], earlier_errors: list[np.ndarray], members: bool) -> PhasingResult:
    """Average the last generation; earlier generations contribute only their error curves."""
    gen = join(last)
    # finish() reads only the error curves of the earlier generations: no volumes are moved for them
    earlier = [Generation(gen.rho[:0], gen.support[:0], gen.chi_square[:0], e) for e in earlier_errors]
    result = finish(problem, earlier + [gen])
    return result if members else replace(result, members=None)


def _whole_scan(problem: Problem, backend: str) -> PhasingResult:
    """One scan's reconstruction as one task (the engine's steps composed as in ``reconstruct``)."""
    xp, cfg = get_namespace(backend), problem.config
    plan = plan_for(problem, cfg.population, xp=xp)
    rho, support = start_members(problem, range(cfg.population), plan, xp=xp)
    gens = []
    for g in range(cfg.generations):
        gens.append(run_members(problem, rho, support, xp=xp, generation=g))
        if g < cfg.generations - 1:
            rho, support = next_generation(problem, gens[-1])
    return finish(problem, gens)


def _pair_seconds_on_worker(shape: tuple[int, ...], backend: str, threads: int | None) -> float:
    """One member's planned FFT pair of ``shape`` timed on this worker (its backend, plans and threads)."""
    costs = FftCosts(get_namespace(backend), threads=threads)
    try:
        return costs.time_pair(shape)
    finally:
        costs.close()


def _plan_on_worker(key: tuple[int, ...], backend: str, threads: int | None) -> None:
    """Make this worker's plans of a shard (batch, z, y, x) now and remember them in its wisdom."""
    get_plan(get_namespace(backend), key, threads=threads, unplanned="plan")
    save_wisdom()


def _outgoing_bytes(dask_worker) -> int:
    return int(dask_worker.transfer_outgoing_bytes_total)


# -- client side --------------------------------------------------------------------------------
def _results(futures, deadline: float | None) -> list:
    """The futures' results, raising TimeoutError once ``deadline`` (monotonic) has passed."""
    return [f.result(timeout=None if deadline is None else max(deadline - time.monotonic(), 0.001))
            for f in futures]


def _moved_bytes(client: Client) -> int:
    """Bytes the workers have sent so far (to each other and to the client); a worker that died took its count."""
    return sum(client.run(_outgoing_bytes, on_error="ignore").values())


def scheduler_workers(client: Client) -> list[str]:
    """The scheduler's workers now, asked of the scheduler itself: ``client.scheduler_info`` returns a cache that the
    client's periodic refresh can overwrite with one listing no worker between the fetch and the return (a worker
    "lost" that was not)."""
    return sorted(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def reconstruct_on_cluster(client: Client, intensity, *, config: PhasingConfig = DEFAULT_CONFIG, rng=None,
                           mask=None, start=None, backend: str = "auto", shards: int | None = None,
                           timeout_s: float | None = None, members: bool = False,
                           progress: Callable[[dict], None] | None = None,
                           on_submitted: Callable[[int], None] | None = None) -> tuple[PhasingResult, dict]:
    """``reconstruct()`` with the population sharded over the cluster's workers: (result, report).

    ``shards`` defaults to one per worker; ``backend`` is the namespace each worker uses ("auto":
    its GPU when it has one). ``members`` also brings back the aligned members that were averaged.
    ``on_submitted(generation)`` is called once a generation's tasks are submitted (tests use it to
    kill a worker mid-run). The report names the workers, the shards, the bytes scattered and moved,
    and the workers lost during the scan (their shards were recomputed).
    """
    problem = make_problem(intensity, config=config, rng=rng, mask=mask, start=start)
    before = scheduler_workers(client)
    if not before:
        raise TimeoutError(f"the cluster at {client.scheduler.address} has no workers")
    n = max(1, min(shards or len(before), config.population))
    parts = [[int(k) for k in part] for part in np.array_split(np.arange(config.population), n)]
    moved_before = _moved_bytes(client)
    t0 = time.perf_counter()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    [pf] = client.scatter([problem], broadcast=True, hash=False)
    futures = [client.submit(_run_shard, pf, part, backend, workers=[before[i % len(before)]],
                             allow_other_workers=True, pure=False) for i, part in enumerate(parts)]
    errors: list[np.ndarray] = []
    for g in range(config.generations):
        if on_submitted is not None:
            on_submitted(g)
        done = _results([client.submit(_summary, pf, f, pure=False) for f in futures], deadline)
        chi = np.concatenate([s["chi_square"] for s in done])
        errors.append(np.concatenate([s["errors"] for s in done], axis=1))
        if progress:
            progress({"generation": g + 1, "generations": config.generations, "iteration": errors[-1].shape[0],
                      "iterations": errors[-1].shape[0], "best_chi_square": float(chi.min()), "done": True})
        if g == config.generations - 1:
            break
        best = int(np.argsort(np.concatenate([s["scores"] for s in done]), kind="stable")[0])
        owner = next(i for i, part in enumerate(parts) if best in part)
        best_f = client.submit(_member, futures[owner], parts[owner].index(best), pure=False)
        futures = [client.submit(_run_shard, pf, part, backend, parent=f, best=best_f, best_index=best, pure=False)
                   for part, f in zip(parts, futures)]
    [result] = _results([client.submit(_finish, pf, futures, errors[:-1], members, pure=False)], deadline)
    seconds = time.perf_counter() - t0
    after = scheduler_workers(client)
    lost = sorted(set(before) - set(after))
    if lost:
        log.warning("lost worker(s) %s during the reconstruction; Dask recomputed their shards", ", ".join(lost))
    report = {
        "address": client.scheduler.address, "workers": len(before), "shards": [len(p) for p in parts],
        "scatter_bytes": int(sizeof(problem)) * len(before),
        "moved_bytes": _moved_bytes(client) - moved_before,
        "workers_lost": lost, "recomputed": bool(lost), "seconds": round(seconds, 3),
    }
    return result, report


def submit_scan(client: Client, intensity, *, config: PhasingConfig = DEFAULT_CONFIG, rng=None, mask=None,
                start=None, backend: str = "auto"):
    """One scan's whole reconstruction as one task (several particles, a backlog): a Future of the result."""
    problem = make_problem(intensity, config=config, rng=rng, mask=mask, start=start)
    [pf] = client.scatter([problem], hash=False)
    return client.submit(_whole_scan, pf, backend, pure=False)


class ClusterReconstructor:
    """``reconstruct`` for the pipeline service, run on the cluster at ``address`` (the averaged members come back,
    as in-process: the analysis checks vortex lines and the strain energy's error on them).

    Connects at the first scan; while the cluster cannot be reached (or fails during a scan), scans
    are reconstructed in-process and a warning says so. ``last_report`` describes the last scan.
    """

    def __init__(self, address: str, *, backend: str = "auto", connect_timeout_s: float = 10.0,
                 scan_timeout_s: float | None = 600.0):
        self.address, self.backend = address, backend
        self.connect_timeout_s, self.scan_timeout_s = connect_timeout_s, scan_timeout_s
        self.client: Client | None = None
        self.last_report: dict = {}
        self._failed_at: float | None = None
        self._error = ""
        self._connecting = threading.Lock()  # the budget's planning thread and the scan's worker both connect

    def connect(self) -> Client | None:
        """The client of the cluster, connecting when needed; None while it cannot be reached."""
        with self._connecting:
            return self._connect()

    def _connect(self) -> Client | None:
        if self.client is not None:
            return self.client
        if self._failed_at is not None and time.monotonic() - self._failed_at < RECONNECT_PERIOD_S:
            return None
        try:
            self.client = Client(self.address, timeout=self.connect_timeout_s, set_as_default=False)
        except CLUSTER_ERRORS as exc:
            self._failed_at = time.monotonic()
            self._error = f"cannot reach the Dask cluster at {self.address}: {exc}"
            return None
        self._failed_at = None
        log.info("reconstructing on the Dask cluster at %s", self.address)
        return self.client

    def __call__(self, intensity, *, xp, config: PhasingConfig = DEFAULT_CONFIG, rng=None, mask=None,
                 start=None) -> PhasingResult:
        if isinstance(rng, np.random.Generator):  # draw the seed here: a fallback must use the same one
            rng = int(rng.integers(2**62))
        client = self.connect()
        if client is not None:
            try:
                result, self.last_report = reconstruct_on_cluster(
                    client, intensity, config=config, rng=rng, mask=mask, start=start, backend=self.backend,
                    timeout_s=self.scan_timeout_s, members=True)  # as in-process: the analysis checks lines on them
                return result
            except CLUSTER_ERRORS as exc:
                self._error = f"the reconstruction on the Dask cluster at {self.address} failed: {exc!r}"
                self._failed_at = time.monotonic()
                self.close()
        log.warning("CLUSTER NOT USED: %s; reconstructing in-process (slower) until it answers", self._error)
        self.last_report = {"address": self.address, "status": "unreachable", "ran": "in-process",
                            "error": self._error}
        return reconstruct(intensity, xp=xp, config=config, rng=rng, mask=mask, start=start)

    def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            client.close()


class ClusterCosts(FftCosts):
    """The time budget's costs on the cluster (``FftCosts``' interface): a worker times one member's planned FFT
    pair of a shape, with its own backend, plans and threads; a population of ``batch`` runs as shards of
    ceil(batch / workers) members at once, one per worker. While the cluster cannot be reached the scan runs
    in-process (``ClusterReconstructor``), and so do its costs: this host's."""

    def __init__(self, reconstructor: ClusterReconstructor, xp, *, threads: int | None = None,
                 timeout_s: float = 120.0):
        super().__init__(xp, threads=threads)
        self.reconstructor, self.timeout_s = reconstructor, timeout_s
        self.local = FftCosts(xp, threads=threads)
        self._seen: tuple[float, list[str]] = (-math.inf, [])  # (when, workers): one budget asks many times

    def _cluster(self) -> tuple[Client | None, list[str]]:
        """The client and its workers (asked of the scheduler at most once a second); no client: in-process."""
        client = self.reconstructor.connect()
        if client is None:
            return None, []
        when, workers = self._seen
        if time.monotonic() - when > 1.0:
            try:
                workers = scheduler_workers(client)
            except CLUSTER_ERRORS:
                return None, []
            self._seen = (time.monotonic(), workers)
        return client, workers

    def time_pair(self, shape: tuple[int, ...]) -> float:
        """Median seconds of one member's pair of ``shape`` on a worker (timed there once per shape)."""
        shape = tuple(int(n) for n in shape)
        with self._lock:
            if shape in self._timed:
                return self._timed[shape]
        client, workers = self._cluster()
        if client is None or not workers:
            raise TimeoutError(f"the cluster at {self.reconstructor.address} has no workers to time an FFT on")
        seconds = float(client.submit(_pair_seconds_on_worker, shape, self.reconstructor.backend, self.threads,
                                      pure=False).result(timeout=self.timeout_s))
        with self._lock:
            self._timed[shape] = seconds
        log.info("FFT pair %s: %.1f ms on a worker of %s", "x".join(map(str, shape)), 1e3 * seconds,
                 self.reconstructor.address)
        return seconds

    def __call__(self, shape: tuple[int, ...], batch: int = 1) -> float:
        """Seconds of a pair of ``batch`` members sharded over the workers (this host's costs without them)."""
        client, workers = self._cluster()
        if client is None or not workers:
            return self.local(shape, batch)
        try:
            per_member = super().__call__(shape, 1)
        except CLUSTER_ERRORS:
            return self.local(shape, batch)
        return per_member * math.ceil(batch / len(workers))

    def plan_ahead(self, shape: tuple[int, ...], batch: int):
        """Every worker makes the plans of its shard of ``batch`` members of ``shape`` (once per shape)."""
        client, workers = self._cluster()
        if client is None or not workers:
            return self.local.plan_ahead(shape, batch)
        sizes = {len(part) for part in np.array_split(np.arange(batch), min(len(workers), batch))}
        key = ("cluster", int(batch), *(int(n) for n in shape))
        with self._lock:
            if key in self._planned:
                return self._planned[key]
            futures = [client.submit(_plan_on_worker, (size, *shape), self.reconstructor.backend, self.threads,
                                     workers=[w], allow_other_workers=False, pure=False)
                       for w in workers for size in sorted(sizes)]
            self._planned[key] = futures  # held: a future no one holds is cancelled
        return futures

    def close(self) -> None:
        self.local.close()
        super().close()
