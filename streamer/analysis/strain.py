"""Strain along q and the partial strain energy along [002], from a reconstructed complex image.

The phase is phi = q.u, so eps_zz = (1/|q|) d(phi)/dz. The derivative is taken from the wrapped
phase difference of neighbouring voxels (arg(rho(z+1) conj(rho(z)))), which needs no unwrapping
and so is not smeared across a dislocation. The mean of d(phi)/dz over the particle is removed:
it is the phase ramp (the reference lattice constant), not strain.
"""

from __future__ import annotations

import numpy as np

YOUNGS_MODULUS_Z_PA = 150e9


def strain_along_q(rho: np.ndarray, *, support: np.ndarray, voxel_nm: float, q_inv_nm: float) -> np.ndarray:
    """eps_zz (z = axis 0, along q) at each voxel pair inside ``support``; NaN elsewhere.

    Returns an array of shape (nz - 1, ny, nx): the strain between voxels z and z + 1.
    """
    rho = np.asarray(rho)
    support = np.asarray(support, bool)
    if rho.ndim != 3 or support.shape != rho.shape:
        raise ValueError(f"rho and support must be 3D of one shape, got {rho.shape} and {support.shape}")
    if not (voxel_nm > 0 and q_inv_nm > 0):
        raise ValueError("voxel_nm and q_inv_nm must be positive")
    dphi = np.angle(rho[1:] * np.conj(rho[:-1]))
    inside = support[1:] & support[:-1]
    if not inside.any():
        raise ValueError("the support holds no pair of neighbouring voxels along z")
    dphi = dphi - dphi[inside].mean()
    strain = dphi / (q_inv_nm * voxel_nm)
    return np.where(inside, strain, np.nan)


def strain_energy(strain: np.ndarray, *, voxel_nm: float, youngs_modulus_pa: float = YOUNGS_MODULUS_Z_PA) -> dict:
    """E = 1/2 Y_z * integral of eps^2 over the particle (voxels where ``strain`` is not NaN)."""
    inside = np.isfinite(strain)
    voxel_m3 = (voxel_nm * 1e-9) ** 3
    volume = inside.sum() * voxel_m3
    energy = 0.5 * youngs_modulus_pa * float(np.sum(strain[inside] ** 2)) * voxel_m3
    return {"energy_j": energy, "volume_m3": volume,
            "energy_density_j_per_m3": energy / volume if volume else float("nan"),
            "rms_strain": float(np.sqrt(np.mean(strain[inside] ** 2))) if inside.any() else float("nan")}
