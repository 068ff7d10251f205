"""The one definition of the particle, the displacement phase, the wrapped phase step, and the
displacement and strain along q.

Convention (docs/conventions.md): a reconstruction is rho = |rho| exp(-i G.u) (forward FFT exp(-i q.r)),
so the displacement phase is phi = G.u = -arg(rho), read from ``displacement_object(rho)`` = conj(rho)
and nowhere else; u = phi / |G| once the global phase offset and the phase ramp (a shift of the
reconstruction and the reference lattice constant) are removed. ``particle_fields`` computes all of it once
per object; the defect analysis, the live page's slices and the report use that one result.

The strain eps = du/dz (z, axis 0, along q; an expanded region reads positive) is read where the phase
can be trusted (issue 19): in the particle's *reliable interior*, its voxels at least ``RELIABLE_AMPLITUDE``
of the bulk amplitude, less the outer ``erosion`` layer and ``FACE_LAYERS`` more at the faces normal to q.
The phase of the surface layers of a
reconstruction is off by tenths of a radian (limited resolution, noisy high-q data), which the derivative
turned into strains of 1e-3 to 2e-2 and a layered red/blue pattern on a strain-free plate, and into
energies that jumped by a factor of 400 between scans of the unchanged particle. The step along z is the
angle of the amplitude-weighted sum of the complex products rho(z + 1) conj(rho(z)) over a Gaussian window
of ``STRAIN_SMOOTHING_VOXELS`` along z (a derivative of Gaussian: a dislocation's 2 pi branch cut never
enters it; the ringing that a surface's phase error sends a few layers in is averaged out). The reference
lattice constant (the phase ramp) is that of the reliable interior. ``strain_energy_estimate`` gives the
partial strain energy of the strain's even part about the particle's centre, with an error bar that holds the
noise; the odd part (an even displacement phase, which one reflection's data fix only at second order and a twin
reverses) is reported apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

YOUNGS_MODULUS_Z_PA = 150e9
#: the particle cuts whose volumes give the energy's volume range (fractions of the maximum amplitude)
ENERGY_THRESHOLDS = (0.10, 0.15, 0.20)
#: the phase is read where the amplitude is at least this fraction of the particle's bulk (median) amplitude
RELIABLE_AMPLITUDE = 0.5
#: standard deviation (voxels along q) of the Gaussian window of the strain's phase steps
STRAIN_SMOOTHING_VOXELS = 2.0
#: layers left out along q at the faces normal to q, besides the outer layer: their phase carries the surface's error
FACE_LAYERS = 1


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


MIN_Z_PAIRS = 50  # neighbours along q the reliable interior keeps, trimming less when it would not


def reliable_interior(amplitude: np.ndarray, support: np.ndarray, erosion: int = 1) -> np.ndarray:
    """The voxels of ``support`` whose phase can be trusted: amplitude at least ``RELIABLE_AMPLITUDE`` of the
    bulk (the median amplitude in ``support``), less the outer ``erosion`` layer of what remains and
    ``FACE_LAYERS`` more along q (z), where a derivative along q reads across the faces normal to q.

    A particle only a few voxels thick along q (a coarse grid) would lose every pair of neighbours along
    z: each trimming is then left out, the last first, so that a strain can still be read."""
    support = np.asarray(support, bool)
    if not support.any():
        return support
    amplitude = np.abs(np.asarray(amplitude))
    bulk = float(np.median(amplitude[support]))
    strong = support & (amplitude >= RELIABLE_AMPLITUDE * bulk)
    inside = eroded(strong, erosion)
    trimmed = inside
    if FACE_LAYERS:
        trimmed = ndimage.binary_erosion(inside, structure=np.ones((3, 1, 1), bool), iterations=FACE_LAYERS)
    for candidate in (trimmed, inside, strong):
        if (candidate[1:] & candidate[:-1]).sum() >= MIN_Z_PAIRS:
            return candidate
    return strong


def strain_along_q(flat: np.ndarray, support: np.ndarray, *, voxel_nm: float, q_inv_nm: float,
                   smoothing_voxels: float | None = None) -> np.ndarray:
    """eps_zz = (1/|G|) d(phi)/dz at every voxel of ``support`` with a neighbour along z in it (NaN elsewhere).
    ``flat``: the displacement object (phase phi = G.u), ramp removed; ``support``: where its phase is
    trusted (``reliable_interior``).

    The step is the angle of the sum of the products flat(j + 1) conj(flat(j)) of the pairs j in ``support``
    along z, weighted by a Gaussian of ``smoothing_voxels`` (default ``STRAIN_SMOOTHING_VOXELS``; 0: the
    forward and backward steps only) about the voxel: amplitude-weighted, blind to 2 pi branch cuts, and it
    averages out the phase noise that a difference amplifies. Where the window is whole a strain varying
    linearly along z comes back exactly; nearer than about 2 ``smoothing_voxels`` to the end of ``support``
    the window leans inwards (a strain gradient there reads closer to the inside's)."""
    flat = np.asarray(flat)
    support = np.asarray(support, bool)
    if flat.ndim != 3 or support.shape != flat.shape:
        raise ValueError(f"rho and support must be 3D of one shape, got {flat.shape} and {support.shape}")
    if not (voxel_nm > 0 and q_inv_nm > 0):
        raise ValueError("voxel_nm and q_inv_nm must be positive")
    sigma = STRAIN_SMOOTHING_VOXELS if smoothing_voxels is None else float(smoothing_voxels)
    if sigma < 0:
        raise ValueError(f"smoothing_voxels must be >= 0, got {sigma}")
    ok = support[1:] & support[:-1]
    if not ok.any():
        raise ValueError("the support holds no pair of neighbouring voxels along z")
    step = np.where(ok, flat[1:] * np.conj(flat[:-1]), 0).astype(complex)
    both = np.zeros(flat.shape, complex)
    both[:-1] += step  # forward step of voxel z
    both[1:] += step  # backward step of voxel z
    if sigma > 0:  # the window is 0 outside the support: it only ever sums trusted steps
        both = (ndimage.gaussian_filter1d(both.real, sigma, axis=0, mode="constant")
                + 1j * ndimage.gaussian_filter1d(both.imag, sigma, axis=0, mode="constant"))
    near = np.zeros(flat.shape, bool)
    near[:-1] |= ok
    near[1:] |= ok
    has = near & support & (both != 0)
    out = np.full(flat.shape, np.nan)
    out[has] = np.angle(both[has])
    return out / (q_inv_nm * voxel_nm)


def strain_energy(strain: np.ndarray, *, voxel_nm: float, youngs_modulus_pa: float = YOUNGS_MODULUS_Z_PA) -> dict:
    """E = 1/2 Y_z * integral of eps^2 over the voxels where ``strain`` is not NaN."""
    inside = np.isfinite(strain)
    voxel_m3 = (voxel_nm * 1e-9) ** 3
    volume = inside.sum() * voxel_m3
    energy = 0.5 * youngs_modulus_pa * float(np.sum(strain[inside] ** 2)) * voxel_m3
    return {"energy_j": energy, "volume_m3": volume,
            "energy_density_j_per_m3": energy / volume if volume else float("nan"),
            "rms_strain": float(np.sqrt(np.mean(strain[inside] ** 2))) if inside.any() else float("nan")}


def strain_noise(strain: np.ndarray) -> float:
    """The strain's noise variance, from the differences of neighbours across the layers (along y and x):
    half their mean square. A strain field smooth over a voxel (any real one, at this resolution) adds
    little to it; the phase noise of a reconstruction is uncorrelated from voxel to voxel across the layers."""
    diffs = [np.diff(strain, axis=ax) for ax in (1, 2)]
    diffs = np.concatenate([d[np.isfinite(d)] for d in diffs])
    return float(np.mean(diffs**2) / 2) if diffs.size else float("nan")


@dataclass(frozen=True)
class ParticleFields:
    """One object's particle and fields, computed once and handed to every consumer (z along q)."""

    amplitude: np.ndarray  # |rho|
    support: np.ndarray  # the particle at the analysis threshold
    inner: np.ndarray  # ``support`` less its outer ``erosion`` voxels
    flat: np.ndarray  # displacement_object(rho) with the phase ramp and offset (over the widest inner cut)
    # removed: its phase is the displacement phase G.u
    strain: np.ndarray  # eps_zz over the widest inner cut, NaN elsewhere (all NaN when too thin)
    cuts: dict  # threshold -> inner particle cut of ENERGY_THRESHOLDS
    ramp_rad_per_voxel: tuple[float, float, float]  # of the displacement phase (-arg(rho)'s ramp)
    offset_rad: float  # of the displacement phase
    strain_error: str | None = None  # why there is no strain (a particle too thin to differentiate)
    reliable: np.ndarray | None = None  # the reliable interior, where ``strain`` is read (``reliable_interior``)
    volumes_voxels: dict | None = None  # threshold -> voxels of the particle cut of ENERGY_THRESHOLDS (not eroded)
    erosion: int = 1  # the outer layers ``inner`` and ``reliable`` leave out


def particle_fields(rho: np.ndarray, *, voxel_nm: float, q_inv_nm: float, threshold: float = 0.2,
                    erosion: int = 1) -> ParticleFields:
    """The particle at ``threshold`` and its eroded inside, the flattened displacement object and the strain
    along q of a reconstruction ``rho`` = |rho| exp(-i G.u) (docs/conventions.md); the strain and the
    reference lattice (the ramp) are read in the reliable interior (``reliable_interior``)."""
    rho = np.asarray(rho)
    if rho.ndim != 3 or not np.iscomplexobj(rho):
        raise ValueError(f"rho must be a complex 3D array, got {rho.dtype} of shape {rho.shape}")
    amplitude = np.abs(rho)
    if not amplitude.max() > 0:
        raise ValueError("the object has no amplitude: no particle to analyse")
    smooth = _smoothed(amplitude)  # once: every cut below thresholds the same smoothed amplitude
    support = _cut(smooth, threshold)
    whole = {t: _cut(smooth, t) for t in sorted({*ENERGY_THRESHOLDS})}
    cuts = {t: eroded(c, erosion) for t, c in whole.items()}
    reliable = reliable_interior(amplitude, support, erosion)
    obj = displacement_object(rho)
    flat, ramp, offset = remove_ramp(obj, reliable if reliable.any() else support)
    error = None
    try:
        strain = strain_along_q(flat, reliable, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
    except ValueError as exc:
        strain, error = np.full(rho.shape, np.nan), str(exc)
    return ParticleFields(amplitude, support, eroded(support, erosion), flat, strain, cuts,
                          tuple(float(r) for r in ramp), offset, error, reliable,
                          {t: int(c.sum()) for t, c in whole.items()}, erosion)


def strain_energy_estimate(particle: ParticleFields, *, voxel_nm: float, q_inv_nm: float,
                           members: np.ndarray | None = None, replicas: np.ndarray | None = None,
                           youngs_modulus_pa: float = YOUNGS_MODULUS_Z_PA) -> dict:
    """The partial strain energy along q, E = 1/2 Y_z * integral of eps^2 over the particle, of the strain's even
    part about the particle's centre, and its error bar.

    The energy density is the mean of the even strain's square (``even_and_odd_strain``) over the reliable interior
    (where the strain is read); the odd part, which one reflection's data fix only at second order and a twin
    reverses, is reported apart (``odd_energy_j``; the strain's linear variation along q is part of it, its energy
    ``gradient_energy_j``). The volume is the particle's, cut at the first of ``ENERGY_THRESHOLDS`` (10% of the
    maximum amplitude). The error adds in quadrature: the energy the counting noise alone gives (it is part of the
    energy: a strain-free particle's is all noise), with ``replicas`` (R >= 2 noise replicas aligned with the object,
    streamer/phasing/replicas.py) the mean energy of their even strain's difference from the object's, else the
    neighbours' (``strain_noise``: a third of it where the noise is smooth over the resolution); with ``replicas``
    the spread of their energies (what the noise does to the energy from scan to scan; a strain-free particle's it
    overstates by up to sqrt(3), each replica carrying its object's noise too); with ``members`` (K >= 2 aligned
    members whose mean is the object), the jackknife error over them (the means of K - 1 members: it holds the slow
    phase errors a reconstruction makes, which the noise misses); and half the spread of the energies over the
    particle cuts of ``ENERGY_THRESHOLDS``. Returns ``energy_j``, ``energy_error_j``, ``energy_j_range`` (energy -+
    error, not below 0), ``noise_energy_j``, ``noise_scatter_j`` (NaN without replicas), ``members_error_j`` (NaN
    without members), ``energy_density_j_per_m3``, ``odd_energy_j``, ``gradient_energy_j``,
    ``strain_gradient_per_nm`` (along q), ``rms_strain`` (the whole strain's), ``volume_m3``, ``strain_voxels``.
    """
    strain = particle.strain
    inside = np.isfinite(strain)
    voxel_m3 = (voxel_nm * 1e-9) ** 3
    nan = float("nan")
    if not inside.any():
        return {"energy_j": nan, "energy_error_j": nan, "energy_j_range": (nan, nan), "noise_energy_j": nan,
                "noise_scatter_j": nan, "members_error_j": nan, "energy_density_j_per_m3": nan, "odd_energy_j": nan,
                "gradient_energy_j": nan, "strain_gradient_per_nm": nan, "rms_strain": nan, "volume_m3": nan,
                "strain_voxels": 0}
    rest, slope = beyond_gradient_along_q(strain)
    whole_square = float(np.mean(strain[inside] ** 2))
    even, odd = even_and_odd_strain(particle, np.conj(particle.flat), voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
    mean_square = _mean_square(even)
    volumes = particle.volumes_voxels or {min(ENERGY_THRESHOLDS): int(particle.support.sum())}
    volume = volumes[min(volumes)] * voxel_m3
    scale = 0.5 * youngs_modulus_pa * volume
    energy = scale * mean_square
    noise, scatter = scale * min(strain_noise(even), mean_square), nan
    if replicas is not None and len(replicas) >= 2 and particle.reliable is not None:
        noise, scatter = _replicas_noise(np.asarray(replicas), particle, even, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm,
                                         scale=scale)
    by_cut = [energy * v / volumes[min(volumes)] for v in volumes.values()]
    jackknife = nan
    if members is not None and len(members) >= 2 and particle.reliable is not None:
        jackknife = _members_jackknife(np.asarray(members), particle, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm,
                                       scale=scale)
    terms = [t for t in (noise, scatter, jackknife, (max(by_cut) - min(by_cut)) / 2) if np.isfinite(t)]
    error = float(np.sqrt(np.sum(np.square(terms))))
    return {"energy_j": energy, "energy_error_j": error, "energy_j_range": (max(0.0, energy - error), energy + error),
            "noise_energy_j": noise, "noise_scatter_j": scatter, "members_error_j": jackknife,
            "energy_density_j_per_m3": energy / volume,
            "odd_energy_j": scale * _mean_square(odd),
            "gradient_energy_j": scale * max(whole_square - float(np.mean(rest**2)), 0.0),
            "strain_gradient_per_nm": slope / voxel_nm, "rms_strain": float(np.sqrt(whole_square)),
            "volume_m3": volume, "strain_voxels": int(inside.sum())}


def _particle_box(support: np.ndarray, margin: int = 3) -> tuple[slice, ...]:
    """The bounding box of ``support`` grown by ``margin`` voxels (within the grid)."""
    where = np.nonzero(support)
    if not where[0].size:
        return tuple(slice(None) for _ in support.shape)
    return tuple(slice(max(int(w.min()) - margin, 0), min(int(w.max()) + margin + 1, n))
                 for w, n in zip(where, support.shape))


def _mean_square(a: np.ndarray) -> float:
    finite = a[np.isfinite(a)]
    return float(np.mean(finite**2)) if finite.size else float("nan")


def even_and_odd_strain(particle: ParticleFields, rho: np.ndarray, *, voxel_nm: float,
                        q_inv_nm: float) -> tuple[np.ndarray, np.ndarray]:
    """The strain along q of ``rho`` (the particle's object, a member, a mean of members; ``strain_as_read``) split
    about the particle's centre into its even part, (eps(r) + eps(-r)) / 2, and its odd part, (eps(r) - eps(-r)) / 2,
    where both r and -r are read (NaN elsewhere; the whole strain as even where no voxel pairs).

    The mirror eps(-r) is the strain of rho's twin, conj(rho(-r)), registered onto rho: the centre is where the
    particle best overlaps its own inversion. About a centrosymmetric particle the intensity fixes the odd part of
    the displacement phase (the even strain) at first order and the even phase (the odd strain) only at second: the
    twin reverses the odd strain, a member can hold it half reversed (twin stagnation), and an average keeps it as
    the members' twins happen to split (BENCHMARKS.md, "The even strain")."""
    from streamer.phasing.alignment import register, twin_image

    box = _particle_box(particle.support)  # the particle and a margin of zeros: all of it is read there
    inside = replace(particle, support=particle.support[box], reliable=particle.reliable[box])
    rho = np.asarray(rho)[box]
    eps = strain_as_read(inside, rho, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
    mirror = register(twin_image(rho), rho, subvoxel=True, twin=False).aligned
    mirrored = strain_as_read(inside, mirror, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
    both = np.isfinite(eps) & np.isfinite(mirrored)
    even, odd = (eps, np.full(eps.shape, np.nan)) if not both.any() else (
        np.where(both, (eps + mirrored) / 2, np.nan), np.where(both, (eps - mirrored) / 2, np.nan))
    out = np.full((2,) + particle.support.shape, np.nan)
    out[(slice(None),) + box] = even, odd
    return out[0], out[1]


def beyond_gradient_along_q(strain: np.ndarray) -> tuple[np.ndarray, float]:
    """The finite values of ``strain`` less their least-squares linear variation along q (z, about their mean
    position), and its slope (per voxel). That variation, a displacement phase quadratic along q, is even about
    the particle's centre, where the data of one reflection fix a phase only at second order, and is resolved
    worst (the rocking direction): the members of one scan of a strain-free plate disagree on it in sign, and
    it made the outliers of the strain-free control's energy (BENCHMARKS.md, "A gradient along q")."""
    inside = np.isfinite(strain)
    values = strain[inside]
    z = np.nonzero(inside)[0].astype(float)
    z -= z.mean()
    norm = float(np.sum(z * z))
    slope = float(np.sum(z * values) / norm) if norm > 0 else 0.0
    return values - slope * z, slope


def strain_as_read(particle: ParticleFields, rho: np.ndarray, *, voxel_nm: float, q_inv_nm: float) -> np.ndarray:
    """The strain along q of another object on ``particle``'s grid (a member, a mean of members), read as the particle's
    object is: where ``particle`` trusts its phase and ``rho``'s own is trusted too (its ``reliable_interior``; all of
    ``particle``'s reliable interior when that leaves no pair along q), against its own reference lattice."""
    reliable = particle.reliable
    trusted = reliable & reliable_interior(np.abs(rho), particle.support, particle.erosion)
    if not (trusted[1:] & trusted[:-1]).any():
        trusted = reliable
    flat, _, _ = remove_ramp(displacement_object(rho), trusted)
    return strain_along_q(flat, trusted, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)


def _replicas_noise(replicas: np.ndarray, particle: ParticleFields, even: np.ndarray, *, voxel_nm: float,
                    q_inv_nm: float, scale: float) -> tuple[float, float]:
    """(noise energy, spread): the mean of ``scale`` * the mean square of each replica's even strain less the
    object's ``even`` (read as the object is, ``even_and_odd_strain``), and the standard deviation of ``scale`` * the
    mean square of the replicas' even strains."""
    if replicas.ndim != 4 or replicas.shape[1:] != particle.support.shape:
        raise ValueError(f"replicas must be (R, z, y, x) like the object, got {replicas.shape}")
    differences, energies = [], []
    for r in replicas:
        own, _ = even_and_odd_strain(particle, r, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
        differences.append(scale * _mean_square(own - even))
        energies.append(scale * _mean_square(own))
    return float(np.nanmean(differences)), float(np.nanstd(energies, ddof=1))


def _members_jackknife(members: np.ndarray, particle: ParticleFields, *, voxel_nm: float, q_inv_nm: float,
                       scale: float) -> float:
    """Jackknife standard error of ``scale`` * the mean square of the even strain of the members' mean, from the K
    means of K - 1.

    Each mean of K - 1 is read where the object's phase is trusted and its own is too (its own ``reliable_interior``),
    as the estimator reads the object: on the lab grid the object keeps its amplitude apart from its phase
    (``streamer.analysis.scan.to_lab``), so where the members disagree (beside their dislocation cores) a mean of
    K - 1 can cancel where the object is whole, and its noise read as strain widened a live bar 300-fold."""
    k = len(members)
    reliable = particle.reliable
    if members.ndim != 4 or members.shape[1:] != reliable.shape:
        raise ValueError(f"members must be (K, z, y, x) like the object, got {members.shape}")
    total = members.sum(axis=0)
    values = []
    for m in members:
        even, _ = even_and_odd_strain(particle, (total - m) / (k - 1), voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
        values.append(scale * _mean_square(even))
    values = np.asarray(values)
    return float(np.sqrt((k - 1) / k * np.sum((values - values.mean()) ** 2)))


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
