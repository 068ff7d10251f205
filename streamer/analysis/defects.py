"""Phase vortices (dislocation lines) in a reconstructed crystal; domain boundaries are in ``boundaries``.

Every function here reads the phase of the complex array it is given as the displacement phase G.u:
hand it ``displacement_object(rho)`` of a reconstruction rho = |rho| exp(-i G.u) (docs/conventions.md),
as ``streamer.analysis.objects`` does. A dislocation with b.G = 2 pi is a line around which that phase
winds by 2 pi (the winding counter-clockwise about the line's direction is G.b / 2 pi); it pierces
plaquettes (unit squares of the grid) whose wrapped phase differences sum to +-2 pi.
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


def tunnels_filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every hole that a slice along any axis encloses filled.

    A dislocation core's amplitude dips (to zero at the core, blurred by the resolution), so a support cut at a
    fraction of the maximum can hold a tunnel along the line: the phase winds around the tunnel, not inside the
    support. Filled, the core's plaquettes are in again."""
    mask = np.asarray(mask, bool)
    out = mask.copy()
    for axis in range(mask.ndim):
        in_slice = np.zeros((3,) * mask.ndim, bool)
        in_slice[_sl(mask.ndim, axis, 1)] = ndimage.generate_binary_structure(mask.ndim - 1, 1)
        out |= ndimage.binary_fill_holes(mask, structure=in_slice)
    return out


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

    points: np.ndarray  # (n, 3) the core in each pierced plaquette (core_offsets), voxel index coordinates (z, y, x)
    direction: np.ndarray  # unit vector (z, y, x): the line's mean direction (a loop: its plane normal),
    # oriented with non-negative z (or largest) part
    winding: int  # +1 / -1: sense of the 2 pi circulation about ``direction``
    confidence: float  # agreement along the line (``_agreement``) x fraction of population members reproducing it
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
    pts, cores, circ = [], [], []
    steps = edge_steps(rho, xp=xp)
    host = None
    for axis in range(3):
        w = to_numpy(plaquette_winding(rho, xp=xp, normal_axis=axis, steps=steps))
        w = np.where(_plaquette_inside(inner, axis), w, 0)
        idx = np.argwhere(w != 0)
        if len(idx) == 0:
            continue
        host = np.asarray(to_numpy(rho)) if host is None else host
        centre = idx.astype(float)
        u, v = _LOOP_AXES[axis]
        centre[:, [u, v]] += 0.5
        core = idx.astype(float)
        core[:, [u, v]] += core_offsets(host, idx, u, v)
        normal = np.zeros(3)
        normal[axis] = 1.0
        pts.append(centre)
        cores.append(core)
        circ.append(w[tuple(idx.T)][:, None] * normal[None, :])
    if not pts:
        return []
    points, core_points = np.concatenate(pts), np.concatenate(cores)
    circulation = np.concatenate(circ)
    labels = _cluster(points, radius=1.5)  # joined through the plaquettes' shared cells, as pierced
    depth_at = _outside_distance(mask)
    lines = []
    for lab in np.unique(labels):
        sel = labels == lab
        if sel.sum() < min_length:
            continue
        lines.append(_make_line(core_points[sel], circulation[sel], depth_at, surface_depth=erosion + 2.0))
    return lines


def core_offsets(rho: np.ndarray, idx: np.ndarray, u: int, v: int) -> np.ndarray:
    """Where, inside each plaquette (lowest corner ``idx``, in-plane axes ``u``, ``v``), the complex field
    crosses zero: (n, 2) offsets in [0, 1] along (u, v), from the plane a + b s + c t fitted to its four corners
    (least squares). A vortex's core is that zero; the plaquette's centre (0.5, 0.5) where the fit has none."""
    eu, ev = np.zeros(3, int), np.zeros(3, int)
    eu[u], ev[v] = 1, 1
    r00, r10, r01, r11 = (rho[tuple((idx + e).T)] for e in (0, eu, ev, eu + ev))
    b = ((r10 - r00) + (r11 - r01)) / 2
    c = ((r01 - r00) + (r11 - r10)) / 2
    a = (r00 + r10 + r01 + r11) / 4 - (b + c) / 2
    det = b.real * c.imag - c.real * b.imag
    scale = np.abs(b) * np.abs(c)
    ok = np.abs(det) > 1e-3 * np.maximum(scale, np.finfo(np.float32).tiny)
    safe = np.where(ok, det, 1.0)
    s = (-a.real * c.imag + c.real * a.imag) / safe  # Cramer: b s + c t = -a, real and imaginary parts
    t = (-b.real * a.imag + a.real * b.imag) / safe
    out = np.where(ok[:, None], np.stack([s, t], axis=1), 0.5)
    return np.clip(out, 0.0, 1.0)


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
    sense = 1 if net @ direction >= 0 else -1
    s = centred @ direction
    confidence = _agreement(s, circulation @ direction, sense)
    ends = points[[int(np.argmin(s)), int(np.argmax(s))]]
    on_surface = bool(np.all(depth_at(np.round(ends).astype(int)) <= surface_depth))
    return VortexLine(points, direction, sense, confidence, closed=False, ends_on_surface=on_surface)


def _agreement(along: np.ndarray, circulation: np.ndarray, sense: int) -> float:
    """The fraction of a line's unit steps (its plaquettes binned by ``along``, their position along the line)
    whose net ``circulation`` about the line turns with ``sense``. A dislocation winds the same way all along
    (a pair of vortices of opposite sense beside it adds nothing to a step's net); a chain of plaquettes
    straddling a phase step near pi winds at random, about half its steps each way."""
    bins = np.round(along - along.min()).astype(int)
    net = np.bincount(bins, weights=circulation)[np.bincount(bins) > 0]
    return float(np.mean(np.sign(net) == sense))


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

