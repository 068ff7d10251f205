"""Reconstruct a population in one batch, guided over generations, warm-started, averaged: array in, array out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from streamer.backend import to_numpy
from streamer.phasing.fft import get_plan
from streamer.phasing.genetic import (
    BREEDING,
    METRICS,
    average_aligned,
    breed,
    metric_values,
)
from streamer.phasing.operators import PhaseConstraint, PhasingState, ShrinkWrap
from streamer.phasing.recipe import DEFAULT_RECIPE, parse_recipe

WARM_RECIPE = "40HIO, 20ER"


@dataclass(frozen=True)
class PhasingConfig:
    """How to reconstruct one scan (the live default: 8 members in one batch, warm-started)."""

    recipe: str = DEFAULT_RECIPE
    hio_beta: float = 0.9
    population: int = 8
    generations: int = 1
    average: int = 4  # the K best members of the last generation are aligned and averaged
    metric: str = "chi"
    breeding: str = "sqrt_ab"
    warm_start: bool = True
    warm_recipe: str = WARM_RECIPE  # run instead of ``recipe`` when starting from the previous scan
    warm_perturbation_rad: float = 0.2  # phase noise on members 1.. of a warm start
    autocorrelation_threshold: float = 0.1
    shrinkwrap: ShrinkWrap = field(default_factory=ShrinkWrap)
    phase_constraint: PhaseConstraint = field(default_factory=PhaseConstraint)

    def __post_init__(self):
        parse_recipe(self.recipe, beta=self.hio_beta)  # fail early on a bad recipe
        parse_recipe(self.warm_recipe, beta=self.hio_beta)
        if self.population < 1 or self.generations < 1:
            raise ValueError(f"population and generations must be >= 1, got {self.population}, {self.generations}")
        if not 1 <= self.average:
            raise ValueError(f"average must be >= 1, got {self.average}")
        if not 0 < self.hio_beta <= 1:
            raise ValueError(f"hio_beta must be in (0, 1], got {self.hio_beta}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.breeding not in BREEDING:
            raise ValueError(f"breeding must be one of {BREEDING}, got {self.breeding!r}")


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
    generations: int = 1
    warm_started: bool = False
    metric: dict = field(default_factory=dict)


def _ifftshift(xp, x, axes):
    for ax in axes:
        x = xp.roll(x, -(x.shape[ax] // 2), axis=ax)
    return x


def initial_support(state: PhasingState, intensity_fft_order, threshold: float):
    """Support from the autocorrelation |F^-1(I)| thresholded at ``threshold`` of its maximum."""
    xp = state.xp
    ac = xp.abs(state.plan.inverse(xp.astype(intensity_fft_order, xp.complex64)))
    return ac > threshold * xp.max(ac)


def _validate(intensity, mask):
    intensity = np.asarray(intensity, dtype=np.float32)
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be 3D (z, y, x), got shape {intensity.shape}")
    if not np.all(np.isfinite(intensity)):
        raise ValueError("intensity contains NaN or infinite values")
    if mask is not None and np.shape(mask) != intensity.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match intensity {intensity.shape}")
    return intensity


def reconstruct(intensity, *, xp, config: PhasingConfig = PhasingConfig(), rng=None, mask=None, start=None,
                progress: Callable[[dict], None] | None = None) -> PhasingResult:
    """Phase a centred 3D intensity (lab order z, y, x) with a population of ``config.population``.

    ``mask`` is True where a pixel is unmeasured (left unconstrained). ``start`` is a previous
    result (complex, same shape, centred) to warm-start from when ``config.warm_start``: member 0
    starts from it as it is, the others with phase noise. ``progress`` gets a dict every ten
    iterations and at the end of every generation. Returns the mean of the ``config.average`` best members of the
    last generation after alignment, centred on its amplitude's centre of mass.
    """
    intensity = _validate(intensity, mask)
    rng = np.random.default_rng(rng)
    shape = intensity.shape
    p = config.population
    warm = start is not None and config.warm_start
    if warm and np.shape(start) != shape:
        raise ValueError(f"warm start has shape {np.shape(start)}, the intensity {shape}")
    measured = None if mask is None else xp.asarray(np.fft.ifftshift(~np.asarray(mask, bool)))
    amp_h = np.fft.ifftshift(np.sqrt(np.clip(intensity, 0, None)))
    amp = xp.asarray(amp_h)

    plan = get_plan(xp, (p,) + shape)
    # a warm start is already converged: its shrink-wrap starts where a cold run's schedule ends
    sw = replace(config.shrinkwrap, sigma_start=config.shrinkwrap.sigma_end) if warm else config.shrinkwrap
    state = PhasingState(xp, plan.input, None, amp, measured, sw, config.phase_constraint, plan)
    if warm:
        first = np.fft.ifftshift(np.asarray(start, np.complex64))
        noise = rng.normal(0.0, config.warm_perturbation_rad, size=(p - 1,) + shape).astype(np.float32)
        starts = np.concatenate([first[None], first[None] * np.exp(1j * noise)]).astype(np.complex64)
        state.rho = _load(state, starts)
        blurred = state.blurred_amplitude(sw.sigma_end)
        state.support = blurred > sw.threshold * xp.max(blurred, axis=(1, 2, 3), keepdims=True)
        recipe = config.warm_recipe
    else:
        meas_np = np.ones(shape, bool) if mask is None else ~np.asarray(mask, bool)
        support0 = initial_support(state, xp.asarray(amp_h**2 * np.fft.ifftshift(meas_np)),
                                   config.autocorrelation_threshold)
        phases = rng.uniform(0, 2 * np.pi, size=(p,) + shape).astype(np.float32)
        spectra = (amp_h * np.exp(1j * phases)).astype(np.complex64)
        rho0 = state.plan.inverse(xp.asarray(spectra))
        rho0 = rho0 * (1.0 / float(np.prod(shape)) ** 0.5)
        state.support = xp.asarray(np.ascontiguousarray(np.broadcast_to(to_numpy(support0), (p,) + shape)))
        state.rho = _load(state, to_numpy(xp.where(state.support, rho0, xp.zeros_like(rho0))))
        recipe = config.recipe
    op = parse_recipe(recipe, beta=config.hio_beta)

    errors = []
    for generation in range(config.generations):
        state.errors = []
        if progress:
            state.on_iteration = lambda st, g=generation: progress({
                "generation": g + 1, "generations": config.generations, "iteration": len(st.errors),
                "iterations": op.iterations, "best_chi_square": float(np.min(to_numpy(st.errors[-1]))) / st.norm})
        op.apply(state)
        chi = to_numpy(state.chi_square())
        errors.append(np.stack([to_numpy(e) for e in state.errors]) / state.norm)
        members = to_numpy(state.rho)
        supports = to_numpy(state.support)
        scores = metric_values(config.metric, members, supports, chi)
        ranking = np.argsort(scores, kind="stable")
        if progress:
            progress({"generation": generation + 1, "generations": config.generations, "iteration": op.iterations,
                      "iterations": op.iterations, "best_chi_square": float(chi[ranking[0]]), "done": True})
        if generation < config.generations - 1:
            children, child_supports = breed(members, supports, ranking, config.breeding)
            state.rho = _load(state, children)
            state.support = xp.asarray(child_supports)

    best = int(ranking[0])
    keep = ranking[: min(config.average, p)]
    centred = np.fft.fftshift(members[keep], axes=(1, 2, 3))
    mean, amp_err, phase_err, aligned = average_aligned(centred, 0)
    support = np.fft.fftshift(supports[best])
    shift = _com_shift(np.abs(mean))
    roll = lambda a: np.roll(a, shift, axis=(-3, -2, -1))
    curve = np.concatenate([e[:, best] for e in errors]).astype(np.float32)
    return PhasingResult(
        rho=roll(mean), support=roll(support), chi_square=chi, best=best, recipe=str(op), iterations=op.iterations,
        amplitude_error=roll(amp_err), phase_error=roll(phase_err), error_curve=curve, members=roll(aligned),
        generations=config.generations, warm_started=warm,
        metric={"name": config.metric, "best": float(scores[best]), "averaged": len(keep)},
    )


def _load(state: PhasingState, host: np.ndarray):
    """Put host members into the state's object array (in place for FFTW)."""
    if getattr(state.plan, "kind", "") == "fftw":
        state.plan.input[...] = host
        return state.plan.input
    return state.xp.asarray(np.ascontiguousarray(host, dtype=np.complex64))


def _com_shift(amplitude: np.ndarray) -> tuple[int, ...]:
    """Integer roll that brings the amplitude's circular centre of mass to index n // 2."""
    shift = []
    for ax, n in enumerate(amplitude.shape):
        prof = amplitude.sum(axis=tuple(a for a in range(amplitude.ndim) if a != ax))
        ang = np.angle(np.sum(prof * np.exp(2j * np.pi * np.arange(n) / n)))
        com = (ang % (2 * np.pi)) * n / (2 * np.pi)
        shift.append(int(round(n // 2 - com)))
    return tuple(shift)
