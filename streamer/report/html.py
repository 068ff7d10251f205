"""Assemble the report: one self-contained HTML file (PNG figures embedded, no external links)."""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import numpy as np

from streamer.analysis.labels import flag_label
from streamer.report.figures import peak_images_png, slices_png, timelines_png

log = logging.getLogger(__name__)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _find_results(run_dir: Path) -> list[Path]:
    from streamer.recording.result_file import read_result

    found = []
    for p in sorted(run_dir.rglob("*.h5")):
        try:
            read_result(p)
        except ValueError:
            continue
        found.append(p)
    return found


def _slices(result_paths: list[Path], max_results: int) -> list[str]:
    from streamer.analysis.displacement import displacement_field
    from streamer.analysis.events import vortex_record
    from streamer.analysis.offline import result_geometry, track_result
    from streamer.analysis.series import SeriesTracker
    from streamer.backend import get_namespace
    from streamer.recording.result_file import read_result

    out = []
    for p in result_paths[:max_results]:
        r = read_result(p)
        geometry = result_geometry(r)
        tracked, _ = track_result(SeriesTracker(), r, xp=get_namespace("numpy"))
        d = displacement_field(tracked.particle, q_inv_nm=geometry.q_bragg_inv_nm)
        found = tracked.analysis
        meta = r["metadata"]
        title = (f"{p.name}: scan {meta.get('scan', '?')}, {meta.get('voltage_v', float('nan')):.2f} V, "
                 f"{len(found.vortices)} vortex line(s), {len(found.domain_boundaries)} boundary(ies)")
        png = slices_png(tracked.particle.amplitude, d.phase_rad, d.strain,
                         [vortex_record(v) for v in found.vortices], voxel_nm=geometry.voxel_nm, title=title)
        out.append(f"<h3>{html.escape(p.name)}</h3>{_img(png, title)}")
    return out


def _peak_images(run_dir: Path) -> list[str]:
    from streamer.analysis.peak import projected_images
    from streamer.geometry import STACK_TO_LAB_AXES
    from streamer.recording.recorder import list_scans, read_scan

    out = []
    for rec in sorted(run_dir.glob("*.h5")):
        try:
            scans = [s for s in list_scans(rec) if s["frames_recorded"] > 0]
        except (ValueError, KeyError, OSError):
            continue
        for s in (scans[0], scans[-1]) if len(scans) > 1 else scans:
            frames = read_scan(rec, s["scan"])["frames"]
            images = projected_images(np.transpose(frames, STACK_TO_LAB_AXES))
            out.append(_img(peak_images_png(images, f"{rec.name} scan {s['scan']}: projected peak"), "peak"))
    return out


def build_report(run_dir: Path, *, results: list[Path] | None = None, max_results: int = 8) -> str:
    """The HTML text of the report of ``run_dir`` (its events.jsonl, result files, recordings)."""
    from streamer.recording.event_log import read_events

    run_dir = Path(run_dir)
    events_path = run_dir / "events.jsonl"
    if not events_path.is_file():
        raise ValueError(f"{run_dir} has no events.jsonl: not a run folder of bcdi-stream")
    events = [e for e in read_events(events_path) if isinstance(e, dict) and "scan" in e]
    if not events:
        raise ValueError(f"{events_path} holds no scan events")
    runs = sorted({str(e.get("run", "")) for e in events})
    rows = []
    for e in events:
        flags = ", ".join(flag_label(f) for f in e.get("flags", [])) or "-"
        energy = (e.get("strain") or {}).get("energy_j")
        rows.append(f"<tr><td>{e['scan']}</td><td>{e.get('voltage_v', float('nan')):.3f}</td>"
                    f"<td>{e.get('capacity_mah_g', float('nan')):.1f}</td>"
                    f"<td>{len(e.get('vortices', []))}</td><td>{len(e.get('domain_boundaries', []))}</td>"
                    f"<td>{'-' if energy is None else f'{energy:.3g}'}</td><td>{html.escape(flags)}</td></tr>")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>bcdi-stream report: {html.escape(', '.join(runs))}</title>",
        ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}</style></head><body>"),
        (f"<h1>bcdi-stream report</h1><p>run(s) {html.escape(', '.join(runs))}: {len(events)} scans, "
         f"{sum(len(e.get('flags', [])) for e in events)} flags</p>"),
        "<h2>Timelines</h2>", _img(timelines_png(events), "timelines"),
        ("<h2>Scans and flags</h2><table><tr><th>scan</th><th>V</th><th>mAh/g</th><th>vortex lines</th>"
         "<th>boundaries</th><th>strain energy (J)</th><th>flags</th></tr>"), *rows, "</table>",
    ]
    result_paths = list(results) if results else _find_results(run_dir)
    if result_paths:
        parts += ["<h2>Reconstructions: central slices</h2>", *_slices(result_paths, max_results)]
    else:
        parts.append("<p>No result files (bcdi-stream reconstruct) in this folder: no slices.</p>")
    peaks = _peak_images(run_dir)
    if peaks:
        parts += ["<h2>Bragg peak (first and last scans)</h2>", *peaks]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: Path, out: Path | None = None, **kwargs) -> Path:
    """Write the report (default RUN_DIR/report.html) and return its path."""
    out = Path(out) if out else Path(run_dir) / "report.html"
    text = build_report(run_dir, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
