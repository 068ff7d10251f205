"""``bcdi-stream reconstruct``: phase one scan of a recording, or a 3D intensity from elsewhere, into a result file."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from streamer.analysis.preprocess import PreprocessConfig, prepare_scan, prepare_volume
from streamer.cli.array_files import read_array
from streamer.cli.common import add_backend, add_subcommand, recorded_preparation
from streamer.cli.reconstruct_budget import DEFAULT_BUDGET_S, budget_choice
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


@dataclass
class Prepared:
    """What phasing gets: the intensity and mask, the metadata for the result, and for a detector
    scan its binned geometry (the intensity is then in stack order, step, row, col), peak and |q|."""

    intensity: np.ndarray
    mask: np.ndarray
    meta: dict
    detector: object | None = None  # DetectorGeometry of the binned frames
    peak: dict | None = None
    q_inv_nm: float | None = None


def read_geometry_file(path: Path) -> dict:
    """A geometry file (TOML or JSON): its table of DetectorGeometry fields (top level or a [geometry] table)."""
    from streamer.settings import ConfigError, read_toml

    if not path.is_file():
        raise ConfigError(f"geometry file {path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"geometry file {path} is not valid JSON: {exc}") from None
    else:
        data = read_toml(path)
    if isinstance(data, dict) and isinstance(data.get("geometry"), dict):
        data = data["geometry"]
    return data


def load_input(path: Path, *, scan: int | None, dataset: str | None, mask_path: Path | None, q_axis: int,
               binning: int | None, geometry_path: Path | None = None, detector=None) -> Prepared:
    """The phasing input from a recording scan or an .npy/.npz/.h5 array; ValueError otherwise.

    A recording scan or an array with ``geometry_path`` on a detector geometry is prepared as the live
    pipeline prepares it (``detector``: the service's [detector] table; ``binning`` overrides its
    binning). Other recordings: ``binning`` None is 2 x 2 for frames of 256 pixels or more, none for
    smaller ones.
    """
    from streamer.geometry import DetectorGeometry, from_dict
    from streamer.service.config import DetectorConfig

    detector = detector or DetectorConfig()
    if binning is not None:
        detector = detector.replace(binning=binning)
    pre = PreprocessConfig()
    if not path.is_file():
        raise ValueError(f"input {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".nxs") and _is_recording(path):
        from streamer.recording.recorder import list_scans, read_scan

        if scan is None:
            done = [s["scan"] for s in list_scans(path) if s["frames_recorded"]]
            raise ValueError(f"{path} is a recording: choose a scan with --scan (recorded: {done})")
        try:
            s = read_scan(path, scan)
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None
        if not len(s["frames"]):
            raise ValueError(f"scan {scan} of {path} has no frames")
        stack = _full_stack(s)
        meta = dict(s["metadata"])
        meta.update({"source": str(path), "scan": scan, "scan_status": s["status"]})
        if geometry_path is not None:
            meta["geometry"] = DetectorGeometry.from_measured(read_geometry_file(geometry_path),
                                                              f"geometry file {geometry_path}").to_dict()
        geo = meta.get("geometry") or {}
        if geo.get("kind") == "detector":
            geometry = from_dict(geo)
            return _prepare_detector(stack, geometry, detector, meta, unmeasured=s["missing"])
        b = binning or (2 if min(stack.shape[1:]) >= 256 else 1)
        # an orthogonal geometry already centres the grid on the Bragg peak, as the live pipeline sees it
        pre = pre.replace(bin_rows=b, bin_cols=b, centre=geo.get("kind") != "orthogonal")
        intensity, mask, info = prepare_scan(stack, config=pre, unmeasured_frames=s["missing"])
        meta["preprocess"] = info
        return Prepared(intensity, mask, meta)
    read = read_array(path, dataset)
    if np.iscomplexobj(read.data):
        raise ValueError(f"{read.source} is complex (a reconstructed object?): reconstruct takes measured intensities")
    data, mask, mask_source = read.data, read.mask, read.mask_source
    if mask_path is not None:
        mask, mask_source = read_array(mask_path).data.astype(bool), str(mask_path)
    source = {"source": str(path), **({"mask": mask_source} if mask_source else {})}
    if geometry_path is not None:  # a frame stack (step, row, col) measured on that geometry
        geometry = DetectorGeometry.from_measured(read_geometry_file(geometry_path), f"geometry file {geometry_path}")
        meta = {**source, "geometry": geometry.to_dict()}
        if mask is not None and np.ndim(mask) == 3:
            raise ValueError("with --geometry the mask is a (row, col) bad-pixel mask of the frames, got 3D "
                             f"shape {np.shape(mask)}")
        return _prepare_detector(data, geometry, detector, meta, extra_bad=mask)
    if mask is not None and np.ndim(mask) == 2 and np.ndim(data) == 3 and np.shape(mask) == np.shape(data)[1:]:
        mask = np.broadcast_to(mask, np.shape(data))  # a detector's (row, col) mask of a frame stack: every frame
    intensity, mask, info = prepare_volume(data, mask=mask, q_axis=q_axis, config=pre.replace(
        bin_rows=1, bin_cols=1, hot_pixel_factor=detector.hot_pixel_factor))
    return Prepared(intensity, mask, {**source, "preprocess": info})


def _prepare_detector(frames, geometry, detector, meta: dict, *, unmeasured=(), extra_bad=None) -> Prepared:
    """Frames on a detector geometry, as the live pipeline prepares them: masked, binned, peak rolled to the centre."""
    from streamer.analysis.preprocess import check_counts, peak_roll
    from streamer.service.detector_scan import (
        DetectorMaps,
        detector_peak,
        prepare_detector_scan,
    )

    frames = check_counts(frames, what="frame stack (step, row, col)")
    monitor = meta.get("monitor")  # a length that does not fit the frames is refused by name
    prepared = prepare_detector_scan(frames, geometry, detector, DetectorMaps(detector), unmeasured_frames=unmeasured,
                                     extra_bad=extra_bad, monitor=monitor)
    peak, _, q = detector_peak(prepared)
    stack, mask, binned, info = prepared.stack, prepared.mask, prepared.geometry, prepared.info
    shift = peak_roll(stack, mask)
    info["shift_step_row_col"] = list(shift)
    info["masked_fraction"] = round(float(mask.mean()), 5)
    meta["preprocess"] = info
    return Prepared(np.roll(stack, shift, axis=(0, 1, 2)), np.roll(mask, shift, axis=(0, 1, 2)), meta, binned, peak, q)


def _is_recording(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "entry" in f and "scans" in f["entry"]
    except OSError as exc:
        raise ValueError(f"cannot read {path} as HDF5: {exc}") from None


def _full_stack(s: dict) -> np.ndarray:
    """Frames placed at their frame index; missing frames are zeros (and masked by the caller)."""
    frames = s["frames"]
    stack = np.zeros((s["num_frames"],) + frames.shape[1:], np.float32)
    stack[s["frame_index"]] = frames
    return stack


def run_reconstruct(args, out=None) -> int:
    """The command; its result file is written by a recording process of its own (HDF5 crashed the process
    whose write failed), started here so that it is ready when the phasing ends."""
    from streamer.recording.process import RecorderProcess

    started = time.monotonic()
    with RecorderProcess() as writer:
        return _reconstruct(args, out or sys.stderr, writer, started)  # stderr looked up at call time


def _reconstruct(args, out, writer, started: float) -> int:
    from streamer.analysis.peak import peak_metrics
    from streamer.backend import get_namespace
    from streamer.phasing.wisdom import load_wisdom, save_wisdom
    from streamer.recording.process import write_apart
    from streamer.recording.room import check_room

    overrides = {"backend": args.backend}
    if args.scan is not None and Path(args.input).is_file():  # a recording's scan: prepared as it was live
        from streamer.recording.recorder import DamagedRecording

        with contextlib.suppress(DamagedRecording):  # not a recording of ours: load_input says what it is
            overrides["detector"] = recorded_preparation(args.input, args.config)
    service = load_config(args.config, ServiceConfig, overrides)
    preload = None
    if service.backend == "numpy":  # the CPU kernels load while the input is read
        from streamer.phasing.kernels import preload_numba_kernels

        preload = threading.Thread(target=preload_numba_kernels, name="numba-preload", daemon=True)
        preload.start()
    phasing = service.phasing
    changes = {k: v for k, v in {"population": args.population, "generations": args.generations,
                                   "recipe": args.recipe, "average": args.average}.items() if v is not None}
    phasing = phasing.replace(**changes)
    prepared = load_input(args.input, scan=args.scan, dataset=args.dataset, mask_path=args.mask, q_axis=args.q_axis,
                          binning=args.bin, geometry_path=args.geometry, detector=service.detector)
    intensity, mask, meta = prepared.intensity, prepared.mask, prepared.meta
    det = prepared.detector
    folder = next(p for p in Path(args.out).resolve().parents if p.exists())
    check_room(folder, intensity.size * (17 + 8 * (min(phasing.average, phasing.population) + phasing.noise_replicas)))
    if det is None:
        voxel = _voxel_nm(meta, intensity.shape, args.voxel_nm)
        peak = peak_metrics(intensity, pixel_inv_nm=tuple(2 * np.pi / (n * v) for n, v in zip(intensity.shape, voxel)))
        grid = f"voxel {voxel} nm"
    else:
        peak = prepared.peak
        grid = (f"detector grid (step, row, col) {det.stack_shape}, resolution "
                f"{[round(v, 2) for v in det.voxel_sizes_nm]} nm, resampled onto the lab frame")
    xp = get_namespace(service.backend)
    fft = service.fft
    if "unplanned" not in fft.model_fields_set:  # one process, one scan: a shape's plan repays itself at once
        fft = fft.replace(unplanned="plan")
    fft.apply()  # this process's FFTW planner and wisdom folder, from the [fft] table
    load_wisdom()
    if preload is not None:  # FFTs timed beside the loading kernels read up to twice their cost on two cores
        preload.join()
    binned = binned_pixels(meta, det)
    phasing = phasing.replace(binned_pixels=binned)
    run, phasing, choice, slowness, slowness_key = budget_choice(args, phasing, xp, intensity.shape, out,
                                                                 service.budget, spent_s=time.monotonic() - started)
    mask_note = f" (mask: {meta['mask']})" if meta.get("mask") else ""
    pre_info = meta.get("preprocess") or {}
    found = pre_info.get("unmeasured_voxels_found") or pre_info.get("unmeasured_pixels_found")
    if found:
        mask_note += f", {found} found unmeasured (empty lines between counting ones: detector gaps)"
    if pre_info.get("hot_voxels"):
        mask_note += f", {pre_info['hot_voxels']} hot (lines counting steadily far above their neighbours)"
    print(f"reconstruct: {args.input}{'' if args.scan is None else f' scan {args.scan}'} -> intensity "
          f"{intensity.shape}, masked {100 * float(mask.mean()):.2f}%{mask_note}, {grid}; recipe "
          f"{phasing.recipe!r} x {phasing.generations} generation(s), population {phasing.population}, "
          f"average of {min(phasing.average, phasing.population)}, backend {service.backend}"
          + (f"; each member's start the best of {len(phasing.coarse_thresholds)} run on the central "
             f"{100 * phasing.coarse_crop:.0f}% of q" if phasing.searches(intensity.shape) else ""),
          file=out, flush=True)
    t0 = time.monotonic()
    with _progress(out, phasing) as report:
        result = run(intensity, xp=xp, config=phasing, rng=args.seed, mask=mask if mask.any() else None,
                     progress=report)
    seconds = time.monotonic() - t0
    save_wisdom()
    info = {"recipe": result.recipe, "iterations": result.iterations, "generations": result.generations,
            "population": phasing.population, "averaged": result.metric.get("averaged"), "seed": args.seed,
            "chi_square_best": float(result.chi_square[result.best]), "seconds": round(seconds, 2),
            "backend": service.backend, "metric": result.metric, "binned_pixels": list(phasing.binned_pixels)}
    if choice is not None:
        from streamer.service.costs import remember_slowness

        info["budget"] = {**choice.record(), "actual_s": round(seconds, 2), "slowness": slowness}
        remember_slowness(slowness_key, seconds, choice.predicted_s, slowness)
    obj, support, members, replicas = result.rho, result.support, result.members, result.replicas
    errors = {"amplitude_error": result.amplitude_error, "phase_error": result.phase_error}
    if det is None:
        meta["voxel_nm_zyx"] = voxel
        meta["geometry"] = _result_geometry(meta.get("geometry"), intensity.shape, voxel, out)
    else:
        from streamer.analysis.scan import frame_info, lab_grid, to_lab

        cfg = service.detector
        voxel_nm = args.voxel_nm or cfg.lab_voxel_nm or None
        previous = None
        if cfg.lab_shape_zyx is not None:
            previous = det.lab_geometry(cfg.lab_shape_zyx, voxel_nm or min(det.voxel_sizes_nm), prepared.q_inv_nm)
        lab = lab_grid(det, support, voxel_nm=voxel_nm, q_inv_nm=prepared.q_inv_nm, previous=previous)
        lab_obj = to_lab(det, lab, obj, support=support, errors=errors, members=members, replicas=replicas)
        obj, support, members, replicas, errors = (lab_obj.rho, lab_obj.support, lab_obj.members, lab_obj.replicas,
                                                   lab_obj.errors)
        meta["detector_geometry"] = det.to_dict()
        meta["geometry"] = lab.to_dict()
        meta["frame"] = frame_info(lab, det)
        meta["voxel_nm_zyx"] = [lab.voxel_nm] * 3
        print(f"lab frame: {lab.shape_zyx} voxels of {lab.voxel_nm:.2f} nm (z along q, y along the rocking axis)",
              file=out, flush=True)
    fields = dict(obj=obj, support=support, recipe=result.recipe, metadata=meta, peak=peak, phasing=info,
                  amplitude_error=errors.get("amplitude_error"), phase_error=errors.get("phase_error"),
                  error_curve=result.error_curve, members=members, replicas=replicas, compress=False)
    path = write_apart(writer, "write_result", args.out, fields)
    polished = result.metric.get("polished_chi_square")
    print(f"wrote {path}: chi-square {info['chi_square_best']:.4g}"
          + ("" if polished is None else f" (the polished average {polished:.4g})")
          + f" after {result.iterations} iterations x {result.generations} generation(s) in {seconds:.1f} s",
          file=out, flush=True)
    print(json.dumps({"out": str(path), **info}), flush=True)
    return 0


def _result_geometry(source: dict | None, shape, voxel: list[float], out) -> dict:
    """The orthogonal geometry of the result's grid (cubic voxels; with anisotropic ones, the voxel along q)."""
    from streamer.geometry import OrthogonalGeometry

    base = OrthogonalGeometry()
    if source and source.get("kind") == "orthogonal":
        base = OrthogonalGeometry.from_dict(source)
    if max(voxel) > 1.01 * min(voxel):
        print(f"warning: the voxels are not cubic ({voxel} nm, from binning); analysis in nm uses the "
              f"voxel along q, {voxel[0]} nm", file=out)
    return replace(base, shape_zyx=tuple(int(n) for n in shape), voxel_nm=float(voxel[0])).to_dict()


def binned_pixels(meta: dict, det) -> tuple[int, int, int]:
    """Detector pixels summed into each voxel along the phasing axes: a detector-geometry scan's binning along its
    rows and columns (step, row, col); a recording's frames binned by ``prepare_scan`` (row, col, theta); else none."""
    if det is not None:
        return det.pixels_per_voxel
    rows, cols = (meta.get("preprocess") or {}).get("binning", [1, 1])
    return (int(rows), int(cols), 1)


def _voxel_nm(meta: dict, shape, given: float | None) -> list[float]:
    """Voxel size per lab axis of an orthogonal input: given, or from the recording's geometry (scaled by
    binning and padding), else 10 nm."""
    if given:
        return [float(given)] * 3
    geometry = meta.get("geometry") or {}
    pre = meta.get("preprocess") or {}
    b = pre.get("binning", [1, 1])
    base = geometry.get("voxel_nm")
    if base is None:
        return [10.0, 10.0, 10.0]
    # the real-space voxel is 2 pi / (n dq); binning b pixels multiplies dq by b (not along the rocking axis)
    return [round(base * full / (n * bin_), 4) for full, n, bin_ in zip(geometry["shape_zyx"], shape, (b[0], b[1], 1))]


class _progress:
    """A rich progress bar on a terminal, a line every few seconds otherwise."""

    def __init__(self, out, phasing):
        self.out, self.total = out, phasing.generations
        self.bar = None
        self._last = 0.0

    def __enter__(self):
        if getattr(self.out, "isatty", lambda: False)():
            from rich.progress import Progress

            self.bar = Progress(transient=False)
            self.bar.start()
            self.task = self.bar.add_task("phasing", total=None)
        return self

    def __call__(self, info: dict) -> None:
        if "search" in info:  # the cold start's coarse search, one line per candidate threshold
            text = (f"coarse search {info['search']}/{info['searches']} on {'x'.join(map(str, info['shape']))}, "
                    f"best chi-square {info['best_chi_square']:.4g}")
            if self.bar is not None:
                self.bar.update(self.task, description=text)
            else:
                print(f"  {text}", file=self.out, flush=True)
            return
        text = (f"generation {info['generation']}/{info['generations']}, iteration "
                f"{info['iteration']}/{info['iterations']}, chi-square {info['best_chi_square']:.4g}")
        if self.bar is not None:
            done = (info["generation"] - 1) * info["iterations"] + info["iteration"]
            self.bar.update(self.task, completed=done, total=info["generations"] * info["iterations"],
                            description=text)
        elif info.get("done") or time.monotonic() - self._last > 5:
            self._last = time.monotonic()
            print(f"  {text}", file=self.out, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _cmd_reconstruct(args) -> int:
    return run_reconstruct(args)


def register(sub) -> None:
    """Add the ``reconstruct`` subcommand to the parser."""
    r = add_subcommand(
        sub, "reconstruct", _cmd_reconstruct, help="phase retrieval of one scan or 3D intensity into a result file",
        description="Reconstructs one scan of a bcdi-stream recording, or a 3D intensity prepared elsewhere (.npy, "
                    ".npz, .h5, on an orthogonal grid), or a frame stack (step, row, col) with its detector geometry "
                    "(--geometry), with a guided population. Scans on a detector geometry are prepared as the live "
                    "pipeline prepares them ([detector] table: gaps, bad, hot and saturated pixels masked, dark, "
                    "flat, binning), phased on the detector grid and resampled onto the lab frame (docs/lab-frame.md). "
                    "Measured data are never cropped: the peak is rolled to the centre, sizes are padded (masked). "
                    "The result file (docs/results.md) holds the averaged object, support, error bars, error curve, "
                    "peak metrics, recipe and metadata (its frame and voxel size).",
        epilog="examples:\n  bcdi-stream reconstruct demo-out/demo-20261125-150137.h5 --scan 3 --out scan3.h5\n"
               "  bcdi-stream reconstruct sim-out/sim-reference-seed0.h5 --scan 3 --out s3.h5\n"
               "  bcdi-stream reconstruct frames.npy --geometry beamline.toml --out r.h5\n"
               "  bcdi-stream reconstruct intensity.npz --q-axis 0 --population 40 --generations 8 --average 20 "
               "--out r.h5")
    r.add_argument("input", type=Path, help="recording .h5 (with --scan), intensity .npy/.npz/.h5, or frames with --geometry")
    r.add_argument("--out", type=Path, required=True, help="result file to write (.h5)")
    r.add_argument("--scan", type=int, default=None, help="scan number, for a recording")
    r.add_argument("--dataset", default=None, help="array name in an .npz or dataset path in an .h5")
    r.add_argument("--mask", type=Path, default=None,
                   help="mask, True = unmeasured: of the intensity (.npy/.npz/.h5), or (row, col) of the frames with --geometry")
    r.add_argument("--geometry", type=Path, default=None,
                   help="detector geometry file (TOML or JSON, DetectorGeometry fields; docs/geometry.md): the input "
                        "is a frame stack (step, row, col) measured on it, or a recording scan to read with it")
    r.add_argument("--q-axis", type=int, default=0, help="axis of the input array along q (default 0)")
    r.add_argument("--bin", type=int, default=None,
                   help="binning of the frames: a detector-geometry scan's (default: [detector] binning, 2), else "
                        "2 -> 2x2 for frames >= 256 pixels, else 1")
    r.add_argument("--voxel-nm", type=float, default=None,
                   help="real-space voxel: of an orthogonal input (default: from the recording), or the cubic lab "
                        "voxel of a detector-geometry scan (default: its finest resolution)")
    r.add_argument("--population", type=int, default=None, help="members reconstructed in one batch")
    r.add_argument("--generations", type=int, default=None, help="generations of the guided algorithm")
    r.add_argument("--average", type=int, default=None, help="best members of the last generation averaged")
    r.add_argument("--recipe", default=None, help='operator sequence, e.g. "(180HIO, 20ER)*2, 210ER"')
    r.add_argument("--budget-s", type=float, default=None,
                   help=f"seconds the phasing may take: members, iterations and resolution are chosen from FFT costs "
                        f"timed here (default {DEFAULT_BUDGET_S:g} s unless --population/--recipe/--generations are "
                        f"given; 0: the full treatment, however long)")
    r.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    add_backend(r, "strict")
    r.add_argument("--config", type=Path, default=None,
                   help="service config TOML (its [phasing] and [detector] tables; without a [detector] table a "
                        "recording's scan is prepared as recorded)")
