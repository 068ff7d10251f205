"""The one series tracker: what the previous scans of a run showed, and what changed since.

Both the live service and ``bcdi-stream analyze`` feed it the same way: each scan's peak metrics
(peak flags against the first scans), then each reconstructed object, which it aligns to the previous
one (translation, twin, phase offset), analyses and compares (defect flags). Pure: no files or clocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.analysis.detections import ObjectAnalysis
from streamer.analysis.displacement import ParticleFields
from streamer.analysis.flags import Flag, defect_flags, peak_flags
from streamer.analysis.objects import analyze_object, fields_of
from streamer.phasing.alignment import follow, register


@dataclass(frozen=True)
class Alignment:
    """How an object was moved onto the previous one (nothing when there was none)."""

    shift_voxels: tuple[float, ...] = (0.0, 0.0, 0.0)
    twin_flipped: bool = False
    correlation_to_previous: float | None = None


@dataclass
class TrackedScan:
    """One object as the series sees it: aligned to the previous one, analysed, compared."""

    scan: int
    rho: np.ndarray  # aligned to the previous object
    analysis: ObjectAnalysis
    flags: list[Flag]  # defect flags against the previous object
    particle: ParticleFields  # the aligned object's particle and strain, for the views
    errors: dict = field(default_factory=dict)  # per-voxel error bars, aligned with rho
    alignment: Alignment = field(default_factory=Alignment)
    compared_with_scan: int | None = None
    members: np.ndarray | None = field(default=None, repr=False)  # the averaged members, aligned with rho
    replicas: np.ndarray | None = field(default=None, repr=False)  # its noise replicas, aligned with rho


class SeriesTracker:
    """One run's memory: the peaks seen so far and the last analysed object."""

    def __init__(self, analysis: AnalysisConfig | None = None, flags: FlagConfig | None = None):
        self.analysis_config = analysis or AnalysisConfig()
        self.flag_config = flags or FlagConfig()
        self.peaks: list[dict] = []
        self.last: TrackedScan | None = None

    @property
    def previous_rho(self) -> np.ndarray | None:
        """The last object, aligned: the warm start of the next reconstruction."""
        return None if self.last is None else self.last.rho

    def peak(self, peak: dict, *, shape, rocking_step_deg: float) -> list[Flag]:
        """Broadening and drift flags of a scan's raw peak; the peak joins the history."""
        found = peak_flags(peak, self.peaks, shape=tuple(shape), rocking_step_deg=rocking_step_deg,
                           config=self.flag_config)
        self.peaks.append(peak)
        return found

    def observe(self, scan: int, rho: np.ndarray, *, geometry, xp, members: np.ndarray | None = None,
                errors: dict | None = None, positions: str = "aligned",
                replicas: np.ndarray | None = None) -> TrackedScan:
        """Align ``rho`` (and its members, noise replicas and error bars) to the previous object, analyse it,
        compare.

        ``positions="object"`` reports voxel positions in ``rho``'s own array (as given), not in the
        aligned frame; positions in nm are always in the aligned frame that the series shares.
        """
        if positions not in ("aligned", "object"):
            raise ValueError(f"positions must be 'aligned' or 'object', got {positions!r}")
        errors = dict(errors or {})
        alignment = Alignment()
        previous = self.previous_rho
        if previous is not None and previous.shape == rho.shape:
            reg = register(rho, previous)
            rho = reg.aligned
            if members is not None:  # the same transformation, so the members stay aligned with rho
                members = follow(members, reg, axes=(1, 2, 3))
            if replicas is not None:
                replicas = follow(replicas, reg, axes=(1, 2, 3))
            errors = {k: follow(v, reg) for k, v in errors.items()}
            alignment = Alignment(tuple(float(s) for s in reg.shift), bool(reg.twin), float(reg.correlation))
        particle = fields_of(rho, geometry, self.analysis_config)
        analysis = analyze_object(rho, geometry=geometry, xp=xp, config=self.analysis_config, particle=particle,
                                  members=members if members is not None and len(members) > 1 else None,
                                  replicas=replicas)
        if positions == "object" and alignment != Alignment():
            analysis = in_object_frame(analysis, alignment, rho.shape)
        flags = [] if self.last is None else defect_flags(self.last.analysis, analysis, self.flag_config)
        tracked = TrackedScan(scan, rho, analysis, flags, particle, errors, alignment,
                              None if self.last is None else self.last.scan, members, replicas)
        self.last = tracked
        return tracked


def in_object_frame(analysis: ObjectAnalysis, alignment: Alignment, shape) -> ObjectAnalysis:
    """Voxel positions of the aligned frame -> voxel indices of the object array as it was given."""
    n = np.asarray(shape, float)

    def back(points):
        c = np.mod(np.asarray(points, float) - np.asarray(alignment.shift_voxels, float), n)
        if alignment.twin_flipped:
            c = (n - 1) - c
        return np.round(c, 2).tolist()

    return replace(
        analysis,
        vortices=tuple(replace(v, position=tuple(back(v.position)), points=tuple(tuple(p) for p in back(v.points)))
                       for v in analysis.vortices),
        domain_boundaries=tuple(replace(b, position=tuple(back(b.position))) for b in analysis.domain_boundaries),
        domains=tuple(replace(d, centroid=tuple(back(d.centroid))) for d in analysis.domains),
    )
