"""``bcdi-stream simulate``: a scenario's scans as a recording plus its ground truth, with no pipeline."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from streamer.cli.common import add_subcommand

TRUTH_FILE = "truth.h5"


def run_simulate(scenario: str, *, out_dir: Path, scans: int | None = None, seed: int = 0, out=None) -> dict:
    """Write ``OUT/<run>.h5`` (the live recording format) and ``OUT/truth.h5``; returns their paths.

    Frame timestamps are the simulated acquisition times (exposure + readout per frame) from the start.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from sim.detector import Timepix
    from sim.scenario import load_scenario, with_stages
    from sim.series import scan_frames, scan_states, scenario_geometry
    from sim.truth import TruthWriter, scan_truth
    from streamer.recording.recorder import RunRecorder

    scen = load_scenario(scenario)
    if scans is not None:
        scen = with_stages(scen, scans)
    geometry = scenario_geometry(scen)
    acq = scen.acquisition
    out_dir = Path(out_dir)
    run = f"sim-{scen.name}-seed{seed}"
    recording, truth_path = out_dir / f"{run}.h5", out_dir / TRUTH_FILE
    for path in (recording, truth_path):
        if path.exists():
            raise ValueError(f"{path} exists; choose another --out or remove it")
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = Timepix(scen.detector, seed=seed)
    n_frames = geometry.num_rocking_steps
    t0 = time.time()
    elapsed = 0.0
    console = Console(file=out or sys.stdout, highlight=False, soft_wrap=True)
    console.print(f"bcdi-stream simulate: scenario '{scen.name}' ({scen.description}): {len(scen.stages)} scans of "
                  f"{n_frames} frames {scen.detector.shape_px[0]}x{scen.detector.shape_px[1]}, "
                  f"{acq.exposure_s} s each; seed {seed}")
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with RunRecorder(recording, run) as recorder, TruthWriter(truth_path, run=run, scenario=scen.name, seed=seed,
                                                              geometry=geometry.to_dict()) as truth, \
            Progress(*columns, console=console) as progress:
        task = progress.add_task("frames", total=len(scen.stages) * n_frames)
        for state in scan_states(scen, geometry):
            stage = state.stage
            progress.update(task, description=f"scan {state.scan} {stage.label[:24]:<24}")
            metadata = {"voltage_v": stage.voltage_v, "capacity_mah_g": stage.capacity_mah_g,
                        "geometry": geometry.to_dict(), "exposure_s": acq.exposure_s, "plan_name": "simulate",
                        "sample": f"simulated particle, scenario {scen.name}", "simulated": True, "seed": seed}
            recorder.start_scan(state.scan, n_frames, metadata)
            for step, theta, frame in scan_frames(state.model, geometry, detector, acq.exposure_s):
                elapsed += acq.exposure_s
                recorder.add_frame(state.scan, step, theta, t0 + elapsed, frame)
                elapsed += acq.readout_s
                progress.advance(task)
            recorder.end_scan(state.scan, [])
            truth.add(scan_truth(state.scan, stage, state.particle, state.model.expected_stack(1.0), geometry),
                      state.particle)
    console.print(f"recording: {recording}   truth: {truth_path}")
    return {"recording": recording, "truth": truth_path, "run": run}


def _cmd_simulate(args) -> int:
    run_simulate(args.scenario, out_dir=args.out, scans=args.scans, seed=args.seed)
    return 0


def register(sub) -> None:
    """Add the ``simulate`` subcommand to the parser."""
    s = add_subcommand(
        sub, "simulate", _cmd_simulate, help="simulate a scenario's scans: recording + ground truth, no pipeline",
        description="Simulates the frames a Timepix records through a scenario's charge (sheared "
                    "detector geometry, Poisson counts, detector defects) and writes them in the "
                    "live recording format (OUT/<run>.h5, docs/recording.md), with the ground "
                    "truth of every scan beside it (OUT/truth.h5, docs/truth.md).",
        epilog="examples:\n  bcdi-stream simulate reference --out sim-out\n"
               "  bcdi-stream simulate pristine --out control --scans 5 --seed 3")
    s.add_argument("scenario", help="scenario name in sim/scenarios (reference, pristine, broadening, ...) or a TOML path")
    s.add_argument("--out", type=Path, required=True, help="output folder")
    s.add_argument("--scans", type=int, default=None, help="simulate only the first N scans (default: all)")
    s.add_argument("--seed", type=int, default=0, help="seed of the detector noise (same seed, same frames)")
