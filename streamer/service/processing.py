"""Scan processing: quick peak metrics for every finished scan, then reconstruction, defects and flags.

``ScanProcessor`` remembers what the previous scans of each run showed, so scan k is compared with
the last reconstructed scan.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from streamer.analysis.events import analysis_fields, build_event
from streamer.analysis.peak import peak_metrics
from streamer.analysis.scan import analyze_scan
from streamer.analysis.series import SeriesTracker, TrackedScan
from streamer.analysis.views import central_slices, projected_peak
from streamer.backend import get_namespace
from streamer.geometry import STACK_TO_LAB_AXES, OrthogonalGeometry
from streamer.phasing import reconstruct
from streamer.phasing.wisdom import load_wisdom, save_wisdom
from streamer.service.assembly import AssembledScan
from streamer.service.config import ServiceConfig

log = logging.getLogger(__name__)


@dataclass
class ScanJob:
    """A finished scan with its quick metrics, waiting for reconstruction."""

    scan: AssembledScan
    ingest: dict
    geometry: OrthogonalGeometry | None
    volume: np.ndarray | None  # lab order (q_z, q_y, q_x), float32
    mask: np.ndarray | None  # True where unmeasured (missing frames)
    peak: dict
    flags: list
    error: str | None
    display: dict | None = None  # central slices of the reconstruction, for the live page
    recorded: Future | None = None  # the recording's word on what reached the disk


class ScanProcessor:
    """Turns assembled scans into events, remembering what the previous scans showed."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.xp = get_namespace(config.backend)
        self.reconstructor = reconstructor_for(config)
        config.fft.apply()  # this process's FFTW planner and wisdom folder, from the [fft] table
        load_wisdom()
        self._wisdom_saved = False  # saved once, after the first scan has made its plans
        self._series: dict[str, SeriesTracker] = {}  # run -> what its scans showed so far
        self._projections: dict[str, list[np.ndarray]] = {}  # run -> projected peaks of its baseline scans

    def tracker(self, run: str) -> SeriesTracker:
        """The series tracker of ``run`` (made at its first scan)."""
        if run not in self._series:
            self._series[run] = SeriesTracker(self.config.analysis, self.config.flags)
        return self._series[run]

    def prepare(self, scan: AssembledScan, ingest: dict) -> ScanJob:
        """Quick metrics (peak widths, broadening) for any scan, seconds after it ends; never raises."""
        if scan.metadata.get("metadata_problems"):
            ingest["metadata_problems"] = list(scan.metadata["metadata_problems"])
        try:
            return self._prepare(scan, ingest)
        except Exception:  # one scan's data must not stop the receive loop
            log.exception("quick metrics of scan %s of run %s failed", scan.scan, scan.run)
            return ScanJob(scan, ingest, None, None, None, {}, [], "internal error in the quick metrics; see the log")

    def _prepare(self, scan: AssembledScan, ingest: dict) -> ScanJob:
        geometry, volume, mask, peak, flags, error = None, None, None, {}, [], None
        try:
            geometry = OrthogonalGeometry.from_dict(scan.metadata.get("geometry") or {})
        except (ValueError, TypeError) as exc:
            error = f"cannot analyse scan {scan.scan}: no usable geometry in its metadata ({exc})"
        if geometry is not None and scan.shape != (geometry.num_rocking_steps,) + geometry.frame_shape:
            error = (f"scan {scan.scan} has frames {scan.shape}; the geometry expects "
                     f"{(geometry.num_rocking_steps,) + geometry.frame_shape}")
            geometry = None
        if geometry is not None:
            volume = np.transpose(scan.frames, STACK_TO_LAB_AXES).astype(np.float32)
            unmeasured = sorted(set(scan.missing) | set(scan.corrupt))
            if unmeasured:
                mask = np.zeros(volume.shape, bool)
                mask[:, :, unmeasured] = True
            try:
                peak = peak_metrics(volume, pixel_inv_nm=tuple(geometry.dq_inv_nm(a) for a in range(3)))
            except ValueError as exc:
                error, geometry, volume = f"scan {scan.scan}: {exc}", None, None
            else:
                flags = self.tracker(scan.run).peak(peak, shape=volume.shape,
                                                    rocking_step_deg=geometry.rocking_step_deg)
        return ScanJob(scan, ingest, geometry, volume, mask, peak, flags, error)

    def event(self, job: ScanJob, *, flags: list | None = None, analysis=None, **fields) -> dict:
        """The event of a scan: its quick metrics plus what the analysis adds (typed ``analysis`` and
        ``flags``, plain ``fields``)."""
        s = job.scan
        extra = {"ingest": job.ingest}
        if job.error:
            extra["error"] = job.error
        return build_event(run=s.run, scan=s.scan, metadata=s.metadata, peak=job.peak, latency_s=0.0,
                           flags=list(job.flags) if flags is None else flags, analysis=analysis, **fields, **extra)

    def display(self, job: ScanJob, tracked: TrackedScan) -> dict | None:
        """The live page's view of a reconstruction: central slices plus its lines and boundaries."""
        try:
            view = central_slices(tracked.particle, errors=tracked.errors)
        except Exception:  # a side path: the event goes out without its picture
            log.exception("no slices for scan %s", job.scan.scan)
            return None
        found = analysis_fields(tracked.analysis)
        return {"run": job.scan.run, "scan": job.scan.scan, "voxel_nm": job.geometry.voxel_nm, **view,
                "vortices": found["vortices"], "domain_boundaries": found["domain_boundaries"]}

    def peak_image(self, job: ScanJob) -> dict | None:
        """The scan's peak averaged over theta beside the baseline (mean of the run's first scans)."""
        if job.volume is None:
            return None
        image = projected_peak(job.volume, job.mask)
        first = self._projections.setdefault(job.scan.run, [])
        if len(first) < self.config.flags.baseline_scans and (not first or first[0].shape == image.shape):
            first.append(image)
        baseline = np.mean(first, axis=0).astype(np.float32) if first[0].shape == image.shape else image
        return {"run": job.scan.run, "scan": job.scan.scan, "image": image, "baseline": baseline,
                "baseline_scans": len(first)}

    def failed(self, job: ScanJob) -> dict:
        """The event of a scan whose processing failed; a bare record if even that cannot be built."""
        try:
            return self.event(job, reconstruction={"status": "failed"})
        except Exception:
            log.exception("no full event for scan %s of run %s", job.scan.scan, job.scan.run)
            return {"run": str(job.scan.run), "scan": int(job.scan.scan), "voltage_v": float("nan"),
                    "capacity_mah_g": float("nan"), "peak": {}, "vortices": [], "domain_boundaries": [], "flags": [],
                    "latency_s": 0.0, "reconstruction": {"status": "failed"}, "error": job.error}

    def skipped(self, job: ScanJob, superseded_by: int) -> dict:
        """The event of a scan that is not reconstructed because a newer one is waiting."""
        return self.event(job, reconstruction={"status": "skipped", "superseded_by": superseded_by})

    def process(self, job: ScanJob) -> dict:
        """Reconstruct, find defects, compare with the previous reconstructed scan."""
        if job.geometry is None:
            return self.event(job, reconstruction={"status": "not_possible"})
        scan = job.scan
        try:
            result = analyze_scan(
                job.volume, scan=scan.scan, geometry=job.geometry, xp=self.xp, tracker=self.tracker(scan.run),
                phasing=self.config.phasing, mask=job.mask, rng=np.random.default_rng([self.config.seed, scan.scan]),
                reconstructor=self.reconstructor,
            )
        except ValueError as exc:
            job.error = f"analysis of scan {scan.scan} failed: {exc}"
            return self.event(job, reconstruction={"status": "failed"})
        tracked = result.tracked
        if not self._wisdom_saved:
            self._wisdom_saved = save_wisdom()
        job.display = self.display(job, tracked)
        compared = {"status": "done", "compared_with_scan": tracked.compared_with_scan}
        if getattr(self.reconstructor, "last_report", None):
            compared["cluster"] = self.reconstructor.last_report
        return self.event(job, flags=tracked.flags + job.flags, analysis=tracked.analysis, phasing=result.phasing,
                          reconstruction=compared)


def reconstructor_for(config: ServiceConfig):
    """The engine's ``reconstruct`` in-process, or on the Dask scheduler that ``config.cluster`` names."""
    cluster = config.cluster
    if not cluster.scheduler:
        return reconstruct
    from streamer.service.cluster import ClusterReconstructor

    return ClusterReconstructor(cluster.scheduler, backend=cluster.backend, connect_timeout_s=cluster.connect_timeout_s,
                                scan_timeout_s=cluster.scan_timeout_s)
