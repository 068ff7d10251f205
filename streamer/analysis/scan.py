"""One scan's analysis: peak metrics, phase retrieval, alignment to the previous scan, defects.

Pure array-in, array-out: no sockets, files or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamer.analysis.config import AnalysisConfig
from streamer.analysis.defects import (
    find_domain_boundaries,
    find_vortex_lines,
    particle_mask,
    reproduced_lines,
    segment_domains,
)
from streamer.analysis.mechanics import pair_mechanics
from streamer.analysis.peak import peak_metrics
from streamer.analysis.strain import strain_along_q, strain_energy
from streamer.geometry import OrthogonalGeometry
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.alignment import follow, register


@dataclass
class ScanAnalysis:
    peak: dict
    rho: np.ndarray | None = None
    vortices: list[dict] = field(default_factory=list)
    domain_boundaries: list[dict] = field(default_factory=list)
    phasing: dict = field(default_factory=dict)
    dislocation_pairs: list[dict] = field(default_factory=list)
    strain: dict = field(default_factory=dict)
    domains: list[dict] = field(default_factory=list)
    errors: dict = field(default_factory=dict)  # per-voxel amplitude_error, phase_error of the averaged members


def _nm(pos_vox, geometry: OrthogonalGeometry) -> list[float]:
    centre = np.array([n // 2 for n in geometry.shape_zyx], float)
    return ((np.asarray(pos_vox) - centre) * geometry.voxel_nm).round(2).tolist()


def analyze_scan(
    intensity: np.ndarray,
    *,
    geometry: OrthogonalGeometry,
    xp,
    phasing: PhasingConfig | None = None,
    config: AnalysisConfig | None = None,
    previous_rho: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    rng=None,
    peak: dict | None = None,
    reconstructor=reconstruct,
) -> ScanAnalysis:
    """Analyse a scan's intensity in lab order (q_z, q_y, q_x); ``mask`` True = unmeasured.

    ``peak`` passes metrics already measured on this intensity, so they are not computed twice.
    ``reconstructor`` has the signature of ``streamer.phasing.reconstruct`` (e.g. a cluster's).
    """
    phasing = phasing or PhasingConfig()
    config = config or AnalysisConfig()
    if tuple(intensity.shape) != geometry.shape_zyx:
        raise ValueError(f"intensity shape {intensity.shape} does not match geometry {geometry.shape_zyx}")
    if peak is None:
        peak = peak_metrics(intensity, pixel_inv_nm=tuple(geometry.dq_inv_nm(a) for a in range(3)))
    result = reconstructor(intensity, xp=xp, config=phasing, rng=rng, mask=mask, start=previous_rho)
    rho = result.rho
    members = result.members
    errors = {k: v for k, v in (("amplitude_error", result.amplitude_error), ("phase_error", result.phase_error))
              if v is not None}
    info = {"recipe": result.recipe, "iterations": result.iterations, "population": len(result.chi_square),
            "chi_square": float(result.chi_square[result.best]), "warm_started": result.warm_started,
            "generations": result.generations, "averaged": 0 if members is None else len(members)}
    if result.phase_error is not None and result.support.any():
        info["median_phase_error_rad"] = round(float(np.median(result.phase_error[result.support])), 4)
    if previous_rho is not None and previous_rho.shape == rho.shape:
        reg = register(rho, previous_rho)
        rho = reg.aligned
        if members is not None:  # the same transformation, so the members stay aligned with rho
            members = follow(members, reg, axes=(1, 2, 3))
        errors = {k: follow(v, reg) for k, v in errors.items()}
        info["twin_flipped"] = reg.twin
        info["correlation_to_previous"] = round(reg.correlation, 4)
    found = analyze_object(rho, geometry=geometry, xp=xp, config=config,
                           members=members if members is not None and len(members) > 1 else None)
    info["support_voxels"] = found.pop("support_voxels")
    return ScanAnalysis(peak, rho, found["vortices"], found["domain_boundaries"], info,
                        found["dislocation_pairs"], found["strain"], found["domains"], errors)


def analyze_object(rho: np.ndarray, *, geometry: OrthogonalGeometry, xp, config: AnalysisConfig | None = None,
                   members: np.ndarray | None = None) -> dict:
    """Defects, pairs and strain of a reconstructed object (z, y, x): the event fields of one scan.

    ``members`` (K, z, y, x), aligned members of the reconstruction population: a vortex line
    is kept only when at least ``config.member_min_fraction`` of them show it too.
    """
    config = config or AnalysisConfig()
    rho = np.asarray(rho)
    if tuple(rho.shape) != tuple(geometry.shape_zyx):
        raise ValueError(f"object shape {rho.shape} does not match geometry {geometry.shape_zyx}")
    support = particle_mask(np.abs(rho), threshold=config.support_threshold)
    if not support.any():
        raise ValueError("the object has no amplitude: no particle to analyse")

    def lines_of(obj):
        return find_vortex_lines(xp.asarray(obj), xp=xp, mask=support, min_length=config.vortex_min_length,
                                 erosion=config.surface_erosion_voxels)

    lines = lines_of(rho)
    if members is not None and len(members):
        members = np.asarray(members)
        if members.ndim != 4 or members.shape[1:] != rho.shape:
            raise ValueError(f"members must be (K, z, y, x) with the object's shape, got {members.shape}")
        lines = reproduced_lines(lines, [lines_of(m) for m in members],
                                 radius_voxels=config.member_match_radius_voxels,
                                 min_fraction=config.member_min_fraction)
    vortices = [
        {
            "position": np.round(line.position, 2).tolist(),
            "position_nm": _nm(line.position, geometry),
            "winding": int(line.winding),
            "direction": np.round(line.direction, 3).tolist(),
            "type": line.kind,
            "length_voxels": int(line.length),
            "confidence": round(line.confidence, 3),
            "length_nm": round(line.length * geometry.voxel_nm, 1),
            "closed": bool(line.closed),
            "ends_on_surface": bool(line.ends_on_surface),
            "points": np.round(line.points, 2).tolist(),
            "reproduced_fraction": None if line.reproduced_fraction is None else round(line.reproduced_fraction, 3),
        }
        for line in lines
    ]
    boundaries = [
        {
            "position": np.round(b.position, 2).tolist(),
            "position_nm": _nm(b.position, geometry),
            "normal": np.round(b.normal, 3).tolist(),
            "phase_step_rad": round(b.phase_step_rad, 3),
            "angle_to_layers_deg": round(b.angle_to_layers_deg, 1),
            "area_voxels": b.area_voxels,
            "coherence": round(b.coherence, 3),
            "displacement_step_nm": round(abs(b.phase_step_rad) / geometry.q_bragg_inv_nm, 4),
        }
        for b in find_domain_boundaries(
            rho, mask=support, jump_rad=config.boundary_jump_rad,
            min_area_fraction=config.boundary_min_area_fraction, erosion=config.surface_erosion_voxels,
        )
    ]
    for v in vortices:
        v["surface_distance_nm"] = round(_surface_distance_nm(v, support, geometry.voxel_nm), 1)
    pairs = dislocation_pairs(vortices, support, geometry.voxel_nm)
    strain = strain_summary(rho, geometry, erosion=config.surface_erosion_voxels)
    labels, found = segment_domains(rho, mask=support, jump_rad=config.boundary_jump_rad,
                                    erosion=config.surface_erosion_voxels)
    total = max(1, sum(d.volume_voxels for d in found))
    domains = [{"centroid": np.round(d.centroid, 2).tolist(), "centroid_nm": _nm(d.centroid, geometry),
                "volume_fraction": round(d.volume_voxels / total, 3),
                "phase_offset_rad": round(d.phase_offset_rad, 3),
                "displacement_offset_nm": round(d.phase_offset_rad / geometry.q_bragg_inv_nm, 4)} for d in found]
    for b in boundaries:
        b["domains"] = [_domain_at(labels, np.add(b["position"], side * 3 * np.asarray(b["normal"])))
                        for side in (-1, 1)]
    # a boundary separates two domains of the particle: a sheet of jumps with the surface (or the same
    # domain) on one side is a surface artefact of the reconstruction, not a boundary
    boundaries = [b for b in boundaries if None not in b["domains"] and b["domains"][0] != b["domains"][1]
                  and min(domains[i]["volume_fraction"] for i in b["domains"]) >= config.boundary_min_domain_fraction]
    return {"vortices": vortices, "domain_boundaries": boundaries, "dislocation_pairs": pairs, "strain": strain,
            "domains": domains, "support_voxels": int(support.sum())}


def _domain_at(labels: np.ndarray, point) -> int | None:
    """Index into the domain list of the domain at ``point`` (voxel coordinates), None on a wall or outside."""
    idx = tuple(int(v) for v in np.clip(np.round(point), 0, np.array(labels.shape) - 1))
    return int(labels[idx]) - 1 if labels[idx] > 0 else None


def strain_summary(rho: np.ndarray, geometry: OrthogonalGeometry, thresholds=(0.10, 0.15, 0.20),
                   erosion: int = 1) -> dict:
    """Strain along q and the strain energy inside the particle cut at 10% of the maximum amplitude,
    less its outer ``erosion`` voxels (the surface phase is unreliable); the spread over the
    10/15/20% cuts is the energy's error range."""
    from scipy import ndimage

    results = []
    for t in thresholds:
        shape = particle_mask(np.abs(rho), threshold=t)
        if erosion:
            shape = ndimage.binary_erosion(shape, iterations=erosion)
        try:
            eps = strain_along_q(rho, support=shape, voxel_nm=geometry.voxel_nm, q_inv_nm=geometry.q_bragg_inv_nm)
        except ValueError as exc:  # a particle too thin to differentiate: report it, keep the rest
            return {"error": str(exc)}
        results.append(strain_energy(eps, voxel_nm=geometry.voxel_nm))
    main = results[0]
    energies = [r["energy_j"] for r in results]
    return {"energy_j": float(f"{main['energy_j']:.4g}"),
            "energy_j_range": [float(f"{min(energies):.4g}"), float(f"{max(energies):.4g}")],
            "energy_density_j_per_m3": float(f"{main['energy_density_j_per_m3']:.4g}"),
            "rms_strain": float(f"{main['rms_strain']:.4g}"),
            "support_thresholds": list(thresholds), "surface_erosion_voxels": erosion}


def _surface_distance_nm(vortex: dict, support: np.ndarray, voxel_nm: float) -> float:
    """Distance from a line to the particle surface within the plane perpendicular to the line
    (for a screw line along z: to the plate's edge, not to its faces where the line ends)."""
    from scipy import ndimage

    axis = int(np.argmax(np.abs(vortex["direction"])))
    pos = np.clip(np.round(vortex["position"]).astype(int), 0, np.array(support.shape) - 1)
    plane = np.take(support, pos[axis], axis=axis)
    depth = ndimage.distance_transform_edt(plane)
    in_plane = tuple(int(p) for k, p in enumerate(pos) if k != axis)
    return float(depth[in_plane] * voxel_nm)


def dislocation_pairs(vortices: list[dict], support: np.ndarray, voxel_nm: float) -> list[dict]:
    """Pair lines of opposite winding, nearest first, with the mechanics estimates beside each pair.

    The surface distance is that of the pair's line nearer to the particle surface.
    """
    candidates = sorted(
        (float(np.linalg.norm(np.subtract(a["position_nm"], b["position_nm"]))), i, j)
        for i, a in enumerate(vortices) for j, b in enumerate(vortices)
        if i < j and a["winding"] == -b["winding"]
    )
    used, pairs = set(), []
    for separation_nm, i, j in candidates:
        if i in used or j in used or separation_nm * 1e-9 <= 5e-9:
            continue
        used |= {i, j}
        surface_nm = min(
            vortices[k]["surface_distance_nm"] if "surface_distance_nm" in vortices[k]
            else _surface_distance_nm(vortices[k], support, voxel_nm) for k in (i, j)
        )
        mech = pair_mechanics(separation_nm * 1e-9, surface_distance_m=surface_nm * 1e-9 if surface_nm > 0 else None)
        pairs.append({"vortices": [i, j], "surface_distance_nm": round(surface_nm, 1), **mech.to_dict()})
    return pairs
