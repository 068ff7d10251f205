"""Scan processing: quick peak metrics for every finished scan, then reconstruction, defects and flags.

``ScanProcessor`` remembers what the previous scans of each run showed, so scan k is compared with
the last reconstructed scan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from streamer.analysis.events import build_event
from streamer.analysis.flags import defect_flags, peak_flags
from streamer.analysis.peak import peak_metrics
from streamer.analysis.scan import analyze_scan
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


class ScanProcessor:
    """Turns assembled scans into events, remembering what the previous scans showed."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.xp = get_namespace(config.backend)
        self.reconstructor = reconstructor_for(config)
        load_wisdom()
        self._wisdom_saved = False  # saved once, after the first scan has made its plans
        self._previous: dict[str, tuple[int, object]] = {}  # run -> (scan, ScanAnalysis) last reconstructed
        self._peaks: dict[str, list[dict]] = {}  # run -> peak metrics of every scan, in order
        self._projections: dict[str, list[np.ndarray]] = {}  # run -> projected peaks of its baseline scans

    def prepare(self, scan: AssembledScan, ingest: dict) -> ScanJob:
        """Quick metrics (peak widths, broadening) for any scan, seconds after it ends."""
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
                peaks = self._peaks.setdefault(scan.run, [])
                flags = peak_flags(peak, peaks, shape=volume.shape, rocking_step_deg=geometry.rocking_step_deg,
                                   config=self.config.flags)
                peaks.append(peak)
        return ScanJob(scan, ingest, geometry, volume, mask, peak, flags, error)

    def event(self, job: ScanJob, **fields) -> dict:
        """The event of a scan: its quick metrics plus whatever ``fields`` the analysis adds."""
        s = job.scan
        fields = {"peak": job.peak, "vortices": [], "domain_boundaries": [], "flags": list(job.flags), **fields}
        extra = {"ingest": job.ingest}
        if job.error:
            extra["error"] = job.error
        return build_event(run=s.run, scan=s.scan, metadata=s.metadata, latency_s=0.0, **fields, **extra)

    def display(self, job: ScanJob, result) -> dict | None:
        """The live page's view of a reconstruction: central slices plus its lines and boundaries."""
        try:
            view = central_slices(result.rho, voxel_nm=job.geometry.voxel_nm, q_inv_nm=job.geometry.q_bragg_inv_nm,
                                  threshold=self.config.analysis.support_threshold, errors=result.errors)
        except Exception:  # a side path: the event goes out without its picture
            log.exception("no slices for scan %s", job.scan.scan)
            return None
        return {"run": job.scan.run, "scan": job.scan.scan, "voxel_nm": job.geometry.voxel_nm, **view,
                "vortices": result.vortices, "domain_boundaries": result.domain_boundaries}

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

    def skipped(self, job: ScanJob, superseded_by: int) -> dict:
        """The event of a scan that is not reconstructed because a newer one is waiting."""
        return self.event(job, reconstruction={"status": "skipped", "superseded_by": superseded_by})

    def process(self, job: ScanJob) -> dict:
        """Reconstruct, find defects, compare with the previous reconstructed scan."""
        if job.geometry is None:
            return self.event(job, reconstruction={"status": "not_possible"})
        scan = job.scan
        prev_scan, prev = self._previous.get(scan.run, (None, None))
        try:
            result = analyze_scan(
                job.volume, geometry=job.geometry, xp=self.xp, phasing=self.config.phasing,
                config=self.config.analysis, previous_rho=None if prev is None else prev.rho, mask=job.mask,
                rng=np.random.default_rng([self.config.seed, scan.scan]), peak=job.peak,
                reconstructor=self.reconstructor,
            )
        except ValueError as exc:
            job.error = f"analysis of scan {scan.scan} failed: {exc}"
            return self.event(job, reconstruction={"status": "failed"})
        flags = []
        if prev is not None:
            flags += defect_flags(vars(prev), vars(result), self.config.flags)
        self._previous[scan.run] = (scan.scan, result)
        if not self._wisdom_saved:
            self._wisdom_saved = save_wisdom()
        job.display = self.display(job, result)
        compared = {"status": "done", "compared_with_scan": prev_scan}
        if getattr(self.reconstructor, "last_report", None):
            compared["cluster"] = self.reconstructor.last_report
        return self.event(job, vortices=result.vortices, domain_boundaries=result.domain_boundaries,
                           flags=flags + job.flags, phasing=result.phasing, reconstruction=compared,
                           dislocation_pairs=result.dislocation_pairs, strain=result.strain,
                           domains=result.domains)


def reconstructor_for(config: ServiceConfig):
    """The engine's ``reconstruct`` in-process, or on the Dask cluster that ``config.cluster`` names."""
    if not config.cluster:
        return reconstruct
    from streamer.service.cluster import ClusterReconstructor

    return ClusterReconstructor(config.cluster, backend=config.cluster_backend,
                                connect_timeout_s=config.cluster_connect_timeout_s,
                                scan_timeout_s=config.cluster_scan_timeout_s)
