"""Scan processing: quick peak metrics for every finished scan, then reconstruction, defects and flags.

``ScanProcessor`` remembers what the previous scans of each run showed, so scan k is compared with
the last reconstructed scan. Orthogonal scans are phased and analysed on their own grid; detector-geometry
scans are prepared from the detector's counts ([detector] table), phased on their sheared grid and
analysed in the lab frame (docs/lab-frame.md).
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from streamer.analysis.events import analysis_fields, build_event
from streamer.analysis.peak import lattice_change, peak_metrics, peak_q_inv_nm
from streamer.analysis.preprocess import peak_roll
from streamer.analysis.resolution import prtf_resolution
from streamer.analysis.scan import analyze_scan, frame_info
from streamer.analysis.series import SeriesTracker, TrackedScan
from streamer.analysis.views import central_slices, projected_peak, scene_3d
from streamer.backend import get_namespace, is_numpy
from streamer.geometry import STACK_TO_LAB_AXES, DetectorGeometry, OrthogonalGeometry, from_dict
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.budget import BudgetChoice, choose, iteration_overhead, on_coarser_grid
from streamer.phasing.kernels import preload_numba_kernels
from streamer.phasing.wisdom import load_wisdom, save_wisdom
from streamer.service.assembly import AssembledScan
from streamer.service.config import ServiceConfig
from streamer.service.costs import FftCosts, remembered_slowness, slowness_key
from streamer.service.detector_scan import DetectorMaps, detector_peak, prepare_detector_scan

log = logging.getLogger(__name__)


@dataclass
class ScanJob:
    """A finished scan with its quick metrics, waiting for reconstruction."""

    scan: AssembledScan
    ingest: dict
    geometry: OrthogonalGeometry | DetectorGeometry | None  # a detector scan's: binned as ``stack``
    volume: np.ndarray | None  # lab order (q_z, q_y, q_x), float32 (a detector scan: resampled onto lab q)
    mask: np.ndarray | None  # True where unmeasured (missing frames)
    peak: dict
    flags: list
    error: str | None
    display: dict | None = None  # central slices of the reconstruction, for the live page
    recorded: Future | None = None  # the recording's word on what reached the disk
    stack: np.ndarray | None = None  # a detector scan: binned counts (step, row, col), peak rolled to the centre
    stack_mask: np.ndarray | None = None  # ... True where unmeasured (gaps, bad, hot, saturated, lost frames)
    preprocess: dict | None = None  # a detector scan: what preprocessing did (masked pixels, binning, roll)
    q_inv_nm: float | None = None  # a detector scan: |q| at the peak's centre of mass
    lab: OrthogonalGeometry | None = None  # a detector scan: the lab grid its object was analysed on
    result: object = None  # the ScanAnalysis, once reconstructed (for its result file)
    lattice: dict | None = None  # |q| at the peak and the change of c since the run's first scan


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
        self.maps = DetectorMaps(config.detector)  # a missing map file stops the service at start
        self._labs: dict[str, OrthogonalGeometry] = {}  # run -> the lab grid its detector scans share
        self._stack_starts: dict[str, np.ndarray] = {}  # run -> last detector-grid object (warm start)
        # the time budget: FFT costs measured here, or on the cluster's workers
        self.costs = costs_for(config, self.reconstructor, self.xp) if config.budget.mode != "off" else None
        self._fixed_s: dict[str, float] = {}  # run -> what its last scan cost besides phasing (s)
        self._slowness: dict[str, float] = {}  # run -> phasing seconds taken / predicted (the model's error here)
        # a run's first scan: what the last budgeted runs on this host found, never below 1 (only more careful);
        # it predicted 39 s for a cold real-size scan that took 63 on a slow day (BENCHMARKS.md)
        self._first_slowness = (max(1.0, remembered_slowness(slowness_key(self.xp)))
                                if self.costs is not None and not config.cluster.scheduler else 1.0)
        self._q_ref: dict[str, tuple[float, float, int]] = {}  # run -> (|q|, its error, scan) of its first scan

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
            geometry = from_dict(scan.metadata.get("geometry") or {})
        except (ValueError, TypeError) as exc:
            error = f"cannot analyse scan {scan.scan}: no usable geometry in its metadata ({exc})"
        if isinstance(geometry, DetectorGeometry):
            return self._prepare_detector(scan, ingest, geometry)
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
        job = ScanJob(scan, ingest, geometry, volume, mask, peak, flags, error)
        if geometry is not None and peak:
            dq = tuple(geometry.dq_inv_nm(a) for a in range(3))
            q, q_err = peak_q_inv_nm(peak, volume.shape, q_center_inv_nm=(geometry.q_bragg_inv_nm, 0.0, 0.0),
                                     dq_inv_nm=dq)
            job.lattice = self._lattice(scan.run, scan.scan, q, q_err)
        return job

    def _prepare_detector(self, scan: AssembledScan, ingest: dict, geometry: DetectorGeometry) -> ScanJob:
        """Detector counts -> masked, binned stack and lab-frame peak metrics; an unfit scan is its error."""
        unmeasured = sorted(set(scan.missing) | set(scan.corrupt))
        try:
            prepared = prepare_detector_scan(scan.frames, geometry, self.config.detector, self.maps,
                                             unmeasured_frames=unmeasured, monitor=scan.metadata.get("monitor"))
            peak, volume, q = detector_peak(prepared)
        except ValueError as exc:
            return ScanJob(scan, ingest, None, None, None, {}, [], f"cannot analyse scan {scan.scan}: {exc}")
        stack, mask, binned, info = prepared.stack, prepared.mask, prepared.geometry, prepared.info
        shift = peak_roll(stack, mask)  # for phasing the peak goes to the centre: a roll, nothing cropped
        info["shift_step_row_col"] = list(shift)
        stack, mask = np.roll(stack, shift, axis=(0, 1, 2)), np.roll(mask, shift, axis=(0, 1, 2))
        flags = self.tracker(scan.run).peak(peak, shape=binned.stack_shape[1:] + binned.stack_shape[:1],
                                            rocking_step_deg=binned.rocking_step_deg)
        job = ScanJob(scan, ingest, binned, volume, None, peak, flags, None, stack=stack, stack_mask=mask,
                      preprocess=info, q_inv_nm=q)
        # the centre of mass' counting error, on the lab q grid of the peak metrics (all of it along q: an upper bound)
        q_err = peak["dq_inv_nm"] * float(np.linalg.norm(peak.get("center_of_mass_error_px") or [0.0]))
        job.lattice = self._lattice(scan.run, scan.scan, q, q_err)
        return job

    def _lattice(self, run: str, scan: int, q: float, q_err: float) -> dict:
        """|q| at the scan's peak and the change of the lattice spacing along q since the run's first scan."""
        ref = self._q_ref.setdefault(run, (q, q_err, scan))
        change = lattice_change(q, q_err, ref[0], ref[1])
        return {**{k: (round(v, 7) if "q_" in k else float(f"{v:.4g}")) for k, v in change.items()},
                "q_error_inv_nm": float(f"{q_err:.3g}"), "reference_scan": ref[2],
                "d_spacing_nm": round(2 * np.pi / q, 6), "absolute": "only as calibrated as the geometry"}

    def budget_s(self, metadata: dict, num_frames: int) -> float:
        """The seconds a scan's result may take: its acquisition time by default ([budget])."""
        b = self.config.budget
        exposure = metadata.get("exposure_s")
        if b.mode == "acquisition" and isinstance(exposure, (int, float)) and exposure > 0 and num_frames > 0:
            return float(exposure) * num_frames
        return b.budget_s

    def choose(self, run: str, shape: tuple[int, int, int], budget_s: float, warm: bool,
               binned: tuple[int, int, int] = (1, 1, 1)) -> BudgetChoice:
        """What to reconstruct of a ``shape`` intensity within ``budget_s`` (``share`` of it for this work)."""
        cfg, b = self.config.phasing, self.config.budget
        slowness = self._slowness.get(run, self._first_slowness)
        return choose(shape, budget_s * b.share, recipe=cfg.warm_recipe if warm else cfg.recipe,
                      overhead=iteration_overhead(binned),
                      population=cfg.population, fft_pair_s=lambda s, n: self.costs(s, n) * slowness,
                      fixed_s=self._fixed_s.get(run, b.fixed_s), min_population=min(b.min_population, cfg.population),
                      max_memory_bytes=b.max_memory_gb * 2**30 or None, keep_iterations=warm,
                      search=None if warm else cfg.search, polish=0 if warm else cfg.polish_er,
                      replicas=cfg.replica_iterations)

    @staticmethod
    def _binned(geometry) -> tuple[int, int, int]:
        """Pixels summed per voxel of a scan's phasing grid: a detector scan's (step, row, col) binning."""
        return geometry.pixels_per_voxel if isinstance(geometry, DetectorGeometry) else (1, 1, 1)

    def _phasing_grid(self, geometry) -> tuple[OrthogonalGeometry | DetectorGeometry, tuple[int, int, int]]:
        """A scan's geometry as it is phased (a detector scan's binned by [detector] binning) and its grid's shape."""
        if isinstance(geometry, DetectorGeometry):
            geometry = geometry.rebinned(self.config.detector.binning)[0]
            return geometry, geometry.stack_shape
        return geometry, tuple(geometry.shape_zyx)

    def _start(self, run: str, shape, budget_s: float, binned) -> tuple[bool, BudgetChoice | None]:
        """Whether the scan starts from the run's previous object (one of its shape), and what the budget chooses
        (None without measured costs). ``warm_start = "auto"``: warm only when the budget cannot afford the cold
        treatment in full (without a budget it can)."""
        mode = self.config.phasing.warm_start
        start = self._stack_starts.get(run) if run in self._labs else self.tracker(run).previous_rho
        possible = start is not None and tuple(np.shape(start)) == tuple(shape)
        if self.costs is None:
            return bool(possible and mode is True), None
        if possible and mode is True:
            return True, self.choose(run, shape, budget_s, True, binned)
        cold = self.choose(run, shape, budget_s, False, binned)
        if possible and mode == "auto" and not cold.full:
            return True, self.choose(run, shape, budget_s, True, binned)
        return False, cold

    def scan_started(self, run: str, metadata: dict, num_frames: int) -> None:
        """A scan's shape is known when it starts: time its FFT and make the plans its budget will choose,
        in the background, so that no scan's latency includes planning. Never raises."""
        if self.costs is None or not isinstance(metadata.get("geometry"), dict):
            return
        try:
            geometry, shape = self._phasing_grid(from_dict(metadata["geometry"]))
        except (ValueError, TypeError):  # ConfigError is a ValueError
            return
        budget = self.budget_s(metadata, num_frames)

        def plan():
            if is_numpy(self.costs.xp):  # the CPU kernels' machine code too (the first scan's start loads it)
                preload_numba_kernels()
            binned = self._binned(geometry)
            choice = self._start(run, shape, budget, binned)[1]
            self.costs.plan_ahead(choice.shape, choice.population)

        self.costs.submit(shape, plan)

    def _budgeted(self, job: ScanJob, shape) -> tuple[PhasingConfig, object, BudgetChoice | None]:
        """The phasing configuration and reconstructor the scan's budget allows (the configured ones without)."""
        binned = self._binned(job.geometry)
        frames = int(shape[0] if isinstance(job.geometry, DetectorGeometry) else shape[2])
        budget = self.budget_s(job.scan.metadata, frames)
        warm, choice = self._start(job.scan.run, tuple(shape), budget, binned)
        cfg = self.config.phasing.replace(binned_pixels=binned, warm_start=warm)
        if choice is None:
            return cfg, self.reconstructor, None
        phasing = cfg.replace(population=choice.population, average=min(cfg.average, choice.population),
                              **({"warm_recipe": choice.recipe} if warm else {"recipe": choice.recipe}))
        if choice.shape == tuple(shape):
            return phasing, self.reconstructor, choice
        return phasing, on_coarser_grid(self.reconstructor, choice.shape), choice

    @staticmethod
    def _resolution(job: ScanJob, result) -> dict | None:
        """The reconstruction's half-period resolution (nm) from its PRTF against the measured intensity, on
        the grid it was phased on; None (logged) when it cannot be estimated."""
        try:
            if isinstance(job.geometry, DetectorGeometry):
                rho, intensity, mask, basis = result.stack_rho, job.stack, job.stack_mask, job.geometry.q_basis_inv_nm
            else:
                rho, intensity, mask = result.rho, job.volume, job.mask
                basis = np.diag([job.geometry.dq_inv_nm(a) for a in range(3)])
            return prtf_resolution(rho, intensity, basis, mask=mask).record()
        except ValueError as exc:
            log.warning("no resolution estimate for scan %s: %s", job.scan.scan, exc)
            return None

    @staticmethod
    def _phasing_voxels(job: ScanJob, full, kept) -> list[float]:
        """Voxel sizes (nm) of the grid the scan was phased on: a q crop coarsens them by full / kept."""
        if isinstance(job.geometry, DetectorGeometry):
            sizes = job.geometry.voxel_sizes_nm
        else:
            sizes = [job.geometry.voxel_nm] * 3
        return [round(v * n / k, 3) for v, n, k in zip(sizes, full, kept)]

    def event(self, job: ScanJob, *, flags: list | None = None, analysis=None, **fields) -> dict:
        """The event of a scan: its quick metrics plus what the analysis adds (typed ``analysis`` and
        ``flags``, plain ``fields``). A detector scan's event also says its frame and preprocessing."""
        s = job.scan
        extra = {"ingest": job.ingest}
        if job.error:
            extra["error"] = job.error
        if job.lattice is not None:
            extra["lattice"] = job.lattice
        if isinstance(job.geometry, DetectorGeometry):
            if job.lab is not None:
                extra["frame"] = frame_info(job.lab, job.geometry)
            extra["preprocess"] = job.preprocess
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
        voxel = (job.lab or job.geometry).voxel_nm
        try:  # the 3D view's scene: a side path too
            view["scene"] = scene_3d(tracked.particle, found["vortices"], found["domain_boundaries"], voxel_nm=voxel)
        except Exception:
            log.exception("no 3D scene for scan %s", job.scan.scan)
        return {"run": job.scan.run, "scan": job.scan.scan, "voxel_nm": voxel, **view,
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

    def result_fields(self, job: ScanJob, event: dict, *, recording) -> dict:
        """What the scan's result file holds (``write_result``'s arguments): the analysed object (lab frame
        for a detector scan) with its support and error bars, the event's peak and phasing, and provenance:
        code version, this service's configuration, the recording and scan it came from."""
        import streamer

        result, s = job.result, job.scan
        geometry = job.lab if job.lab is not None else job.geometry
        metadata = {**s.metadata, "run": s.run, "scan": s.scan, "geometry": geometry.to_dict(),
                    "provenance": {"code_version": streamer.__version__, "written_by": "bcdi-stream serve",
                                   "configuration": self.config.model_dump(mode="json"),
                                   "input": {"recording": str(recording), "run": s.run, "scan": s.scan,
                                             "frames": int(s.shape[0]), "status": s.status}}}
        if job.lab is not None:
            metadata["frame"] = event.get("frame")
            metadata["detector_geometry"] = job.geometry.to_dict()
            metadata["voxel_nm_zyx"] = [job.lab.voxel_nm] * 3
        errors = result.errors
        return {"obj": result.rho, "support": result.tracked.particle.support, "recipe": result.phasing.get("recipe", ""),
                "metadata": metadata, "peak": job.peak, "phasing": result.phasing,
                "amplitude_error": errors.get("amplitude_error"), "phase_error": errors.get("phase_error"),
                "members": result.tracked.members if self.config.recording.keep_members else None,
                "replicas": result.tracked.replicas if self.config.recording.keep_members else None}

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
        return self.event(job, reconstruction={"status": "skipped", "reason": "superseded",
                                               "superseded_by": superseded_by})

    def stopped(self, job: ScanJob) -> dict:
        """The event of a scan still waiting when the service was stopped (a signal, or its command gone): its
        frames are recorded, it is not reconstructed."""
        return self.event(job, reconstruction={"status": "skipped", "reason": "stopped"})

    def process(self, job: ScanJob) -> dict:
        """Reconstruct, find defects, compare with the previous reconstructed scan."""
        if job.geometry is None:
            return self.event(job, reconstruction={"status": "not_possible"})
        scan = job.scan
        rng = np.random.default_rng([self.config.seed, scan.scan])
        detector = isinstance(job.geometry, DetectorGeometry)
        shape = job.stack.shape if detector else job.volume.shape
        phasing, reconstructor, choice = self._budgeted(job, shape)
        spent = {}

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return reconstructor(*args, **kwargs)
            finally:
                spent["phasing_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            if detector:
                det = self.config.detector
                lab = self._labs.get(scan.run)
                if det.lab_shape_zyx is not None:
                    lab = job.geometry.lab_geometry(det.lab_shape_zyx, det.lab_voxel_nm or min(job.geometry.voxel_sizes_nm),
                                                    job.q_inv_nm)
                result = analyze_scan(
                    job.stack, scan=scan.scan, geometry=job.geometry, xp=self.xp, tracker=self.tracker(scan.run),
                    phasing=phasing, mask=job.stack_mask, rng=rng, reconstructor=timed,
                    lab=lab, lab_voxel_nm=det.lab_voxel_nm or None, q_inv_nm=job.q_inv_nm,
                    start=self._stack_starts.get(scan.run))
                job.lab = self._labs[scan.run] = result.lab
                self._stack_starts[scan.run] = result.stack_rho
            else:
                result = analyze_scan(
                    job.volume, scan=scan.scan, geometry=job.geometry, xp=self.xp, tracker=self.tracker(scan.run),
                    phasing=phasing, mask=job.mask, rng=rng, reconstructor=timed,
                )
        except ValueError as exc:
            job.error = f"analysis of scan {scan.scan} failed: {exc}"
            return self.event(job, reconstruction={"status": "failed"})
        total = time.perf_counter() - t0
        if choice is not None:
            fixed = self._fixed_s.get(scan.run, self.config.budget.fixed_s)
            predicted = choice.predicted_s - fixed
            if predicted > 0 and spent.get("phasing_s"):  # learn how far this host is from the FFT model
                ratio = spent["phasing_s"] / predicted * self._slowness.get(scan.run, self._first_slowness)
                self._slowness[scan.run] = min(10.0, max(0.5, ratio))
            self._fixed_s[scan.run] = max(0.0, total - spent.get("phasing_s", 0.0))
            result.phasing["budget"] = {**choice.record(), "actual_s": round(total, 2),
                                        "phasing_s": round(spent.get("phasing_s", math.nan), 2),
                                        "phasing_voxel_nm": self._phasing_voxels(job, shape, choice.shape)}
        job.result = result
        result.phasing["resolution"] = self._resolution(job, result)
        tracked = result.tracked
        if not self._wisdom_saved:
            self._wisdom_saved = save_wisdom()
        job.display = self.display(job, tracked)
        compared = {"status": "done", "compared_with_scan": tracked.compared_with_scan}
        if getattr(self.reconstructor, "last_report", None):
            compared["cluster"] = self.reconstructor.last_report
        return self.event(job, flags=tracked.flags + job.flags, analysis=tracked.analysis, phasing=result.phasing,
                          reconstruction=compared)


def costs_for(config: ServiceConfig, reconstructor, xp) -> FftCosts:
    """The budget's FFT costs where the scans are phased: this host, or the cluster ``reconstructor`` runs on."""
    threads = config.phasing.threads or None
    if not config.cluster.scheduler:
        return FftCosts(xp, threads=threads)
    from streamer.service.cluster import ClusterCosts

    return ClusterCosts(reconstructor, xp, threads=threads)


def reconstructor_for(config: ServiceConfig):
    """The engine's ``reconstruct`` in-process, or on the Dask scheduler that ``config.cluster`` names."""
    cluster = config.cluster
    if not cluster.scheduler:
        return reconstruct
    from streamer.service.cluster import ClusterReconstructor

    return ClusterReconstructor(cluster.scheduler, backend=cluster.backend, connect_timeout_s=cluster.connect_timeout_s,
                                scan_timeout_s=cluster.scan_timeout_s)
