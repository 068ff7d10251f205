"""Reconstruct a population in one batch, guided over generations, warm-started, averaged: array in, array out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import Field, PositiveInt, field_validator

from streamer.backend import to_numpy
from streamer.phasing.fft import get_plan, inverse_once
from streamer.phasing.genetic import BREEDING, METRICS, average_aligned, breed, fitting, metric_values
from streamer.phasing.operators import PhaseConstraint, PhasingState, ShrinkWrap, polish_object
from streamer.phasing.recipe import DEFAULT_RECIPE, parse_recipe
from streamer.phasing.replicas import replicas_of
from streamer.phasing.starts import (
    autocorrelation_support,
    converged_support,
    extent_units,
    phasor,
    random_curvature,
)
from streamer.settings import Settings

# Shrink-wrap runs every 20 iterations: a warm start's last one (iteration 60) reads an ER iterate and 10 ER follow
# inside it. Ending on the ER iterations that followed a shrink-wrap of HIO's (iteration 40, "40HIO, 20ER"), whose
# values outside the support leak into the blur, let the support grow scan after scan (BENCHMARKS.md, "Strain energy").
WARM_RECIPE = "40HIO, 30ER"


class PhasingConfig(Settings):
    """How to reconstruct one scan (the live default: 8 members in one batch, warm-started)."""

    recipe: str = DEFAULT_RECIPE
    hio_beta: float = Field(0.9, gt=0, le=1)
    population: int = Field(8, ge=1)
    generations: int = Field(1, ge=1)
    average: int = Field(4, ge=1)  # the K best members of the last generation are aligned and averaged
    # ... those of them whose chi-square is within this factor of the best's (a member stuck in another solution
    # fits worse, and averaging it in blurs steps and slow phases; BENCHMARKS.md, "Members that fit worse")
    average_max_chi_ratio: float = Field(1.2, ge=1)
    # ... and whose amplitude, aligned, correlates with the best's at least this much: an antiphase particle's members
    # fit equally well in two solutions (BENCHMARKS.md, "Members that agree with the best"); 0: no check
    average_min_agreement: float = Field(0.9, ge=0, le=1)
    # ER iterations polishing a cold start's average (never a warm one's); off: it added false lines and lowered
    # antiphase correlations on the scoring cases (BENCHMARKS.md, "A polished average")
    polish_er: int = Field(0, ge=0)
    # noise replicas of the average, for the strain energy's error (streamer/phasing/replicas.py): how many, ER of each
    noise_replicas: int = Field(4, ge=0)
    noise_replica_er: int = Field(20, ge=1)
    metric: Literal[METRICS] = "chi"
    breeding: Literal[BREEDING] = "sqrt_ab"
    warm_start: bool | Literal["auto"] = "auto"  # "auto": only where a budget can't afford a cold start (phasing.md)
    warm_recipe: str = WARM_RECIPE  # run instead of ``recipe`` when starting from the previous scan
    warm_perturbation_rad: float = Field(0.2, ge=0)  # phase noise on members 1.. of a warm start
    # rms coefficient of a random quadratic phase (in units of the particle's extent) on members 1.. of a warm start
    warm_curvature_rad: float = Field(0.3, ge=0)
    autocorrelation_threshold: float = Field(0.1, gt=0, lt=1)
    # a cold start's support is the autocorrelation's support (the particle's difference body: twice a centrally
    # symmetric particle) scaled by this about the origin (the coarse search's candidates: by its own scales)
    autocorrelation_scale: float = Field(1.0, gt=0, le=1)
    # a cold member starts from the best-fitting of several candidates phased first on the central ``coarse_crop``
    # of q (an eighth of the voxels at 0.5), one per autocorrelation threshold; [] or a crop of 1: no search
    # (BENCHMARKS.md, "A coarse search for the start")
    coarse_crop: float = Field(0.5, gt=0, le=1)
    coarse_thresholds: list[float] = Field(default_factory=lambda: [0.1, 0.04, 0.02])
    # ... the members taking these scales of the autocorrelation's support in turn (BENCHMARKS.md, "Half the
    # autocorrelation")
    coarse_autocorrelation_scales: list[float] = Field(default_factory=lambda: [0.5])
    # ... where the coarse grid keeps at least this many voxels along every axis (on the demo's 48^3 toy grid the
    # 24^3 search did worse than none)
    coarse_min_voxels: int = Field(32, ge=4)
    shrinkwrap: ShrinkWrap = Field(default_factory=ShrinkWrap)
    phase_constraint: PhaseConstraint = Field(default_factory=PhaseConstraint)
    threads: int = Field(0, ge=0)  # FFTW and numba threads; 0: every core (on a host shared with other work, fewer)
    # detector pixels summed into each voxel along (z, y, x) when the data were binned: the modulus step then meets
    # the summed intensity (streamer/phasing/pixels.py); set by whoever binned (reconstruct, the service)
    binned_pixels: tuple[PositiveInt, PositiveInt, PositiveInt] = (1, 1, 1)

    @field_validator("coarse_thresholds")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        if any(not 0 < v < 1 for v in values):
            raise ValueError(f"coarse_thresholds must lie in (0, 1), got {values}")
        return values

    @field_validator("coarse_autocorrelation_scales")
    @classmethod
    def _scales(cls, values: list[float]) -> list[float]:
        if not values or any(not 0 < v <= 1 for v in values):
            raise ValueError(f"coarse_autocorrelation_scales must be one or more values in (0, 1], got {values}")
        return values

    def coarse_candidates(self, member: int) -> list[tuple[float, float]]:
        """The coarse search's (threshold, scale) candidates of member ``member``: every threshold, at the scale
        that member takes in turn (a population of 8 with two scales: four members each)."""
        scales = self.coarse_autocorrelation_scales
        return [(t, scales[member % len(scales)]) for t in self.coarse_thresholds]

    def searches(self, shape: tuple[int, ...]) -> bool:
        """Whether a cold start on a ``shape`` grid searches at a coarse resolution first."""
        from streamer.phasing.budget import cropped_shape

        return (bool(self.coarse_thresholds) and self.coarse_crop < 1
                and min(cropped_shape(tuple(shape), self.coarse_crop)) >= self.coarse_min_voxels)

    @property
    def search(self) -> tuple[float, int, int] | None:
        """What the time budget needs of the coarse search: (crop, candidates, least coarse voxels per axis)."""
        if not self.coarse_thresholds or self.coarse_crop >= 1:
            return None
        return self.coarse_crop, len(self.coarse_thresholds), self.coarse_min_voxels

    @property
    def replica_iterations(self) -> int:
        """Error-reduction iterations of one object that the noise replicas cost (for a time budget)."""
        return self.noise_replicas * self.noise_replica_er

    @field_validator("recipe", "warm_recipe")
    @classmethod
    def _parses(cls, text: str) -> str:
        parse_recipe(text)  # fail early on a bad recipe
        return text


@dataclass
class PhasingResult:
    """The averaged reconstruction (centred, host numpy) and what it is made of."""

    rho: np.ndarray  # (z, y, x) complex64: mean of the aligned best members
    support: np.ndarray  # of the best member, aligned with rho
    chi_square: np.ndarray  # of every member of the last generation
    best: int
    recipe: str
    iterations: int  # per generation
    amplitude_error: np.ndarray | None = None  # per-voxel spread of the averaged members
    phase_error: np.ndarray | None = None
    error_curve: np.ndarray | None = None  # chi-square of the best member at every iteration
    members: np.ndarray | None = None  # the aligned members that were averaged
    replicas: np.ndarray | None = None  # noise replicas of rho, aligned with it (``noise_replicas``)
    generations: int = 1
    warm_started: bool = False
    metric: dict = field(default_factory=dict)


@dataclass
class Problem:
    """What every member of one reconstruction shares: the data in FFT order, the seed and the plan of work.

    Small enough to send once to each worker of a cluster; members are then made and iterated
    anywhere, in shards of any size, with the same result: member k's random start depends only on
    (seed, k).
    """

    amplitude: np.ndarray  # (z, y, x) float32 sqrt(I), FFT order (origin at index 0)
    measured: np.ndarray | None  # (z, y, x) bool, FFT order; None: every pixel measured
    config: PhasingConfig
    seed: int
    start: np.ndarray | None = None  # warm start, complex64, FFT order

    @property
    def warm(self) -> bool:
        return self.start is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.amplitude.shape)

    @property
    def recipe(self) -> str:
        return self.config.warm_recipe if self.warm else self.config.recipe

    @property
    def shrinkwrap(self) -> ShrinkWrap:
        # a warm start is already converged: its shrink-wrap starts where a cold run's schedule ends, and its support
        # is not filled along lines (it let the live series carry a curvature through the thickness: BENCHMARKS.md,
        # "A support without slabs")
        sw = self.config.shrinkwrap
        return sw.replace(sigma_start=sw.sigma_end, fill_lines=False) if self.warm else sw


def _validate(intensity, mask):
    intensity = np.asarray(intensity, dtype=np.float32)
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be 3D (z, y, x), got shape {intensity.shape}")
    if not np.all(np.isfinite(intensity)):
        raise ValueError("intensity contains NaN or infinite values")
    if mask is not None and np.shape(mask) != intensity.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match intensity {intensity.shape}")
    return intensity


def make_problem(intensity, *, config: PhasingConfig = PhasingConfig(), rng=None, mask=None, start=None) -> Problem:
    """Check the data and put it in FFT order; ``start`` is used only when ``config.warm_start`` is True."""
    intensity = _validate(intensity, mask)
    if isinstance(rng, np.random.Generator):
        seed = int(rng.integers(2**62))
    else:
        seed = int(np.random.SeedSequence(rng).generate_state(1, np.uint64)[0] >> 2) if rng is None else int(rng)
    warm = start is not None and config.warm_start is True  # "auto" is the service's to resolve (processing.py)
    if warm and np.shape(start) != intensity.shape:
        raise ValueError(f"warm start has shape {np.shape(start)}, the intensity {intensity.shape}")
    return Problem(
        amplitude=np.fft.ifftshift(np.sqrt(np.clip(intensity, 0, None))).astype(np.float32),
        measured=None if mask is None else np.fft.ifftshift(~np.asarray(mask, bool)),
        config=config, seed=seed,
        start=np.fft.ifftshift(np.asarray(start, np.complex64)) if warm else None,
    )


def start_members(problem: Problem, indices, plan=None, *, xp=np, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Starting objects and supports (host, FFT order) of members ``indices``.

    Cold: random phases on the measured amplitude, inside the autocorrelation's support scaled by
    ``autocorrelation_scale`` (``autocorrelation_support``); with
    ``config.searches(shape)``, the best of such starts phased first at a coarse resolution (``coarse_starts``, in
    namespace ``xp``). Warm: the previous result (member 0 as it is, the others with phase noise), inside its
    own support. ``plan``: the run's FFT plan (``plan_for``), whose buffers the cold start's transforms may
    borrow (``inverse_once``). ``progress`` gets a dict after each candidate of the coarse search.
    """
    indices = list(indices)
    shape, cfg, sw = problem.shape, problem.config, problem.shrinkwrap
    if not problem.warm and cfg.searches(problem.shape):
        return coarse_starts(problem, indices, plan, xp=xp, progress=progress)
    rngs = [np.random.default_rng([problem.seed, k]) for k in indices]
    if problem.warm:
        rho = np.empty((len(indices),) + shape, np.complex64)
        units = extent_units(problem.start) if cfg.warm_curvature_rad else None
        for member, k, r in zip(rho, indices, rngs):
            member[...] = problem.start
            if k:  # phase noise, and a smooth phase the data barely constrain (see random_curvature)
                phase = r.standard_normal(shape, dtype=np.float32) * np.float32(cfg.warm_perturbation_rad)
                if units is not None:
                    phase += random_curvature(units, r, cfg.warm_curvature_rad)
                member *= phasor(phase)
        return rho, np.ascontiguousarray(np.broadcast_to(converged_support(problem.start, sw), rho.shape))
    measured = 1.0 if problem.measured is None else problem.measured
    threads = cfg.threads or None
    ac = np.abs(inverse_once((problem.amplitude**2 * measured).astype(np.complex64), threads, plan))
    support = autocorrelation_support(ac, cfg.autocorrelation_threshold, cfg.autocorrelation_scale)
    support = np.broadcast_to(support, (len(indices),) + shape)
    spectra = np.empty((len(indices),) + shape, np.complex64)
    for member, r in zip(spectra, rngs):  # random phases on the measured amplitude
        member[...] = phasor(r.uniform(0, 2 * np.pi, shape).astype(np.float32))
        member *= problem.amplitude
    rho = np.where(support, inverse_once(spectra, threads, plan), 0).astype(np.complex64)
    return rho, np.ascontiguousarray(support)


def coarse_starts(problem: Problem, indices, plan=None, *, xp, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Cold starts of members ``indices`` from a search on the central ``coarse_crop`` of q (same field of view,
    coarser voxels, an eighth of the work at 0.5): for each member, one candidate per ``coarse_candidates(member)``
    (random phases inside the autocorrelation above the threshold, scaled about the origin by the scale: a half
    gives the particle's own size; the recipe run on the coarse grid); the member starts from its best-fitting
    candidate, interpolated onto the full grid, inside that one's blurred amplitude.

    Which solution a population falls into depends on its starting support, and a boundary's pi step or an
    antiphase particle held every member of one support in another solution at 4-10x the truth's chi-square;
    the coarse chi-square tells the candidates apart for a fraction of a full run (BENCHMARKS.md)."""
    from dataclasses import replace

    from streamer.phasing.budget import _centred_block, crop_about_centre, cropped_shape

    cfg, sw, full = problem.config, problem.shrinkwrap, problem.shape
    small = cropped_shape(full, cfg.coarse_crop)

    def crop(a):  # FFT order in and out
        return None if a is None else np.fft.ifftshift(crop_about_centre(np.fft.fftshift(a), small))

    best_rho = np.zeros((len(indices),) + small, np.complex64)
    best_chi = np.full(len(indices), np.inf)
    data = Problem(amplitude=np.ascontiguousarray(crop(problem.amplitude)),
                   measured=None if problem.measured is None else np.ascontiguousarray(crop(problem.measured)),
                   config=cfg.replace(coarse_crop=1.0), seed=problem.seed)
    # a candidate's random start depends on (seed, member, threshold) only; the members sharing a candidate run together
    runs: dict[tuple[float, float], list[int]] = {}
    for i, k in enumerate(indices):
        for candidate in cfg.coarse_candidates(k):
            runs.setdefault(candidate, []).append(i)
    for j, ((threshold, scale), rows) in enumerate(runs.items()):
        seed = int(np.random.SeedSequence([problem.seed, round(threshold * 1e6)]).generate_state(1, np.uint64)[0] >> 2)
        coarse = replace(data, config=data.config.replace(autocorrelation_threshold=threshold,
                                                          autocorrelation_scale=scale), seed=seed)
        members = [indices[i] for i in rows]
        rho, support = start_members(coarse, members, plan_for(coarse, len(members), xp=xp))
        gen = run_members(coarse, rho, support, xp=xp)
        better = gen.chi_square < best_chi[rows]  # NaN (a diverged candidate) never wins
        won = np.asarray(rows)[better]
        best_rho[won], best_chi[won] = gen.rho[better], gen.chi_square[better]
        if progress:
            progress({"search": j + 1, "searches": len(runs), "shape": small,
                      "best_chi_square": float(np.nanmin(best_chi))})
    # onto the full grid: each spectrum (ortho-normalised, as the engine's) zero-padded, then one inverse through
    # the run's plan (FFTW's wisdom; no scipy.fft at start-up)
    spectra = np.zeros((len(indices),) + full, np.complex64)
    block = _centred_block(full, small)
    centred = np.zeros(full, np.complex64)
    for spectrum, coarse_rho in zip(spectra, best_rho):
        centred[block] = np.fft.fftshift(np.fft.fftn(coarse_rho, norm="ortho"))
        spectrum[...] = np.fft.ifftshift(centred)
    rho = inverse_once(spectra, cfg.threads or None, plan)
    support = np.empty(rho.shape, bool)
    for member, sup in zip(rho, support):
        sup[...] = converged_support(member, sw)
        member[~sup] = 0
    return rho, support


@dataclass
class Generation:
    """The members after one run of the recipe: host arrays, FFT order."""

    rho: np.ndarray  # (k, z, y, x) complex64
    support: np.ndarray  # (k, z, y, x) bool
    chi_square: np.ndarray  # (k,)
    errors: np.ndarray  # (iterations, k) chi-square of every member at every iteration


def plan_for(problem: Problem, members: int, *, xp):
    """The FFT plan a batch of ``members`` runs on (made once a shape): made before the members start, its
    wisdom also serves the start's transforms (``inverse_once``)."""
    return get_plan(xp, (members,) + tuple(problem.shape), threads=problem.config.threads or None)


def run_members(problem: Problem, rho: np.ndarray, support: np.ndarray, *, xp, progress=None,
                generation: int = 0) -> Generation:
    """Run the recipe once on a batch of members in namespace ``xp`` (one plan, one batch)."""
    cfg = problem.config
    op = parse_recipe(problem.recipe, beta=cfg.hio_beta)
    plan = plan_for(problem, len(rho), xp=xp)
    measured = None if problem.measured is None else xp.asarray(problem.measured)
    state = PhasingState(xp, plan.input, None, xp.asarray(problem.amplitude), measured, problem.shrinkwrap,
                         cfg.phase_constraint, plan, binned=cfg.binned_pixels)
    state.rho = _load(state, rho)
    state.support = xp.asarray(np.ascontiguousarray(support))
    if progress:
        state.on_iteration = lambda st: progress({
            "generation": generation + 1, "generations": cfg.generations, "iteration": len(st.errors),
            "iterations": op.iterations, "best_chi_square": float(np.min(to_numpy(st.errors[-1]))) / st.norm})
    op.apply(state)
    chi = to_numpy(state.chi_square()).astype(np.float64)
    errors = np.stack([to_numpy(e) for e in state.errors]) / state.norm
    return Generation(to_numpy(state.rho).copy(), to_numpy(state.support).copy(), chi, errors)


def rank(problem: Problem, gen: Generation) -> tuple[np.ndarray, np.ndarray]:
    """(ranking, scores): members ordered best first by the configured metric."""
    scores = metric_values(problem.config.metric, gen.rho, gen.support, gen.chi_square)
    return np.argsort(scores, kind="stable"), scores


def next_generation(problem: Problem, gen: Generation) -> tuple[np.ndarray, np.ndarray]:
    """Starting objects and supports of the next generation: the best bred into every other member."""
    ranking, _ = rank(problem, gen)
    return breed(gen.rho, gen.support, ranking, problem.config.breeding)


def join(generations: list[Generation]) -> Generation:
    """Shards of one generation, in member order, as one."""
    return Generation(np.concatenate([g.rho for g in generations]), np.concatenate([g.support for g in generations]),
                      np.concatenate([g.chi_square for g in generations]),
                      np.concatenate([g.errors for g in generations], axis=1))


def finish(problem: Problem, gens: list[Generation], *, xp=np) -> PhasingResult:
    """Align and average the best members of the last generation (a cold start's polished: ``polish_er``); centre."""
    cfg, last = problem.config, gens[-1]
    ranking, scores = rank(problem, last)
    best = int(ranking[0])
    keep = fitting(ranking[: min(cfg.average, len(ranking))], last.chi_square, cfg.average_max_chi_ratio)
    half = tuple(n // 2 for n in problem.shape)  # FFT order -> centred (fftshift), then the centre of mass
    if len(keep) == 1:  # nothing to align or spread over: one roll from FFT order, no copies of zeros
        shift = _com_shift(np.abs(last.rho[best]), offset=half)
        rho = np.roll(last.rho[best], tuple(h + s for h, s in zip(half, shift)), axis=(0, 1, 2))
        members, amp_err = rho[None], np.zeros(problem.shape, np.float32)
        phase_err = amp_err.copy()
    else:
        mean, amp_err, phase_err, aligned, agree = average_aligned(
            np.fft.fftshift(last.rho[keep], axes=(1, 2, 3)), 0, cfg.average_min_agreement)
        keep = keep[agree]
        shift = _com_shift(np.abs(mean))
        rho, amp_err, phase_err, members = (np.roll(a, shift, axis=(-3, -2, -1))
                                            for a in (mean, amp_err, phase_err, aligned))
    support = np.roll(last.support[best], tuple(h + s for h, s in zip(half, shift)), axis=(0, 1, 2))
    polished, n = None, 0 if problem.warm else cfg.polish_er
    if n and len(keep) > 1:
        rho, polished = polish_object(xp, rho, support, problem.amplitude, problem.measured, n, cfg.threads or None,
                                      binned=cfg.binned_pixels)
    curve = np.concatenate([g.errors[:, best] for g in gens]).astype(np.float32)
    op = parse_recipe(problem.recipe, beta=cfg.hio_beta)
    replicas = replicas_of(problem, rho, support, xp=xp)
    return PhasingResult(
        rho=rho, support=support, chi_square=last.chi_square, best=best, recipe=str(op),
        iterations=op.iterations, amplitude_error=amp_err, phase_error=phase_err, error_curve=curve,
        members=members, replicas=replicas, generations=len(gens), warm_started=problem.warm,
        metric={"name": cfg.metric, "best": float(scores[best]), "averaged": len(keep),
                "chi_square": [float(f"{v:.4g}") for v in np.asarray(last.chi_square, np.float64)],
                **({} if polished is None else {"polished_chi_square": float(f"{polished:.4g}")})},
    )


def reconstruct(intensity, *, xp, config: PhasingConfig = PhasingConfig(), rng=None, mask=None, start=None,
                progress: Callable[[dict], None] | None = None) -> PhasingResult:
    """Phase a centred 3D intensity (lab order z, y, x) with a population of ``config.population``.

    ``mask`` is True where a pixel is unmeasured (left unconstrained). ``start`` is a previous
    result (complex, same shape, centred) to warm-start from when ``config.warm_start``: member 0
    starts from it as it is, the others with phase noise. ``progress`` gets a dict every ten
    iterations and at the end of every generation. Returns the mean of the ``config.average`` best
    members of the last generation after alignment, centred on its amplitude's centre of mass.
    """
    problem = make_problem(intensity, config=config, rng=rng, mask=mask, start=start)
    plan = plan_for(problem, config.population, xp=xp)
    rho, support = start_members(problem, range(config.population), plan, xp=xp, progress=progress)
    gens: list[Generation] = []
    for g in range(config.generations):
        gen = run_members(problem, rho, support, xp=xp, progress=progress, generation=g)
        gens.append(gen)
        if progress:
            progress({"generation": g + 1, "generations": config.generations, "iteration": gen.errors.shape[0],
                      "iterations": gen.errors.shape[0], "best_chi_square": float(gen.chi_square.min()),
                      "done": True})
        if g < config.generations - 1:
            rho, support = next_generation(problem, gen)
    return finish(problem, gens, xp=xp)


def _load(state: PhasingState, host: np.ndarray):
    """Put host members into the state's object array (in place for FFTW)."""
    if getattr(state.plan, "kind", "") == "fftw":
        state.plan.input[...] = host
        return state.plan.input
    return state.xp.asarray(np.ascontiguousarray(host, dtype=np.complex64))


def _com_shift(amplitude: np.ndarray, offset: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """Integer roll that brings the circular centre of mass of the amplitude, rolled by ``offset`` first,
    to index n // 2."""
    shift = []
    for ax, n in enumerate(amplitude.shape):
        prof = amplitude.sum(axis=tuple(a for a in range(amplitude.ndim) if a != ax))
        if offset:
            prof = np.roll(prof, offset[ax])
        ang = np.angle(np.sum(prof * np.exp(2j * np.pi * np.arange(n) / n)))
        com = (ang % (2 * np.pi)) * n / (2 * np.pi)
        shift.append(int(round(n // 2 - com)))
    return tuple(shift)
