"""``bcdi-stream export``: result files in the formats of PyNX, silx, ParaView and napari (docs/exports.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from streamer.cli.common import add_result_files, add_subcommand, result_paths


def run_export(paths: list[Path], *, fmt: str, out: Path | None = None, stdout=None) -> int:
    """Export each result file; ``out`` is the file (one result) or a folder (any number). The files are written
    by a recording process (HDF5 crashed the process whose write failed)."""
    from streamer.recording.export import FORMATS, SUFFIX
    from streamer.recording.process import RecorderProcess, write_apart

    stdout = stdout or sys.stdout
    if not paths:
        raise ValueError("give at least one result file")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    folder = out is not None and (out.is_dir() or len(paths) > 1 or not out.suffix)
    with RecorderProcess() as writer:
        for path in paths:
            target = out / path.with_suffix(SUFFIX[fmt]).name if folder else out or path.with_suffix(SUFFIX[fmt])
            written = write_apart(writer, "export", target, path, fmt)
            print(f"bcdi-stream export: {path} -> {written}", file=stdout)
    return 0


def _cmd_export(args) -> int:
    return run_export(result_paths(args.results), fmt=args.format, out=args.out)


def register(sub) -> None:
    """Add the ``export`` subcommand to the parser."""
    e = add_subcommand(
        sub, "export", _cmd_export, help="result files as CXI (PyNX, silx), VTK image data (ParaView) or npz (napari)",
        description="Writes a reconstruction result (docs/results.md) for the tools BCDI users "
                    "open: cxi, the CXI layout of a PyNX reconstruction (complex object and support, "
                    "plus displacement and strain), which silx and PyNX read; vti, VTK XML image "
                    "data on the lab grid (amplitude, phase, displacement, strain, support; spacing "
                    "the voxel in nm) for ParaView; npz, the same arrays in (z, y, x) order for numpy "
                    "and napari. The analysis' own particle, displacement and strain (the result is "
                    "resampled onto the lab frame first if it is still on a detector grid). "
                    "See docs/exports.md.",
        epilog="examples:\n  bcdi-stream export scan-0003.h5 --format vti\n"
               "  bcdi-stream export results/scan-*.h5 --format cxi --out exported/")
    add_result_files(e)
    e.add_argument("--format", required=True, choices=["cxi", "vti", "npz"], help="the format to write")
    e.add_argument("--out", type=Path, default=None,
                   help="file to write (one result) or folder (default: beside each result, the format's suffix)")
