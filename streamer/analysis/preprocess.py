"""From detector counts to an intensity ready for phasing: checks, saturation, dark, flat, bad and hot pixels,
binning, centring (a roll) and sizing (masked padding).

Pure array code. Every refusal names the problem, so an operator knows what to fix.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from streamer.settings import Settings


class PreprocessConfig(Settings):
    """Detector binning (rows, cols; the rocking axis is never binned), thresholds and sizing.

    Sizing never throws measured data away: ``centre`` rolls the peak to the centre (for phasing a
    roll is only a phase ramp of the object, which the analysis removes), ``fft_friendly`` pads with
    masked (unmeasured) planes up to the next size whose factors are 2, 3 and 5.
    """

    bin_rows: int = Field(2, ge=1)
    bin_cols: int = Field(2, ge=1)
    count_threshold: float = Field(0.0, ge=0)  # counts at or below are set to zero (after dark subtraction)
    saturation_counts: float = Field(0.0, ge=0)  # > 0: pixels at or above are masked (count ceiling); 0: none
    hot_pixel_factor: float = Field(0.0, ge=0)  # > 0: a pixel whose median over the frames exceeds factor x
    #                                             the median of its 3x3 neighbourhood (at least 1) is hot
    unmeasured_min_counts: float = Field(100.0, ge=0)  # > 0: runs of lines without a count between lines holding
    #                                                    this many each are unmeasured (``unmeasured_lines``); 0: off
    centre: bool = True  # roll the peak's centre of mass to the centre of the array
    fft_friendly: bool = True  # pad (masked) to the next even size whose factors are 2, 3, 5


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


def fft_friendly_size(n: int, *, even: bool = False, up: bool = False) -> int:
    """Largest m <= n (smallest m >= n with ``up``), even if asked, whose only prime factors are 2, 3 and 5."""
    candidates = range(n, 4 * n + 8) if up else range(n, 0, -1)
    for m in candidates:
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


def median_3x3(image: np.ndarray) -> np.ndarray:
    """The median of every pixel's 3 x 3 neighbourhood, edges repeated (scipy.ndimage's median_filter(size=3,
    mode="nearest")), in numpy: a command's start need not import scipy.ndimage (0.2 s alone; about 0.1 s of a
    one-iteration reconstruct measured, BENCHMARKS.md)."""
    image = np.asarray(image)
    padded = np.pad(image, 1, mode="edge")
    rows, cols = image.shape
    shifted = [padded[i:i + rows, j:j + cols] for i in range(3) for j in range(3)]
    return np.median(np.stack(shifted), axis=0)


def hot_pixels(stack: np.ndarray, factor: float) -> np.ndarray:
    """(row, col) True where a pixel's median over the frames exceeds ``factor`` x the median of its 3x3
    neighbourhood (at least 1 count): a hot pixel counts in most frames, the Bragg peak crosses a pixel
    in a few. At most 32 frames, evenly spaced, are looked at."""
    stack = np.asarray(stack)
    typical = np.median(stack[:: max(1, stack.shape[0] // 32)], axis=0)
    return typical > factor * np.maximum(median_3x3(typical), 1.0)


def unmeasured_lines(volume: np.ndarray, axis: int, min_counts: float, max_gap: int = 8) -> np.ndarray:
    """True (over the two axes other than ``axis``) where ``volume`` holds no count along ``axis`` in a run of
    2 to ``max_gap`` such lines side by side, between counting lines that hold ``min_counts`` or more each: the
    chip gaps of a detector, in data handed over without their mask.

    A fringe minimum can be empty, but alone: near a minimum the intensity rises as the square of the distance,
    so of two empty lines side by side each expects at least a ninth of its neighbours' counts (a chance of
    exp(-2 min_counts / 9) to be empty both). Single dead lines are left to the mask."""
    total = np.asarray(volume, float).sum(axis=axis)
    empty = total == 0
    found = np.zeros(total.shape, bool)
    for ax in (0, 1):
        sides = []
        for sign in (-1, 1):
            nearest, distance = np.zeros_like(total), np.zeros(total.shape, int)
            for k in range(1, min(max_gap, total.shape[ax] - 1) + 1):
                shifted = np.zeros_like(total)
                src, dst = [slice(None)] * 2, [slice(None)] * 2
                src[ax], dst[ax] = (slice(None, -k), slice(k, None)) if sign < 0 else (slice(k, None), slice(None, -k))
                shifted[tuple(dst)] = total[tuple(src)]
                take = (distance == 0) & (shifted > 0)
                nearest[take], distance[take] = shifted[take], k
            sides.append((nearest, distance))
        (lo, dlo), (hi, dhi) = sides
        width = dlo + dhi - 1
        found |= empty & (dlo > 0) & (dhi > 0) & (width >= 2) & (np.minimum(lo, hi) >= min_counts)
    return found


def hot_lines(volume: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """True (over the two axes other than ``axis``) where a line of ``volume`` along ``axis`` counts steadily
    (its 10th percentile at least half its median) and more than ``factor`` x the median of its 3 x 3
    neighbourhood's 10th percentiles (at least 1 count): a hot pixel counts in every frame of a stack. Lines
    through the Bragg peak are not steady: their fringes and the peak's fall reach far below their median."""
    low, mid = np.quantile(np.moveaxis(np.asarray(volume, float), axis, 0), [0.1, 0.5], axis=0)
    return (low > factor * np.maximum(median_3x3(low), 1.0)) & (low >= 0.5 * mid)


def peak_roll(volume: np.ndarray, mask: np.ndarray | None = None) -> tuple[int, ...]:
    """Integer roll per axis that brings the centre of mass of the peak's bright core (>= 10% of the
    maximum, masked pixels left out) to index n // 2: steadier than the single brightest pixel."""
    v = np.asarray(volume) if mask is None else np.where(mask, 0, volume)
    top = float(v.max())
    if not top > 0:
        return (0,) * v.ndim
    core = np.where(v >= 0.1 * top, v, 0)
    zx = core.sum(axis=1, dtype=np.float64)  # the profiles summed in float64: the counts span decades
    profiles = (zx.sum(axis=1), core.sum(axis=(0, 2), dtype=np.float64), zx.sum(axis=0))
    total = float(profiles[0].sum())
    return tuple(int(n // 2 - round(float(p @ np.arange(n)) / total)) for p, n in zip(profiles, v.shape))


def _centre_and_size(volume: np.ndarray, mask: np.ndarray, config: PreprocessConfig):
    """Roll the peak to the centre and pad (masked) to FFT-friendly sizes; no measured pixel is dropped."""
    shift = peak_roll(volume, mask) if config.centre else (0,) * volume.ndim
    volume, mask = np.roll(volume, shift, axis=(0, 1, 2)), np.roll(mask, shift, axis=(0, 1, 2))
    pads = []
    for n in volume.shape:
        m = fft_friendly_size(n, even=True, up=True) if config.fft_friendly else n
        before = m // 2 - n // 2  # the centre (index n // 2) stays at the centre
        pads.append((before, m - n - before))
    if any(p != (0, 0) for p in pads):
        volume = np.pad(volume, pads)
        mask = np.pad(mask, pads, constant_values=True)
    return volume, mask, {"shift_zyx": list(shift), "pad_zyx": [list(p) for p in pads]}


def prepare_frames(stack: np.ndarray, *, config: PreprocessConfig | None = None, dark: np.ndarray | None = None,
                   flat: np.ndarray | None = None, bad_pixels: np.ndarray | None = None,
                   unmeasured_frames=(), monitor=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """A rocking scan (theta, row, col) in detector counts -> (binned counts, mask, info), still (theta, row, col).

    Saturated pixels (at the count ceiling) are masked in the raw counts; ``dark`` (row, col) is then
    subtracted and clipped at zero; ``flat`` (row, col, relative efficiency) divides, where it is not
    positive the pixel is masked; ``bad_pixels`` (row, col) True = dead, hot or gap, masked with any
    hot pixels found; ``unmeasured_frames`` are masked whole. A bin with any masked pixel is masked.
    ``monitor`` (one incident-intensity reading per frame, I0) scales each frame to the scan's mean
    monitor, after the dark; a frame whose reading is not positive is masked. ``mask`` is True where
    unmeasured: phasing leaves those pixels free.
    """
    config = config or PreprocessConfig()
    stack = check_counts(stack, what="rocking scan (theta, row, col)")
    t, r, c = stack.shape
    info: dict = {"input_shape": [t, r, c]}
    pix_mask = np.zeros((r, c), bool)
    for name, arr in (("bad-pixel mask", bad_pixels), ("dark frame", dark), ("flat field", flat)):
        if arr is not None and np.shape(arr) != (r, c):
            raise ValueError(f"{name} has shape {np.shape(arr)}, the frames {(r, c)}")
    if bad_pixels is not None:
        pix_mask |= np.asarray(bad_pixels, bool)
        info["bad_pixels"] = int(np.count_nonzero(bad_pixels))
    if config.unmeasured_min_counts > 0:
        empty = unmeasured_lines(stack, 0, config.unmeasured_min_counts) & ~pix_mask
        info["unmeasured_pixels_found"] = int(empty.sum())
        pix_mask |= empty
    mask3 = None
    if config.saturation_counts > 0:
        saturated = stack >= config.saturation_counts
        if saturated.mean() > 0.01:
            raise ValueError(f"scan is saturated: {100 * saturated.mean():.1f}% of the pixels reach the count "
                             f"ceiling {config.saturation_counts:g}; reduce the exposure or attenuate")
        mask3 = saturated & ~pix_mask
        info["saturated_pixels"] = int(mask3.sum())
    if dark is not None:
        dark = np.asarray(dark, np.float32)
        if not np.isfinite(dark).all():
            raise ValueError("dark frame has NaN or infinite values")
        stack = np.clip(stack - dark, 0, None)
    if flat is not None:
        flat = np.asarray(flat, np.float32)
        dead = ~(np.isfinite(flat) & (flat > 0))
        norm = float(flat[~dead].mean()) if (~dead).any() else 0.0
        if not norm > 0:
            raise ValueError("flat field has no positive pixel")
        pix_mask |= dead
        stack = stack / np.where(dead, 1.0, flat / norm).astype(np.float32)
        info["flat_field"] = True
    no_beam = []
    if monitor is not None:
        m = np.asarray(monitor, float)
        if m.shape != (t,):
            raise ValueError(f"monitor has {m.size} readings, the scan {t} frames")
        good = np.isfinite(m) & (m > 0)
        if not good.any():
            raise ValueError("monitor has no positive reading")
        no_beam = np.flatnonzero(~good).tolist()
        scale = np.where(good, m[good].mean() / np.where(good, m, 1.0), 0.0).astype(np.float32)
        stack = stack * scale[:, None, None]
        info["monitor"] = {"mean": float(m[good].mean()), "min_relative": float(m[good].min() / m[good].mean()),
                           "max_relative": float(m[good].max() / m[good].mean()), "frames_without_beam": no_beam}
    if config.hot_pixel_factor > 0:
        hot = hot_pixels(np.where(pix_mask, 0, stack), config.hot_pixel_factor) & ~pix_mask
        info["hot_pixels"] = int(hot.sum())
        pix_mask |= hot
    mask3 = pix_mask[None] if mask3 is None else (mask3 | pix_mask[None])
    mask3 = np.broadcast_to(mask3, stack.shape).copy()
    for f in [*unmeasured_frames, *no_beam]:
        mask3[int(f)] = True
    stack = np.where(mask3, 0, stack)
    if config.count_threshold > 0:
        stack = np.where(stack <= config.count_threshold, 0, stack)
    binned = bin_frames(stack, config.bin_rows, config.bin_cols)
    binned_mask = bin_frames(mask3.astype(np.float32), config.bin_rows, config.bin_cols) > 0
    binned = np.where(binned_mask, 0, binned)  # a partly measured bin is unmeasured: no partial sums
    if not binned.any():
        raise ValueError("nothing left of the scan after masking and thresholding")
    info.update({"binning": [config.bin_rows, config.bin_cols], "binned_shape": list(binned.shape),
                 "masked_fraction": round(float(binned_mask.mean()), 5)})
    return binned.astype(np.float32), binned_mask, info


def frames_on_roi(frames: np.ndarray, geometry) -> tuple[np.ndarray, int]:
    """A detector-geometry scan's frames (step, row, col) cut to the geometry's ROI: (stack, pixel size in
    raw pixels). Frames may arrive whole (``detector_shape_px``), cut to the ROI, or cut and binned as
    the geometry says (``frame_shape``); any other size is a ValueError that names the geometry's fields."""
    frames = np.asarray(frames)
    r0, r1, c0, c1 = geometry.roi_px
    if frames.ndim != 3:
        raise ValueError(f"frames must be a (step, row, col) stack, got shape {frames.shape}")
    if frames.shape[0] != geometry.num_rocking_steps:
        raise ValueError(f"{frames.shape[0]} frames; the geometry's num_rocking_steps is {geometry.num_rocking_steps}")
    shape = tuple(frames.shape[1:])
    if shape == tuple(geometry.detector_shape_px):
        return frames[:, r0:r1, c0:c1], 1
    if shape == (r1 - r0, c1 - c0):
        return frames, 1
    if shape == tuple(geometry.frame_shape):
        return frames, geometry.binning
    raise ValueError(
        f"frames of {shape[0]}x{shape[1]} pixels do not fit the geometry: detector_shape_px "
        f"{list(geometry.detector_shape_px)}, roi_px {list(geometry.roi_px)} ({r1 - r0}x{c1 - c0}), binning "
        f"{geometry.binning} (frames {geometry.frame_shape[0]}x{geometry.frame_shape[1]})")


def map_on_roi(pixel_map: np.ndarray, geometry, level: int, *, what: str, reduce: str = "any") -> np.ndarray:
    """A per-pixel map of the whole detector (or of the raw ROI) cut to the ROI and binned to ``level``
    raw pixels (``frames_on_roi``'s): ``reduce`` "any" (masks), "sum" (dark counts) or "mean" (flat field)."""
    m = np.asarray(pixel_map)
    r0, r1, c0, c1 = geometry.roi_px
    if m.shape == tuple(geometry.detector_shape_px):
        m = m[r0:r1, c0:c1]
    elif m.shape != (r1 - r0, c1 - c0):
        raise ValueError(f"{what} has shape {m.shape}; the detector is {tuple(geometry.detector_shape_px)} "
                         f"(detector_shape_px), its ROI {(r1 - r0, c1 - c0)} (roi_px)")
    if level > 1:
        b = bin_frames(m[None].astype(np.float64), level, level)[0]
        m = b > 0 if reduce == "any" else (b / level**2 if reduce == "mean" else b)
    return m


def fill_masked(stack: np.ndarray, mask: np.ndarray, sigma_px: float = 1.5) -> np.ndarray:
    """Masked pixels of a (step, row, col) stack filled from their measured neighbours in the same frame
    (normalised Gaussian convolution): for peak widths, never for phasing, which leaves them free."""
    from scipy import ndimage

    if not mask.any():
        return np.asarray(stack, np.float32)
    w = (~mask).astype(np.float32)
    sig = (0, sigma_px, sigma_px)
    num = ndimage.gaussian_filter(np.where(mask, 0, stack).astype(np.float32), sig, mode="constant")
    den = ndimage.gaussian_filter(w, sig, mode="constant")
    filled = np.divide(num, den, out=np.zeros_like(num), where=den > 1e-3)
    return np.where(mask, filled, stack).astype(np.float32)


def fill_peak_top(stack: np.ndarray, mask: np.ndarray, top: np.ndarray) -> np.ndarray:
    """Voxels ``top`` (masked at the peak's top: saturated) filled with a Gaussian (a quadratic in log
    intensity) fitted to the measured voxels around each connected patch of them, for peak widths:
    filling them from their neighbours would flatten the top and widen the peak. A patch whose fit is
    not a peak keeps what it had."""
    from scipy import ndimage

    top = np.asarray(top, bool)
    if not top.any():
        return stack
    out = np.array(stack, np.float32)
    labels, _ = ndimage.label(top)
    for patch in ndimage.find_objects(labels):
        lo = [max(s.start - 3, 0) for s in patch]
        hi = [min(s.stop + 3, n) for s, n in zip(patch, stack.shape)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        _fill_patch(out, box, np.asarray(mask[box], bool), top[box])
    return out


def _fill_patch(out: np.ndarray, box: tuple, masked: np.ndarray, top: np.ndarray) -> None:
    values = out[box].astype(np.float64)
    ok = ~masked & (values > 0)
    if ok.sum() < 20:
        return
    ok &= values > 0.2 * values[ok].max()
    centre = np.argwhere(top).mean(0)
    d = np.argwhere(ok) - centre
    if len(d) < 20:
        return

    def terms(x):
        return np.stack([np.ones(len(x)), *x.T, *(x[:, i] * x[:, j] for i in range(3) for j in range(i, 3))], axis=1)

    weight = np.sqrt(values[ok])  # var(log I) ~ 1 / I for counts
    coef = np.linalg.lstsq(terms(d) * weight[:, None], np.log(values[ok]) * weight, rcond=None)[0]
    hess = np.zeros((3, 3))
    k = 4
    for i in range(3):
        for j in range(i, 3):
            hess[i, j] = hess[j, i] = coef[k] * (2 if i == j else 1)
            k += 1
    if not np.all(np.linalg.eigvalsh(hess) < 0):
        return
    inside = np.argwhere(top)
    region = out[box]
    region[tuple(inside.T)] = np.minimum(np.exp(terms(inside - centre) @ coef), 10 * values[ok].max())


def prepare_scan(stack: np.ndarray, *, config: PreprocessConfig | None = None, dark: np.ndarray | None = None,
                 flat: np.ndarray | None = None, bad_pixels: np.ndarray | None = None,
                 unmeasured_frames=()) -> tuple[np.ndarray, np.ndarray, dict]:
    """A rocking scan (theta, row, col) in detector counts -> (intensity, mask, info) in lab order (z, y, x)
    of an orthogonal geometry: ``prepare_frames``, then the peak rolled to the centre and padded to
    FFT-friendly sizes (``info``: ``shift_zyx``, ``pad_zyx``)."""
    config = config or PreprocessConfig()
    binned, binned_mask, info = prepare_frames(stack, config=config, dark=dark, flat=flat, bad_pixels=bad_pixels,
                                               unmeasured_frames=unmeasured_frames)
    volume = np.transpose(binned, (1, 2, 0))  # (theta, row, col) -> lab (z, y, x), as the geometry
    mask = np.transpose(binned_mask, (1, 2, 0))
    volume, mask, sizing = _centre_and_size(volume, mask, config)
    info.update({**sizing, "output_shape": list(volume.shape), "masked_fraction": round(float(mask.mean()), 5)})
    return np.ascontiguousarray(volume, np.float32), np.ascontiguousarray(mask), info


def prepare_volume(volume: np.ndarray, *, mask: np.ndarray | None = None, q_axis: int = 0,
                   config: PreprocessConfig | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """A 3D intensity already on an orthogonal grid (as other tools write) -> lab order with z along q,
    the peak rolled to the centre and padded (masked) to FFT-friendly sizes."""
    config = config or PreprocessConfig()
    volume = check_counts(volume, what="intensity")
    if q_axis not in (0, 1, 2):
        raise ValueError(f"q axis must be 0, 1 or 2, got {q_axis}")
    if mask is not None and np.shape(mask) != volume.shape:
        raise ValueError(f"mask has shape {np.shape(mask)}, the intensity {volume.shape}")
    m = np.zeros(volume.shape, bool) if mask is None else np.asarray(mask, bool)
    order = (q_axis,) + tuple(a for a in range(3) if a != q_axis)
    volume, m = np.transpose(volume, order), np.transpose(m, order)
    volume = np.where(m, 0, volume)
    info: dict = {"q_axis": q_axis}
    if config.unmeasured_min_counts > 0:
        empty = np.zeros(volume.shape, bool)
        for axis in range(3):
            empty |= np.expand_dims(unmeasured_lines(volume, axis, config.unmeasured_min_counts), axis)
        info["unmeasured_voxels_found"] = int((empty & ~m).sum())
        m = m | empty
    if config.hot_pixel_factor > 0:  # a hot pixel counts in every frame: a line along the (unknown) rocking axis
        hot, measured = np.zeros(volume.shape, bool), np.where(m, 0, volume)
        for axis in range(3):
            hot |= np.expand_dims(hot_lines(measured, axis, config.hot_pixel_factor), axis)
        info["hot_voxels"] = int((hot & ~m).sum())
        m = m | hot
        volume = np.where(m, 0, volume)
    if config.count_threshold > 0:
        volume = np.where(volume <= config.count_threshold, 0, volume)
    volume, m, sizing = _centre_and_size(volume, m, config)
    info.update({**sizing, "output_shape": list(volume.shape), "masked_fraction": round(float(m.mean()), 5)})
    return np.ascontiguousarray(volume, np.float32), np.ascontiguousarray(m), info
