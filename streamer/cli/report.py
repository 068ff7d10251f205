"""``bcdi-stream report``: an HTML report of a run folder, with plots."""

from __future__ import annotations

import sys
from pathlib import Path

from streamer.cli.common import add_subcommand


def run_report(run_dir: Path, *, out: Path | None = None, results: list[Path] | None = None,
               stdout=None) -> int:
    from streamer.report import write_report

    stdout = stdout or sys.stdout

    path = write_report(run_dir, out, results=results)
    print(f"bcdi-stream report: {path}", file=stdout)
    return 0


def _cmd_report(args) -> int:
    return run_report(args.run_dir, out=args.out, results=args.results)


def register(sub) -> None:
    """Add the ``report`` subcommand to the parser."""
    r = add_subcommand(
        sub, "report", _cmd_report, help="HTML report of a run folder with plots",
        description="Timelines of peak widths, strain energy, voltage and defect count against "
                    "capacity (from RUN_DIR/events.jsonl), central slices of amplitude, phase and "
                    "strain with the vortex lines marked (from result files of bcdi-stream "
                    "reconstruct found in RUN_DIR or given with --results), and projected peak "
                    "images from the recording. One self-contained HTML file.",
        epilog="examples:\n  bcdi-stream report demo-out\n"
               "  bcdi-stream report beamtime/run7 --results results/scan-*.h5 --out run7.html")
    r.add_argument("run_dir", type=Path, help="folder with events.jsonl (and result files, recordings)")
    r.add_argument("--out", type=Path, default=None, help="HTML file (default RUN_DIR/report.html)")
    r.add_argument("--results", type=Path, nargs="+", default=None, help="result files to show as slices")
