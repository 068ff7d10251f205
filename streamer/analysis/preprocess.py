"""From detector counts to an intensity ready for phasing: checks, dark, bad pixels, binning, centring, sizing.

Pure array code. Every refusal names the problem, so an operator knows what to fix.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from streamer.settings import Settings


class PreprocessConfig(Settings):
    """Detector binning (rows, cols; the rocking axis is never binned), thresholds and sizing."""

    bin_rows: int = Field(2, ge=1)
    bin_cols: int = Field(2, ge=1)
    count_threshold: float = Field(0.0, ge=0)  # counts at or below are set to zero (after dark subtraction)
    saturation_counts: float = Field(0.0, ge=0)  # > 0: pixels at or above are masked (count ceiling); 0: none
    hot_pixel_factor: float = Field(0.0, ge=0)  # > 0: a pixel above factor x the median of its 3x3
    #                                             neighbourhood, in most frames, is hot and masked
    centre: bool = True  # move the peak's maximum to the centre of the array
    fft_friendly: bool = True  # crop to the nearest smaller size whose factors are 2, 3, 5


def check_counts(data: np.ndarray, *, what: str = "scan", ndim: int = 3) -> np.ndarray:
    """The data as float32, or a ValueError naming what is wrong with it."""
    data = np.asarray(data)
    if data.ndim != ndim:
        raise ValueError(f"{what} must be {ndim}D, got {data.ndim}D with shape {data.shape}")
    if min(data.shape) < 8:
        raise ValueError(f"{what} shape {data.shape} is too small to reconstruct (every axis needs >= 8)")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise ValueError(f"{what} must hold real counts, got dtype {data.dtype}")
    data = data.astype(np.float32)
    bad = ~np.isfinite(data)
    if bad.any():
        raise ValueError(f"{what} has {int(bad.sum())} NaN or infinite values (first at {np.argwhere(bad)[0].tolist()})")
    if (data < 0).any():
        raise ValueError(f"{what} has {int((data < 0).sum())} negative counts (min {data.min():g}); "
                         "subtract the dark before, not after, or pass a mask")
    if not data.any():
        raise ValueError(f"{what} is empty: every count is zero")
    return data


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


def bin_frames(stack: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum ``rows`` x ``cols`` detector pixels of a (theta, row, col) stack; edges that do not fill a bin drop."""
    t, r, c = stack.shape
    r2, c2 = r // rows * rows, c // cols * cols
    return stack[:, :r2, :c2].reshape(t, r2 // rows, rows, c2 // cols, cols).sum(axis=(2, 4))


def hot_pixels(stack: np.ndarray, factor: float) -> np.ndarray:
    """(row, col) True where a pixel exceeds ``factor`` x its 3x3 neighbourhood median in most frames."""
    from scipy import ndimage

    hot = np.zeros(stack.shape[1:], np.int32)
    for frame in stack:
        med = ndimage.median_filter(frame, size=3, mode="nearest")
        hot += frame > factor * np.maximum(med, 1.0)
    return hot > stack.shape[0] // 2


def _centre_and_size(volume: np.ndarray, mask: np.ndarray, config: PreprocessConfig):
    shape = volume.shape
    if config.centre:  # the centre of mass of the bright core: steadier than the single brightest pixel
        v = np.where(mask, 0, volume)
        core = np.where(v >= 0.1 * v.max(), v, 0)
        grids = np.indices(shape, sparse=True)
        peak = [int(round(float((core * g).sum() / core.sum()))) for g in grids]
        shift = tuple(n // 2 - p for p, n in zip(peak, shape))
    else:
        shift = (0, 0, 0)
    # crop symmetrically around the (shifted) peak, never wrap data around
    slices = []
    for ax, n in enumerate(shape):
        centre = n // 2 - shift[ax]
        half = min(centre, n - centre)
        size = 2 * half
        if config.fft_friendly:
            size = fft_friendly_size(size, even=True)
        lo = centre - size // 2
        slices.append(slice(lo, lo + size))
    sl = tuple(slices)
    return volume[sl], mask[sl], [(s.start, s.stop) for s in slices]


def prepare_scan(stack: np.ndarray, *, config: PreprocessConfig = PreprocessConfig(), dark: np.ndarray | None = None,
                 bad_pixels: np.ndarray | None = None, unmeasured_frames=()) -> tuple[np.ndarray, np.ndarray, dict]:
    """A rocking scan (theta, row, col) in detector counts -> (intensity, mask, info) in lab order (z, y, x).

    ``dark`` (row, col) is subtracted and clipped at zero; ``bad_pixels`` (row, col) True = dead or
    hot, masked with any hot pixels found; ``unmeasured_frames`` are masked whole. ``mask`` is True
    where unmeasured: phasing leaves those pixels free.
    """
    stack = check_counts(stack, what="rocking scan (theta, row, col)")
    t, r, c = stack.shape
    info: dict = {"input_shape": [t, r, c]}
    pix_mask = np.zeros((r, c), bool)
    if bad_pixels is not None:
        if np.shape(bad_pixels) != (r, c):
            raise ValueError(f"bad-pixel mask has shape {np.shape(bad_pixels)}, the frames {(r, c)}")
        pix_mask |= np.asarray(bad_pixels, bool)
    if dark is not None:
        if np.shape(dark) != (r, c):
            raise ValueError(f"dark frame has shape {np.shape(dark)}, the frames {(r, c)}")
        stack = np.clip(stack - np.asarray(dark, np.float32), 0, None)
    if config.hot_pixel_factor > 0:
        hot = hot_pixels(stack, config.hot_pixel_factor)
        info["hot_pixels"] = int(hot.sum())
        pix_mask |= hot
    mask3 = np.broadcast_to(pix_mask, stack.shape).copy()
    if config.saturation_counts > 0:
        saturated = stack >= config.saturation_counts
        if saturated.mean() > 0.01:
            raise ValueError(f"scan is saturated: {100 * saturated.mean():.1f}% of the pixels reach the count "
                             f"ceiling {config.saturation_counts:g}; reduce the exposure or attenuate")
        mask3 |= saturated
        info["saturated_pixels"] = int(saturated.sum())
    for f in unmeasured_frames:
        mask3[int(f)] = True
    stack = np.where(mask3, 0, stack)
    if config.count_threshold > 0:
        stack = np.where(stack <= config.count_threshold, 0, stack)
    # a bin with any unmeasured pixel is unmeasured
    binned = bin_frames(stack, config.bin_rows, config.bin_cols)
    binned_mask = bin_frames(mask3.astype(np.float32), config.bin_rows, config.bin_cols) > 0
    volume = np.transpose(binned, (1, 2, 0))  # (theta, row, col) -> lab (z, y, x), as the geometry
    mask = np.transpose(binned_mask, (1, 2, 0))
    if not volume.any():
        raise ValueError("nothing left of the scan after masking and thresholding")
    volume, mask, crop = _centre_and_size(volume, mask, config)
    info.update({"binning": [config.bin_rows, config.bin_cols], "crop_zyx": crop, "output_shape": list(volume.shape),
                 "masked_fraction": round(float(mask.mean()), 5)})
    return np.ascontiguousarray(volume, np.float32), np.ascontiguousarray(mask), info


def prepare_volume(volume: np.ndarray, *, mask: np.ndarray | None = None, q_axis: int = 0,
                   config: PreprocessConfig = PreprocessConfig()) -> tuple[np.ndarray, np.ndarray, dict]:
    """A 3D intensity already on an orthogonal grid (as other tools write) -> lab order with z along q."""
    volume = check_counts(volume, what="intensity")
    if q_axis not in (0, 1, 2):
        raise ValueError(f"q axis must be 0, 1 or 2, got {q_axis}")
    if mask is not None and np.shape(mask) != volume.shape:
        raise ValueError(f"mask has shape {np.shape(mask)}, the intensity {volume.shape}")
    m = np.zeros(volume.shape, bool) if mask is None else np.asarray(mask, bool)
    order = (q_axis,) + tuple(a for a in range(3) if a != q_axis)
    volume, m = np.transpose(volume, order), np.transpose(m, order)
    volume = np.where(m, 0, volume)
    if config.count_threshold > 0:
        volume = np.where(volume <= config.count_threshold, 0, volume)
    volume, m, crop = _centre_and_size(volume, m, config)
    info = {"q_axis": q_axis, "crop_zyx": crop, "output_shape": list(volume.shape),
            "masked_fraction": round(float(m.mean()), 5)}
    return np.ascontiguousarray(volume, np.float32), np.ascontiguousarray(m), info
