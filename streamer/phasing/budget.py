"""What to reconstruct within a time budget: resolution, population and iterations, from measured costs.

Pure: the caller measures (a planned FFT pair per shape, on this host) and passes the costs in. A
scan's intensity can be cropped in q about its centre: the field of view stays, the voxel grows by
the crop factor. The engine's iteration costs about ``overhead`` FFT pairs per member
(BENCHMARKS.md: 1.1-1.2 at 128^3). The choice keeps, in this order: full resolution, at least half the
recipe's iterations, the population; then fewer iterations; then a coarser grid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from streamer.phasing.fft import fft_friendly_size
from streamer.phasing.recipe import parse_recipe

CROPS = (1.0, 0.875, 0.75, 0.625, 0.5)  # fraction of the q range kept along each axis
ITERATION_SCALES = (1.0, 0.5, 0.34)
ENGINE_OVERHEAD = 1.25  # one iteration of one member, in planned FFT pairs of its shape
BINNED_OVERHEAD = 0.55  # ... more on binned data: |F|^2 summed through a real FFT pair (pixels.py; BENCHMARKS.md)
# memory of one member per voxel: object, spectrum, FFT buffers, support and the averaging's copies
# (complex64 and float32 arrays; measured peak RSS per member-voxel at 128^3: BENCHMARKS.md)
BYTES_PER_MEMBER_VOXEL = 48


@dataclass(frozen=True)
class BudgetChoice:
    """What fits: the grid to phase, the population and recipe, the predicted seconds, and why."""

    shape: tuple[int, int, int]  # the phasing grid (q cropped about the centre)
    crop: float  # fraction of the q range kept (1: full resolution)
    population: int
    recipe: str
    iterations: int
    predicted_s: float
    budget_s: float
    reason: str
    full: bool = False  # the whole recipe, every member, the full grid

    def record(self) -> dict:
        """What an event or result file says of the choice."""
        return {"shape": list(self.shape), "crop": self.crop, "population": self.population, "recipe": self.recipe,
                "iterations": self.iterations, "predicted_s": round(self.predicted_s, 2),
                "budget_s": round(self.budget_s, 2), "reason": self.reason}


def iteration_overhead(binned: tuple[int, int, int] = (1, 1, 1)) -> float:
    """FFT pairs one member's iteration costs, on data binned ``binned`` pixels per voxel along each axis."""
    return ENGINE_OVERHEAD + (BINNED_OVERHEAD if any(int(b) > 1 for b in binned) else 0.0)


def scaled_recipe(recipe: str, scale: float) -> str:
    """``recipe`` with every operator count multiplied by ``scale`` (at least 1), repeats kept:
    ``"(180HIO, 20ER)*2, 210ER"`` at 0.5 is ``"(90HIO, 10ER)*2, 105ER"``."""
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = re.sub(r"(?<![*\d])(\d+)(?=\s*[A-Za-z])", lambda m: str(max(1, round(int(m.group(1)) * scale))), recipe)
    parse_recipe(out)
    return out


def recipe_iterations(recipe: str) -> int:
    return parse_recipe(recipe).iterations


def cropped_shape(shape: tuple[int, ...], crop: float) -> tuple[int, ...]:
    """Each axis kept to ``crop`` of its length, rounded down to an even size the FFT likes (>= 8)."""
    return tuple(n if crop >= 1 else max(8, fft_friendly_size(int(n * crop), even=True)) for n in shape)


def choose(shape: tuple[int, int, int], budget_s: float, *, recipe: str, population: int,
           fft_pair_s: Callable[[tuple[int, int, int], int], float], fixed_s: float = 0.0,
           min_population: int = 2, overhead: float = ENGINE_OVERHEAD, crops=CROPS,
           max_memory_bytes: float | None = None, keep_iterations: bool = False,
           search: tuple[float, int, int] | None = None, polish: int = 0, replicas: int = 0) -> BudgetChoice:
    """The best reconstruction of a ``shape`` intensity that fits ``budget_s`` seconds.

    ``fft_pair_s(shape, batch)`` is a measured forward + inverse FFT of ``batch`` members of ``shape``;
    ``fixed_s`` what the scan costs besides phasing (analysis, writing). Candidates whose memory
    (``BYTES_PER_MEMBER_VOXEL`` per member and voxel) exceeds ``max_memory_bytes`` are never chosen.
    ``keep_iterations``: the recipe is not shortened (a warm start's short recipe is what lets a new
    feature grow in; members and resolution give way instead). ``search``: a cold start's coarse search
    (``PhasingConfig.search``: crop, candidates, least voxels per axis): where the grid cropped again by that
    factor keeps that many voxels along every axis, each member first runs the recipe that many times there.
    ``polish``: error-reduction iterations run afterwards on the averaged object alone (one member's cost each);
    ``replicas``: those of its noise replicas (``PhasingConfig.replica_iterations``), likewise.
    When nothing fits, the cheapest candidate is chosen and the reason says it will be late.
    """
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    if population < 1 or min_population < 1:
        raise ValueError("population and min_population must be >= 1")
    pops = sorted({p for p in (population, population // 2, population // 4, min_population)
                   if min_population <= p <= population} or {population}, reverse=True)
    full_iterations = recipe_iterations(recipe)

    def cost(grid, n, p):
        seconds = n * overhead * fft_pair_s(grid, p)
        coarse = cropped_shape(grid, search[0]) if search and search[0] < 1 else None
        if coarse and search[1] and min(coarse) >= search[2]:
            seconds += search[1] * n * overhead * fft_pair_s(coarse, p)
        if polish and p > 1:
            seconds += polish * overhead * fft_pair_s(grid, 1)
        if replicas:
            seconds += replicas * overhead * fft_pair_s(grid, 1)
        return fixed_s + seconds

    candidates = []
    for crop in crops:
        grid = cropped_shape(shape, crop)
        for scale in (1.0,) if keep_iterations else ITERATION_SCALES:
            steps = scaled_recipe(recipe, scale) if scale < 1 else recipe
            n = recipe_iterations(steps)
            for p in pops:
                if max_memory_bytes and p * math.prod(grid) * BYTES_PER_MEMBER_VOXEL > max_memory_bytes:
                    continue
                seconds = cost(grid, n, p)
                candidates.append((crop, scale, p, grid, steps, n, seconds))
    if not candidates:
        raise ValueError(f"no reconstruction of {'x'.join(map(str, shape))} fits in {max_memory_bytes / 2**30:.2f} GiB "
                         f"of memory, even {min(pops)} member(s) at half the resolution")
    order = {c: k for k, c in enumerate(crops)}

    def rank(c):  # resolution first, then at least half the iterations, then members, then iterations
        crop, scale, p = c[:3]
        return (order[crop], scale < 0.5, -p, -scale)

    fitting = sorted((c for c in candidates if c[6] <= budget_s), key=rank)
    if fitting:
        crop, scale, p, grid, steps, n, seconds = fitting[0]
        full = crop == 1 and scale == 1 and p == population
        reason = ("the full reconstruction fits" if full else
                  f"the full reconstruction ({population} members x {full_iterations} iterations at "
                  f"{'x'.join(map(str, shape))}) would take "
                  f"{cost(tuple(shape), full_iterations, population):.0f} s")
    else:
        crop, scale, p, grid, steps, n, seconds = min(candidates, key=lambda c: c[6])
        full = False
        reason = f"nothing fits {budget_s:.0f} s: the cheapest choice, {seconds:.0f} s, will be late"
    return BudgetChoice(tuple(grid), crop, p, steps, n, seconds, budget_s, reason, full)


def crop_about_centre(volume, shape: tuple[int, ...]):
    """The central ``shape`` block of ``volume`` (index n // 2 stays the centre); any array namespace."""
    if len(shape) != volume.ndim or any(k > n for k, n in zip(shape, volume.shape)):
        raise ValueError(f"cannot crop {volume.shape} to {shape}")
    sl = tuple(slice(n // 2 - k // 2, n // 2 - k // 2 + k) for k, n in zip(shape, volume.shape))
    return volume[sl]


def voxel_after_crop_nm(voxel_nm: float, full: int, kept: int) -> float:
    """A q crop from ``full`` to ``kept`` samples keeps the field of view: the voxel grows by full / kept."""
    return voxel_nm * full / kept if kept else math.inf


def _centred_block(shape_big, shape_small):
    return tuple(slice(n // 2 - k // 2, n // 2 - k // 2 + k) for n, k in zip(shape_big, shape_small))


def _spectrum(rho: np.ndarray) -> np.ndarray:
    """The centred complex64 spectrum of a centred ``rho`` (scipy.fft on every core: a real-size array's
    transforms take 0.1-0.3 s there, 1-1.5 s in numpy's single-threaded complex128)."""
    import scipy.fft

    return scipy.fft.fftshift(scipy.fft.fftn(scipy.fft.ifftshift(np.asarray(rho, np.complex64)), workers=-1))


def _image(spectrum: np.ndarray, scale: float) -> np.ndarray:
    import scipy.fft

    out = scipy.fft.fftshift(scipy.fft.ifftn(scipy.fft.ifftshift(spectrum), workers=-1))
    out *= np.float32(scale)
    return out.astype(np.complex64, copy=False)


def fourier_crop(rho: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``rho`` on the coarser grid of ``shape`` (same field of view): its spectrum's central block."""
    spectrum = _spectrum(rho)[_centred_block(rho.shape, shape)]
    return _image(spectrum, math.prod(shape) / math.prod(rho.shape)).astype(rho.dtype, copy=False)


def fourier_pad(rho: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``rho`` interpolated onto the finer grid of ``shape`` (same field of view) by zero-padding its spectrum."""
    full = np.zeros(shape, np.complex64)
    full[_centred_block(shape, rho.shape)] = _spectrum(rho)
    return _image(full, math.prod(shape) / math.prod(rho.shape))


def _zoom(a: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    from scipy.ndimage import zoom

    out = zoom(np.asarray(a, np.float32), [n / k for n, k in zip(shape, a.shape)], order=order, grid_mode=True,
               mode="grid-constant")
    return out[tuple(slice(0, n) for n in shape)]


def on_coarser_grid(reconstructor, shape: tuple[int, int, int]):
    """``reconstructor`` (the signature of ``streamer.phasing.reconstruct``) run on the central ``shape`` block of
    the intensity (a q crop: same field of view, coarser voxels); its object, members, support and error
    bars come back on the full grid (spectra zero-padded), so everything after phasing is unchanged."""
    shape = tuple(int(n) for n in shape)

    def run(intensity, *, xp, config, rng=None, mask=None, start=None, **kwargs):
        full = tuple(np.shape(intensity))
        if shape == full:
            return reconstructor(intensity, xp=xp, config=config, rng=rng, mask=mask, start=start, **kwargs)
        block = _centred_block(full, shape)
        small_start = None if start is None or np.shape(start) != full else fourier_crop(np.asarray(start), shape)
        result = reconstructor(np.ascontiguousarray(np.asarray(intensity)[block]), xp=xp, config=config, rng=rng,
                               mask=None if mask is None else np.ascontiguousarray(np.asarray(mask)[block]),
                               start=small_start, **kwargs)
        members, replicas = (None if a is None else np.stack([fourier_pad(m, full) for m in a])
                             for a in (result.members, result.replicas))
        return replace(
            result, rho=fourier_pad(result.rho, full), support=_zoom(result.support, full, 0) > 0.5, members=members,
            replicas=replicas,
            amplitude_error=None if result.amplitude_error is None else _zoom(result.amplitude_error, full, 1),
            phase_error=None if result.phase_error is None else _zoom(result.phase_error, full, 1))

    return run
