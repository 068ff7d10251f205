"""Detector-geometry scans against the truth (issue 16's acceptance): simulated Timepix frames on the sheared
grid, with the detector's defects, through the service's processing, compared in the lab frame.

For each (scenario, seed) every scan is simulated (sim/, with hot and dead pixels and the count ceiling; a quad
with its gap cross with --quad), prepared, phased on the detector grid and analysed in the lab frame exactly as
`bcdi-stream serve`'s worker does it (``ScanProcessor``, every scan reconstructed); the dead pixels and gaps are
the detector's configuration (a bad-pixel map file), hot pixels are found. The events are
compared with sim/truth.py: line positions across the beam (in-plane) and along the rocking direction, line
types and windings, pair separations, boundary normals, peak widths, the scripted flags at their scans, and no
flag on a pristine control. The twin image (conj(rho(-r))) fits the data exactly as well, so positions are
compared with the truth and with its inversion, whichever is closer, and windings with the truth's (or, for the
twin, their opposite: the twin flips every winding; docs/conventions.md). Then one scan with defects against the same scan from a perfect detector:
amplitude correlation of the two lab-frame objects.

    .venv/bin/python benchmarks/detector_scans.py --runs reference:0 reference:1 reference:2 pristine:0
    .venv/bin/python benchmarks/detector_scans.py --runs reference:0 --crop 128 --fast     # minutes on 2 cores
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flag_validation import expected_events, flagged_events

from sim.detector import Timepix, TimepixSpec
from sim.scenario import load_scenario, with_stages
from sim.series import scan_frames, scan_states, scenario_geometry
from sim.truth import peak_widths
from streamer.analysis.config import FlagConfig
from streamer.cli import process_settings
from streamer.phasing.alignment import register
from streamer.service.assembly import AssembledScan
from streamer.service.config import ServiceConfig
from streamer.service.processing import ScanProcessor

FAST_PHASING = {"recipe": "(80HIO, 20ER)*2, 10ER", "population": 4, "average": 2, "warm_recipe": "30HIO, 20ER"}
LIMITS = {"position_across_nm": 15.0, "separation_rel": 0.10, "normal_deg": 15.0, "width_rel": 0.10,
          "correlation": 0.95}


def scenario_for(name: str, *, crop: int | None, quad: bool, scans: int | None):
    """The scenario, optionally cut to a centred ``crop`` x ``crop`` ROI, or moved onto a quad whose gap cross
    runs through the ROI 40 pixels from the peak."""
    scen = load_scenario(name)
    if scans:
        scen = with_stages(scen, scans)
    geo = dict(scen.geometry or {})
    detector = scen.detector
    if quad:
        detector = dataclasses.replace(detector, chips=4)
        n = crop or 256
        centre = 258 + 40 + 2  # the gap (256..260) 40 pixels above and left of the peak
        geo.update(detector_shape_px=[516, 516], center_px=[float(centre)] * 2,
                   roi_px=[centre - n // 2, centre + n // 2, centre - n // 2, centre + n // 2])
    elif crop:
        rows, cols = geo.get("detector_shape_px", [256, 256])
        r0, c0 = (rows - crop) // 2, (cols - crop) // 2
        geo["roi_px"] = [r0, r0 + crop, c0, c0 + crop]
    return dataclasses.replace(scen, geometry=geo, detector=detector)


def _assembled(run, k, frames, geometry, stage):
    meta = {"geometry": geometry.to_dict(), "voltage_v": stage.voltage_v, "capacity_mah_g": stage.capacity_mah_g}
    n = len(frames)
    return AssembledScan(run, k, meta, dict(enumerate(frames)), frames.shape, np.zeros(n), np.arange(n, dtype=float), [])


def _bad_map(spec: TimepixSpec, folder: Path) -> str:
    _, dead = spec.defect_maps()
    path = folder / f"bad-{spec.chips}.npy"
    np.save(path, dead | spec.gap_mask())  # what the detector's configuration knows; hot pixels are found
    return str(path)


def simulate_and_process(scen, seed: int, service: ServiceConfig, *, perfect_scan: int | None = None):
    """Every scan through one processor: (events, truths, seconds per scan, lab objects of ``perfect_scan``
    with defects and from a perfect detector, or None)."""
    geometry = scenario_geometry(scen)
    proc = ScanProcessor(service)
    timepix = Timepix(scen.detector, seed=seed)
    exposure = scen.acquisition.exposure_s
    events, truths, seconds, compared = [], [], [], None
    for state in scan_states(scen, geometry):
        frames = np.stack([f for _, _, f in scan_frames(state.model, geometry, timepix, exposure)])
        truths.append({"lines": [(np.asarray(d.point_nm), d.winding, d.kind) for d in state.particle.dislocations],
                       "boundaries": [np.asarray(b.normal, float) for b in state.particle.boundaries],
                       "widths": peak_widths(state.model.expected_stack(1.0), geometry)})
        t0 = time.perf_counter()
        job = proc.prepare(_assembled("bench", state.scan, frames, geometry, state.stage), {})
        events.append(proc.process(job))
        seconds.append(time.perf_counter() - t0)
        if state.scan == perfect_scan and job.lab is not None:
            compared = (proc.tracker("bench").last.rho,
                        _perfect_detector(state, geometry, service, job.lab.shape_zyx, seed, exposure))
    return events, truths, seconds, compared


def _perfect_detector(state, geometry, service, shape, seed, exposure) -> np.ndarray:
    """The lab-frame object of the same scan from a perfect detector (Poisson counts only), cold, same lab grid."""
    r0, r1, c0, c1 = geometry.roi_px
    expected = state.model.expected_stack(exposure)
    frames = np.zeros((len(expected), *geometry.detector_shape_px), np.uint32)
    frames[:, r0:r1, c0:c1] = np.random.default_rng(seed + 1000).poisson(expected)
    clean = ScanProcessor(service.replace(detector={"count_ceiling": 0, "hot_pixel_factor": 0,
                                                    "lab_shape_zyx": list(shape)}))
    clean.process(clean.prepare(_assembled("perfect", state.scan, frames, geometry, state.stage), {}))
    return clean.tracker("perfect").last.rho


def _matched_lines(found: list, lines: list) -> tuple[list, int]:
    """For each true line (point, winding, kind): (dy, dx, found vortex or None), the found line nearest in
    the plane across it; the object or its twin (r -> -r), whichever matches better, and which (+1, -1)."""
    best = None
    for sign in (1, -1):
        matched = []
        for point, _, _ in lines:
            near = [(np.asarray(v["position_nm"][1:]) - sign * point[1:], v) for v in found]
            if near:
                d, v = min(near, key=lambda t: np.hypot(*t[0]))
                matched.append((abs(float(d[0])), abs(float(d[1])), v))
            else:
                matched.append((float("inf"), float("inf"), None))
        worst = max((np.hypot(dy, dx) for dy, dx, _ in matched), default=0.0)
        if best is None or worst < best[0]:
            best = (worst, matched, sign)
    return best[1], best[2]


def compare(events, truths, flags: FlagConfig, scenario: str) -> dict:
    """Per-scan comparison with the truth: line positions (y: across the beam, x: along the rocking
    direction), types, |winding|, separations, boundary normals, peak widths, flags."""
    expected = expected_events(scenario, flags)
    rows, dys, dxs, sep_err, normal_err, width_err, missed, extra = [], [], [], [], [], [], 0, 0
    for k, (event, truth) in enumerate(zip(events, truths)):
        found = event.get("vortices", [])
        voxel = (event.get("frame") or {}).get("voxel_nm", float("nan"))
        matched, twin = _matched_lines(found, truth["lines"])
        dys += [dy for dy, _, _ in matched]
        dxs += [dx for _, dx, _ in matched]
        types_ok = all(v is not None and v["type"] == kind and v["winding"] == twin * w
                       for (_, w, kind), (_, _, v) in zip(truth["lines"], matched))
        if len(truth["lines"]) == 2 and len(found) == 2:
            true_sep = math.dist(truth["lines"][0][0][1:], truth["lines"][1][0][1:])
            sep = math.dist(found[0]["position_nm"][1:], found[1]["position_nm"][1:])
            sep_err.append(abs(sep - true_sep) / true_sep)
        for normal in truth["boundaries"]:
            got = [np.asarray(b["normal"], float) for b in event.get("domain_boundaries", [])]
            cos = max((abs(float(np.dot(normal, g / np.linalg.norm(g)))) for g in got), default=None)
            normal_err.append(float("inf") if cos is None else math.degrees(math.acos(min(1.0, cos))))
        peak = event.get("peak", {})
        for key in ("width_parallel", "width_perpendicular_y", "width_perpendicular_x"):
            if key in peak:
                width_err.append(abs(peak[key] / truth["widths"][f"{key}_inv_nm"] - 1))
        want = expected[k] if k < len(expected) else Counter()
        got = flagged_events(event)  # peak flags too: none is scripted
        missed += sum((want - got).values())
        extra += sum((got - want).values())
        worst = max((np.hypot(dy, dx) for dy, dx, _ in matched), default=0.0)
        rows.append((k, event.get("reconstruction", {}).get("status"), len(truth["lines"]), len(found), worst,
                     types_ok, voxel, dict(want), dict(flagged_events(event))))
    return {"rows": rows, "dy": dys, "dx": dxs, "separation": sep_err, "normal": normal_err, "width": width_err,
            "missed_flags": missed, "extra_flags": extra}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["reference:0", "reference:1", "reference:2", "pristine:0"])
    ap.add_argument("--crop", type=int, default=None, help="a centred N x N ROI instead of the scenario's")
    ap.add_argument("--quad", action="store_true", help="a Timepix quad whose gap cross runs through the ROI")
    ap.add_argument("--scans", type=int, default=None, help="only the first N scans of each scenario")
    ap.add_argument("--fast", action="store_true", help=f"a short phasing recipe ({FAST_PHASING['recipe']})")
    ap.add_argument("--perfect-scan", type=int, default=3, help="scan compared with a perfect detector's")
    args = ap.parse_args(argv)
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    out_root = Path(tempfile.mkdtemp(prefix="bcdi-detector-bench-"))
    ok = True
    for run in args.runs:
        name, _, seed = run.partition(":")
        seed = int(seed or 0)
        scen = scenario_for(name, crop=args.crop, quad=args.quad, scans=args.scans)
        rocking_voxel_nm = scenario_geometry(scen).voxel_sizes_nm[0]
        service = ServiceConfig(realtime_policy="all", budget={"mode": "off"}, detector={"bad_pixel_map_file": _bad_map(scen.detector, out_root)})
        if args.fast:
            service = service.replace(phasing=service.phasing.replace(**FAST_PHASING))
        t0 = time.perf_counter()
        events, truths, seconds, compared = simulate_and_process(scen, seed, service, perfect_scan=args.perfect_scan)
        wall = time.perf_counter() - t0
        events_file = out_root / f"{name}-{seed}.jsonl"
        events_file.write_text("".join(json.dumps(e, default=str) + "\n" for e in events))
        result = compare(events, truths, service.flags, name)
        print(f"\n== {name} seed {seed} (events: {events_file}): {len(events)} scans, {wall:.0f} s (per scan: first {seconds[0]:.1f} s, "
              f"then median {np.median(seconds[1:]) if len(seconds) > 1 else float('nan'):.1f} s)")
        print("scan status  lines found  worst_nm  types  voxel_nm  expected -> flagged")
        for k, status, n_true, n_found, worst, types_ok, voxel, want, got in result["rows"]:
            print(f"{k:4d} {status!s:>6} {n_true:5d} {n_found:5d} {worst:9.1f} {types_ok!s:>6} {voxel:8.2f}  {want} -> {got}")
        corr = None
        if compared is not None:
            a, b = compared
            corr = float(np.corrcoef(np.abs(a).ravel(), np.abs(register(b, a).aligned).ravel())[0, 1])
        dy, dx = max(result["dy"], default=0.0), max(result["dx"], default=0.0)
        figures = {
            "worst line position error across the beam, y (nm)": dy,
            "worst line position error along the rocking direction, x (nm)": dx,
            "resolution along the rocking direction (nm)": rocking_voxel_nm,
            "worst pair separation error": max(result["separation"], default=0.0),
            "worst boundary normal error (deg)": max(result["normal"], default=0.0),
            "worst peak width error": max(result["width"], default=0.0),
            "scripted flags missed": result["missed_flags"],
            "flags not scripted": result["extra_flags"],
            "amplitude correlation, defects vs perfect detector": corr,
        }
        checks = [dy <= LIMITS["position_across_nm"], dx <= max(LIMITS["position_across_nm"], rocking_voxel_nm), max(result["separation"], default=0) <= LIMITS["separation_rel"],
                  max(result["normal"], default=0) <= LIMITS["normal_deg"], max(result["width"], default=0) <= LIMITS["width_rel"],
                  result["missed_flags"] == 0, result["extra_flags"] == 0, corr is None or corr >= LIMITS["correlation"]]
        for key, value in figures.items():
            print(f"  {key}: {value if value is None or isinstance(value, int) else round(value, 4)}")
        print(f"  acceptance: {'pass' if all(checks) else 'FAIL'}")
        ok &= all(checks)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
