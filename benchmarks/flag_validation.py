"""Flags against the script: run simulated operando series through the whole pipeline and compare.

For each (scenario, seed) the demo runs end to end (plans -> sim devices -> ZeroMQ -> pipeline,
every scan reconstructed in full), on the demo's realistic detector by default (Timepix quad frames
across the chip gaps, the sheared grid, the lab frame) or ``--geometry orthogonal`` (the toy grid);
the expected events of each scan are derived from the scenario's stages (same matching radii as the
live flags), and the table shows expected vs flagged:

    .venv/bin/python benchmarks/flag_validation.py --runs reference:0 reference:1 reference:2 pristine:0
"""

from __future__ import annotations

import argparse
import io
import itertools
import math
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from sim.particle import Particle
from sim.scenario import load_scenario
from streamer.analysis.config import FlagConfig
from streamer.cli import process_settings
from streamer.cli.demo import realistic_detector, run_demo
from streamer.recording.event_log import read_events
from streamer.service.config import ServiceConfig

DEFECT_KINDS = ("new_vortex", "vortex_lost", "vortex_lost:surface", "vortex_moved", "domain_boundary:appeared",
                "domain_boundary:resolved")


def _surface_distance_nm(y_nm: float, x_nm: float, particle: Particle) -> float:
    """In-plane distance from a line at (y, x) to the plate's elliptical edge."""
    t = np.linspace(0, 2 * np.pi, 3600)
    return float(np.min(np.hypot(particle.radius_y_nm * np.sin(t) - y_nm, particle.radius_x_nm * np.cos(t) - x_nm)))


def expected_events(scenario: str, flags: FlagConfig) -> list[Counter]:
    """Defect events each scan should raise, from the scripted stages."""
    stages = load_scenario(scenario).stages
    out = [Counter()]
    for prev, cur in itertools.pairwise(stages):
        c = Counter()
        if len(cur.boundaries) > len(prev.boundaries):
            c["domain_boundary:appeared"] += 1
        elif len(cur.boundaries) < len(prev.boundaries):
            c["domain_boundary:resolved"] += 1
        cands = sorted((math.dist(p.point_nm[1:], q.point_nm[1:]), i, j)
                       for i, p in enumerate(prev.dislocations) for j, q in enumerate(cur.dislocations)
                       if p.winding == q.winding)
        used_p, used_c = set(), set()
        for d, i, j in cands:
            if d <= flags.vortex_match_radius_nm and i not in used_p and j not in used_c:
                used_p.add(i)
                used_c.add(j)
                if d > flags.vortex_move_threshold_nm:
                    c["vortex_moved"] += 1
        c["new_vortex"] += len(cur.dislocations) - len(used_c)
        for i, d in enumerate(prev.dislocations):
            if i not in used_p:
                near = _surface_distance_nm(*d.point_nm[1:], Particle()) <= flags.surface_exit_distance_nm
                c["vortex_lost:surface" if near else "vortex_lost"] += 1
        out.append(+c)
    return out


def flagged_events(event: dict) -> Counter:
    c = Counter()
    for f in event["flags"]:
        key = f["kind"] + (f":{f['state']}" if f["kind"] == "domain_boundary" else "")
        if f["kind"] == "vortex_lost" and f.get("left_through_surface"):
            key += ":surface"
        c[key] += 1
    return c


def validate(scenario: str, seed: int, *, population: int | None, out_root: Path,
             geometry: str = "detector") -> tuple[list, float]:
    service = ServiceConfig(realtime_policy="all", budget={"mode": "off"})
    if population:
        service = service.replace(phasing=service.phasing.replace(population=population))
    out_dir = out_root / f"{scenario}-{seed}"
    detector = timepix = None
    if geometry == "detector":
        detector, timepix, service = realistic_detector(out_dir, service)
    t0 = time.perf_counter()
    code = run_demo(out_dir=out_dir, scenario=scenario, realtime=False, seed=seed, service=service,
                    geometry=detector, timepix=timepix, out=io.StringIO())
    elapsed = time.perf_counter() - t0
    if code:
        raise RuntimeError(f"demo {scenario} seed {seed} exited with {code}")
    events = read_events(out_dir / "events.jsonl")
    rows = []
    for event, want in zip(events, expected_events(scenario, service.flags)):
        got = flagged_events(event)
        rows.append((event["scan"], want, got))
    return rows, elapsed


def _fmt(c: Counter) -> str:
    return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in sorted(c.items())) or "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["reference:0", "reference:1", "reference:2", "pristine:0"],
                   help="scenario:seed pairs")
    p.add_argument("--population", type=int, default=0, help="random starts per reconstruction (default: config)")
    p.add_argument("--out", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    p.add_argument("--geometry", choices=["detector", "orthogonal"], default="detector",
                   help="the demo's realistic detector (default) or the toy orthogonal grid")
    args = p.parse_args(argv)
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    root = args.out or Path(tempfile.mkdtemp(prefix="flag-validation-"))
    total_missed = total_false = 0
    for spec in args.runs:
        scenario, _, seed = spec.partition(":")
        rows, elapsed = validate(scenario, int(seed or 0), population=args.population, out_root=root,
                                 geometry=args.geometry)
        print(f"\n## {scenario}, seed {seed or 0}: {len(rows)} scans in {elapsed:.0f} s")
        print("| scan | expected (defects) | flagged | missed | false alarms |")
        print("|---|---|---|---|---|")
        for scan, want, got in rows:
            defects = Counter({k: n for k, n in got.items() if k in DEFECT_KINDS})
            missed, false = want - defects, defects - want
            other = Counter({k: n for k, n in got.items() if k not in DEFECT_KINDS})
            false += other  # the simulated particle neither broadens nor drifts: any peak flag is false
            total_missed += sum(missed.values())
            total_false += sum(false.values())
            print(f"| {scan} | {_fmt(want)} | {_fmt(got)} | {_fmt(missed)} | {_fmt(false)} |")
    print(f"\nmissed events: {total_missed}, false alarms: {total_false}   (run folders: {root})")
    return 0 if total_missed == total_false == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
