"""``bcdi-stream import``: frames measured elsewhere (TIFF, HDF5/NeXus) plus a geometry file into a recording."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from streamer.cli.common import add_subcommand


def run_import(args, out=None) -> int:
    """Check every input, then stream the frames into ``args.out``; one summary line (JSON) on stdout."""
    from streamer.recording.frame_sources import (
        ImportInputError,
        expand_inputs,
        open_frames,
    )
    from streamer.recording.importer import (
        Orientation,
        ScanImport,
        import_scans,
        load_geometry_file,
        read_column,
    )

    out = out or sys.stderr
    geometry = load_geometry_file(args.geometry)
    inputs = expand_inputs(args.frames)
    n = len(inputs)
    numbers = _scan_numbers(args.scan, n)
    per_scan = {name: _per_scan(getattr(args, name), n, flag)
                for name, flag in (("voltage", "--voltage"), ("capacity", "--capacity"), ("monitor", "--monitor"),
                                   ("angles", "--angles"))}
    extra = {}
    if args.sample:
        extra["sample"] = args.sample
    if args.exposure_s is not None:
        extra["exposure_s"] = args.exposure_s
    scans = []
    for k, (path, scan) in enumerate(zip(inputs, numbers)):
        source = open_frames(path, dataset=args.dataset, monitor_dataset=args.monitor_dataset)
        monitor = per_scan["monitor"][k]
        angles = per_scan["angles"][k]
        scans.append(ScanImport(
            source=source, scan=scan, voltage_v=per_scan["voltage"][k], capacity_mah_g=per_scan["capacity"][k],
            monitor=None if monitor is None else read_column(monitor, "I0 monitor"),
            monitor_source=None if monitor is None else str(monitor),
            angles_deg=None if angles is None else read_column(angles, "rocking angle"), metadata=dict(extra)))
    if args.frame_time_s is not None and not args.frame_time_s > 0:
        raise ImportInputError(f"--frame-time-s must be > 0, got {args.frame_time_s}")
    total = sum(s.source.num_frames for s in scans)
    shape = scans[0].source.frame_shape
    print(f"bcdi-stream import: {n} scan(s), {total} frames {shape[0]}x{shape[1]} {scans[0].source.dtype.name} "
          f"-> {args.out} ({geometry['kind']} geometry from {args.geometry})", file=out, flush=True)
    with _Progress(out, total) as progress:
        summary = import_scans(args.out, scans, geometry, run=args.run, force=args.force,
                               orientation=Orientation(args.transpose, args.flip_rows, args.flip_cols),
                               allow_missing=args.allow_missing, frame_time_s=args.frame_time_s,
                               start_time=_start_time(args.start_time), progress=progress)
    print(f"wrote {summary['out']}: run {summary['run']}, scans {[s['scan'] for s in summary['scans']]}, "
          f"{summary['frames']} frames in {summary['seconds']:.1f} s ({summary['frames_per_s']:.0f} frames/s)",
          file=out, flush=True)
    if "pixel_mask" in summary:
        print(f"the detector's pixel mask in the input ({summary['pixel_mask']['bad_pixels']} raw pixels) -> "
              f"{summary['pixel_mask']['file']}: replay and reconstruct mask those pixels (a [detector] table in "
              f"--config replaces it)", file=out, flush=True)
    for note in summary.get("pixel_masks_not_used", []):
        print(f"pixel mask {note}", file=out, flush=True)
    print(json.dumps({k: v for k, v in summary.items() if k != "scans"} |
                     {"scans": [s["scan"] for s in summary["scans"]]}), flush=True)
    return 0


def _scan_numbers(given: list[int] | None, n: int) -> list[int]:
    """--scan once: the first number (the rest follow on); once per input: those; none: from 0."""
    if not given:
        return list(range(n))
    if len(given) == 1:
        return list(range(given[0], given[0] + n))
    if len(given) != n:
        raise ValueError(f"--scan is given {len(given)} times for {n} scans: give it once (the first number) or "
                         f"once per scan")
    return list(given)


def _per_scan(values: list | None, n: int, flag: str) -> list:
    """A per-scan option: not given, or given once per scan (once is enough for one scan)."""
    if not values:
        return [None] * n
    if len(values) != n:
        raise ValueError(f"{flag} is given {len(values)} times for {n} scans: give it once per scan, in order")
    return list(values)


def _start_time(text: str | None) -> float | None:
    """Epoch seconds, or an ISO 8601 time (local time when it names no zone)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"--start-time must be epoch seconds or an ISO 8601 time, got {text!r}") from None


class _Progress:
    """A rich progress bar on a terminal; a line every 10% otherwise (logs, pipes)."""

    def __init__(self, out, total: int):
        self.out, self.total, self.bar, self._next = out, total, None, 0.1

    def __enter__(self):
        if getattr(self.out, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeRemainingColumn(), console=Console(file=self.out))
            self.bar.start()
            self.task = self.bar.add_task("frames", total=self.total)
        return self

    def __call__(self, done: int, total: int, what: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=what)
        elif done >= self._next * total:
            self._next = (10 * done // total + 1) / 10
            print(f"  {what}: {done}/{total} frames", file=self.out, flush=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _cmd_import(args) -> int:
    return run_import(args)


def register(sub) -> None:
    """Add the ``import`` subcommand to the parser."""
    r = add_subcommand(
        sub, "import", _cmd_import, help="detector frames (TIFF, HDF5/NeXus) plus a geometry file into a recording",
        description="Turns the frames of rocking scans measured elsewhere (a multi-page TIFF, a folder of TIFF "
                    "frames in natural order, or an HDF5/NeXus file with a 3D frame dataset) and a geometry file "
                    "(TOML or JSON, docs/geometry.md) into a recording in the live format (docs/recording.md), "
                    "which replay, serve and reconstruct read. Frames keep their dtype and are streamed; the "
                    "geometry must fit them (frame shape, ROI, binning, number of rocking steps). Each input is "
                    "one scan; a folder of folders (or of HDF5 files) is one scan each. docs/import.md.",
        epilog="examples:\n"
               "  bcdi-stream import scan54/ --geometry 34idc.toml --out s54.h5 --scan 54 --flip-cols\n"
               "  bcdi-stream import run.nxs --geometry geometry.json --out run.h5 --voltage 3.55\n"
               "  bcdi-stream import series/ --geometry g.toml --out series.h5 --scan 1 "
               "--voltage 3.4 --voltage 3.6 --force")
    r.add_argument("frames", type=Path, nargs="+",
                   help="a multi-page .tif, a folder of .tif frames, an .h5/.nxs file, or a folder of such scans")
    r.add_argument("--geometry", type=Path, required=True, help="geometry file (.toml or .json) with its kind")
    r.add_argument("--out", type=Path, required=True, help="recording to write (.h5)")
    r.add_argument("--force", action="store_true", help="replace --out if it exists (only once the import succeeded)")
    r.add_argument("--run", default=None, help="run name (default: the output file's name)")
    r.add_argument("--scan", type=int, action="append", default=None,
                   help="scan number: once (the first; the rest follow on) or once per scan (default: from 0)")
    r.add_argument("--dataset", default=None,
                   help="frame dataset in an HDF5 input (default: the NXdetector 'data' or the NXdata signal)")
    r.add_argument("--monitor", type=Path, action="append", default=None,
                   help="I0 monitor per frame: a text or .npy file, once per scan")
    r.add_argument("--monitor-dataset", default=None,
                   help="I0 monitor dataset in an HDF5 input (default: the 'data' of its NXmonitor, if one)")
    r.add_argument("--angles", type=Path, action="append", default=None,
                   help="measured rocking angle per frame (deg): a text or .npy file, once per scan "
                        "(default: the geometry's steps)")
    r.add_argument("--voltage", type=float, action="append", default=None, help="cell voltage (V), once per scan")
    r.add_argument("--capacity", type=float, action="append", default=None,
                   help="specific capacity (mAh/g), once per scan")
    r.add_argument("--sample", default=None, help="sample description, kept in the metadata")
    r.add_argument("--exposure-s", type=float, default=None, help="exposure per frame (s), kept in the metadata")
    r.add_argument("--frame-time-s", type=float, default=None,
                   help="time between frames (s): frame timestamps (default: unknown, NaN)")
    r.add_argument("--start-time", default=None, help="first frame's time: epoch seconds or ISO 8601 "
                                                      "(with --frame-time-s; default: now)")
    r.add_argument("--transpose", action="store_true", help="swap rows and columns of every frame")
    r.add_argument("--flip-rows", action="store_true", help="reverse the row order (after --transpose)")
    r.add_argument("--flip-cols", action="store_true", help="reverse the column order (after --transpose)")
    r.add_argument("--allow-missing", action="store_true",
                   help="accept fewer frames than rocking steps (the scan is recorded incomplete)")
