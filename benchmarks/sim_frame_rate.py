"""Simulator frame rate: Timepix frames per second after the per-state precompute.

Times the precompute (particle on the sheared grid + 3D FFT) once, then whole rocking scans of
frames (signal slice -> Poisson counts, background, defect map, ceiling), as ``simulate`` makes them:

    .venv/bin/python benchmarks/sim_frame_rate.py --scenario reference --frames 2000
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from sim.detector import Timepix
from sim.scenario import load_scenario
from sim.series import scan_frames, scan_states, scenario_geometry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="reference")
    p.add_argument("--stage", type=int, default=3, help="scenario stage to image (default 3: the screw pair)")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    scen = load_scenario(args.scenario)
    scen = replace(scen, stages=(scen.stages[min(args.stage, len(scen.stages) - 1)],))
    geometry = scenario_geometry(scen)
    t0 = time.perf_counter()
    (state,) = scan_states(scen, geometry)
    precompute = time.perf_counter() - t0
    detector = Timepix(scen.detector, seed=0)
    exposure = scen.acquisition.exposure_s
    print(f"scenario {scen.name} stage '{scen.stages[0].label}': frames {scen.detector.shape_px}, "
          f"{geometry.num_rocking_steps} steps, signal in {geometry.frame_shape}, peak "
          f"{scen.acquisition.peak_counts_per_s:g} counts/s x {exposure} s")
    print(f"precompute (particle on the sheared grid + 3D FFT): {precompute:.2f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for r in range(args.repeats):
        n = 0
        t0, c0 = time.perf_counter(), time.process_time()
        while n < args.frames:
            for _ in scan_frames(state.model, geometry, detector, exposure):
                n += 1
                if n == args.frames:
                    break
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"run {r}: {n} frames in {dt:.2f} s = {n / dt:.0f} frames/s wall clock, "
              f"{n / cpu:.0f} frames per CPU second")


if __name__ == "__main__":
    main()
