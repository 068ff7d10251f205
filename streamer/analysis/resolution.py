"""Resolution of a reconstruction: the phase-retrieval transfer function (PRTF) in shells of |q|.

PRTF(q) = |F[rho_avg](q)| / sqrt(I(q)), averaged over the measured voxels of a shell: where the
averaged members agree on the phases it stays near 1, where they do not their mean cancels. The
resolution is the half period pi / q_c at the first shell q_c where it falls below 1/e (the
criterion PyNX and the BCDI literature use), in nm, beside the voxel size. Pure array code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PRTF_THRESHOLD = 1 / math.e


@dataclass(frozen=True)
class Resolution:
    """The PRTF curve and the half-period resolution where it first falls below the threshold."""

    q_inv_nm: np.ndarray  # shell centres
    prtf: np.ndarray  # NaN where a shell holds no measured voxel with counts
    resolution_nm: float  # pi / q_c; the finest half period the grid holds when the PRTF never falls
    limited_by_grid: bool  # the PRTF stayed above the threshold to the edge of the measured q
    threshold: float = PRTF_THRESHOLD

    def record(self) -> dict:
        return {"resolution_nm": round(self.resolution_nm, 2), "limited_by_grid": self.limited_by_grid,
                "prtf_threshold": round(self.threshold, 4), "criterion": "PRTF < 1/e, half period pi / q"}


def q_norms(shape: tuple[int, int, int], q_basis_inv_nm: np.ndarray) -> np.ndarray:
    """|q| (nm^-1) of every voxel of a centred (index n // 2 = 0) grid whose index steps are the columns of
    ``q_basis_inv_nm`` (a diagonal for an orthogonal grid, the sheared basis of a detector grid)."""
    basis = np.asarray(q_basis_inv_nm, float)
    if basis.shape != (3, 3):
        raise ValueError(f"q basis must be 3x3, got {basis.shape}")
    idx = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    q = np.einsum("ij,j...->i...", basis, np.stack(idx).astype(float))
    return np.sqrt((q**2).sum(axis=0))


def prtf_resolution(rho: np.ndarray, intensity: np.ndarray, q_basis_inv_nm: np.ndarray, *,
                    mask: np.ndarray | None = None, shells: int | None = None,
                    threshold: float = PRTF_THRESHOLD) -> Resolution:
    """PRTF of ``rho`` (the averaged object, centred, on the grid conjugate to ``intensity``) against the
    measured ``intensity`` (same shape, centred; ``mask`` True = unmeasured, left out)."""
    rho = np.asarray(rho)
    intensity = np.asarray(intensity, float)
    if rho.shape != intensity.shape or rho.ndim != 3:
        raise ValueError(f"object {rho.shape} and intensity {intensity.shape} must be 3D of one shape")
    measured = intensity > 0
    if mask is not None:
        measured &= ~np.asarray(mask, bool)
    if not measured.any():
        raise ValueError("no measured voxel with counts")
    amplitude = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(rho))))
    # the object's scale is free: match the total amplitude to the measured one where both are
    scale = np.sqrt(intensity[measured]).sum() / max(amplitude[measured].sum(), 1e-30)
    ratio = np.where(measured, amplitude * scale / np.sqrt(np.where(measured, intensity, 1.0)), np.nan)
    q = q_norms(rho.shape, q_basis_inv_nm)
    # the largest sphere the grid holds whole: the nearest of its six faces
    q_edge = min(float(np.take(q, i, axis=a).min()) for a in range(3) for i in (0, -1))
    n_shells = shells or max(4, min(rho.shape) // 2)
    edges = np.linspace(0, q_edge, n_shells + 1)
    which = np.digitize(q, edges) - 1
    curve = np.full(n_shells, np.nan)
    for k in range(n_shells):
        sel = (which == k) & measured
        if sel.any():
            curve[k] = float(np.nanmean(ratio[sel]))
    centres = (edges[:-1] + edges[1:]) / 2
    valid = np.isfinite(curve)
    below = np.flatnonzero(valid & (curve < threshold) & (centres > 0))
    if below.size:
        q_c = centres[below[0]]
        return Resolution(centres, curve, math.pi / q_c, False, threshold)
    return Resolution(centres, curve, math.pi / q_edge, True, threshold)
