"""``bcdi-stream reconstruct``: phase one scan of a recording, or a 3D intensity from elsewhere, into a result file."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from streamer.analysis.preprocess import PreprocessConfig, prepare_scan, prepare_volume
from streamer.service.config import ServiceConfig
from streamer.settings import load_config


def load_input(path: Path, *, scan: int | None, dataset: str | None, mask_path: Path | None, q_axis: int,
               binning: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(intensity, mask, metadata) from a recording scan or an .npy/.npz/.h5 intensity; ValueError otherwise.

    ``binning`` None: 2 x 2 for frames of 256 pixels or more (a Timepix), none for smaller ones.
    """
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
        b = binning or (2 if min(stack.shape[1:]) >= 256 else 1)
        # an orthogonal geometry already centres the grid on the Bragg peak, as the live pipeline sees it
        orthogonal = (s["metadata"].get("geometry") or {}).get("kind") == "orthogonal"
        pre = pre.replace(bin_rows=b, bin_cols=b, centre=not orthogonal)
        intensity, mask, info = prepare_scan(stack, config=pre, unmeasured_frames=s["missing"])
        meta = dict(s["metadata"])
        meta.update({"source": str(path), "scan": scan, "scan_status": s["status"], "preprocess": info})
        return intensity, mask, meta
    data, mask = _read_array(path, dataset)
    if mask_path is not None:
        mask = _read_array(mask_path, None)[0].astype(bool)
    intensity, mask, info = prepare_volume(data, mask=mask, q_axis=q_axis, config=pre.replace(bin_rows=1, bin_cols=1))
    return intensity, mask, {"source": str(path), "preprocess": info}


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


def _read_array(path: Path, dataset: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(array, its mask if the file carries one: an .npz array ``mask``), read in one opening."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = dataset or next((k for k in ("intensity", "data") if k in z.files), z.files[0])
                if key not in z.files:
                    raise ValueError(f"{path} has no array {key!r} (it has {z.files})")
                return z[key], (z["mask"].astype(bool) if "mask" in z.files and key != "mask" else None)
        if suffix in (".h5", ".hdf5", ".nxs", ".cxi"):
            import h5py

            with h5py.File(path, "r") as f:
                if dataset is None:
                    found = []
                    f.visititems(lambda name, obj: found.append(name)
                                 if isinstance(obj, h5py.Dataset) and obj.ndim == 3 else None)
                    if not found:
                        raise ValueError(f"{path} holds no 3D dataset")
                    dataset = found[0]
                if dataset not in f:
                    raise ValueError(f"{path} has no dataset {dataset!r}")
                return f[dataset][()], None
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    raise ValueError(f"unsupported input {path}: use a recording .h5 with --scan, or .npy, .npz, .h5")


def run_reconstruct(args, out=None) -> int:
    out = out or sys.stderr  # looked up at call time, so a redirected stderr is honoured
    from streamer.analysis.peak import peak_metrics
    from streamer.backend import get_namespace
    from streamer.phasing import reconstruct
    from streamer.phasing.wisdom import load_wisdom, save_wisdom
    from streamer.recording.result_file import write_result

    overrides = {"backend": args.backend}
    service = load_config(args.config, ServiceConfig, overrides)
    phasing = service.phasing
    changes = {k: v for k, v in {"population": args.population, "generations": args.generations,
                                   "recipe": args.recipe, "average": args.average}.items() if v is not None}
    phasing = phasing.replace(**changes)
    intensity, mask, meta = load_input(args.input, scan=args.scan, dataset=args.dataset, mask_path=args.mask,
                                       q_axis=args.q_axis, binning=args.bin)
    voxel = _voxel_nm(meta, intensity.shape, args.voxel_nm)
    meta["voxel_nm_zyx"] = voxel
    xp = get_namespace(service.backend)
    service.fft.apply()  # this process's FFTW planner and wisdom folder, from the [fft] table
    load_wisdom()
    peak = peak_metrics(intensity, pixel_inv_nm=tuple(2 * np.pi / (n * v) for n, v in zip(intensity.shape, voxel)))
    print(f"reconstruct: {args.input}{'' if args.scan is None else f' scan {args.scan}'} -> intensity "
          f"{intensity.shape}, masked {100 * float(mask.mean()):.2f}%, voxel {voxel} nm; recipe "
          f"{phasing.recipe!r} x {phasing.generations} generation(s), population {phasing.population}, "
          f"average of {min(phasing.average, phasing.population)}, backend {service.backend}", file=out, flush=True)
    t0 = time.monotonic()
    with _progress(out, phasing) as report:
        result = reconstruct(intensity, xp=xp, config=phasing, rng=args.seed, mask=mask if mask.any() else None,
                             progress=report)
    seconds = time.monotonic() - t0
    save_wisdom()
    info = {"recipe": result.recipe, "iterations": result.iterations, "generations": result.generations,
            "population": phasing.population, "averaged": result.metric.get("averaged"), "seed": args.seed,
            "chi_square_best": float(result.chi_square[result.best]), "seconds": round(seconds, 2),
            "backend": service.backend, "metric": result.metric}
    meta["geometry"] = _result_geometry(meta.get("geometry"), intensity.shape, voxel, out)
    path = write_result(args.out, obj=result.rho, support=result.support, recipe=result.recipe, metadata=meta,
                        peak=peak, phasing=info, amplitude_error=result.amplitude_error,
                        phase_error=result.phase_error, error_curve=result.error_curve, members=result.members)
    print(f"wrote {path}: chi-square {info['chi_square_best']:.4g} after {result.iterations} iterations x "
          f"{result.generations} generation(s) in {seconds:.1f} s", file=out, flush=True)
    print(json.dumps({"out": str(path), **info}), flush=True)
    return 0


def _result_geometry(source: dict | None, shape, voxel: list[float], out) -> dict:
    """The orthogonal geometry of the result's grid (cubic voxels; with anisotropic ones, the voxel along q)."""
    from streamer.geometry import OrthogonalGeometry

    base = OrthogonalGeometry()
    if source and source.get("kind") == "orthogonal":
        base = OrthogonalGeometry.from_dict(source)
    elif source and source.get("kind") == "detector":
        base = replace(base, d_spacing_nm=float(source["d_spacing_nm"]), theta_bragg_deg=float(source["theta_bragg_deg"]))
        print("warning: a detector (sheared) grid: the object is in the frame conjugate to the rocking scan, not "
              "yet resampled onto the orthogonal lab frame; positions in nm are approximate", file=out)
    if max(voxel) > 1.01 * min(voxel):
        print(f"warning: the voxels are not cubic ({voxel} nm, from binning or cropping); analysis in nm uses the "
              f"voxel along q, {voxel[0]} nm", file=out)
    return replace(base, shape_zyx=tuple(int(n) for n in shape), voxel_nm=float(voxel[0])).to_dict()


def _voxel_nm(meta: dict, shape, given: float | None) -> list[float]:
    """Voxel size per lab axis: given, or from the recording's geometry (scaled by binning), else 10 nm."""
    if given:
        return [float(given)] * 3
    geometry = meta.get("geometry") or {}
    pre = meta.get("preprocess") or {}
    b = pre.get("binning", [1, 1])
    if geometry.get("kind") == "detector":  # resolution 2 pi / (n |dq|) along each stack axis
        from streamer.geometry import DetectorGeometry

        det = DetectorGeometry.from_dict(geometry)
        (steps, rows, cols), (v_step, v_row, v_col) = det.stack_shape, det.voxel_sizes_nm
        return [round(v_row * rows / (shape[0] * b[0]), 4), round(v_col * cols / (shape[1] * b[1]), 4),
                round(v_step * steps / shape[2], 4)]
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
    r = sub.add_parser(
        "reconstruct", help="phase retrieval of one scan or 3D intensity into a result file",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reconstructs one scan of a bcdi-stream recording (binned, masked, centred, cropped to an "
                    "FFT-friendly size), or a 3D intensity prepared elsewhere (.npy, .npz, .h5, on an orthogonal "
                    "grid), with a guided population. The result file (docs/results.md) holds the averaged "
                    "object, support, error bars, error curve, peak metrics, recipe and metadata.",
        epilog="examples:\n  bcdi-stream reconstruct demo-out/demo-20261125-150137.h5 --scan 3 --out scan3.h5\n"
               "  bcdi-stream reconstruct intensity.npz --q-axis 0 --population 40 --generations 8 --average 20 "
               "--out r.h5")
    r.add_argument("input", type=Path, help="recording .h5 (with --scan) or intensity .npy/.npz/.h5")
    r.add_argument("--out", type=Path, required=True, help="result file to write (.h5)")
    r.add_argument("--scan", type=int, default=None, help="scan number, for a recording")
    r.add_argument("--dataset", default=None, help="array name in an .npz or dataset path in an .h5")
    r.add_argument("--mask", type=Path, default=None, help="bad-pixel mask (.npy/.npz/.h5, True = unmeasured)")
    r.add_argument("--q-axis", type=int, default=0, help="axis of the input array along q (default 0)")
    r.add_argument("--bin", type=int, default=None,
                   help="detector binning of a recording scan (default: 2 -> 2x2 for frames >= 256 pixels, else 1)")
    r.add_argument("--voxel-nm", type=float, default=None, help="real-space voxel (default: from the recording)")
    r.add_argument("--population", type=int, default=None, help="members reconstructed in one batch")
    r.add_argument("--generations", type=int, default=None, help="generations of the guided algorithm")
    r.add_argument("--average", type=int, default=None, help="best members of the last generation averaged")
    r.add_argument("--recipe", default=None, help='operator sequence, e.g. "(180HIO, 20ER)*3, 10ER"')
    r.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    r.add_argument("--backend", choices=["numpy", "cupy", "auto", "strict"], default=None)
    r.add_argument("--config", type=Path, default=None, help="service config TOML (its [phasing] table)")
    r.set_defaults(func=_cmd_reconstruct)
