"""Quick Bragg-peak metrics from the raw intensity, seconds after a scan and before phasing."""

from __future__ import annotations

import numpy as np


def fwhm(profile: np.ndarray) -> float:
    """Full width at half maximum (pixels) of a 1D profile.

    The maximum and each half-maximum crossing are found on a parabola through log(profile) at three samples
    around it (exact for a Gaussian flank), falling back to linear interpolation where counts
    are zero. A peak that does not fall to half on one side is measured to the array edge.
    """
    p = np.asarray(profile, dtype=float)
    if p.ndim != 1 or p.size < 3:
        raise ValueError(f"profile must be 1D with >= 3 samples, got shape {p.shape}")
    m = int(np.argmax(p))
    half = _apex(p, m) / 2
    if not half > 0:
        return float("nan")
    left, right = 0.0, float(p.size - 1)
    for i in range(m, 0, -1):
        if p[i - 1] < half:
            left = _crossing(p, i - 1, i, half)
            break
    for i in range(m, p.size - 1):
        if p[i + 1] < half:
            right = _crossing(p, i, i + 1, half)
            break
    return right - left


def _apex(p: np.ndarray, m: int) -> float:
    """Height of the maximum between samples: vertex of a parabola through log(p) at m-1, m, m+1."""
    if 0 < m < p.size - 1 and np.all(p[m - 1 : m + 2] > 0):
        c2, c1, c0 = np.polyfit([-1.0, 0.0, 1.0], np.log(p[m - 1 : m + 2]), 2)
        if c2 < 0:
            return float(np.exp(c0 - c1**2 / (4 * c2)))
    return float(p[m])


def _crossing(p: np.ndarray, a: int, b: int, level: float) -> float:
    """Position in [a, b] (b = a + 1) where the profile crosses ``level``."""
    lin = a + (p[a] - level) / (p[a] - p[b])
    lo = max(0, min(a - 1, p.size - 3))
    idx = np.arange(lo, lo + 3)
    if np.any(p[idx] <= 0):
        return float(lin)
    c2, c1, c0 = np.polyfit(idx - a, np.log(p[idx]), 2)
    roots = np.roots([c2, c1, c0 - np.log(level)])
    roots = roots[np.isreal(roots)].real
    roots = roots[(roots >= -1e-9) & (roots <= 1 + 1e-9)]
    return float(a + roots[0]) if len(roots) == 1 else float(lin)


def peak_metrics(intensity: np.ndarray, *, pixel_inv_nm: tuple[float, float, float]) -> dict:
    """Widths and centre of a 3D Bragg peak in lab order (q_z along q, q_y, q_x).

    Widths are FWHM of the projections onto each axis, in nm^-1 (``pixel_inv_nm`` per axis);
    ``width_perpendicular`` is the mean of the two axes perpendicular to q.
    """
    i3 = np.asarray(intensity, dtype=float)
    if i3.ndim != 3:
        raise ValueError(f"intensity must be 3D (q_z, q_y, q_x), got shape {i3.shape}")
    if not np.isfinite(i3).all():
        raise ValueError("intensity contains NaN or infinite values")
    total = i3.sum()
    if total <= 0:
        raise ValueError("intensity has no counts")
    widths_px, com = [], []
    for ax in range(3):
        prof = i3.sum(axis=tuple(a for a in range(3) if a != ax))
        widths_px.append(fwhm(prof))
        com.append(float((prof * np.arange(prof.size)).sum() / prof.sum()))
    widths = [w * d for w, d in zip(widths_px, pixel_inv_nm)]
    return {
        "width_parallel": widths[0],
        "width_perpendicular": (widths[1] + widths[2]) / 2,
        "width_perpendicular_y": widths[1],
        "width_perpendicular_x": widths[2],
        "width_px": widths_px,
        "center_of_mass_px": com,
        "integrated_counts": float(total),
        "max_count": float(i3.max()),
    }
