"""Domain boundaries and domains in a reconstructed crystal: planes across which the phase steps by a
constant, and the regions of the particle they split it into (vortex lines are in ``defects``).

Every function here reads the phase of the complex array it is given as the displacement phase G.u:
hand it ``displacement_object(rho)`` of a reconstruction rho = |rho| exp(-i G.u) (docs/conventions.md),
as ``streamer.analysis.objects`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from streamer.analysis.defects import _sl
from streamer.analysis.displacement import (
    eroded,
    neighbour_steps,
)


@dataclass
class DomainBoundary:
    """A plane across which the phase steps by a constant: a domain boundary."""

    position: np.ndarray  # (3,) centre of the plane's cross-section with the particle, voxel index coordinates (z, y, x)
    normal: np.ndarray  # (3,) unit normal of the plane (z, y, x), oriented with a positive largest part
    phase_step_rad: float  # change of the phase crossing the plane along ``normal``
    area_voxels: int  # voxels of the plane's cross-section with the particle (one voxel thick)
    coherence: float  # 0..1: how consistently the phase steps by that amount all across the plane
    side_fractions: tuple[float, float] = (0.5, 0.5)  # of the particle behind and ahead of the plane

    @property
    def angle_to_layers_deg(self) -> float:
        """Angle between the boundary plane and the layers (90: perpendicular to the layers)."""
        return math.degrees(math.acos(min(1.0, abs(float(self.normal[0])))))

    def offset(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (voxels) of ``points`` (n, 3) from the plane, positive ahead of it."""
        return (np.asarray(points, float) - self.position) @ self.normal


# The plane search (``find_domain_boundaries``): the phase is projected onto a normal; on each side of a
# candidate position a slab of SLAB voxels, GAP voxels away from it, gives the mean phase there.
SLAB, GAP = 4, 2
LOCAL_HALF_SPAN = 2  # voxels either side of the plane over which the local step is read
LOCAL_REACH = 5  # ... or as far as the nearest voxels inside, across a gap along the plane
WHOLE_HALF_SPAN = 4  # the farthest a found plane's step is read again, where a reconstruction blurred it (_whole_step)
COARSE_DIRECTIONS = 1200  # normals on the half sphere (about 4 degrees apart), then refined to 0.5 degree
# particles larger than this are searched for candidate planes on a fixed random sample of their voxels (each
# plane is then fitted and checked on all of them): at real size (49K voxels) the search took 2-3 s a scan
SEARCH_MAX_VOXELS = 20_000


def _half_sphere(n: int) -> np.ndarray:
    """``n`` unit normals (z, y, x) spread evenly over the half sphere z > 0 (a Fibonacci lattice)."""
    k = np.arange(n) + 0.5
    z = k / n
    phi = math.pi * (1 + math.sqrt(5)) * k
    r = np.sqrt(1 - z * z)
    return np.stack([z, r * np.sin(phi), r * np.cos(phi)], axis=1)


def _around(normal: np.ndarray, half_deg: float, step_deg: float) -> np.ndarray:
    """Normals within ``half_deg`` of ``normal`` on a tangent grid of ``step_deg``."""
    a = np.cross(normal, [1.0, 0, 0] if abs(normal[0]) < 0.9 else [0, 1.0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(normal, a)
    offs = np.radians(np.arange(-half_deg, half_deg + 1e-9, step_deg))
    grid = normal[None, None, :] + offs[:, None, None] * a + offs[None, :, None] * b
    grid = grid.reshape(-1, 3)
    return grid / np.linalg.norm(grid, axis=1, keepdims=True)


def _splits(pos: np.ndarray, values: np.ndarray, normals: np.ndarray, *, min_side: int, batch: int = 64):
    """For each of ``normals``, the position along it whose two slabs (SLAB wide, GAP from it) differ most in
    phase, each being coherent: (scores, positions, steps), one per normal.

    ``pos`` (n, 3) voxel coordinates of the particle (centred), ``values`` their complex displacement object.
    Score: coherence(behind) x coherence(ahead) x |sin(step / 2)|; both sides hold at least ``min_side`` voxels.
    """
    amp = np.abs(values)
    scores, positions, steps = [], [], []
    for k in range(0, len(normals), batch):
        dirs = normals[k:k + batch]
        nd = len(dirs)
        t = pos @ dirs.T  # (n, b)
        lo = np.floor(t.min(axis=0))
        bins = np.floor(t - lo).astype(np.int64)
        nb = int(bins.max()) + 1
        idx = (bins + np.arange(nd) * nb).ravel()
        size = nd * nb
        rep = np.repeat(values[:, None], nd, axis=1).ravel()
        s = (np.bincount(idx, rep.real, size) + 1j * np.bincount(idx, rep.imag, size)).reshape(nd, nb)
        a = np.bincount(idx, np.repeat(amp[:, None], nd, axis=1).ravel(), size).reshape(nd, nb)
        c = np.bincount(idx, minlength=size).reshape(nd, nb)
        cs = np.concatenate([np.zeros((nd, 1), complex), np.cumsum(s, axis=1)], axis=1)
        ca = np.concatenate([np.zeros((nd, 1)), np.cumsum(a, axis=1)], axis=1)
        cc = np.concatenate([np.zeros((nd, 1)), np.cumsum(c, axis=1)], axis=1)
        t0 = np.arange(nb)  # the split lies in bin t0; slabs [t0-GAP-SLAB, t0-GAP), (t0+GAP, t0+GAP+SLAB]

        def window(cum, i0, i1):
            i0, i1 = np.clip(i0, 0, nb), np.clip(i1, 0, nb)
            return cum[:, i1] - cum[:, i0]

        sl, al = window(cs, t0 - GAP - SLAB, t0 - GAP), window(ca, t0 - GAP - SLAB, t0 - GAP)
        sr, ar = window(cs, t0 + GAP + 1, t0 + GAP + 1 + SLAB), window(ca, t0 + GAP + 1, t0 + GAP + 1 + SLAB)
        behind, ahead = cc[:, t0], cc[:, -1:] - cc[:, t0 + 1]
        with np.errstate(invalid="ignore", divide="ignore"):
            coh = np.abs(sl) / al * np.abs(sr) / ar
            step = np.angle(sr * np.conj(sl))
            score = np.where((behind >= min_side) & (ahead >= min_side) & (al > 0) & (ar > 0),
                             coh * np.abs(np.sin(step / 2)), 0.0)
        score = np.nan_to_num(score)
        j = np.argmax(score, axis=1)
        rows = np.arange(nd)
        scores.append(score[rows, j])
        positions.append(lo + j + 0.5)
        steps.append(step[rows, j])
    return np.concatenate(scores), np.concatenate(positions), np.concatenate(steps)


def _candidates(pos, values, *, min_side: int, count: int = 4, apart_deg: float = 20.0):
    """The ``count`` best splits (score, normal, position, step) whose normals lie ``apart_deg`` apart, each
    refined to 0.5 degree."""
    normals = _half_sphere(COARSE_DIRECTIONS)
    if len(pos) > SEARCH_MAX_VOXELS:  # a fixed sample: the same slab statistics at a fraction of the cost
        pick = np.sort(np.random.default_rng(0).choice(len(pos), SEARCH_MAX_VOXELS, replace=False))
        min_side = max(1, round(min_side * SEARCH_MAX_VOXELS / len(pos)))
        pos, values = pos[pick], values[pick]
    scores, positions, steps = _splits(pos, values, normals, min_side=min_side)
    out = []
    for i in np.argsort(scores)[::-1]:
        if scores[i] <= 0 or len(out) >= count:
            break
        if any(abs(float(normals[i] @ o[1])) > math.cos(math.radians(apart_deg)) for o in out):
            continue
        fine = _around(normals[i], 3.0, 0.5)
        fs, fp, fst = _splits(pos, values, fine, min_side=min_side)
        j = int(np.argmax(fs))
        out.append((float(fs[j]), fine[j], float(fp[j]), float(fst[j])))
    return out


def _local_steps(flat: np.ndarray, inside: np.ndarray, centre: np.ndarray, normal: np.ndarray, offset: float,
                 half_span: int = LOCAL_HALF_SPAN, reach: int = LOCAL_REACH):
    """The phase step across the plane (``centre`` + ``offset`` along ``normal``) read at each point of its
    cross-section with the particle: (mean phasor of the steps, amplitude-weighted; points in the plane; points
    read).

    The cross-section is the particle's voxels within ``reach`` of the plane projected onto it, so a gap along
    the plane (a pi step blurs to zero amplitude there, and the support opens) still has its points. Each point
    is read between the nearest voxels inside on either side, ``half_span`` to ``reach`` voxels away.
    """
    shape = np.array(flat.shape)
    idx = np.argwhere(inside)
    d = (idx - centre) @ normal - offset
    near = np.abs(d) <= reach
    if not near.any():
        return 0j, 0, 0
    plane = np.unique(np.round(idx[near] - d[near, None] * normal).astype(int), axis=0)
    todo = np.ones(len(plane), bool)
    prod = np.zeros(len(plane), complex)
    for span in range(half_span, reach + 1):
        ends = [np.round(plane + sign * span * normal).astype(int) for sign in (-1, 1)]
        ok = todo & np.all((ends[0] >= 0) & (ends[0] < shape) & (ends[1] >= 0) & (ends[1] < shape), axis=1)
        for e in ends:
            ok[ok] &= inside[tuple(e[ok].T)]
        a, b = (flat[tuple(e[ok].T)] for e in ends)
        prod[ok] = b * np.conj(a)
        todo &= ~ok
    read = int((~todo).sum())
    total = float(np.abs(prod).sum())
    return (complex(prod.sum()) / total if total > 0 else 0j), len(plane), read


def flattened(rho: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """``rho`` with its phase ramp removed, the ramp being the circular mean of the wrapped steps between
    neighbours inside ``inner`` that lie within 0.5 rad of their median: a boundary's or a vortex core's jumps
    do not tilt it (``remove_ramp``'s mean of every step would turn a step into a slope)."""
    ramp = np.zeros(3)
    for ax in range(3):
        lo, hi = _sl(3, ax, slice(None, -1)), _sl(3, ax, slice(1, None))
        d = neighbour_steps(rho, ax)[inner[lo] & inner[hi]]
        if len(d):
            d = d[np.abs(d - np.median(d)) < 0.5]
            ramp[ax] = float(np.angle(np.sum(np.exp(1j * d)))) if len(d) else 0.0
    grids = np.ogrid[tuple(slice(0, n) for n in rho.shape)]
    return rho * np.exp(-1j * sum(r * (g - n // 2) for r, g, n in zip(ramp, grids, rho.shape)))


def find_domain_boundaries(
    rho: np.ndarray,
    *,
    mask: np.ndarray,
    jump_rad: float = 0.6,
    min_area_fraction: float = 0.3,
    min_coherence: float = 0.6,
    min_side_fraction: float = 0.03,
    erosion: int = 1,
    inner: np.ndarray | None = None,
    max_boundaries: int = 3,
) -> list[DomainBoundary]:
    """Planes of any orientation across which the phase of ``rho`` (a displacement object) steps by at least
    ``jump_rad``.

    The phase (ramp removed) inside the particle (``mask`` eroded by ``erosion``, or ``inner``) is projected onto
    normals all over the half sphere; the plane whose two sides differ most in mean phase, each side being
    coherent, is refined to 0.5 degree. It is a boundary when, read voxel by voxel across the plane, the phase
    steps by at least ``jump_rad`` with a consistency (``coherence``, the resultant of the local steps) of
    ``min_coherence`` over at least ``min_area_fraction`` of the plane's cross-section, no such step is seen a
    few voxels either side (a smooth strain is no boundary), and each side holds ``min_side_fraction`` of the
    particle. A vortex line's winding phase steps by nothing across any plane, so lines are not boundaries.
    The search then continues on each side, up to ``max_boundaries`` planes.
    """
    rho = np.asarray(rho)
    inner = eroded(mask, erosion) if inner is None else np.asarray(inner, bool)
    if inner.sum() < 64:
        return []
    flat = flattened(rho, inner)
    smooth = _unit_smoothed(flat, inner)
    idx = np.argwhere(inner)
    centre = idx.mean(axis=0)
    total = len(idx)
    found: list[DomainBoundary] = []
    regions = [np.ones(total, bool)]
    while regions and len(found) < max_boundaries:
        region = regions.pop(0)
        if region.sum() < 2 * max(1, min_side_fraction * total):
            continue
        pos, values = idx[region] - centre, flat[tuple(idx[region].T)]
        inside = np.zeros(inner.shape, bool)
        inside[tuple(idx[region].T)] = True
        min_side = int(max(8, min_side_fraction * total))
        boundary = None
        for _, searched, searched_offset, _ in _candidates(pos, values, min_side=min_side):
            # the slabs cannot tell tilts within a plate's thickness: the two phases' interface can, unless other
            # phase changes (strain, a residual ramp) sway it; then the searched plane is tried as it is
            normal, offset = _fit_plane(flat, inside, smooth, centre, searched, searched_offset, band=GAP + SLAB)
            for _ in range(2):
                normal, offset = _fit_plane(flat, inside, smooth, centre, normal, offset, band=GAP + SLAB)
            for normal, offset in ((normal, offset), (searched, searched_offset)):
                lead = int(np.argmax(np.abs(normal)))
                if normal[lead] < 0:
                    normal, offset = -normal, -offset
                boundary = _plane_boundary(flat, inner, idx, centre, normal, offset, jump_rad=jump_rad,
                                           min_coherence=min_coherence, min_area_fraction=min_area_fraction,
                                           min_side_fraction=min_side_fraction, region=region)
                if boundary is not None and any(
                        abs(float(boundary.normal @ b.normal)) > math.cos(math.radians(25))
                        and abs(float(b.offset(boundary.position[None])[0])) <= GAP + SLAB + 1 for b in found):
                    boundary = None  # the edge of a boundary already found
                if boundary is not None:
                    break
            if boundary is not None:
                break
        if boundary is None:
            continue
        found.append(boundary)
        d = boundary.offset(idx)
        regions += [region & (d < -GAP - 1), region & (d > GAP + 1)]
    return found


def _fit_plane(flat, inner, smooth, centre, normal, offset, *, band: float | None = None) -> tuple[np.ndarray, float]:
    """The plane between the particle's two phases: each voxel (``smooth``: its locally averaged unit phasor)
    joins the side whose mean phase (the slabs beside the plane ``centre`` + ``offset`` along ``normal``) it is
    nearer to; the midpoints of neighbours on different sides, or of the two ends of a gap in ``inner`` up to
    LOCAL_REACH long (within ``band`` voxels of the plane, if given), are fitted by a plane (least squares). The given plane when too few such midpoints are found."""
    idx = np.argwhere(inner)
    d = (idx - centre) @ normal - offset
    values = flat[tuple(idx.T)]
    means = [values[(d >= lo) & (d < hi)].sum() for lo, hi in ((-GAP - SLAB, -GAP), (GAP + 1, GAP + 1 + SLAB))]
    if not all(abs(m) > 0 for m in means):
        return normal, offset
    ahead = np.zeros(inner.shape, bool)
    ahead[inner] = np.abs(smooth[inner] - means[1] / abs(means[1])) < np.abs(smooth[inner] - means[0] / abs(means[0]))
    pts = []
    for ax in range(3):
        for span in range(1, LOCAL_REACH + 1):  # neighbours, or the two ends of a gap along the plane
            if span >= inner.shape[ax]:
                break
            lo, hi = _sl(3, ax, slice(None, -span)), _sl(3, ax, slice(span, None))
            if span == 1:
                between_outside = np.ones(inner[lo].shape, bool)  # every voxel between the two ends lies outside
            else:
                between_outside = between_outside[_sl(3, ax, slice(None, -1))] & ~inner[_sl(3, ax, slice(span - 1, -1))]
            i = np.argwhere(inner[lo] & inner[hi] & (ahead[lo] != ahead[hi]) & between_outside).astype(float)
            i[:, ax] += span / 2
            pts.append(i)
    pts = np.concatenate(pts)
    if band is not None:
        pts = pts[np.abs((pts - centre) @ normal - offset) <= band]
    if len(pts) < 8:
        return normal, offset
    c = pts.mean(axis=0)
    fitted = np.linalg.eigh((pts - c).T @ (pts - c))[1][:, 0]
    fitted = fitted if fitted @ normal >= 0 else -fitted
    return fitted, float((c - centre) @ fitted)


def _unit_smoothed(flat: np.ndarray, inner: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """The unit phasor of ``flat`` averaged over ``sigma`` voxels inside ``inner`` (normalised convolution)."""
    u = np.where(inner, flat / np.maximum(np.abs(flat), 1e-30), 0)
    weight = ndimage.gaussian_filter(inner.astype(float), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (ndimage.gaussian_filter(u.real, sigma) + 1j * ndimage.gaussian_filter(u.imag, sigma)) / weight
    return np.where(inner, np.nan_to_num(out), 0)


def _plane_boundary(flat, inner, idx, centre, normal, offset, *, jump_rad, min_coherence, min_area_fraction,
                    min_side_fraction, region) -> DomainBoundary | None:
    """The plane (``centre`` + ``offset`` along ``normal``) as a boundary, or None when it fails a test of
    ``find_domain_boundaries``."""
    inside = np.zeros(inner.shape, bool)
    inside[tuple(idx[region].T)] = True
    mean, in_plane, read = _local_steps(flat, inside, centre, normal, offset)
    if not in_plane or read < max(min_area_fraction * in_plane, 0.15 * inner.sum() ** (2 / 3)):
        return None  # seen over too little of the plane, or the plane only cuts a corner off
    step, coherence = float(np.angle(mean)), float(abs(mean))
    if abs(step) < jump_rad or coherence < min_coherence:
        return None
    aside = [_local_steps(flat, inside, centre, normal, offset + sign * (2 * LOCAL_HALF_SPAN + 2),
                           reach=LOCAL_HALF_SPAN)[0]
             for sign in (-1, 1)]
    if any(abs(a) > 0 and abs(float(np.angle(a))) > 0.5 * abs(step) for a in aside):
        return None  # the phase changes as much beside the plane: a strain gradient, not a step
    d = (idx - centre) @ normal - offset
    fractions = (float(np.mean(d < 0)), float(np.mean(d > 0)))
    if min(fractions) < min_side_fraction:
        return None
    # the step read again once the ramp is the domains' own: a step blurred over a few voxels tilts a ramp taken
    # across the plane, and a tilt against the step shortens it over the span it is read across
    domains = inside.copy()
    domains[tuple(idx[np.abs(d) <= GAP + SLAB].T)] = False
    if domains.sum() >= 64:
        whole = _whole_step(flattened(flat, domains), inside, centre, normal, offset)
        if whole is not None:
            step = whole
    near = region & (np.abs(d) <= 0.5)
    position = (idx[near].mean(axis=0) - d[near].mean() * normal) if near.any() else centre + offset * normal
    return DomainBoundary(position, normal, step, int(in_plane), coherence, fractions)


def _whole_step(flat, inside, centre, normal, offset, *, growth: float = 1.05) -> float | None:
    """The step across the plane read where it has stopped growing: from LOCAL_HALF_SPAN voxels either side out to
    WHOLE_HALF_SPAN, one voxel further while that reads a step more than ``growth`` times the last. A reconstruction
    blurs a step over its resolution (a detector grid's rocking voxel: three lab voxels either side), and a reading
    across less than that reads it short (BENCHMARKS.md, "Steps read where they stop growing")."""
    step = None
    for half_span in range(LOCAL_HALF_SPAN, WHOLE_HALF_SPAN + 1):
        mean, _, read = _local_steps(flat, inside, centre, normal, offset, half_span=half_span,
                                     reach=max(LOCAL_REACH, half_span))
        if not read:
            break
        value = float(np.angle(mean))
        if step is not None and not (abs(value) > growth * abs(step) and value * step > 0):
            break
        step = value
    return step


def reproduced_boundaries(boundaries: list[DomainBoundary], members: list[np.ndarray], inner: np.ndarray, *,
                          jump_rad: float = 0.6, min_fraction: float = 0.5) -> list[DomainBoundary]:
    """Boundaries that the members of a reconstruction population reproduce: across the same plane a member's
    phase (``members``: displacement objects, aligned) steps the same way by at least ``jump_rad``."""
    if not members:
        return list(boundaries)
    kept = []
    for b in boundaries:
        hits = 0
        for m in members:
            mean, _, read = _local_steps(flattened(np.asarray(m), inner), inner, b.position, b.normal, 0.0)
            step = float(np.angle(mean))
            same = np.sign(step) == np.sign(b.phase_step_rad) or min(abs(step), abs(b.phase_step_rad)) > 2.5
            hits += bool(read and abs(step) >= jump_rad and same)
        if hits / len(members) >= min_fraction:
            kept.append(b)
    return kept


@dataclass
class Domain:
    """A region of the particle with nearly constant displacement offset."""

    centroid: np.ndarray  # (3,) voxel index coordinates (z, y, x)
    volume_voxels: int
    phase_offset_rad: float  # circular mean of the phase (ramp removed) over the domain


def segment_domains(rho: np.ndarray, *, mask: np.ndarray, erosion: int = 1, min_fraction: float = 0.05,
                    inner: np.ndarray | None = None, boundaries: list[DomainBoundary] | None = None,
                    **search) -> tuple[np.ndarray, list[Domain]]:
    """Split the particle at its domain boundaries (labels 1.., 0 outside or within a voxel of a boundary).

    ``boundaries`` default to ``find_domain_boundaries(rho, mask=mask, **search)``. Every side of every plane
    makes a region; regions holding at least ``min_fraction`` of the particle are the domains, largest first,
    each with its phase offset relative to the largest.
    """
    rho = np.asarray(rho)
    inner = eroded(mask, erosion) if inner is None else np.asarray(inner, bool)
    if boundaries is None:
        boundaries = find_domain_boundaries(rho, mask=mask, erosion=erosion, inner=inner, **search)
    idx = np.argwhere(inner)
    out = np.zeros(rho.shape, int)
    if not len(idx):
        return out, []
    flat = flattened(rho, inner)
    key = np.zeros(len(idx), np.int64)
    wall = np.zeros(len(idx), bool)
    for k, b in enumerate(boundaries):
        d = b.offset(idx)
        key += (d > 0).astype(np.int64) << k
        wall |= np.abs(d) < 1.0
    keys, sizes = np.unique(key[~wall], return_counts=True)
    domains = []
    for kv, size in sorted(zip(keys, sizes), key=lambda t: -t[1]):
        if size < max(1, min_fraction * len(idx)):
            break
        sel = idx[(key == kv) & ~wall]
        out[tuple(sel.T)] = len(domains) + 1
        values = flat[tuple(sel.T)]
        domains.append(Domain(sel.mean(axis=0), int(size), float(np.angle(np.sum(values)))))
    if domains:  # offsets relative to the largest domain
        ref = domains[0].phase_offset_rad
        for d in domains:
            d.phase_offset_rad = float(np.angle(np.exp(1j * (d.phase_offset_rad - ref))))
    return out, domains
