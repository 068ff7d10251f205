"""One scan's analysis: phase retrieval (warm-started from the run's last object), then the series tracker.

An orthogonal scan is phased and analysed on its own grid. A detector-geometry scan is phased on its
sheared (step, row, col) grid, then its object is resampled onto a cubic lab grid (z along q, nm;
docs/lab-frame.md) before any analysis, so that every position, direction and strain is in the lab frame.
Pure array-in, array-out: no sockets, files or clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from streamer.analysis.series import SeriesTracker, TrackedScan
from streamer.geometry import DetectorGeometry, OrthogonalGeometry
from streamer.phasing import PhasingConfig, reconstruct

LAB_MARGIN = 1.3  # the automatic lab grid holds the support's extent times this ...
LAB_PAD_VOXELS = 4  # ... plus this many voxels on each side


@dataclass
class ScanAnalysis:
    """A reconstructed, tracked scan and how it was reconstructed."""

    tracked: TrackedScan
    phasing: dict  # recipe, iterations, population, chi-square, alignment, support size
    lab: OrthogonalGeometry | None = None  # detector scans: the lab grid the object was resampled onto
    stack_rho: np.ndarray | None = field(default=None, repr=False)  # detector scans: the object on the
    #                                                                 (step, row, col) grid (next warm start)

    @property
    def rho(self) -> np.ndarray:
        return self.tracked.rho

    @property
    def errors(self) -> dict:
        return self.tracked.errors


def phasing_info(result) -> dict:
    """What the event says of a reconstruction."""
    members = result.members
    info = {"recipe": result.recipe, "iterations": result.iterations, "population": len(result.chi_square),
            "chi_square": float(result.chi_square[result.best]), "warm_started": result.warm_started,
            "generations": result.generations, "averaged": 0 if members is None else len(members)}
    if result.phase_error is not None and result.support.any():
        info["median_phase_error_rad"] = round(float(np.median(result.phase_error[result.support])), 4)
    return info


@dataclass
class LabObject:
    """A reconstruction resampled from the detector grid onto a lab grid (z, y, x; cubic voxels, nm)."""

    rho: np.ndarray
    support: np.ndarray
    errors: dict  # amplitude_error, phase_error (those given), on the lab grid
    members: np.ndarray | None
    geometry: OrthogonalGeometry
    replicas: np.ndarray | None = None  # noise replicas (streamer/phasing/replicas.py), moved as the members


def lab_grid(geometry: DetectorGeometry, support: np.ndarray, *, voxel_nm: float | None = None,
             q_inv_nm: float | None = None, previous: OrthogonalGeometry | None = None) -> OrthogonalGeometry:
    """The lab grid for an object whose (step, row, col) ``support`` is given: cubic ``voxel_nm`` (default
    the finest resolution of ``geometry``), sized to hold the support with a margin. With ``previous``
    (the run's grid so far) that grid is kept whenever the support fits in it, so that a run's objects
    share one grid and can be aligned and compared."""
    voxel = float(voxel_nm) if voxel_nm else min(geometry.voxel_sizes_nm)
    if previous is not None and math.isclose(previous.voxel_nm, voxel, rel_tol=1e-6):
        voxel = previous.voxel_nm
    half = geometry.support_half_extent_nm(support)
    need = [max(16, 2 * math.ceil(h * LAB_MARGIN / voxel + LAB_PAD_VOXELS)) for h in half]
    if previous is not None and previous.voxel_nm == voxel:
        fits = all(2 * math.ceil(h / voxel + 1) <= n for h, n in zip(half, previous.shape_zyx))
        if fits:
            need = list(previous.shape_zyx)
        else:
            need = [max(a, b) for a, b in zip(need, previous.shape_zyx)]
    return geometry.lab_geometry(tuple(need), voxel, q_inv_nm)


def to_lab(geometry: DetectorGeometry, lab: OrthogonalGeometry, rho: np.ndarray, *, support: np.ndarray | None = None,
           errors: dict | None = None, members: np.ndarray | None = None,
           replicas: np.ndarray | None = None) -> LabObject:
    """Resample an object (and its support, error bars, members and noise replicas) from ``geometry``'s (step, row, col)
    grid onto ``lab`` (linear interpolation), the object's amplitude centre of mass (within ``support``)
    landing on the lab origin, index n // 2: phasing centres it to a whole voxel of the detector grid, which
    along the rocking direction is a resolution element (24.6 nm on the demo's quad), a lab voxel's fraction
    that would shift every position.

    An object's amplitude is interpolated apart from its phase (the linearly interpolated field's): a crystal's
    density is continuous across an antiphase boundary, and the field interpolated across its pi step opened an
    amplitude gap a detector voxel wide there (BENCHMARKS.md, "The amplitude kept across a boundary")."""
    origin = amplitude_centre(np.abs(np.asarray(rho)) * (1 if support is None else np.asarray(support, bool)))

    def resample(a):
        return geometry.to_orthogonal(np.asarray(a), voxel_nm=lab.voxel_nm, shape_zyx=lab.shape_zyx,
                                      origin_index=origin)

    def resample_field(a):  # the amplitude kept apart (see the docstring), at the field's points
        a = np.asarray(a)
        real, imag, amplitude = resample(np.stack([a.real, a.imag, np.abs(a)]).astype(np.float32))
        magnitude = np.hypot(real, imag)
        gain = np.divide(amplitude, magnitude, out=np.zeros_like(magnitude), where=magnitude > 0)
        return ((real * gain) + 1j * (imag * gain)).astype(np.complex64)

    rho_lab = resample_field(rho)
    if support is None:
        amp = np.abs(rho_lab)
        support_lab = amp > 0.1 * amp.max()
    else:
        support_lab = resample(np.asarray(support, np.float32)) > 0.5
    errors_lab = {k: resample(np.asarray(v, np.float32)).astype(np.float32) for k, v in (errors or {}).items()
                  if v is not None}
    members_lab, replicas_lab = (None if a is None else np.stack([resample_field(m) for m in a])
                                 for a in (members, replicas))
    return LabObject(rho_lab, support_lab, errors_lab, members_lab, lab, replicas_lab)


def amplitude_centre(amplitude: np.ndarray) -> tuple[float, ...] | None:
    """The (fractional) index of ``amplitude``'s centre of mass; None when it is all zero."""
    total = float(amplitude.sum())
    if not total > 0:
        return None
    return tuple(float((amplitude.sum(axis=tuple(a for a in range(amplitude.ndim) if a != ax))
                        * np.arange(n)).sum() / total) for ax, n in enumerate(amplitude.shape))


def frame_info(lab: OrthogonalGeometry, detector: DetectorGeometry | None = None) -> dict:
    """What an event or a result file says of the frame its positions are in (docs/lab-frame.md)."""
    info = {"name": "lab", "voxel_nm": round(lab.voxel_nm, 4), "shape_zyx": list(lab.shape_zyx),
            "q_inv_nm": round(lab.q_bragg_inv_nm, 5),
            "axes": "z along q (central pixel, central step), y along the rocking axis, x = y cross z"}
    if detector is not None:
        info["detector_voxel_nm"] = [round(v, 3) for v in detector.voxel_sizes_nm]
        info["detector_stack_shape"] = list(detector.stack_shape)
    return info


def analyze_scan(intensity: np.ndarray, *, scan: int, geometry, xp, tracker: SeriesTracker,
                 phasing: PhasingConfig | None = None, mask: np.ndarray | None = None, rng=None,
                 reconstructor=reconstruct, lab: OrthogonalGeometry | None = None, lab_voxel_nm: float | None = None,
                 q_inv_nm: float | None = None, start: np.ndarray | None = None) -> ScanAnalysis:
    """Reconstruct a scan's intensity (``mask`` True = unmeasured), starting from the run's last object,
    and give the object to the run's ``tracker``.

    Orthogonal ``geometry``: the intensity in lab order (q_z, q_y, q_x), the warm start the tracker's
    last object. ``DetectorGeometry``: the intensity in stack order (step, row, col), peak near the
    centre; the warm start is ``start`` (the previous scan's ``stack_rho``); the object is resampled
    onto the lab grid ``lab`` (or a grid ``lab_grid`` sizes, cubic ``lab_voxel_nm``; |q| ``q_inv_nm``)
    before the tracker sees it. ``reconstructor`` has the signature of ``streamer.phasing.reconstruct``.
    """
    phasing = phasing or PhasingConfig()
    detector = isinstance(geometry, DetectorGeometry)
    expected = geometry.stack_shape if detector else geometry.shape_zyx
    if tuple(intensity.shape) != tuple(expected):
        raise ValueError(f"intensity shape {intensity.shape} does not match geometry "
                         f"{'stack ' if detector else ''}{tuple(expected)}")
    if detector:
        start = start if start is not None and np.shape(start) == tuple(expected) else None
    else:
        start = tracker.previous_rho
    result = reconstructor(intensity, xp=xp, config=phasing, rng=rng, mask=mask, start=start)
    errors = {k: v for k, v in (("amplitude_error", result.amplitude_error), ("phase_error", result.phase_error))
              if v is not None}
    info = phasing_info(result)
    rho, members, replicas, analysed = result.rho, result.members, result.replicas, geometry
    if detector:
        lab = lab_grid(geometry, result.support, voxel_nm=lab_voxel_nm, q_inv_nm=q_inv_nm, previous=lab)
        obj = to_lab(geometry, lab, result.rho, support=result.support, errors=errors, members=result.members,
                     replicas=result.replicas)
        rho, members, replicas, errors, analysed = obj.rho, obj.members, obj.replicas, obj.errors, lab
        info["frame"] = "lab"
        info["voxel_nm"] = round(lab.voxel_nm, 4)
    tracked = tracker.observe(scan, rho, geometry=analysed, xp=xp, members=members, errors=errors, replicas=replicas)
    if tracked.alignment.correlation_to_previous is not None:
        info["twin_flipped"] = tracked.alignment.twin_flipped
        info["correlation_to_previous"] = round(tracked.alignment.correlation_to_previous, 4)
    info["support_voxels"] = tracked.analysis.support_voxels
    return ScanAnalysis(tracked, info, lab=lab if detector else None, stack_rho=result.rho if detector else None)
