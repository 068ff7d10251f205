"""Live latency and warm start: two consecutive scans of a simulated series, reconstructed as the service does.

Scan 1 is reconstructed cold, scan 2 warm-started from it, both with the live default
(``PhasingConfig()``: a population of 8 in one batch, the 4 best averaged), and each analysed as
the service analyses a scan (``analyze_scan``); the second is timed, and its reconstruction on its
own too. Also reports how many iterations the warm start needs to reach the cold start's final
error on the same scan, over several random draws of the warm start's phase noise (run three times
as long as the live recipe, so that it can get there).

    .venv/bin/python benchmarks/live_latency.py --shape 128 128 64 --warm-seeds 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sim.diffraction import DiffractionModel
from sim.particle import Particle, ScrewDislocation, complex_image
from streamer.analysis.scan import analyze_scan
from streamer.analysis.series import SeriesTracker
from streamer.backend import get_namespace
from streamer.cli import process_settings
from streamer.geometry import OrthogonalGeometry
from streamer.phasing import PhasingConfig, reconstruct
from streamer.phasing.alignment import amplitude_correlation, register
from streamer.phasing.wisdom import load_wisdom, save_wisdom


def scan(geometry, y_nm: float, seed: int):
    particle = Particle().with_defects([ScrewDislocation(6.0, y_nm, 1), ScrewDislocation(6.0, -y_nm, -1)])
    truth = complex_image(particle, geometry)
    expected = DiffractionModel(truth, geometry, peak_counts=5e4).expected_volume(1.0)
    return truth, np.random.default_rng(seed).poisson(expected).astype(np.float32)


def main() -> None:
    process_settings()  # OpenMP threads spin briefly between kernels, as under bcdi-stream
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 128, 64], help="z y x (lab order; x = rocking)")
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--population", type=int, default=PhasingConfig().population)
    ap.add_argument("--warm-seeds", type=int, default=6, help="random draws of the warm start to count iterations over")
    args = ap.parse_args()
    xp = get_namespace(args.backend)
    geometry = OrthogonalGeometry(shape_zyx=tuple(args.shape), voxel_nm=12.0)
    cfg = PhasingConfig(population=args.population)
    (_t1, i1), (t2, i2) = scan(geometry, 54.0, 1), scan(geometry, 66.0, 2)
    print(f"shape {tuple(args.shape)} (z y x), backend {args.backend}, population {cfg.population}, "
          f"average {cfg.average}; cold recipe {cfg.recipe!r}, warm recipe {cfg.warm_recipe!r}")
    kept = {}

    def reconstructor(*a, **k):  # the service's reconstruction step, timed, its result kept for the error curve
        t0 = time.perf_counter()
        kept["result"] = reconstruct(*a, **k)
        kept["seconds"] = time.perf_counter() - t0
        return kept["result"]

    had_wisdom = load_wisdom()
    t0 = time.perf_counter()
    tracker = SeriesTracker()
    first = analyze_scan(i1, scan=1, geometry=geometry, xp=xp, tracker=tracker, phasing=cfg, rng=1,
                         reconstructor=reconstructor)
    t_cold = time.perf_counter() - t0
    save_wisdom()
    t0 = time.perf_counter()
    second = analyze_scan(i2, scan=2, geometry=geometry, xp=xp, tracker=tracker, phasing=cfg, rng=2,
                          reconstructor=reconstructor)
    t_warm = time.perf_counter() - t0
    warm, t_phasing = kept["result"], kept["seconds"]
    t0 = time.perf_counter()
    cold = reconstruct(i2, xp=xp, config=cfg, rng=2)
    t_cold2 = time.perf_counter() - t0
    reached = np.flatnonzero(warm.error_curve <= cold.error_curve[-1])
    corr = amplitude_correlation(register(second.rho, t2).aligned, t2)
    print(f"scan 1 cold, analysed: {t_cold:.1f} s ({'with' if had_wisdom else 'without'} saved FFTW wisdom; "
          f"includes planning)")
    print(f"scan 2 warm, analysed as the service does (reconstruction, registration to scan 1, vortices checked "
          f"in the averaged members, boundaries, domains, strain): {t_warm:.1f} s, of which the reconstruction "
          f"{t_phasing:.1f} s ({warm.iterations} iterations); vortex lines {len(second.tracked.analysis.vortices)} "
          f"(windings {sorted(v.winding for v in second.tracked.analysis.vortices)}); amplitude correlation with the truth {corr:.3f}")
    print(f"scan 2 cold (plans made): {t_cold2:.1f} s, {cold.iterations} iterations, final error "
          f"{cold.error_curve[-1]:.5f}")
    if reached.size:
        n = int(reached[0]) + 1
        print(f"warm start reaches the cold final error after {n} iterations: {cold.iterations / n:.1f}x fewer")
    else:
        print(f"the live warm recipe ends at {warm.error_curve[-1]:.5f}, short of the cold final error")
    longer = cfg.replace(warm_recipe=f"({cfg.warm_recipe})*3")
    counts = []
    for seed in range(2, 2 + args.warm_seeds):  # the warm start's phase noise is random: several draws
        warm3 = reconstruct(i2, xp=xp, config=longer, rng=seed, start=first.rho)
        reached = np.flatnonzero(warm3.error_curve <= cold.error_curve[-1])
        counts.append(int(reached[0]) + 1 if reached.size else None)
        where = (f"after {counts[-1]} iterations: {cold.iterations / counts[-1]:.1f}x fewer" if reached.size
                 else f"not within {warm3.iterations} (ends at {warm3.error_curve[-1]:.5f})")
        print(f"warm start, seed {seed}, {longer.warm_recipe!r}: reaches the cold final error {where}")
    if counts and None not in counts:
        print(f"over {len(counts)} draws: median {np.median(counts):.0f} iterations "
              f"({cold.iterations / np.median(counts):.1f}x fewer), most {max(counts)} ({cold.iterations / max(counts):.1f}x)")


if __name__ == "__main__":
    main()
