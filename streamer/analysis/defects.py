"""Defects in a reconstructed crystal: phase vortices (dislocation lines) and domain boundaries.

Every function here reads the phase of the complex array it is given as the displacement phase G.u:
hand it ``displacement_object(rho)`` of a reconstruction rho = |rho| exp(-i G.u) (docs/conventions.md),
as ``streamer.analysis.objects`` does. A dislocation with b.G = 2 pi is a line around which that phase
winds by 2 pi (the winding counter-clockwise about the line's direction is G.b / 2 pi); it pierces
plaquettes (unit squares of the grid) whose wrapped phase differences sum to +-2 pi. A domain
boundary is a surface across which the phase jumps by a constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from streamer.analysis.displacement import (
    eroded,
    neighbour_steps,
    phase_ramp,
    wrapped_step,
)

# Plaquette normal (array axis) -> the two in-plane axes (u, v) of a counter-clockwise loop,
# right-handed in (x, y, z) with arrays indexed (z, y, x).
_LOOP_AXES = {0: (2, 1), 1: (0, 2), 2: (1, 0)}


def _sl(ndim, axis, s):
    out = [slice(None)] * ndim
    out[axis] = s
    return tuple(out)


def edge_steps(rho, *, xp) -> list:
    """Wrapped phase change from every voxel to its next neighbour, per axis (each one shorter along its axis)."""
    return [neighbour_steps(rho, ax, xp=xp) for ax in range(3)]


def plaquette_winding(rho, *, xp, normal_axis: int, steps: list | None = None):
    """Winding number (int8) of every plaquette normal to ``normal_axis``.

    The result has length n-1 along the two in-plane axes; element [i, j, k] is the plaquette
    whose lowest corner is voxel [i, j, k]. Phases come from the complex ``rho`` directly, so no
    unwrapping is needed. ``steps`` (from :func:`edge_steps`) lets the three orientations share
    their edges.
    """
    if rho.ndim != 3:
        raise ValueError(f"rho must be 3D, got shape {rho.shape}")
    u, v = _LOOP_AXES[normal_axis]
    steps = edge_steps(rho, xp=xp) if steps is None else steps
    du, dv = steps[u], steps[v]
    lo, hi = slice(None, -1), slice(1, None)
    # counter-clockwise: along u at v, along v at u + 1, back along u at v + 1, back along v at u
    total = du[_sl(3, v, lo)] + dv[_sl(3, u, hi)] - du[_sl(3, v, hi)] - dv[_sl(3, u, lo)]
    return xp.astype(xp.round(total / (2 * math.pi)), xp.int8)


def _plaquette_inside(mask: np.ndarray, normal_axis: int) -> np.ndarray:
    """True where all four corners of the plaquette lie in ``mask``."""
    u, v = _LOOP_AXES[normal_axis]
    m = mask
    for ax in (u, v):
        m = m[_sl(3, ax, slice(None, -1))] & m[_sl(3, ax, slice(1, None))]
    return m


@dataclass
class VortexLine:
    """A connected line of pierced plaquettes: an open line or a closed loop."""

    points: np.ndarray  # (n, 3) plaquette centres, voxel index coordinates (z, y, x)
    direction: np.ndarray  # unit vector (z, y, x): the line's mean direction (a loop: its plane normal),
    # oriented with non-negative z (or largest) part
    winding: int  # +1 / -1: sense of the 2 pi circulation about ``direction``
    confidence: float  # plaquette agreement x fraction of population members reproducing the line
    closed: bool = False  # a loop (no ends)
    ends_on_surface: bool = False  # an open line whose both ends reach the particle surface
    reproduced_fraction: float | None = None  # members that show the line (None: no population)

    @property
    def position(self) -> np.ndarray:
        return self.points.mean(axis=0)

    @property
    def length(self) -> int:
        """Length in voxels: each pierced plaquette is one step of the line."""
        return len(self.points)

    @property
    def kind(self) -> str:
        """screw if along q (z), edge if perpendicular, mixed between (for b along q).

        A loop lying in the layers (normal along q) is a prismatic, pure edge loop; any other loop
        turns from screw to edge character along its length: mixed.
        """
        angle = math.degrees(math.acos(min(1.0, abs(float(self.direction[0])))))
        if self.closed:
            return "edge" if angle < 30 else "mixed"
        return "screw" if angle < 30 else "edge" if angle > 60 else "mixed"


def find_vortex_lines(
    rho,
    *,
    xp,
    mask: np.ndarray,
    min_length: int = 3,
    erosion: int = 1,
    inner: np.ndarray | None = None,
) -> list[VortexLine]:
    """Phase-vortex lines of ``rho`` (a displacement object: its phase is G.u) inside ``mask`` (eroded by
    ``erosion`` voxels; ``inner``: that eroded mask, when the caller has it already).

    Pierced plaquettes of all three orientations are joined through shared cells into lines;
    lines shorter than ``min_length`` plaquettes are rejected as noise.
    """
    from streamer.backend import to_numpy

    mask = np.asarray(mask, bool)
    if mask.shape != tuple(rho.shape):
        raise ValueError(f"mask shape {mask.shape} does not match rho {tuple(rho.shape)}")
    inner = eroded(mask, erosion) if inner is None else inner
    pts, circ = [], []
    steps = edge_steps(rho, xp=xp)
    for axis in range(3):
        w = to_numpy(plaquette_winding(rho, xp=xp, normal_axis=axis, steps=steps))
        w = np.where(_plaquette_inside(inner, axis), w, 0)
        idx = np.argwhere(w != 0)
        if len(idx) == 0:
            continue
        centre = idx.astype(float)
        u, v = _LOOP_AXES[axis]
        centre[:, [u, v]] += 0.5
        normal = np.zeros(3)
        normal[axis] = 1.0
        pts.append(centre)
        circ.append(w[tuple(idx.T)][:, None] * normal[None, :])
    if not pts:
        return []
    points = np.concatenate(pts)
    circulation = np.concatenate(circ)
    labels = _cluster(points, radius=1.5)
    depth_at = _outside_distance(mask)
    lines = []
    for lab in np.unique(labels):
        sel = labels == lab
        if sel.sum() < min_length:
            continue
        lines.append(_make_line(points[sel], circulation[sel], depth_at, surface_depth=erosion + 2.0))
    return lines


def _outside_distance(mask: np.ndarray):
    """A function of voxel indices (n, 3): their distance to the nearest voxel outside ``mask`` (the grid's
    edge counts as outside), as scipy's Euclidean distance transform gives it, for a few voxels.

    The nearest outside voxel always borders the inside (a step towards the point would be nearer), so
    a tree of those border voxels, made at the first call, answers exactly.
    """
    from scipy.spatial import cKDTree

    tree = None

    def at(idx: np.ndarray) -> np.ndarray:
        nonlocal tree
        idx = np.clip(idx, 0, np.array(mask.shape) - 1)
        if tree is None:
            padded = np.pad(mask, 1)
            tree = cKDTree(np.argwhere(ndimage.binary_dilation(padded) & ~padded) - 1)
        return np.where(mask[tuple(idx.T)], tree.query(idx)[0], 0.0)

    return at


def _cluster(points: np.ndarray, radius: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    pairs = cKDTree(points).query_pairs(radius, output_type="ndarray")
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _orient(v: np.ndarray) -> np.ndarray:
    lead = 0 if abs(v[0]) > 1e-6 else int(np.argmax(np.abs(v)))
    return -v if v[lead] < 0 else v


def _make_line(points: np.ndarray, circulation: np.ndarray, depth_at, surface_depth: float) -> VortexLine:
    """Direction, winding and ends of one cluster; ``depth_at`` gives voxels' distance to outside the particle."""
    net = circulation.sum(axis=0)
    centred = points - points.mean(axis=0)
    closed = len(points) >= 8 and np.linalg.norm(net) < 0.25 * len(points)
    if closed:  # a loop: circulation turns around the plane's normal
        direction = _orient(np.linalg.svd(centred, full_matrices=False)[2][2])
        turn = np.cross(centred, circulation).sum(axis=0) @ direction
        sense = 1 if turn >= 0 else -1
        per_point = np.sign(np.cross(centred, circulation) @ direction)
        return VortexLine(points, direction, sense, float(np.mean(per_point == sense)), closed=True)
    if len(points) >= 3 and np.ptp(points, axis=0).max() > 0:
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]
    else:
        direction = net / (np.linalg.norm(net) or 1.0)
    direction = _orient(direction)
    per_point = np.sign(circulation @ direction)
    sense = 1 if net @ direction >= 0 else -1
    confidence = float(np.mean(per_point == sense))
    s = centred @ direction
    ends = points[[int(np.argmin(s)), int(np.argmax(s))]]
    on_surface = bool(np.all(depth_at(np.round(ends).astype(int)) <= surface_depth))
    return VortexLine(points, direction, sense, confidence, closed=False, ends_on_surface=on_surface)


def reproduced_lines(lines: list[VortexLine], member_lines: list[list[VortexLine]], *,
                     radius_voxels: float = 3.0, min_fraction: float = 0.5) -> list[VortexLine]:
    """Lines that the members of a reconstruction population reproduce.

    A member reproduces a line when one of its lines of the same winding (and the same kind:
    loop or open) lies within ``radius_voxels`` (mean distance of the line's points to the
    member line). Kept lines have ``reproduced_fraction`` set and their confidence scaled by it.
    """
    from scipy.spatial import cKDTree

    if not member_lines:
        return list(lines)
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    kept = []
    for line in lines:
        hits = 0
        for member in member_lines:
            for other in member:
                if other.winding != line.winding or other.closed != line.closed:
                    continue
                if abs(float(other.direction @ line.direction)) < 0.5:
                    continue
                d = cKDTree(other.points).query(line.points)[0]
                if float(np.mean(d)) <= radius_voxels:
                    hits += 1
                    break
        frac = hits / len(member_lines)
        if frac >= min_fraction:
            line.reproduced_fraction = frac
            line.confidence = line.confidence * frac
            kept.append(line)
    return kept


@dataclass
class DomainBoundary:
    """A sheet across which the phase jumps: a domain boundary."""

    position: np.ndarray  # (3,) centre of the sheet, voxel index coordinates (z, y, x)
    normal: np.ndarray  # (3,) unit normal of the fitted plane (z, y, x)
    phase_step_rad: float  # mean wrapped phase change crossing the sheet along ``normal``
    area_voxels: int  # number of cut links in the sheet
    coherence: float  # 0..1: how consistently the phase jumps the same way across the sheet

    @property
    def angle_to_layers_deg(self) -> float:
        """Angle between the boundary plane and the layers (90: perpendicular to the layers)."""
        return math.degrees(math.acos(min(1.0, abs(float(self.normal[0])))))


def phase_cuts(rho: np.ndarray, inner: np.ndarray, jump_rad: float):
    """Links between neighbours where the phase jumps, per axis: (cut mask, signed step).

    A link (i, i+1) is cut when the wrapped change over either two-voxel span containing it
    exceeds ``jump_rad`` (a resolution-limited step spreads over two voxels) or the change over
    the link itself exceeds ``2/3 jump_rad``. ``step`` is the largest such change, signed.
    """
    out = []
    for ax in range(3):
        a, b = _sl(3, ax, slice(None, -1)), _sl(3, ax, slice(1, None))
        d1 = wrapped_step(rho[a], rho[b])
        valid = inner[a] & inner[b]
        step = np.where(np.abs(d1) > 2 * jump_rad / 3, d1, 0.0)
        s0, s2 = _sl(3, ax, slice(None, -2)), _sl(3, ax, slice(2, None))
        d2 = wrapped_step(rho[s0], rho[s2])
        d2 = np.where(inner[s0] & inner[s2] & (np.abs(d2) > jump_rad), d2, 0.0)
        for target in (_sl(3, ax, slice(1, None)), _sl(3, ax, slice(None, -1))):
            sub = step[target]
            step[target] = np.where(np.abs(d2) > np.abs(sub), d2, sub)
        step = np.where(valid, step, 0.0)
        out.append((step != 0, step))
    return out


def find_domain_boundaries(
    rho: np.ndarray,
    *,
    mask: np.ndarray,
    jump_rad: float = 1.2,
    min_area_fraction: float = 0.25,
    min_coherence: float = 0.7,
    erosion: int = 1,
    inner: np.ndarray | None = None,
    cuts: list | None = None,
) -> list[DomainBoundary]:
    """Sheets of phase jumps inside the particle, fitted by planes.

    Cut links (see :func:`phase_cuts`) are grouped by proximity; a group counts as a boundary
    when it has at least ``min_area_fraction`` x (particle volume)^(2/3) links and the phase jumps
    the same way all across it (``coherence`` >= ``min_coherence``); the tube of cut links around
    a vortex core jumps every way and is rejected. ``inner`` (the eroded mask) and ``cuts`` (its
    :func:`phase_cuts`) may be handed in when the caller has them.
    """
    rho = np.asarray(rho)
    inner = eroded(mask, erosion) if inner is None else inner
    pts, steps, axes = [], [], []
    for ax, (cut, step) in enumerate(phase_cuts(rho, inner, jump_rad) if cuts is None else cuts):
        idx = np.argwhere(cut)
        centre = idx.astype(float)
        centre[:, ax] += 0.5
        pts.append(centre)
        steps.append(step[cut])
        axes.append(np.full(len(idx), ax))
    points = np.concatenate(pts)
    if len(points) == 0:
        return []
    steps, axes = np.concatenate(steps), np.concatenate(axes)
    labels = _cluster(points, radius=1.5)
    min_area = min_area_fraction * inner.sum() ** (2 / 3)
    found = []
    for lab in np.unique(labels):
        sel = labels == lab
        if sel.sum() < min_area:
            continue
        p = points[sel]
        centre = p.mean(axis=0)
        normal = np.linalg.svd(p - centre, full_matrices=False)[2][2]
        lead = int(np.argmax(np.abs(normal)))
        normal = normal if normal[lead] > 0 else -normal
        # step measured crossing along +normal: links along axis k count with sign(normal[k])
        signed = steps[sel] * np.sign(normal[axes[sel]])
        weights = np.abs(normal[axes[sel]])
        mean = np.sum(weights * np.exp(1j * signed))
        coherence = float(np.abs(mean) / weights.sum()) if weights.sum() > 0 else 0.0
        if coherence < min_coherence:
            continue
        found.append(DomainBoundary(centre, normal, float(np.angle(mean)), int(sel.sum()), coherence))
    return found


@dataclass
class Domain:
    """A region of the particle with nearly constant displacement offset."""

    centroid: np.ndarray  # (3,) voxel index coordinates (z, y, x)
    volume_voxels: int
    phase_offset_rad: float  # circular mean of the phase (ramp removed) over the domain


def segment_domains(rho: np.ndarray, *, mask: np.ndarray, jump_rad: float = 1.2, erosion: int = 1,
                    min_fraction: float = 0.05, inner: np.ndarray | None = None,
                    cuts: list | None = None) -> tuple[np.ndarray, list[Domain]]:
    """Split the particle at its phase jumps into domains (labels 1.., 0 outside or on a wall).

    The voxels on both sides of every cut link (see :func:`phase_cuts`) form the walls; connected
    regions of the rest holding at least ``min_fraction`` of the particle are the domains, largest first.
    """
    rho = np.asarray(rho)
    inner = eroded(mask, erosion) if inner is None else inner
    wall = np.zeros(rho.shape, bool)
    for ax, (cut, _) in enumerate(phase_cuts(rho, inner, jump_rad) if cuts is None else cuts):
        wall[_sl(3, ax, slice(None, -1))] |= cut
        wall[_sl(3, ax, slice(1, None))] |= cut
    labels, n = ndimage.label(inner & ~wall)
    if n == 0:
        return np.zeros(rho.shape, int), []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    ramp = phase_ramp(rho, inner & ~wall)  # links across a wall would count the step as a ramp
    grids = np.ogrid[tuple(slice(0, s) for s in rho.shape)]
    flat = rho * np.exp(-1j * sum(r * g for r, g in zip(ramp, grids)))
    out = np.zeros(rho.shape, int)
    domains = []
    for lab in np.argsort(sizes)[::-1]:
        if sizes[lab] < max(1, min_fraction * inner.sum()):
            break
        sel = labels == lab
        out[sel] = len(domains) + 1
        unit = flat[sel] / np.maximum(np.abs(flat[sel]), 1e-30)
        domains.append(Domain(np.argwhere(sel).mean(axis=0), int(sel.sum()), float(np.angle(unit.sum()))))
    if domains:  # offsets relative to the largest domain
        ref = domains[0].phase_offset_rad
        for d in domains:
            d.phase_offset_rad = float(np.angle(np.exp(1j * (d.phase_offset_rad - ref))))
    return out, domains
