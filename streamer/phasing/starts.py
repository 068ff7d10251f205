"""How a member starts: a cold start's support from the measured intensity's autocorrelation, a converged
object's support, and the smooth phases a warm start's members get (pure array code, FFT order)."""

from __future__ import annotations

import numpy as np

from streamer.phasing.operators import ShrinkWrap


def autocorrelation_support(autocorrelation: np.ndarray, threshold: float, scale: float = 1.0) -> np.ndarray:
    """The voxels whose position, divided by ``scale``, lies where |autocorrelation| exceeds ``threshold`` of its
    maximum (FFT order: the origin at index 0).

    The autocorrelation's support is the particle's difference body {r - r'}: for a centrally symmetric particle
    (a plate, an ellipsoid, a hexagon) twice the particle about its centre, so ``scale`` 0.5 gives the particle's
    own size, where 1 gives a start eight times its volume (BENCHMARKS.md, "Half the autocorrelation")."""
    magnitude = np.abs(autocorrelation)
    return scaled_about_origin(magnitude > threshold * magnitude.max(), scale)


def scaled_about_origin(mask: np.ndarray, scale: float) -> np.ndarray:
    """``mask`` (FFT order) scaled by ``scale`` about the origin, each voxel taking its nearest source voxel's value;
    voxels whose source lies outside the grid are False."""
    if scale == 1:
        return mask
    index, inside = [], []
    for n in mask.shape:
        source = np.rint(np.fft.fftfreq(n, 1 / n) / scale).astype(int)
        inside.append(np.abs(source) <= n // 2)
        index.append(source % n)
    out = mask[np.ix_(*index)]
    for axis, keep in enumerate(inside):
        out &= keep.reshape([-1 if a == axis else 1 for a in range(mask.ndim)])
    return out


def converged_support(rho: np.ndarray, sw: ShrinkWrap) -> np.ndarray:
    """The support of a converged object: its amplitude blurred at the shrink-wrap's last width, over its threshold."""
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(np.abs(rho), sw.sigma_end, mode="wrap")
    return blurred > sw.threshold * blurred.max()


def extent_units(start: np.ndarray) -> list[np.ndarray]:
    """Signed voxel coordinates of ``start``'s grid (FFT order: the particle about the origin) per axis, in units of
    the particle's rms extent along that axis (|start|^2-weighted), as sparse grids."""
    weight = np.abs(start) ** 2
    total = float(weight.sum()) or 1.0
    grids = np.meshgrid(*[np.fft.fftfreq(n, 1 / n).astype(np.float32) for n in start.shape], indexing="ij", sparse=True)
    return [g / np.float32(max(np.sqrt(float((weight * g**2).sum()) / total), 1.0)) for g in grids]


def random_curvature(units: list[np.ndarray], rng, rms_rad: float) -> np.ndarray:
    """A random quadratic phase sum_ab c_ab u_a u_b (``extent_units``; the six c_ab normal, sd ``rms_rad``).

    A warm start's members otherwise share the previous object's slow phase modes, which a scan's data barely
    constrain (a curvature through a thin plate's thickness): they were carried from scan to scan, read as a
    strain energy several times the cold reconstructions', and the members' spread (the error bars) missed them.
    Given their own, the members average that mode down and their spread holds it (BENCHMARKS.md, "Strain
    energy")."""
    phase = np.zeros(np.broadcast_shapes(*[u.shape for u in units]), np.float32)
    for a in range(3):
        for b in range(a, 3):
            phase += np.float32(rng.standard_normal() * rms_rad) * units[a] * units[b]
    return phase


def phasor(phase: np.ndarray) -> np.ndarray:
    """exp(i phase) as complex64, from float32 cos and sin (10x a complex128 exp)."""
    out = np.empty(phase.shape, np.complex64)
    out.real, out.imag = np.cos(phase), np.sin(phase)
    return out
