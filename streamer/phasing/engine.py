"""Run a recipe on a batch of random starts and keep the best: array in, array out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.backend import fftn, to_numpy
from streamer.phasing.operators import PhasingState, ShrinkWrap
from streamer.phasing.recipe import DEFAULT_RECIPE, parse_recipe


@dataclass(frozen=True)
class PhasingConfig:
    """How to reconstruct one scan."""

    recipe: str = DEFAULT_RECIPE
    hio_beta: float = 0.9
    population: int = 4
    autocorrelation_threshold: float = 0.1
    shrinkwrap: ShrinkWrap = field(default_factory=ShrinkWrap)

    def __post_init__(self):
        parse_recipe(self.recipe, beta=self.hio_beta)  # fail early on a bad recipe
        if self.population < 1:
            raise ValueError(f"population must be >= 1, got {self.population}")
        if not 0 < self.hio_beta <= 1:
            raise ValueError(f"hio_beta must be in (0, 1], got {self.hio_beta}")


@dataclass
class PhasingResult:
    """Best reconstruction (centred, host numpy), every member's chi-square, and the recipe run."""

    rho: np.ndarray
    support: np.ndarray
    chi_square: np.ndarray
    best: int
    recipe: str
    iterations: int


def _ifftshift(xp, x, axes):
    for ax in axes:
        x = xp.roll(x, -(x.shape[ax] // 2), axis=ax)
    return x


def _fftshift(xp, x, axes):
    for ax in axes:
        x = xp.roll(x, x.shape[ax] // 2, axis=ax)
    return x


def initial_support(xp, intensity_fft_order, threshold: float):
    """Support from the autocorrelation |F^-1(I)| thresholded at ``threshold`` of its maximum."""
    ac = xp.abs(fftn(xp, xp.astype(intensity_fft_order, xp.complex64), inverse=True))
    return ac > threshold * xp.max(ac)


def reconstruct(intensity, *, xp, config: PhasingConfig = PhasingConfig(), rng=None, mask=None) -> PhasingResult:
    """Phase a centred 3D intensity (lab order z, y, x) with ``config.population`` random starts.

    ``mask`` is True where a pixel is unmeasured (left unconstrained). Returns the member with
    the lowest chi-square, centred on its amplitude's centre of mass.
    """
    intensity = np.asarray(intensity, dtype=np.float32)
    if intensity.ndim != 3:
        raise ValueError(f"intensity must be 3D (z, y, x), got shape {intensity.shape}")
    if not np.all(np.isfinite(intensity)):
        raise ValueError("intensity contains NaN or infinite values")
    rng = np.random.default_rng(rng)
    measured = np.ones(intensity.shape, bool) if mask is None else ~np.asarray(mask, bool)
    if measured.shape != intensity.shape:
        raise ValueError(f"mask shape {measured.shape} does not match intensity {intensity.shape}")
    axes3 = (-3, -2, -1)
    amp_h = np.fft.ifftshift(np.sqrt(np.clip(intensity, 0, None)) * measured)
    amp = xp.asarray(amp_h)
    meas = xp.asarray(np.fft.ifftshift(measured))
    support0 = initial_support(xp, amp**2, config.autocorrelation_threshold)

    p = config.population
    phases = rng.uniform(0, 2 * np.pi, size=(p,) + intensity.shape).astype(np.float32)
    start = xp.asarray((amp_h * np.exp(1j * phases)).astype(np.complex64))
    support = xp.broadcast_to(support0, start.shape)
    rho = fftn(xp, start, inverse=True, axes=axes3)
    rho = xp.where(support, rho, xp.zeros((), dtype=rho.dtype))

    state = PhasingState(xp, rho, xp.asarray(support, copy=True), amp, meas, config.shrinkwrap)
    op = parse_recipe(config.recipe, beta=config.hio_beta)
    op.apply(state)

    chi = to_numpy(state.chi_square())
    best = int(np.argmin(chi))
    rho_best = to_numpy(_fftshift(xp, state.rho[best, ...], (0, 1, 2)))
    sup_best = to_numpy(_fftshift(xp, state.support[best, ...], (0, 1, 2)))
    shift = _com_shift(np.abs(rho_best))
    rho_best = np.roll(rho_best, shift, axis=(0, 1, 2))
    sup_best = np.roll(sup_best, shift, axis=(0, 1, 2))
    return PhasingResult(rho_best, sup_best, chi, best, str(op), op.iterations)


def _com_shift(amplitude: np.ndarray) -> tuple[int, ...]:
    """Integer roll that brings the amplitude's circular centre of mass to index n // 2."""
    shift = []
    for ax, n in enumerate(amplitude.shape):
        prof = amplitude.sum(axis=tuple(a for a in range(amplitude.ndim) if a != ax))
        ang = np.angle(np.sum(prof * np.exp(2j * np.pi * np.arange(n) / n)))
        com = (ang % (2 * np.pi)) * n / (2 * np.pi)
        shift.append(int(round(n // 2 - com)))
    return tuple(shift)
