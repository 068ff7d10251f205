"""Quick Bragg-peak metrics from the raw intensity, seconds after a scan and before phasing."""

from __future__ import annotations

import numpy as np


def fwhm(profile: np.ndarray) -> float:
    """Full width at half maximum (pixels) of a 1D profile; see :func:`fwhm_with_error`."""
    return fwhm_with_error(profile)[0]


def fwhm_with_error(profile: np.ndarray) -> tuple[float, float]:
    """Full width at half maximum (pixels) of a 1D profile of counts, and its Poisson error.

    The maximum and each half-maximum crossing are found on a parabola through log(profile) at three samples
    around it (exact for a Gaussian flank), falling back to linear interpolation where counts
    are zero. A peak that does not fall to half on one side is measured to the array edge.
    The error propagates the counting noise at each crossing, sqrt(I + (sqrt(I_max)/2)^2), through
    the profile's local slope there.
    """
    p = np.asarray(profile, dtype=float)
    if p.ndim != 1 or p.size < 3:
        raise ValueError(f"profile must be 1D with >= 3 samples, got shape {p.shape}")
    m = int(np.argmax(p))
    half = _apex(p, m) / 2
    if not half > 0:
        return float("nan"), float("nan")
    left, right = 0.0, float(p.size - 1)
    var_level = half + half / 2  # counts at the crossing plus a quarter of the apex's variance
    err2 = 0.0
    for i in range(m, 0, -1):
        if p[i - 1] < half:
            left = _crossing(p, i - 1, i, half)
            err2 += var_level / max(abs(p[i] - p[i - 1]), 1e-12) ** 2
            break
    else:
        err2 += 1.0  # cut by the edge: at least a pixel
    for i in range(m, p.size - 1):
        if p[i + 1] < half:
            right = _crossing(p, i, i + 1, half)
            err2 += var_level / max(abs(p[i] - p[i + 1]), 1e-12) ** 2
            break
    else:
        err2 += 1.0
    return right - left, float(np.sqrt(err2))


def fringe_visibility(profile: np.ndarray) -> float:
    """Contrast (I_max - I_min) / (I_max + I_min) of the first fringe beside the main peak.

    Averaged over the two sides; NaN when neither side has a minimum followed by a maximum
    (no fringes: a blurred or incoherent peak). 1 for a perfect sinc^2, 0 for a smooth fall-off.
    """
    p = np.asarray(profile, dtype=float)
    m = int(np.argmax(p))
    out = []
    for side in (p[m:], p[m::-1]):
        d = np.diff(side)
        rising = np.flatnonzero(d > 0)
        if len(rising) == 0:
            continue
        lo = int(rising[0])  # first minimum
        after = np.flatnonzero(d[lo:] < 0)
        if len(after) == 0:
            continue
        hi = lo + int(after[0])  # the next maximum
        imin, imax = side[lo], side[hi]
        if imax + imin > 0:
            out.append((imax - imin) / (imax + imin))
    return float(np.mean(out)) if out else float("nan")


def projected_images(intensity: np.ndarray) -> dict[str, np.ndarray]:
    """Peak images for display: the detector view averaged over theta (q_z, q_y), and the two
    views averaged over detector columns (q_z, q_x) and rows (q_y, q_x); lab order (q_z, q_y, q_x)."""
    i3 = np.asarray(intensity, dtype=float)
    if i3.ndim != 3:
        raise ValueError(f"intensity must be 3D (q_z, q_y, q_x), got shape {i3.shape}")
    return {"detector_zy": i3.mean(axis=2), "rocking_zx": i3.mean(axis=1), "rocking_yx": i3.mean(axis=0)}


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

    Widths are FWHM of the projections onto each axis, in nm^-1 (``pixel_inv_nm`` per axis),
    each with its counting error; ``width_perpendicular`` is the mean of the two axes
    perpendicular to q. ``fringe_visibility`` is that of the profile along q (thickness fringes).
    """
    i3 = np.asarray(intensity, dtype=float)
    if i3.ndim != 3:
        raise ValueError(f"intensity must be 3D (q_z, q_y, q_x), got shape {i3.shape}")
    if not np.isfinite(i3).all():
        raise ValueError("intensity contains NaN or infinite values")
    total = i3.sum()
    if total <= 0:
        raise ValueError("intensity has no counts")
    widths_px, errors_px, com, com_errors, visibility = [], [], [], [], []
    for ax in range(3):
        prof = i3.sum(axis=tuple(a for a in range(3) if a != ax))
        w, e = fwhm_with_error(prof)
        widths_px.append(w)
        errors_px.append(e)
        visibility.append(fringe_visibility(prof))
        x = np.arange(prof.size)
        c = float((prof * x).sum() / prof.sum())
        com.append(c)
        # counting error of a centre of mass: the profile's spread over the square root of the counts
        com_errors.append(float(np.sqrt((prof * (x - c) ** 2).sum() / prof.sum() / total)))
    widths = [w * d for w, d in zip(widths_px, pixel_inv_nm)]
    errors = [e * d for e, d in zip(errors_px, pixel_inv_nm)]
    return {
        "width_parallel": widths[0],
        "width_perpendicular": (widths[1] + widths[2]) / 2,
        "width_perpendicular_y": widths[1],
        "width_perpendicular_x": widths[2],
        "width_px": widths_px,
        "center_of_mass_px": com,
        "center_of_mass_error_px": com_errors,
        "integrated_counts": float(total),
        "max_count": float(i3.max()),
        "width_parallel_error": errors[0],
        "width_perpendicular_error": float(np.hypot(errors[1], errors[2]) / 2),
        "width_error_px": errors_px,
        "fringe_visibility": visibility[0],
        "fringe_visibility_zyx": visibility,
    }


def peak_q_inv_nm(peak: dict, shape: tuple[int, int, int], *, q_center_inv_nm, dq_inv_nm) -> tuple[float, float]:
    """|q| (nm^-1) at the peak's centre of mass on a lab (q_z, q_y, q_x) grid whose index n // 2 sits at the
    vector ``q_center_inv_nm``, ``dq_inv_nm`` per axis; and its counting error."""
    com = np.asarray(peak["center_of_mass_px"], float)
    err = np.asarray(peak.get("center_of_mass_error_px") or (0.0, 0.0, 0.0), float)
    dq = np.asarray(dq_inv_nm, float)
    q = np.asarray(q_center_inv_nm, float) + (com - np.array([n // 2 for n in shape])) * dq
    norm = float(np.linalg.norm(q))
    if not norm > 0:
        raise ValueError("the peak sits at q = 0")
    # d|q|/d(index_a) = q_a dq_a / |q|
    return norm, float(np.sqrt((((q * dq) / norm * err) ** 2).sum()))


def lattice_change(q_inv_nm: float, q_error: float, q_ref_inv_nm: float, q_ref_error: float) -> dict:
    """The change of the lattice spacing along q from a reference scan: d = 2 pi / |q|, so
    delta c / c = q_ref / q - 1 (positive: expanded), with its counting error."""
    if not (q_inv_nm > 0 and q_ref_inv_nm > 0):
        raise ValueError("|q| must be > 0")
    rel = q_ref_inv_nm / q_inv_nm - 1
    error = (q_ref_inv_nm / q_inv_nm) * float(np.hypot(q_error / q_inv_nm, q_ref_error / q_ref_inv_nm))
    return {"c_change_rel": float(rel), "c_change_rel_error": error, "q_inv_nm": float(q_inv_nm),
            "q_ref_inv_nm": float(q_ref_inv_nm)}
