"""The one definition of the particle, the displacement phase, the wrapped phase step, and the
displacement and strain along q.

Convention (docs/conventions.md): a reconstruction is rho = |rho| exp(-i G.u) (forward FFT exp(-i q.r)),
so the displacement phase is phi = G.u = -arg(rho), read from ``displacement_object(rho)`` = conj(rho)
and nowhere else; u = phi / |G| once the global phase offset and the phase ramp (a shift of the
reconstruction and the reference lattice constant) are removed. The strain eps = du/dz is the mean of the
wrapped forward and backward phase steps along z (axis 0, along q), so a dislocation's 2 pi branch cut
never enters it; an expanded region reads positive. ``particle_fields`` computes all of it once per
object; the defect analysis, the live page's slices and the report use that one result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

YOUNGS_MODULUS_Z_PA = 150e9
#: the particle cuts whose strain energies give the energy's error range (fractions of the maximum amplitude)
ENERGY_THRESHOLDS = (0.10, 0.15, 0.20)


def displacement_object(rho, xp=np):
    """conj(rho): the object whose phase is the displacement phase G.u = -arg(rho) (docs/conventions.md).

    Every phase the analysis reads (strain, displacement, windings, boundary steps, domains, the page's
    slices, the report) is read from it; the functions below that take a complex array expect it.
    """
    return xp.conj(rho)


def wrapped_step(a, b, xp=np):
    """Wrapped phase change arg(b) - arg(a), in (-pi, pi], of two complex arrays; 0 where either is 0 (its
    phase is undefined: atan2 of signed zeros would give +-pi, and conjugating the object flips which)."""
    p = b * xp.conj(a)
    re = xp.real(p)
    return xp.atan2(xp.imag(p), xp.where(p == 0, xp.ones_like(re), re))


def neighbour_steps(rho, axis: int, xp=np):
    """Wrapped phase step from every voxel to its next neighbour along ``axis`` (one shorter along it)."""
    lo = [slice(None)] * rho.ndim
    hi = [slice(None)] * rho.ndim
    lo[axis], hi[axis] = slice(None, -1), slice(1, None)
    return wrapped_step(rho[tuple(lo)], rho[tuple(hi)], xp=xp)


def particle_support(amplitude: np.ndarray, *, threshold: float = 0.2, sigma: float = 1.0) -> np.ndarray:
    """The particle: amplitude smoothed by ``sigma`` voxels (fills vortex cores) above ``threshold`` of its
    maximum, holes filled."""
    return _cut(_smoothed(amplitude, sigma), threshold)


def _smoothed(amplitude: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    amplitude = np.abs(np.asarray(amplitude)).astype(float)
    if amplitude.ndim != 3:
        raise ValueError(f"amplitude must be 3D (z, y, x), got shape {amplitude.shape}")
    smooth = ndimage.gaussian_filter(amplitude, sigma) if sigma > 0 else amplitude
    if not smooth.max() > 0:
        raise ValueError("amplitude is zero everywhere: no particle to threshold")
    return smooth


def _cut(smooth: np.ndarray, threshold: float) -> np.ndarray:
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    return ndimage.binary_fill_holes(smooth > threshold * smooth.max())


def eroded(support: np.ndarray, voxels: int) -> np.ndarray:
    """``support`` less its outer ``voxels`` (the surface phase of a reconstruction is unreliable)."""
    return ndimage.binary_erosion(support, iterations=voxels) if voxels else np.asarray(support, bool)


def phase_ramp(rho: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean phase gradient (rad per voxel, per axis z, y, x) of ``rho`` inside ``support``, from wrapped
    differences (of the displacement phase when handed ``displacement_object``)."""
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


def remove_ramp(rho: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``rho`` with its phase ramp and mean phase inside ``support`` removed: (flat, ramp, offset)."""
    ramp = phase_ramp(rho, support)
    grids = np.ogrid[tuple(slice(0, n) for n in rho.shape)]
    flat = rho * np.exp(-1j * sum(r * (g - n // 2) for r, g, n in zip(ramp, grids, rho.shape)))
    offset = float(np.angle(np.sum(flat[support])))
    return flat * np.exp(-1j * offset), ramp, offset


def strain_along_q(flat: np.ndarray, support: np.ndarray, *, voxel_nm: float, q_inv_nm: float) -> np.ndarray:
    """eps_zz = (1/|G|) d(phi)/dz at every voxel of ``support`` (NaN elsewhere): the mean of the wrapped
    forward and backward steps along z whose both ends lie in ``support``. ``flat``: the displacement object
    (phase phi = G.u), ramp removed."""
    flat = np.asarray(flat)
    support = np.asarray(support, bool)
    if flat.ndim != 3 or support.shape != flat.shape:
        raise ValueError(f"rho and support must be 3D of one shape, got {flat.shape} and {support.shape}")
    if not (voxel_nm > 0 and q_inv_nm > 0):
        raise ValueError("voxel_nm and q_inv_nm must be positive")
    ok = support[1:] & support[:-1]
    if not ok.any():
        raise ValueError("the support holds no pair of neighbouring voxels along z")
    d = np.where(ok, neighbour_steps(flat, 0), np.nan)
    both = np.full((2,) + flat.shape, np.nan)
    both[0, :-1] = d  # forward step of voxel z
    both[1, 1:] = d  # backward step of voxel z
    count = np.isfinite(both).sum(axis=0)
    out = np.full(flat.shape, np.nan)
    has = (count > 0) & support
    out[has] = np.nansum(both, axis=0)[has] / count[has]
    return out / (q_inv_nm * voxel_nm)


def strain_energy(strain: np.ndarray, *, voxel_nm: float, youngs_modulus_pa: float = YOUNGS_MODULUS_Z_PA) -> dict:
    """E = 1/2 Y_z * integral of eps^2 over the particle (voxels where ``strain`` is not NaN)."""
    inside = np.isfinite(strain)
    voxel_m3 = (voxel_nm * 1e-9) ** 3
    volume = inside.sum() * voxel_m3
    energy = 0.5 * youngs_modulus_pa * float(np.sum(strain[inside] ** 2)) * voxel_m3
    return {"energy_j": energy, "volume_m3": volume,
            "energy_density_j_per_m3": energy / volume if volume else float("nan"),
            "rms_strain": float(np.sqrt(np.mean(strain[inside] ** 2))) if inside.any() else float("nan")}


@dataclass(frozen=True)
class ParticleFields:
    """One object's particle and fields, computed once and handed to every consumer (z along q)."""

    amplitude: np.ndarray  # |rho|
    support: np.ndarray  # the particle at the analysis threshold
    inner: np.ndarray  # ``support`` less its outer ``erosion`` voxels
    flat: np.ndarray  # displacement_object(rho) with the phase ramp and offset (over the widest inner cut)
    # removed: its phase is the displacement phase G.u
    strain: np.ndarray  # eps_zz over the widest inner cut, NaN elsewhere (all NaN when too thin)
    cuts: dict  # threshold -> inner particle cut of ENERGY_THRESHOLDS, for the energy's error range
    ramp_rad_per_voxel: tuple[float, float, float]  # of the displacement phase (-arg(rho)'s ramp)
    offset_rad: float  # of the displacement phase
    strain_error: str | None = None  # why there is no strain (a particle too thin to differentiate)


def particle_fields(rho: np.ndarray, *, voxel_nm: float, q_inv_nm: float, threshold: float = 0.2,
                    erosion: int = 1) -> ParticleFields:
    """The particle at ``threshold`` and its eroded inside, the flattened displacement object and the strain
    along q of a reconstruction ``rho`` = |rho| exp(-i G.u) (docs/conventions.md)."""
    rho = np.asarray(rho)
    if rho.ndim != 3 or not np.iscomplexobj(rho):
        raise ValueError(f"rho must be a complex 3D array, got {rho.dtype} of shape {rho.shape}")
    amplitude = np.abs(rho)
    if not amplitude.max() > 0:
        raise ValueError("the object has no amplitude: no particle to analyse")
    smooth = _smoothed(amplitude)  # once: every cut below thresholds the same smoothed amplitude
    support = _cut(smooth, threshold)
    cuts = {t: eroded(_cut(smooth, t), erosion) for t in sorted({*ENERGY_THRESHOLDS})}
    widest = cuts[min(cuts)] | eroded(support, erosion)
    flat, ramp, offset = remove_ramp(displacement_object(rho), widest if widest.any() else support)
    error = None
    try:
        strain = strain_along_q(flat, widest, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
    except ValueError as exc:
        strain, error = np.full(rho.shape, np.nan), str(exc)
    return ParticleFields(amplitude, support, eroded(support, erosion), flat, strain, cuts,
                          tuple(float(r) for r in ramp), offset, error)


@dataclass(frozen=True)
class Displacement:
    """Unwrapped phase and displacement along q on the object grid; NaN outside ``support``."""

    support: np.ndarray
    phase_rad: np.ndarray  # the displacement phase G.u, unwrapped, offset and ramp removed
    displacement_nm: np.ndarray  # u = phi / |G|
    strain: np.ndarray  # eps_zz = du/dz, as ParticleFields.strain


def displacement_field(fields: ParticleFields, *, q_inv_nm: float) -> Displacement:
    """Unwrap the flattened displacement phase inside the particle (scikit-image's reliability-guided
    unwrapping)."""
    from skimage.restoration import unwrap_phase

    support = fields.support
    wrapped = np.angle(fields.flat)
    unwrapped = np.asarray(unwrap_phase(np.ma.masked_array(wrapped, mask=~support)).filled(np.nan))
    # unwrap_phase fixes the phase up to 2 pi per connected piece: bring its mean back next to 0
    unwrapped -= 2 * np.pi * np.round(np.nanmean(unwrapped) / (2 * np.pi))
    unwrapped[~support] = np.nan
    return Displacement(support, unwrapped, unwrapped / q_inv_nm, np.where(support, fields.strain, np.nan))
