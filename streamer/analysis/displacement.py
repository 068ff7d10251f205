"""Displacement and strain along q from a reconstructed complex image, in the lab frame.

phi = q.u, so u = phi / |q| once the global phase offset and the phase ramp (a shift of the
reconstruction and the reference lattice constant) are removed. The strain eps = du/dz comes from
wrapped phase differences of neighbours, so a dislocation's 2 pi branch cut never enters it; the
unwrapped phase (for display and u) comes from scikit-image's reliability-guided unwrapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from streamer.geometry import OrthogonalGeometry

DEFAULT_SUPPORT_THRESHOLD = 0.10


def amplitude_support(amplitude: np.ndarray, *, threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> np.ndarray:
    """The particle: amplitude above ``threshold`` of its maximum, holes filled."""
    amplitude = np.abs(np.asarray(amplitude))
    if amplitude.ndim != 3:
        raise ValueError(f"amplitude must be 3D (z, y, x), got shape {amplitude.shape}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    peak = amplitude.max()
    if not peak > 0:
        raise ValueError("amplitude is zero everywhere: no particle to threshold")
    return ndimage.binary_fill_holes(amplitude > threshold * peak)


def phase_ramp(rho: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean phase gradient (rad per voxel, per axis z, y, x) inside ``support``, from wrapped differences."""
    ramp = np.zeros(3)
    for ax in range(3):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[ax], b[ax] = slice(None, -1), slice(1, None)
        prod = rho[tuple(b)] * np.conj(rho[tuple(a)])
        inside = support[tuple(a)] & support[tuple(b)]
        if inside.any():
            ramp[ax] = float(np.angle(np.sum(prod[inside] / np.maximum(np.abs(prod[inside]), 1e-30))))
    return ramp


@dataclass(frozen=True)
class Displacement:
    """Fields on the object grid (z along q); NaN outside ``support``."""

    support: np.ndarray  # bool (z, y, x)
    phase_rad: np.ndarray  # unwrapped, offset and ramp removed
    displacement_nm: np.ndarray  # u = phi / |q|
    strain: np.ndarray  # eps_zz = du/dz (dimensionless)
    ramp_rad_per_voxel: tuple[float, float, float]
    offset_rad: float


def displacement_field(rho: np.ndarray, *, geometry: OrthogonalGeometry,
                       support: np.ndarray | None = None,
                       threshold: float = DEFAULT_SUPPORT_THRESHOLD) -> Displacement:
    """Displacement and strain along q of ``rho`` (z, y, x) on ``geometry``'s grid.

    ``support`` defaults to the amplitude above ``threshold`` of its maximum.
    """
    from skimage.restoration import unwrap_phase

    rho = np.asarray(rho)
    if rho.ndim != 3 or tuple(rho.shape) != tuple(geometry.shape_zyx):
        raise ValueError(f"rho must be 3D with the geometry's shape {geometry.shape_zyx}, got {rho.shape}")
    if support is None:
        support = amplitude_support(np.abs(rho), threshold=threshold)
    support = np.asarray(support, bool)
    if support.shape != rho.shape:
        raise ValueError(f"support {support.shape} and rho {rho.shape} differ in shape")
    if not support.any():
        raise ValueError("support is empty")
    ramp = phase_ramp(rho, support)
    grids = np.ogrid[tuple(slice(0, n) for n in rho.shape)]
    flat = rho * np.exp(-1j * sum(r * (g - n // 2) for r, g, n in zip(ramp, grids, rho.shape)))
    offset = float(np.angle(np.sum(flat[support])))
    flat = flat * np.exp(-1j * offset)
    wrapped = np.angle(flat)
    unwrapped = np.asarray(unwrap_phase(np.ma.masked_array(wrapped, mask=~support)).filled(np.nan))
    # unwrap_phase fixes the phase up to 2 pi per connected piece: bring its mean back next to 0
    unwrapped -= 2 * np.pi * np.round(np.nanmean(unwrapped) / (2 * np.pi))
    unwrapped[~support] = np.nan
    q = geometry.q_bragg_inv_nm
    strain = _strain_zz(flat, support) / (q * geometry.voxel_nm)
    return Displacement(support, unwrapped, unwrapped / q, strain, tuple(float(r) for r in ramp), offset)


def _strain_zz(flat: np.ndarray, support: np.ndarray) -> np.ndarray:
    """d(phi)/dz per voxel (rad/voxel): mean of the wrapped forward and backward differences inside."""
    d = np.angle(flat[1:] * np.conj(flat[:-1]))
    ok = support[1:] & support[:-1]
    fwd = np.full(flat.shape, np.nan)
    bwd = np.full(flat.shape, np.nan)
    fwd[:-1] = np.where(ok, d, np.nan)
    bwd[1:] = np.where(ok, d, np.nan)
    both = np.stack([fwd, bwd])
    count = np.isfinite(both).sum(axis=0)
    total = np.nansum(both, axis=0)
    out = np.full(flat.shape, np.nan)
    has = (count > 0) & support
    out[has] = total[has] / count[has]
    return out
