"""Small views of a scan for the operator's page: central slices of a reconstruction, projected peak.

Pure array-in, array-out. Planes are named by their two lab axes: ``yx`` (z fixed, across the
layers' normal q), ``zx`` (y fixed) and ``zy`` (x fixed); slices are float32, NaN outside the particle
for phase and strain.
"""

from __future__ import annotations

import numpy as np

from streamer.analysis.displacement import ParticleFields

PLANES = ("yx", "zx", "zy")


def _planes(volume: np.ndarray, centre: tuple[int, int, int]) -> dict[str, np.ndarray]:
    cz, cy, cx = centre
    return {"yx": volume[cz], "zx": volume[:, cy, :], "zy": volume[:, :, cx]}


def central_slices(particle: ParticleFields, *, margin: int = 3, errors: dict | None = None) -> dict:
    """Amplitude, displacement phase G.u (rad, = -arg(rho), ramp removed, zero at the centre; docs/conventions.md)
    and strain along q through the particle's centre.

    ``particle`` is the object's one set of fields (``particle_fields``), the same the analysis and the
    report use. Returns ``{"centre": [z, y, x], "origin": [z, y, x], "shape": [nz, ny, nx], "amplitude" |
    "phase" | "strain": {plane: 2D float32}}``: the slices cover the particle's bounding box plus ``margin``
    voxels (``origin`` is its first voxel, ``shape`` its size), through the particle's centroid ``centre``
    (grid coordinates). The strain leaves out the particle's outer voxels, whose phase is unreliable.
    ``errors`` (name -> volume like the object, e.g. the per-voxel ``amplitude_error`` and ``phase_error``
    of an averaged population) are sliced the same way, NaN outside the particle; the amplitude error
    relative to the maximum amplitude.
    """
    amplitude, support, flat = particle.amplitude, particle.support, particle.flat
    centre = tuple(round(float(c.mean())) for c in np.nonzero(support))
    phase = np.angle(flat * np.conj(flat[centre]) / max(amplitude[centre], 1e-30))  # flat: the displacement object
    phase = np.where(support, phase, np.nan)
    strain = np.where(particle.inner, particle.strain, np.nan)
    lo, hi = _bounding_box(support, margin)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    local = tuple(c - a for c, a in zip(centre, lo))
    out = {"centre": list(centre), "origin": lo, "shape": [b - a for a, b in zip(lo, hi)]}
    views = [("amplitude", amplitude / amplitude.max()), ("phase", phase), ("strain", strain)]
    for name, err in (errors or {}).items():
        err = np.asarray(err, dtype=np.float32)
        if err.shape != amplitude.shape:
            raise ValueError(f"{name} has shape {err.shape}, the object {amplitude.shape}")
        views.append((name, np.where(support, err / (amplitude.max() if name == "amplitude_error" else 1), np.nan)))
    for name, volume in views:
        out[name] = {p: np.ascontiguousarray(a, dtype=np.float32) for p, a in _planes(volume[box], local).items()}
    return out


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[list[int], list[int]]:
    lo, hi = [], []
    for axis, n in enumerate(mask.shape):
        hit = np.nonzero(mask.any(axis=tuple(k for k in range(mask.ndim) if k != axis)))[0]
        lo.append(max(0, int(hit[0]) - margin))
        hi.append(min(n, int(hit[-1]) + 1 + margin))
    return lo, hi


def projected_peak(volume: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The Bragg peak averaged over theta (axis 2 of the lab-ordered volume): a (q_z, q_y) float32 image.

    ``mask`` (True = unmeasured, as for the analysis) leaves missing frames out of the average.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (q_z, q_y, theta), got shape {volume.shape}")
    if mask is None:
        return np.ascontiguousarray(volume.mean(axis=2), dtype=np.float32)
    if mask.shape != volume.shape:
        raise ValueError(f"mask shape {mask.shape} differs from volume shape {volume.shape}")
    measured = (~mask).sum(axis=2)
    total = np.where(mask, 0, volume).sum(axis=2, dtype=np.float64)
    return np.divide(total, measured, out=np.zeros(total.shape), where=measured > 0).astype(np.float32)


#: the isosurface of the 3D view: this fraction of the particle's bulk (median) amplitude
ISOSURFACE_LEVEL = 0.5
MAX_FACES = 12000  # coarser marching steps until the mesh has at most this many triangles


def scene_3d(particle: ParticleFields, vortices: list[dict], boundaries: list[dict], *, voxel_nm: float,
             level: float = ISOSURFACE_LEVEL, max_faces: int = MAX_FACES) -> dict:
    """What the 3D view draws (docs/web.md): the particle's isosurface (its amplitude smoothed by a voxel, at
    ``level`` of the bulk), its vortex lines and boundary planes, in nm of the lab frame (z, y, x) from the grid
    centre (index n // 2), as the events give positions.

    ``vortices`` and ``boundaries`` are the event's records (``points``/``position`` in voxels, ``normal``).
    Returns ``{"voxel_nm", "level", "extent_nm": [[lo, hi] per axis], "mesh": {"vertices": (N, 3) float32 nm,
    "faces": (M, 3) float32 vertex indices}, "lines": [{"winding", "type", "closed", "points_nm"}],
    "planes": [{"position_nm", "normal", "corners_nm"}]}``; lines are polylines ordered along the line."""
    from scipy import ndimage
    from skimage.measure import marching_cubes

    support = particle.support
    amplitude = ndimage.gaussian_filter(particle.amplitude, 1.0)  # smoothed by a voxel, as the support is cut
    centre = np.array([n // 2 for n in amplitude.shape], float)
    bulk = float(np.median(amplitude[support])) if support.any() else float(amplitude.max())
    # 0 outside the particle and beyond the grid: a closed surface even where the particle meets the grid's edge
    volume = np.pad(np.where(support, amplitude, 0.0), 1)
    step, mesh = 1, None
    while mesh is None or (len(mesh[1]) > max_faces and step < 8):
        if mesh is not None:
            step += 1
        verts, faces, *_ = marching_cubes(volume, level=level * bulk, step_size=step, allow_degenerate=False)
        mesh = (verts - 1.0, faces)
    verts_nm = (mesh[0] - centre) * voxel_nm
    lo, hi = verts_nm.min(axis=0), verts_nm.max(axis=0)
    lines = [_polyline(v, centre, voxel_nm) for v in vortices]
    planes = [_plane(b, centre, voxel_nm, lo, hi) for b in boundaries]
    return {"voxel_nm": float(voxel_nm), "level": float(level),
            "extent_nm": [[round(float(a), 1), round(float(b), 1)] for a, b in zip(lo, hi)],
            "mesh": {"vertices": verts_nm.astype(np.float32), "faces": mesh[1].astype(np.float32)},
            "lines": [line for line in lines if line is not None], "planes": [p for p in planes if p is not None]}


def _polyline(vortex: dict, centre: np.ndarray, voxel_nm: float) -> dict | None:
    """A line's pierced plaquettes in order: along its direction, or round its normal for a closed loop."""
    points = np.asarray(vortex.get("points") or [vortex.get("position")], float)
    if points.ndim != 2 or points.shape[1] != 3 or not np.isfinite(points).all():
        return None
    direction = np.asarray(vortex.get("direction") or (1.0, 0.0, 0.0), float)
    direction = direction / (np.linalg.norm(direction) or 1.0)
    mean = points.mean(axis=0)
    if vortex.get("closed") and len(points) > 2:
        a = np.cross(direction, [1.0, 0.0, 0.0] if abs(direction[0]) < 0.9 else [0.0, 1.0, 0.0])
        a /= np.linalg.norm(a)
        b = np.cross(direction, a)
        order = np.argsort(np.arctan2((points - mean) @ b, (points - mean) @ a))
        points = np.vstack([points[order], points[order][:1]])
    else:
        points = points[np.argsort((points - mean) @ direction)]
        if len(points) == 1:  # a single plaquette: a short segment along the direction, one voxel long
            points = np.vstack([points - direction / 2, points + direction / 2])
    return {"winding": int(vortex.get("winding", 0)), "type": str(vortex.get("type", "")),
            "closed": bool(vortex.get("closed", False)),
            "points_nm": np.round((points - centre) * voxel_nm, 2).tolist()}


def _plane(boundary: dict, centre: np.ndarray, voxel_nm: float, lo: np.ndarray, hi: np.ndarray) -> dict | None:
    """A boundary's plane as a rectangle through its centre, as large as the particle's box seen in it: one side
    along the plane's direction nearest to z (the layers' normal), the other across it."""
    normal = np.asarray(boundary.get("normal") or (), float)
    position = np.asarray(boundary.get("position") or (), float)
    if normal.shape != (3,) or position.shape != (3,) or not np.linalg.norm(normal) > 0:
        return None
    normal = normal / np.linalg.norm(normal)
    p = (position - centre) * voxel_nm
    a = np.array([1.0, 0.0, 0.0]) - normal[0] * normal  # z, less its part along the normal
    if np.linalg.norm(a) < 1e-3:  # a plane in the layers: one side along y
        a = np.array([0.0, 1.0, 0.0]) - normal[1] * normal
    a /= np.linalg.norm(a)
    b = np.cross(normal, a)
    size = hi - lo
    ha, hb = 0.5 * float(np.abs(a) @ size), 0.5 * float(np.abs(b) @ size)
    corners = [p + sa * ha * a + sb * hb * b for sa, sb in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    return {"position_nm": np.round(p, 2).tolist(), "normal": np.round(normal, 4).tolist(),
            "corners_nm": np.round(corners, 2).tolist()}
