"""A real-size scan through `bcdi-stream reconstruct` as a user runs it (issue 17): defaults against the full treatment.

A rocking scan of the issue's shape (256 x 256 pixels x 200 frames of 0.005 deg at 9 keV, 0.5 m, 55 um; the
reference plate with a screw pair) is simulated with Poisson counts and given to `reconstruct` as an intensity
array (not binned, as another tool prepares it). Whole processes are timed: the default command (its time
budget) on a first run with no remembered FFT plans and again once they are remembered, and the full
treatment (`--budget-s 0`: population 8, 610 iterations, full resolution). The objects are compared after
alignment (amplitude correlation) and `bcdi-stream analyze` lists the lines of each.

    .venv/bin/python benchmarks/real_size.py                       # the issue's shape; the full run takes long
    .venv/bin/python benchmarks/real_size.py --shape 64 96 96 --no-full
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim.diffraction import DiffractionModel
from sim.particle import Particle, ScrewDislocation, complex_image
from streamer.geometry import DetectorGeometry
from streamer.phasing.alignment import register
from streamer.recording.result_file import read_result

ROOT = Path(__file__).resolve().parents[1]


def simulate(shape, seed: int = 0) -> tuple[np.ndarray, float]:
    """(intensity in lab-like order (step, row, col) as counts, the real-space voxel along the rows)."""
    steps, rows, cols = shape
    geometry = DetectorGeometry(energy_kev=9.0, distance_m=0.5, pixel_um=55.0, detector_shape_px=(rows, cols),
                                rocking_step_deg=0.005, num_rocking_steps=steps)
    particle = Particle(radius_x_nm=150, radius_y_nm=140, thickness_nm=100).with_defects(
        [ScrewDislocation(0.0, 45.0, 1), ScrewDislocation(0.0, -45.0, -1)])
    model = DiffractionModel(complex_image(particle, geometry), geometry, peak_counts=1e5)
    counts = np.random.default_rng(seed).poisson(model.expected_stack(1.0)).astype(np.float32)
    return counts, min(geometry.voxel_sizes_nm)


def run(cmd: list[str], env: dict) -> tuple[float, dict, str]:
    """Wall seconds, the command's JSON summary line, its stderr."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    text = done.stdout.strip()
    try:
        summary = json.loads(text)  # analyze: one JSON document
    except ValueError:
        summary = json.loads(text.splitlines()[-1])  # reconstruct: its summary is the last line
    return seconds, summary, done.stderr


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[200, 256, 256], help="steps rows cols")
    ap.add_argument("--no-full", action="store_true", help="skip the full treatment (minutes at the issue's shape)")
    ap.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temp dir)")
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="real-size-"))
    root.mkdir(parents=True, exist_ok=True)
    counts, voxel = simulate(tuple(args.shape))
    data = root / "intensity.npy"
    np.save(data, np.transpose(counts, (1, 2, 0)))  # (row ~ q, col, step): the layout another tool writes
    print(f"intensity {counts.shape[1]}x{counts.shape[2]}x{counts.shape[0]}, {counts.sum():.3g} counts, voxel "
          f"{voxel:.2f} nm; files in {root}", flush=True)
    bcdi = [sys.executable, "-m", "streamer.cli"]
    env = {**os.environ, "BCDI_STREAM_CACHE": str(root / "fft-cache")}  # a fresh install: no remembered plans
    rows = []
    for label in ("default, first run (no remembered FFT plans)", "default, plans remembered"):
        seconds, summary, err = run(bcdi + ["reconstruct", str(data), "--out", str(root / "default.h5"),
                                            "--voxel-nm", f"{voxel:.4f}"], env)
        rows.append((label, seconds, summary))
        print(f"{label}: {seconds:.1f} s wall; {summary.get('budget', {}).get('reason', 'no budget')}", flush=True)
    results = {"default": read_result(root / "default.h5")}
    if not args.no_full:
        seconds, summary, _ = run(bcdi + ["reconstruct", str(data), "--out", str(root / "full.h5"), "--voxel-nm",
                                          f"{voxel:.4f}", "--budget-s", "0"], env)
        rows.append(("full treatment (population 8, 610 iterations, full resolution)", seconds, summary))
        print(f"full: {seconds:.1f} s wall", flush=True)
        results["full"] = read_result(root / "full.h5")
        a, b = results["full"]["object"], results["default"]["object"]
        aligned = register(b, a).aligned
        corr = float(np.corrcoef(np.abs(a).ravel(), np.abs(aligned).ravel())[0, 1])
        print(f"amplitude correlation, default vs full: {corr:.4f}", flush=True)
    for name in results:
        _, summary, _ = run(bcdi + ["analyze", str(root / f"{name}.h5")], env)
        lines = [(v["winding"], [round(x) for x in v["position_nm"]]) for v in summary.get("vortices", [])]
        print(f"lines ({name}): {lines}", flush=True)
    print("\n| run | wall s | population | iterations | grid | predicted s |")
    print("|---|---|---|---|---|---|")
    for label, seconds, summary in rows:
        b = summary.get("budget") or {}
        print(f"| {label} | {seconds:.1f} | {summary['population']} | {summary['iterations']} | "
              f"{'x'.join(map(str, b.get('shape', []))) or 'full'} | {b.get('predicted_s', '-')} |")
    print(f"peak RSS of this script's children: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
