"""Assemble the report: one self-contained HTML file (PNG figures and the 3D view's script and scenes
embedded, no external links).

The 3D view is drawn by the live page's own script (streamer/web/static/view3d.js, read as a file and inlined:
one renderer for the page and the report) from ``streamer.analysis.views.scene_3d`` of each result file.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path

import numpy as np

from streamer.analysis.labels import describe_event
from streamer.report.figures import peak_images_png, slices_png, timelines_png

log = logging.getLogger(__name__)
VIEW3D_JS = Path(__file__).resolve().parents[1] / "web" / "static" / "view3d.js"
ODD_NOTE = ("the energy of the strain's odd part about the particle's centre, left out of the strain energy: one "
            "reflection fixes it only at second order, a twin reverses it, and a scan's reconstructions disagree on it")
NOISE_NOTE = ("of the strain energy, what the counting noise alone gives (read from the reconstruction's noise "
              "replicas): part of the error bar; a strain-free particle's energy is all noise")


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


def _slices(result_paths: list[Path], max_results: int) -> tuple[list[str], dict]:
    """Each result's central slices (PNG) and its 3D scene (``scene_3d``), keyed by a label."""
    from streamer.analysis.displacement import displacement_field
    from streamer.analysis.events import boundary_record, vortex_record
    from streamer.analysis.offline import result_geometry, track_result
    from streamer.analysis.series import SeriesTracker
    from streamer.analysis.views import scene_3d
    from streamer.backend import get_namespace
    from streamer.recording.result_file import read_result

    out, scenes = [], {}
    for p in result_paths[:max_results]:
        r = read_result(p)
        geometry = result_geometry(r)
        tracked, _ = track_result(SeriesTracker(), r, xp=get_namespace("numpy"))
        d = displacement_field(tracked.particle, q_inv_nm=geometry.q_bragg_inv_nm)
        found = tracked.analysis
        meta = r["metadata"]
        title = (f"{p.name}: scan {meta.get('scan', '?')}, {meta.get('voltage_v', float('nan')):.2f} V, "
                 f"{len(found.vortices)} vortex line(s), {len(found.domain_boundaries)} boundary(ies)")
        vortices = [vortex_record(v) for v in found.vortices]
        png = slices_png(tracked.particle.amplitude, d.phase_rad, d.strain, vortices, voxel_nm=geometry.voxel_nm,
                         title=title)
        out.append(f"<h3>{html.escape(p.name)}</h3>{_img(png, title)}")
        try:
            scenes[title] = scene_3d(tracked.particle, vortices, [boundary_record(b) for b in found.domain_boundaries],
                                     voxel_nm=geometry.voxel_nm)
        except (ValueError, RuntimeError) as exc:  # a particle without a surface at the level: no 3D for it
            log.warning("no 3D view of %s: %s", p, exc)
    return out, scenes


def _packed(obj):
    """Arrays as the page receives them: ``{"shape", "f32": base64 of little-endian float32}``."""
    if isinstance(obj, np.ndarray):
        return {"shape": list(obj.shape), "f32": base64.b64encode(obj.astype("<f4").tobytes()).decode()}
    if isinstance(obj, dict):
        return {str(k): _packed(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_packed(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _view3d(scenes: dict) -> list[str]:
    """The rotatable 3D view of each result (a menu of scans, the latest shown), drawn by the page's script."""
    data = json.dumps({k: _packed(v) for k, v in scenes.items()}, allow_nan=False).replace("</", "<\\/")
    options = "".join(f"<option{' selected' if k == list(scenes)[-1] else ''}>{html.escape(k)}</option>"
                      for k in scenes)
    return [
        "<h2>Reconstructions in 3D</h2>",
        ("<p>The particle's surface (half its bulk amplitude), vortex lines (red: winding +1, blue: -1), "
         "domain-boundary planes (yellow), lab axes (z along q, y the rocking axis) and a scale bar. "
         "Drag to rotate, wheel to zoom, double-click to reset.</p>"),
        (f"<p><select id='scene3d-pick'>{options}</select> <button data-look='z'>along z (q)</button>"
         "<button data-look='y'>along y</button><button data-look='x'>along x</button>"
         "<button data-look='reset'>reset</button></p>"),
        "<canvas id='view3d' width='720' height='480'></canvas>",
        f"<script type='application/json' id='scenes3d'>{data}</script>",
        f"<script>{VIEW3D_JS.read_text(encoding='utf-8')}</script>",
        ("<script>(() => { const scenes = JSON.parse(document.getElementById('scenes3d').textContent);"
         " const view = BcdiView3D.create(document.getElementById('view3d')), pick = document.getElementById('scene3d-pick');"
         " const show = () => view.setScene(scenes[pick.value]); pick.addEventListener('change', show);"
         " for (const b of document.querySelectorAll('[data-look]')) b.addEventListener('click', () => view.look(b.dataset.look));"
         " show(); })();</script>"),
    ]


def _energy_cell(strain) -> str:
    """The strain energy with its error bar (the upper end of ``energy_j_range`` less the energy), and beneath
    it the noise's part of it and the energy of the strain's odd part that ``energy_j`` leaves out (docs/events.md)."""
    strain = strain if isinstance(strain, dict) else {}
    energy, span = strain.get("energy_j"), strain.get("energy_j_range")
    if not isinstance(energy, (int, float)):
        return "-"
    text = f"{energy:.3g}"
    if isinstance(span, (list, tuple)) and len(span) == 2 and isinstance(span[1], (int, float)):
        text += f" &plusmn; {span[1] - energy:.2g}"
    noise = strain.get("noise_energy_j")
    if isinstance(noise, (int, float)) and noise > 0:
        text += f"<br><small title='{html.escape(NOISE_NOTE)}'>noise: {noise:.2g}</small>"
    odd = strain.get("odd_energy_j")
    if isinstance(odd, (int, float)) and odd > 0:
        text += f"<br><small title='{html.escape(ODD_NOTE)}'>odd part: {odd:.2g}</small>"
    return text


def _flag_cell(event: dict) -> str:
    """A scan's flags in words, each with its raw record one click away."""
    said = describe_event(event)
    if not said:
        return "-"
    return "".join(
        f"<div class='{s.severity}'>{html.escape(s.text)} <details><summary>evidence</summary><pre>"
        f"{html.escape(json.dumps(s.evidence, indent=1, default=str))}</pre></details></div>" for s in said)


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
        rows.append(f"<tr><td>{e['scan']}</td><td>{e.get('voltage_v', float('nan')):.3f}</td>"
                    f"<td>{e.get('capacity_mah_g', float('nan')):.1f}</td>"
                    f"<td>{len(e.get('vortices', []))}</td><td>{len(e.get('domain_boundaries', []))}</td>"
                    f"<td>{_energy_cell(e.get('strain'))}</td><td>{_flag_cell(e)}</td></tr>")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>bcdi-stream report: {html.escape(', '.join(runs))}</title>",
        ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
         "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top}img{max-width:100%}"
         ".alert{color:#a01010}.warn{color:#8a5a00}.info{color:#35506b}details{display:inline}"
         "summary{cursor:pointer;color:#777;font-size:11px}pre{white-space:pre-wrap;font-size:11px;color:#333}"
         "canvas{background:#0f1216}</style></head><body>"),
        (f"<h1>bcdi-stream report</h1><p>run(s) {html.escape(', '.join(runs))}: {len(events)} scans, "
         f"{sum(len(e.get('flags', [])) for e in events)} flags</p>"),
        "<h2>Timelines</h2>", _img(timelines_png(events), "timelines"),
        ("<h2>Scans and flags</h2><table><tr><th>scan</th><th>V</th><th>mAh/g</th><th>vortex lines</th>"
         "<th>boundaries</th><th>strain energy (J)</th><th>flags</th></tr>"), *rows, "</table>",
    ]
    result_paths = list(results) if results else _find_results(run_dir)
    if result_paths:
        slices, scenes = _slices(result_paths, max_results)
        parts += ["<h2>Reconstructions: central slices</h2>", *slices]
        if scenes:
            parts += _view3d(scenes)
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
