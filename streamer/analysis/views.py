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
