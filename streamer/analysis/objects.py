"""One reconstructed object's analysis: vortex lines, domain boundaries and domains, pairs, strain.

Pure array-in, array-out. The particle and its fields (``ParticleFields``) are computed once and
handed to every step. Objects are reconstructions, rho = |rho| exp(-i G.u) (docs/conventions.md): every
phase below is read from ``displacement_object(rho)``, whose phase is the displacement phase G.u.
"""

from __future__ import annotations

import math

import numpy as np

from streamer.analysis.boundaries import (
    find_domain_boundaries,
    reproduced_boundaries,
    segment_domains,
)
from streamer.analysis.config import AnalysisConfig
from streamer.analysis.defects import find_vortex_lines, reproduced_lines, tunnels_filled
from streamer.analysis.detections import (
    Boundary,
    DislocationPair,
    Domain,
    ObjectAnalysis,
    StrainSummary,
    Vortex,
)
from streamer.analysis.displacement import (
    ENERGY_THRESHOLDS,
    ParticleFields,
    displacement_object,
    eroded,
    particle_fields,
    strain_energy_estimate,
)
from streamer.analysis.mechanics import pair_mechanics


def _rounded(values, digits: int = 2) -> tuple:
    return tuple(np.round(np.asarray(values, float), digits).tolist())


def _nm(pos_vox, geometry) -> tuple:
    centre = np.array([n // 2 for n in geometry.shape_zyx], float)
    return _rounded((np.asarray(pos_vox) - centre) * geometry.voxel_nm)


def fields_of(rho: np.ndarray, geometry, config: AnalysisConfig | None = None) -> ParticleFields:
    """The object's particle and fields at the analysis' threshold and erosion."""
    config = config or AnalysisConfig()
    return particle_fields(rho, voxel_nm=geometry.voxel_nm, q_inv_nm=geometry.q_bragg_inv_nm,
                           threshold=config.support_threshold, erosion=config.surface_erosion_voxels)


def analyze_object(rho: np.ndarray, *, geometry, xp, config: AnalysisConfig | None = None,
                   members: np.ndarray | None = None, particle: ParticleFields | None = None,
                   replicas: np.ndarray | None = None) -> ObjectAnalysis:
    """Defects, pairs and strain of a reconstructed object (z, y, x), rho = |rho| exp(-i G.u): windings,
    boundary steps and domain offsets are those of the displacement phase G.u = -arg(rho).

    ``members`` (K, z, y, x), aligned members of the reconstruction population: a vortex line is kept
    only when at least ``config.member_min_fraction`` of them show it too. ``particle``: the object's
    fields (``fields_of``), when the caller has them already.
    """
    config = config or AnalysisConfig()
    rho = np.asarray(rho)
    if tuple(rho.shape) != tuple(geometry.shape_zyx):
        raise ValueError(f"object shape {rho.shape} does not match geometry {geometry.shape_zyx}")
    particle = particle or fields_of(rho, geometry, config)
    support, inner = particle.support, particle.inner
    line_mask = tunnels_filled(support)  # a line's core may cut a tunnel through the support
    line_inner = inner if np.array_equal(line_mask, support) else eroded(line_mask, config.surface_erosion_voxels)

    def lines_of(obj):
        return find_vortex_lines(xp.asarray(obj), xp=xp, mask=line_mask, min_length=config.vortex_min_length,
                                 erosion=config.surface_erosion_voxels, inner=line_inner)

    obj = displacement_object(rho)  # the one place the analysis of an object turns to the displacement phase
    lines = lines_of(obj)
    if members is not None and len(members):
        members = np.asarray(members)
        if members.ndim != 4 or members.shape[1:] != rho.shape:
            raise ValueError(f"members must be (K, z, y, x) with the object's shape, got {members.shape}")
        lines = reproduced_lines(lines, [lines_of(displacement_object(m)) for m in members],
                                 radius_voxels=config.member_match_radius_voxels,
                                 min_fraction=config.member_min_fraction)
    vortices = [Vortex(
        position=_rounded(line.position), position_nm=_nm(line.position, geometry), winding=int(line.winding),
        direction=_rounded(line.direction, 3), type=line.kind, length_voxels=int(line.length),
        confidence=round(line.confidence, 3), length_nm=round(line.length * geometry.voxel_nm, 1),
        closed=bool(line.closed), ends_on_surface=bool(line.ends_on_surface),
        points=tuple(tuple(p) for p in np.round(line.points, 2).tolist()),
        reproduced_fraction=None if line.reproduced_fraction is None else round(line.reproduced_fraction, 3),
    ) for line in lines]
    surface = surface_mask(particle.amplitude, support)
    vortices = [_with_surface_distance(v, surface, geometry.voxel_nm) for v in vortices]
    found_b = find_domain_boundaries(obj, mask=support, jump_rad=config.boundary_jump_rad,
                                     min_area_fraction=config.boundary_min_area_fraction,
                                     min_coherence=config.boundary_min_coherence,
                                     min_side_fraction=config.boundary_min_domain_fraction, inner=inner)
    if members is not None and len(members) and found_b:
        found_b = reproduced_boundaries(found_b, [displacement_object(m) for m in members], inner,
                                        jump_rad=config.boundary_jump_rad, min_fraction=config.member_min_fraction)
    labels, found = segment_domains(obj, mask=support, inner=inner, boundaries=found_b)
    total = max(1, sum(d.volume_voxels for d in found))
    domains = [Domain(_rounded(d.centroid), _nm(d.centroid, geometry), round(d.volume_voxels / total, 3),
                      round(d.phase_offset_rad, 3), round(d.phase_offset_rad / geometry.q_bragg_inv_nm, 4))
               for d in found]
    boundaries, planes = [], []
    for b in found_b:
        position = _rounded(b.position)
        normal = _rounded(b.normal, 3)
        sides = tuple(_domain_beside(labels, position, side * np.asarray(normal)) for side in (-1, 1))
        # a boundary separates two domains of the particle: a sheet of steps with the surface (or the same
        # domain) on one side is a layer thinner than the resolution, a reconstruction artefact
        if None in sides or sides[0] == sides[1]:
            continue
        planes.append(b)
        boundaries.append(Boundary(position, _nm(b.position, geometry), normal, round(b.phase_step_rad, 3),
                                   round(b.angle_to_layers_deg, 1), b.area_voxels, round(b.coherence, 3),
                                   round(abs(b.phase_step_rad) / geometry.q_bragg_inv_nm, 4), sides))
    vortices = [v for v in vortices if not in_antiphase_plane(v, planes, config)]
    return ObjectAnalysis(tuple(vortices), tuple(boundaries),
                          tuple(dislocation_pairs(vortices, support, geometry.voxel_nm)),
                          strain_summary(particle, geometry.voxel_nm, config.surface_erosion_voxels,
                                         q_inv_nm=geometry.q_bragg_inv_nm, members=members, replicas=replicas),
                          tuple(domains), int(support.sum()))


def in_antiphase_plane(vortex: Vortex, planes, config: AnalysisConfig, share: float = 0.8) -> bool:
    """Whether most of ``vortex``'s points (``share``) lie within ``config.antiphase_band_voxels`` of one of the
    boundary ``planes`` whose step is pi (within ``config.antiphase_tolerance_rad``): across such a plane the phase
    changes by +-pi, whose sign the wrapped steps pick by noise, so the plaquettes straddling it wind at random.
    A line that crosses the plane keeps most of its points away from it and stays."""
    points = np.asarray(vortex.points, float)
    for plane in planes:
        if abs(abs(plane.phase_step_rad) - math.pi) > config.antiphase_tolerance_rad:
            continue
        if np.mean(np.abs(plane.offset(points)) <= config.antiphase_band_voxels) >= share:
            return True
    return False


def _domain_beside(labels: np.ndarray, position, direction, first: int = 3, last: int = 8) -> int | None:
    """The domain met walking from a boundary's ``position`` along ``direction``, ``first`` to ``last`` voxels away
    (a pi step's blurred amplitude opens a gap in the support along the plane), None when none is met."""
    for step in range(first, last + 1):
        found = _domain_at(labels, np.add(position, step * np.asarray(direction)))
        if found is not None:
            return found
    return None


def _domain_at(labels: np.ndarray, point) -> int | None:
    """Index into the domain list of the domain at ``point`` (voxel coordinates), None on a wall or outside."""
    idx = tuple(int(v) for v in np.clip(np.round(point), 0, np.array(labels.shape) - 1))
    return int(labels[idx]) - 1 if labels[idx] > 0 else None


def strain_summary(particle: ParticleFields, voxel_nm: float, erosion: int, *, q_inv_nm: float,
                   members: np.ndarray | None = None, replicas: np.ndarray | None = None) -> StrainSummary:
    """The partial strain energy and its error (``strain_energy_estimate``: the reliable interior's density of the
    even strain over the particle's volume; noise, its replicas, members and particle cuts in the error), and the
    rms strain."""
    if particle.strain_error is not None:
        return StrainSummary(error=particle.strain_error)
    e = strain_energy_estimate(particle, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm, members=members, replicas=replicas)
    return StrainSummary(float(f"{e['energy_j']:.4g}"), tuple(float(f"{v:.4g}") for v in e["energy_j_range"]),
                         float(f"{e['energy_density_j_per_m3']:.4g}"), float(f"{e['rms_strain']:.4g}"),
                         tuple(ENERGY_THRESHOLDS), erosion,
                         gradient_energy_j=float(f"{e['gradient_energy_j']:.4g}"),
                         odd_energy_j=float(f"{e['odd_energy_j']:.4g}"),
                         noise_energy_j=float(f"{e['noise_energy_j']:.4g}"))


def surface_mask(amplitude: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The particle as far as its surface: the amplitude (smoothed by one voxel) above half its median inside
    ``support``. A reconstruction's surface is blurred by its resolution, and the support, cut at a fraction of
    the maximum, reaches past the true surface by a good part of a resolution element (most along a coarse
    rocking direction); half the particle's own amplitude level sits where a blurred uniform edge was."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(np.abs(amplitude).astype(float), 1.0)
    inside = smooth[np.asarray(support, bool)]
    if not inside.size:
        return np.asarray(support, bool)
    return ndimage.binary_fill_holes(smooth > 0.5 * float(np.median(inside))) & np.asarray(support, bool)


def surface_distance_nm(position, direction, support: np.ndarray, voxel_nm: float) -> float:
    """Distance from a line to the particle surface (``support``: e.g. ``surface_mask``) within the plane
    perpendicular to the line (for a screw line along z: to the plate's edge, not to its faces where the line
    ends); the line's own core, a hole in that plane, is filled first."""
    from scipy import ndimage

    axis = int(np.argmax(np.abs(direction)))
    pos = np.clip(np.round(position).astype(int), 0, np.array(support.shape) - 1)
    plane = ndimage.binary_fill_holes(np.take(support, pos[axis], axis=axis))
    depth = ndimage.distance_transform_edt(plane)
    in_plane = tuple(int(p) for k, p in enumerate(pos) if k != axis)
    return float(depth[in_plane] * voxel_nm)


def _with_surface_distance(v: Vortex, surface: np.ndarray, voxel_nm: float) -> Vortex:
    from dataclasses import replace

    return replace(v, surface_distance_nm=round(surface_distance_nm(v.position, v.direction, surface, voxel_nm), 1))


def dislocation_pairs(vortices: list[Vortex], support: np.ndarray, voxel_nm: float) -> list[DislocationPair]:
    """Pair screw lines of opposite winding, nearest first, with the mechanics estimates beside each pair.

    The estimates are screw-pair formulas (docs/mechanics.md), so edge and mixed lines are not paired. The
    surface distance is that of the pair's line nearer to the particle surface.
    """
    candidates = sorted(
        (float(np.linalg.norm(np.subtract(a.position_nm, b.position_nm))), i, j)
        for i, a in enumerate(vortices) for j, b in enumerate(vortices)
        if i < j and a.winding == -b.winding and a.type == b.type == "screw"
    )
    used, pairs = set(), []
    for separation_nm, i, j in candidates:
        if i in used or j in used or separation_nm * 1e-9 <= 5e-9:
            continue
        used |= {i, j}
        surface_nm = min(v.surface_distance_nm if np.isfinite(v.surface_distance_nm)
                         else surface_distance_nm(v.position, v.direction, support, voxel_nm)
                         for v in (vortices[i], vortices[j]))
        mech = pair_mechanics(separation_nm * 1e-9, surface_distance_m=surface_nm * 1e-9 if surface_nm > 0 else None)
        pairs.append(DislocationPair((i, j), round(surface_nm, 1), mech))
    return pairs
