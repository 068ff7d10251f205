"""``bcdi-stream analyze``: defects, strain and flags of reconstruction result files, offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from streamer.analysis.config import AnalysisConfig, FlagConfig
from streamer.backend import get_namespace
from streamer.cli.common import add_backend, add_result_files, add_subcommand, result_paths
from streamer.settings import load_config


def run_analyze(paths: list[Path], *, out: Path | None = None, analysis: AnalysisConfig | None = None,
                flags: FlagConfig | None = None, backend: str = "numpy", stdout=None) -> int:
    """One result: a JSON object with its event fields. Several: one events.jsonl line per scan, in scan order."""
    from streamer.analysis.offline import analyze_result, analyze_series
    from streamer.recording.result_file import read_result

    stdout = stdout or sys.stdout
    if not paths:
        raise ValueError("give at least one result file")
    xp = get_namespace(backend)
    results = [read_result(p) for p in paths]
    for p, r in zip(paths, results):
        r.setdefault("metadata", {}).setdefault("source_file", str(p))
    if len(results) == 1:
        (r,) = results
        record = {**analyze_result(r, xp=xp, config=analysis), "source": str(paths[0])}
        text = json.dumps(record, indent=1)
    else:
        order = sorted(range(len(results)), key=lambda i: (str(results[i]["metadata"].get("run", "")),
                                                           int(results[i]["metadata"].get("scan", i))))
        runs = {str(results[i]["metadata"].get("run", "")) for i in order}
        if len(runs) > 1:
            raise ValueError(f"the result files belong to several runs ({', '.join(sorted(runs))}): analyse one series at a time")
        events = analyze_series([results[i] for i in order], xp=xp, config=analysis, flags=flags)
        for i, e in zip(order, events):
            e["source"] = str(paths[i])
        text = "\n".join(json.dumps(e) for e in events)
    if out is None:
        print(text, file=stdout)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        print(f"bcdi-stream analyze: {len(results)} result(s) -> {out}", file=stdout)
    return 0


def _cmd_analyze(args) -> int:
    from streamer.service.config import ServiceConfig

    service = load_config(args.config, ServiceConfig, {"backend": args.backend})
    return run_analyze(result_paths(args.results), out=args.json, analysis=service.analysis, flags=service.flags,
                       backend=service.backend)


def register(sub) -> None:
    """Add the ``analyze`` subcommand to the parser."""
    a = add_subcommand(
        sub, "analyze", _cmd_analyze, help="defects, strain and flags of reconstruction result files",
        description="Analyses results of `bcdi-stream reconstruct`. One file: a JSON object with "
                    "the vortices, domain_boundaries and peak fields of an events.jsonl line "
                    "(positions as (z, y, x) voxel indices of the file's object, and in nm). Several "
                    "files of one run: one events.jsonl line per scan, in scan order, with the flags "
                    "of live operation. Results of detector-geometry scans are in the lab frame (z "
                    "along q; their `frame` field says so, with the voxel size); an object still on "
                    "the detector grid is resampled first. See docs/analysis.md, docs/lab-frame.md.",
        epilog="examples:\n  bcdi-stream analyze scan-0003.h5\n"
               "  bcdi-stream analyze results/scan-*.h5 --json reanalysed/events.jsonl\n"
               "  bcdi-stream analyze demo-out/results/demo-20261205-063841/ --json again.jsonl")
    add_result_files(a)
    a.add_argument("--json", type=Path, default=None, help="write here instead of stdout")
    add_backend(a)
    a.add_argument("--config", type=Path, default=None, help="service config TOML ([analysis] and [flags] are used)")
