"""A real-size scan through `bcdi-stream reconstruct` as a user runs it (issue 17): defaults against the full treatment.

A rocking scan of the issue's shape (256 x 256 pixels x 200 frames of 0.005 deg at 9 keV, 0.5 m, 55 um; the
reference plate with a screw pair) is simulated with Poisson counts and given to `reconstruct` as an intensity
array (not binned, as another tool prepares it). Whole processes are timed: the default command (its time
budget) on a first run with no remembered FFT plans and again once they are remembered, and the full
treatment (`--budget-s 0`: population 8, 610 iterations, full resolution). The objects are compared after
alignment (amplitude correlation) and `bcdi-stream analyze` lists the lines of each.

    .venv/bin/python benchmarks/real_size.py                       # the issue's shape; the full run takes long
    .venv/bin/python benchmarks/real_size.py --shape 64 96 96 --no-full
    .venv/bin/python benchmarks/real_size.py --recording        # the same scan as a recording (detector grid)

``--recording`` simulates the scan as the Timepix records it (`bcdi-stream simulate` of
benchmarks/scenarios/real-size.toml: 256 x 256 pixels x 200 frames of 0.005 deg, the reference plate; scan 3,
the screw pair, unless ``--scan`` says otherwise) and gives the recording to `reconstruct --scan N`, which prepares it as the live pipeline
does (2x2 binning, masks, the detector grid, the lab frame).

Lines are compared after the default's object is put on the full treatment's grid (registration: translation,
twin, phase offset), both analysed by `bcdi-stream analyze`: for each line of the full treatment, the line of
the default with the same winding nearest to it, and their distance across the line (the centroids' offset
perpendicular to the full line's direction: along a line, where its detected ends fall moves the centroid).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim.diffraction import DiffractionModel
from sim.particle import Particle, ScrewDislocation, complex_image
from streamer.geometry import DetectorGeometry
from streamer.phasing.alignment import follow, register
from streamer.recording.result_file import read_result, write_result

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


def on_grid(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` centred on a grid of ``shape`` (cropped or zero-padded about index n // 2)."""
    out = np.zeros(shape, a.dtype)
    src, dst = [], []
    for n, m in zip(a.shape, shape):
        lo = n // 2 - m // 2  # a's index at out's index 0
        src.append(slice(max(0, lo), min(n, lo + m)))
        dst.append(slice(max(0, -lo), max(0, -lo) + min(n, lo + m) - max(0, lo)))
    out[tuple(dst)] = a[tuple(src)]
    return out


def aligned_copy(default: Path, full: Path, out: Path) -> tuple[float, Path]:
    """The default's result put on the full one's grid and registered to it: (amplitude correlation, file)."""
    a, b = read_result(full), read_result(default)
    reg = register(on_grid(b["object"], a["object"].shape), a["object"])
    corr = float(np.corrcoef(np.abs(a["object"]).ravel(), np.abs(reg.aligned).ravel())[0, 1])
    support = follow(on_grid(b["support"], a["object"].shape), reg)
    write_result(out, obj=reg.aligned, support=support, recipe=b["recipe"], metadata=a["metadata"], peak=b["peak"],
                 phasing=b["phasing"], compress=False)
    return corr, out


def line_offsets(full: list[dict], default: list[dict]) -> list[dict]:
    """For each full line: the nearest default line of the same winding and the distance across the line."""
    rows = []
    for f in full:
        d = np.asarray(f["direction"], float) / np.linalg.norm(f["direction"])
        best = None
        for g in default:
            if g["winding"] != f["winding"]:
                continue
            delta = np.subtract(g["position_nm"], f["position_nm"])
            across = float(np.linalg.norm(delta - delta.dot(d) * d))
            if best is None or across < best["across_nm"]:
                best = {"across_nm": across, "centroids_nm": float(np.linalg.norm(delta))}
        rows.append({"winding": f["winding"], "position_nm": [round(x) for x in f["position_nm"]],
                     **(best or {"across_nm": float("nan"), "centroids_nm": float("nan")})})
    return rows


def run(cmd: list[str], env: dict) -> tuple[float, dict, str]:
    """Wall seconds, the command's JSON summary line, its stderr."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
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
    ap.add_argument("--recording", action="store_true", help="the scan as a recording (simulated Timepix frames)")
    ap.add_argument("--scan", type=int, default=3, help="with --recording: the scenario's scan (3: the screw pair)")
    ap.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temp dir)")
    args = ap.parse_args(argv)
    root = args.out or Path(tempfile.mkdtemp(prefix="real-size-"))
    root.mkdir(parents=True, exist_ok=True)
    bcdi = [sys.executable, "-m", "streamer.cli"]
    if args.recording:
        subprocess.run(bcdi + ["simulate", str(ROOT / "benchmarks" / "scenarios" / "real-size.toml"), "--out",
                               str(root / "sim"), "--scans", str(args.scan + 1)], check=True, cwd=ROOT, capture_output=True)
        source = [str(root / "sim" / "sim-real-size-seed0.h5"), "--scan", str(args.scan)]
        voxel = 4.89
        print(f"recording of 200 frames 256x256 (the real-size scenario's scan {args.scan}); files in {root}",
              flush=True)
    else:
        counts, voxel = simulate(tuple(args.shape))
        data = root / "intensity.npy"
        np.save(data, np.transpose(counts, (1, 2, 0)))  # (row ~ q, col, step): the layout another tool writes
        source = [str(data), "--voxel-nm", f"{voxel:.4f}"]
        print(f"intensity {counts.shape[1]}x{counts.shape[2]}x{counts.shape[0]}, {counts.sum():.3g} counts, voxel "
              f"{voxel:.2f} nm; files in {root}", flush=True)
    shutil.rmtree(root / "fft-cache", ignore_errors=True)  # a fresh install: no remembered plans
    env = {**os.environ, "BCDI_STREAM_CACHE": str(root / "fft-cache")}
    rows = []
    for label in ("default, first run (no remembered FFT plans)", "default, plans remembered"):
        seconds, summary, _ = run(bcdi + ["reconstruct", *source, "--out", str(root / "default.h5")], env)
        rows.append((label, seconds, summary))
        print(f"{label}: {seconds:.1f} s wall; {summary.get('budget', {}).get('reason', 'no budget')}", flush=True)
    if not args.no_full:
        if not (root / "full.h5").exists():  # kept from an earlier run with --out: the full treatment is long
            seconds, summary, _ = run(bcdi + ["reconstruct", *source, "--out", str(root / "full.h5"),
                                              "--budget-s", "0"], env)
            rows.append(("full treatment (population 8, 610 iterations, full resolution)", seconds, summary))
            print(f"full: {seconds:.1f} s wall", flush=True)
        corr, _ = aligned_copy(root / "default.h5", root / "full.h5", root / "default-aligned.h5")
        print(f"amplitude correlation, default (on the full one's grid) vs full: {corr:.4f}", flush=True)
        found = {name: run(bcdi + ["analyze", str(root / f"{name}.h5")], env)[1].get("vortices", [])
                 for name in ("full", "default-aligned")}
        for name, lines in found.items():
            print(f"lines ({name}): {[(v['winding'], [round(x) for x in v['position_nm']]) for v in lines]}")
        for row in line_offsets(found["full"], found["default-aligned"]):
            print(f"full line {row['position_nm']} nm, winding {row['winding']:+d}: the default's "
                  f"{row['across_nm']:.1f} nm across it ({row['across_nm'] / voxel:.2f} voxels of {voxel:.2f} nm), "
                  f"centroids {row['centroids_nm']:.1f} nm apart", flush=True)
    else:
        _, summary, _ = run(bcdi + ["analyze", str(root / "default.h5")], env)
        print(f"lines (default): {[(v['winding'], [round(x) for x in v['position_nm']]) for v in summary.get('vortices', [])]}")
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
