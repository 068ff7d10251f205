"""The strain energy before and after issue 19's fix, on demo-like runs (orthogonal 48^3 grid, 12 nm voxels).

Each run is simulated as ``bcdi-stream demo`` simulates it (the scenario's stages on the default plate, Poisson
counts, 0.2 s frames at 1e5 counts/s in the brightest voxel) and reconstructed as the live worker does
(``analyze_scan``: the default population of 8, 4 averaged, each scan warm-started from the previous one); the
objects and their members are cached, then both strain energies are computed from the same objects:

- before: the strain of commit e2a7f38 (mean of the wrapped forward and backward steps along z over the
  particle cut at 10% less one layer, the ramp from every pair of that cut), energy over that cut, error range
  over the 10/15/20% cuts;
- after: ``particle_fields`` (the reliable interior, the smoothed amplitude-weighted step) and
  ``strain_energy_estimate`` (density x particle volume; error from the noise, the members and the cuts).

For each run: the mean, the coefficient of variation across scans, max/min, how many scans' error bars
exclude the run's mean, and each change between stages in units of the two scans' errors combined.

    .venv/bin/python benchmarks/strain_energy.py --runs pristine:0 reference:0 core:0 --cache /tmp/strain-cache

``core`` is a control written here: the plate, then a Na-rich core of -3e-4 (a Gaussian region, 60 nm wide,
30 nm along q; truth energy 3.9e-18 J) for two scans, then gone, two scans each.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

CORE_SCENARIO = """
name = "core"
description = "pristine, a Na-rich core (-3e-4) for two scans, pristine again"
[particle]
shape = "ellipse"
[[stage]]
label = "pristine"
voltage_v = 3.4
capacity_mah_g = 10.0
[[stage]]
label = "pristine"
voltage_v = 3.45
capacity_mah_g = 15.0
[[stage]]
label = "core"
voltage_v = 3.5
capacity_mah_g = 20.0
regions = [{ strain = -3e-4, sigma_nm = 60.0, sigma_z_nm = 30.0 }]
[[stage]]
label = "core"
voltage_v = 3.55
capacity_mah_g = 25.0
regions = [{ strain = -3e-4, sigma_nm = 60.0, sigma_z_nm = 30.0 }]
[[stage]]
label = "pristine"
voltage_v = 3.6
capacity_mah_g = 30.0
[[stage]]
label = "pristine"
voltage_v = 3.65
capacity_mah_g = 35.0
"""
YOUNG_PA = 150e9


def _scenario(name: str):
    from sim.scenario import load_scenario, parse_scenario

    return parse_scenario(tomllib.loads(CORE_SCENARIO)) if name == "core" else load_scenario(name)


def reconstruct_run(name: str, seed: int) -> dict:
    """Simulate and reconstruct a run as the demo does; the tracked objects, their members, the stage labels."""
    from sim.devices import SimulatedSample
    from streamer.analysis.scan import analyze_scan
    from streamer.analysis.series import SeriesTracker
    from streamer.backend import get_namespace
    from streamer.geometry import STACK_TO_LAB_AXES, OrthogonalGeometry
    from streamer.phasing import PhasingConfig, reconstruct
    from streamer.phasing.alignment import follow, register

    scenario = _scenario(name)
    geo = OrthogonalGeometry()
    sample = SimulatedSample(scenario, geo, peak_counts_per_s=1e5)
    rng = np.random.default_rng(seed)
    xp = get_namespace("numpy")
    tracker = SeriesTracker()
    nx = geo.shape_zyx[2]
    angles = geo.theta_bragg_deg + (np.arange(nx) - nx // 2) * geo.rocking_step_deg
    objects, members, labels, seconds = [], [], [], []
    for scan in range(len(scenario.stages)):
        t0 = time.perf_counter()
        sample.advance()
        frames = np.stack([rng.poisson(sample.expected_frame(a, 0.2)) for a in angles]).astype(np.float32)
        kept = {}

        def phased(*args, kept=kept, **kwargs):
            kept["result"] = result = reconstruct(*args, **kwargs)
            return result

        previous = tracker.previous_rho
        done = analyze_scan(np.transpose(frames, STACK_TO_LAB_AXES), scan=scan, geometry=geo, xp=xp, tracker=tracker,
                            phasing=PhasingConfig(), rng=np.random.default_rng([0, scan]), reconstructor=phased)
        mem = kept["result"].members
        if previous is not None:  # the tracker's alignment, applied to the members as live
            mem = follow(mem, register(kept["result"].rho, previous), axes=(1, 2, 3))
        objects.append(done.rho.astype(np.complex64))
        members.append(np.asarray(mem, np.complex64))
        labels.append(sample.stage.label)
        seconds.append(time.perf_counter() - t0)
    return {"objects": np.stack(objects), "members": np.stack(members), "labels": np.array(labels),
            "voxel_nm": geo.voxel_nm, "q_inv_nm": geo.q_bragg_inv_nm, "seconds": np.array(seconds)}


def energy_before(rho: np.ndarray, voxel_nm: float, q_inv_nm: float) -> tuple[float, float, float]:
    """The strain energy as computed before issue 19 (commit e2a7f38): (energy, low, high)."""
    from streamer.analysis.displacement import (
        ENERGY_THRESHOLDS,
        _cut,
        _smoothed,
        displacement_object,
        eroded,
        neighbour_steps,
        remove_ramp,
    )

    smooth = _smoothed(np.abs(rho))
    support = _cut(smooth, 0.2)
    cuts = {t: eroded(_cut(smooth, t), 1) for t in ENERGY_THRESHOLDS}
    widest = cuts[min(cuts)] | eroded(support, 1)
    flat, _, _ = remove_ramp(displacement_object(rho), widest)
    ok = widest[1:] & widest[:-1]
    d = np.where(ok, neighbour_steps(flat, 0), np.nan)
    both = np.full((2,) + flat.shape, np.nan)
    both[0, :-1], both[1, 1:] = d, d
    count = np.isfinite(both).sum(axis=0)
    strain = np.full(flat.shape, np.nan)
    has = (count > 0) & widest
    strain[has] = np.nansum(both, axis=0)[has] / count[has] / (q_inv_nm * voxel_nm)
    energies = [0.5 * YOUNG_PA * float(np.nansum(np.where(cuts[t], strain, np.nan) ** 2)) * (voxel_nm * 1e-9) ** 3
                for t in ENERGY_THRESHOLDS]
    return energies[0], min(energies), max(energies)


def energy_after(rho: np.ndarray, members: np.ndarray, voxel_nm: float, q_inv_nm: float) -> tuple[float, float, float]:
    """The strain energy of ``particle_fields`` and ``strain_energy_estimate``: (energy, low, high)."""
    from streamer.analysis.displacement import particle_fields, strain_energy_estimate

    fields = particle_fields(rho, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm)
    e = strain_energy_estimate(fields, voxel_nm=voxel_nm, q_inv_nm=q_inv_nm, members=members)
    return e["energy_j"], e["energy_j"] - e["energy_error_j"], e["energy_j"] + e["energy_error_j"]


def summarise(rows: np.ndarray, labels) -> dict:
    """CV, max/min, error bars excluding the mean, and stage changes in combined errors."""
    e, lo, hi = rows[:, 0], rows[:, 1], rows[:, 2]
    err = (hi - lo) / 2
    mean = float(e.mean())
    changes = []
    for k in range(1, len(e)):
        if labels[k] != labels[k - 1]:
            combined = math.hypot(err[k], err[k - 1])
            changes.append((k, labels[k - 1], labels[k], (e[k] - e[k - 1]) / combined if combined > 0 else math.inf))
    return {"mean": mean, "cv": float(e.std() / mean), "ratio": float(e.max() / e.min()),
            "excluding": int(np.sum((lo > mean) | (hi < mean))), "changes": changes}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["pristine:0", "reference:0", "core:0"], help="scenario:seed")
    p.add_argument("--cache", type=Path, default=None, help="folder for the reconstructed objects (reused)")
    args = p.parse_args()
    from streamer.cli import process_settings

    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    cache = args.cache or Path(tempfile.mkdtemp(prefix="strain-energy-"))
    cache.mkdir(parents=True, exist_ok=True)
    for run in args.runs:
        name, _, seed = run.partition(":")
        path = cache / f"{name}-seed{seed or 0}.npz"
        if not path.is_file():
            t0 = time.perf_counter()
            np.savez_compressed(path, **reconstruct_run(name, int(seed or 0)))
            print(f"[{run}: reconstructed in {time.perf_counter() - t0:.0f} s, cached in {path}]")
        d = np.load(path)
        labels = [str(s) for s in d["labels"]]
        vox, q = float(d["voxel_nm"]), float(d["q_inv_nm"])
        before = np.array([energy_before(r, vox, q) for r in d["objects"]])
        after = np.array([energy_after(r, m, vox, q) for r, m in zip(d["objects"], d["members"])])
        print(f"\n### {name}, seed {seed or 0}: {len(labels)} scans\n")
        print("| | mean (J) | CV | max/min | error bars excluding the mean | changes between stages (combined errors) |")
        print("|---|---|---|---|---|---|")
        for title, rows in (("before", before), ("after", after)):
            s = summarise(rows, labels)
            changes = "; ".join(f"scan {k} {a} -> {b}: {z:+.1f}" for k, a, b, z in s["changes"]) or "-"
            print(f"| {title} | {s['mean']:.3g} | {100 * s['cv']:.0f}% | {s['ratio']:.1f} | "
                  f"{s['excluding']} of {len(labels)} | {changes} |")
        print("\n| scan | stage | before (J) [range] | after (J) +- error |\n|---|---|---|---|")
        for k, (b, a) in enumerate(zip(before, after)):
            print(f"| {k} | {labels[k]} | {b[0]:.3g} [{b[1]:.2g}, {b[2]:.2g}] | {a[0]:.3g} +- {(a[2] - a[1]) / 2:.2g} |")


if __name__ == "__main__":
    main()
